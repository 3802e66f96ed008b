// Composer tests: fused weights against base + Σ w_i ΔŴ_i computed here from
// DecodeModuleDelta, aliasing of untouched modules, base immutability, module
// filters, refusals, and factorized serving (ComposeFactorized run through
// Transformer::Step) against the merged weights.
#include "pack/composer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/small_gemm.h"
#include "core/weight_delta.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "tests/pack/pack_test_util.h"

namespace skillpack {
namespace {

// A decoded pack with its selection's weight and module filter, composed
// through ComposeWeights(base, selections, packs).
struct Term {
  const DecodedPack* pack;
  float weight;
  std::vector<std::string> modules;
};

StatusOr<std::shared_ptr<const ModelWeights>> Compose(const ModelWeights& base, const std::vector<Term>& terms) {
  std::vector<PackSelection> selections;
  std::vector<const DecodedPack*> packs;
  for (const Term& t : terms) {
    selections.push_back({"", t.weight, t.modules});
    packs.push_back(t.pack);
  }
  return ComposeWeights(base, selections, packs);
}

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kDown0[] = "model.layers.0.mlp.down_proj.weight";
constexpr char kQ0[] = "model.layers.0.self_attn.q_proj.weight";
constexpr char kUp1[] = "model.layers.1.mlp.up_proj.weight";
constexpr char kGate1[] = "model.layers.1.mlp.gate_proj.weight";

class ComposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testutil::SmallConfig();
    base_ = testutil::RandomBase(config_, 1);
    for (const auto& [n, t] : base_->tensors()) before_[n] = t.clone();
    const std::string fp = *BaseFingerprint(*base_);
    for (uint64_t seed : {21, 22, 23}) {
      packs_.push_back(testutil::EveryOpPack(seed, fp));
      auto d = DecodePack(packs_.back(), /*keep_factors=*/seed != 22);  // pack 1 dense-only
      ASSERT_TRUE(d.ok()) << d.status();
      decoded_.push_back(*std::move(d));
    }
    // Pack 2 touches modules the others do not: a norm, and a matrix in full
    // precision (op dense: the host tier keeps it as a float16 delta).
    at::Generator gen = at::detail::createCPUGenerator(3);
    SkillPack& p2 = packs_[2];
    p2.modules.push_back(testutil::DenseModule("model.norm.weight", {32}, gen));
    p2.modules.push_back(testutil::DenseModule(kGate1, {48, 32}, gen));
    std::sort(p2.modules.begin(), p2.modules.end(),
              [](const ModuleDelta& a, const ModuleDelta& b) { return a.name < b.name; });
    decoded_[2] = *DecodePack(p2, true);
  }

  void ExpectBaseUntouched() {
    for (const auto& [n, t] : base_->tensors()) EXPECT_TRUE(at::equal(t, before_.at(n))) << n;
  }

  // base + Σ w_i ΔŴ_i over the packs whose filter selects `name`.
  at::Tensor Expected(const std::string& name, const std::vector<std::pair<int, float>>& packs,
                      const std::vector<std::vector<std::string>>& filters = {}) {
    at::Tensor want = before_.at(name).to(at::kDouble);
    for (size_t k = 0; k < packs.size(); ++k) {
      const auto& [i, w] = packs[k];
      if (!filters.empty() && !ModuleFilterMatches(filters[k], name)) continue;
      for (const ModuleDelta& m : packs_[i].modules) {
        if (m.name == name) want += w * DecodeModuleDelta(m)->to(at::kDouble);
      }
    }
    return want;
  }

  // Pack 2 with its singular values (and its dense matrix) scaled, decoded
  // with float32 factors and with factors in `precision`.
  std::pair<DecodedPack, DecodedPack> DecodeScaled(double sigma_scale, FactorPrecision precision) const {
    SkillPack p = packs_[2];
    for (ModuleDelta& m : p.modules) {
      if (m.op == ModuleOp::kLowRank) m.sigma = m.sigma * sigma_scale;
      if (m.op == ModuleOp::kDense && m.shape.size() == 2) m.full = m.full * sigma_scale;
    }
    return {*DecodePack(p, true, FactorPrecision::kFloat32), *DecodePack(p, true, precision)};
  }

  // m: a dense matrix kept float16 (StoreDeltaAsHalf); ref: the same module
  // decoded float32. Half the bytes, the stored peak in [0.5, 1], and every
  // entry within float16's rounding of its own value.
  static void ExpectHalfDelta(const DecodedModule& m, const DecodedModule& ref) {
    SCOPED_TRACE(m.name);
    EXPECT_EQ(m.delta.scalar_type(), at::kHalf);
    EXPECT_EQ(ref.delta.scalar_type(), at::kFloat);
    EXPECT_EQ(m.bytes() * 2, ref.bytes());
    const at::Tensor got = m.DenseDelta(), want = ref.DenseDelta();
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    const double peak = want.abs().max().item<double>();
    ASSERT_GT(peak, 0.0);
    EXPECT_GT(peak, 0.5 * m.factor_scale);
    EXPECT_LE(peak, 1.0 * m.factor_scale);
    // float16 keeps 11 significant bits; below 2^-14 of the peak (its
    // subnormals, once scaled) 2^-25 of the peak's power of two.
    EXPECT_TRUE(
        ((got - want).abs() <= want.abs() * std::ldexp(1.0, -11) + peak * std::ldexp(1.0, -24)).all().item<bool>());
  }

  ModelConfig config_;
  std::shared_ptr<const ModelWeights> base_;
  std::map<std::string, at::Tensor> before_;
  std::vector<SkillPack> packs_;
  std::vector<DecodedPack> decoded_;
};

TEST_F(ComposerTest, FusedEqualsBasePlusWeightedDeltas) {
  const std::vector<std::pair<int, float>> use = {{0, 0.7f}, {1, -0.3f}, {2, 1.5f}};
  std::vector<Term> sel;
  for (const auto& [i, w] : use) sel.push_back({&decoded_[i], w, {}});
  auto fused = Compose(*base_, sel);
  ASSERT_TRUE(fused.ok()) << fused.status();
  std::set<std::string> touched;
  for (const SkillPack& p : packs_) {
    for (const ModuleDelta& m : p.modules) touched.insert(m.name);
  }
  for (const auto& [name, t] : (*fused)->tensors()) {
    SCOPED_TRACE(name);
    const at::Tensor& b = *base_->Find(name);
    if (touched.count(name)) {
      EXPECT_NE(t.data_ptr(), b.data_ptr());
      const at::Tensor want = Expected(name, use);
      EXPECT_LE((t.to(at::kDouble) - want).abs().max().item<double>(), 1e-6 * (1 + want.abs().max().item<double>()));
      EXPECT_FALSE(at::equal(t, b));
    } else {
      EXPECT_EQ(t.data_ptr(), b.data_ptr());  // aliased, not copied
    }
  }
  EXPECT_EQ((*fused)->layers()[0].down.data_ptr(), (*fused)->Find(kDown0)->data_ptr());
  ExpectBaseUntouched();

  // The fused set runs through the model.
  Transformer model(config_);
  const at::Tensor tokens = at::tensor({3, 14, 15, 92, 6}, at::kLong).view({1, 5});
  const at::Tensor logits = model.Forward(**fused, tokens, at::ones({1, 5}, at::kLong));
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  EXPECT_FALSE(at::allclose(logits, model.Forward(*base_, tokens, at::ones({1, 5}, at::kLong))));
}

TEST_F(ComposerTest, ModuleFilterAndZeroWeight) {
  const std::vector<std::vector<std::string>> filters = {{"mlp"}, {"layers.0-0.self_attn", "embed_tokens"}};
  std::vector<Term> sel = {
      {&decoded_[0], 1.0f, filters[0]}, {&decoded_[1], 2.0f, filters[1]}, {&decoded_[2], 0.0f, {}}};
  auto fused = Compose(*base_, sel);
  ASSERT_TRUE(fused.ok()) << fused.status();
  const std::vector<std::pair<int, float>> use = {{0, 1.0f}, {1, 2.0f}};
  for (const std::string& name :
       {std::string(kDown0), std::string(kUp1), std::string(kQ0), std::string("model.embed_tokens.weight")}) {
    SCOPED_TRACE(name);
    const at::Tensor want = Expected(name, use, filters);
    EXPECT_LE(((*fused)->Find(name)->to(at::kDouble) - want).abs().max().item<double>(),
              1e-6 * (1 + want.abs().max().item<double>()));
  }
  // Pack 0 only on mlp: q_proj gets pack 1 alone; input_layernorm (dense in every
  // pack) is filtered out of 0 and 1, and pack 2 has weight 0: aliased.
  EXPECT_TRUE(at::allclose(*(*fused)->Find(kQ0), Expected(kQ0, {{1, 2.0f}}).to(at::kFloat), 1e-6, 1e-6));
  for (const char* aliased :
       {"model.layers.0.input_layernorm.weight", "model.norm.weight", "model.layers.1.self_attn.o_proj.weight"}) {
    EXPECT_EQ((*fused)->Find(aliased)->data_ptr(), base_->Find(aliased)->data_ptr()) << aliased;
  }
  ExpectBaseUntouched();
}

TEST(ModuleFilterTest, MatchingRule) {
  const std::string q = "model.layers.2.self_attn.q_proj.weight";
  for (const char* yes : {"self_attn", "q_proj", "layers.0-3", "layers.2.self_attn", "layers.*.self_attn",
                          "model.layers.2.self_attn.q_proj.weight", "2", "1-2.self_attn", "*"}) {
    EXPECT_TRUE(ModuleFilterMatches({yes}, q)) << yes;
  }
  for (const char* no : {"mlp", "layers.3", "attn", "layers.3-5", "self_attn.k_proj", "layers.2.mlp", "q_proj.weight.x",
                         "model.layers.2.self_attn.q_proj"}) {
    EXPECT_EQ(ModuleFilterMatches({no}, q), std::string(no) == "model.layers.2.self_attn.q_proj") << no;
  }
  EXPECT_FALSE(ModuleFilterMatches({"layers.1"}, "model.layers.10.mlp.up_proj.weight"));
  EXPECT_TRUE(ModuleFilterMatches({}, q));
  EXPECT_TRUE(ModuleFilterMatches({"mlp", "q_proj"}, q));
  EXPECT_TRUE(ValidateModuleFilter({"mlp", "layers.0-3", "*"}).ok());
  EXPECT_FALSE(ValidateModuleFilter({""}).ok());
  EXPECT_FALSE(ValidateModuleFilter({"layers..mlp"}).ok());
  EXPECT_FALSE(ValidateModuleFilter({".mlp"}).ok());
  EXPECT_THAT(std::string(ValidateModuleFilter({"layers.5-2"}).message()), HasSubstr("empty range 5-2"));
}

TEST_F(ComposerTest, Refusals) {
  auto refused = [&](const std::vector<Term>& sel, absl::StatusCode code, const std::string& want) {
    auto f = Compose(*base_, sel);
    ASSERT_FALSE(f.ok()) << want;
    EXPECT_EQ(f.status().code(), code) << f.status();
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(want)) << f.status();
  };
  refused({{nullptr, 1.0f, {}}}, absl::StatusCode::kInvalidArgument, "packs[0]: null pack");
  auto mismatch = ComposeWeights(*base_, {PackSelection{"a", 1.0f, {}}}, {});
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mismatch.status().message()), HasSubstr("1 selections but 0 decoded packs"));
  auto named = ComposeWeights(*base_, {PackSelection{"sorter", NAN, {}}}, {&decoded_[0]});
  EXPECT_THAT(std::string(named.status().message()), HasSubstr("pack sorter: weight"));
  refused({{&decoded_[0], NAN, {}}}, absl::StatusCode::kInvalidArgument, "not finite");
  refused({{&decoded_[0], 1.0f, {"a..b"}}}, absl::StatusCode::kInvalidArgument, "empty component");
  // A filter that selects nothing would serve the base while reporting the pack as used.
  refused({{&decoded_[0], 1.0f, {"no_such_module", "layers.99"}}}, absl::StatusCode::kInvalidArgument,
          "module filter [no_such_module, layers.99] matches none of its");
  refused({{&decoded_[0], 0.0f, {"no_such_module"}}}, absl::StatusCode::kInvalidArgument, "matches none");

  DecodedPack missing = decoded_[0];
  missing.modules["model.layers.9.mlp.up_proj.weight"] = missing.modules.at(kUp1);
  refused({{&missing, 1.0f, {"self_attn"}}}, absl::StatusCode::kFailedPrecondition,
          "module 'model.layers.9.mlp.up_proj.weight' is not a tensor of the base model");

  DecodedPack wrong = decoded_[1];
  wrong.modules.at(kQ0).delta = at::zeros({16, 32});
  refused({{&wrong, 1.0f, {}}}, absl::StatusCode::kFailedPrecondition, kQ0);

  DecodedPack wrong_factors = decoded_[0];
  wrong_factors.modules.at(kDown0).us = at::zeros({31, 7});
  refused({{&wrong_factors, 1.0f, {}}}, absl::StatusCode::kFailedPrecondition, kDown0);

  auto tied = testutil::RandomBase(testutil::SmallConfig(/*tie=*/true), 1);
  DecodedPack head;
  head.name = "head";
  head.modules["lm_head.weight"] = DecodedModule{"lm_head.weight", at::zeros({97, 32}), {}, {}};
  auto f = Compose(*tied, {{&head, 1.0f, {}}});
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("ties lm_head"));
  ExpectBaseUntouched();
}

TEST_F(ComposerTest, KeepsBaseDtype) {
  std::map<std::string, at::Tensor> half;
  for (const auto& [n, t] : base_->tensors()) half[n] = t.to(at::kBFloat16);
  auto base16 = ModelWeights::Create(config_, half);
  ASSERT_TRUE(base16.ok());
  auto fused = Compose(**base16, {{&decoded_[0], 1.0f, {}}});
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ((*fused)->Find(kDown0)->scalar_type(), at::kBFloat16);
  const at::Tensor want = Expected(kDown0, {{0, 1.0f}});
  // Base rounded to bf16 once and the sum once more: within two bf16 ulps.
  EXPECT_LE(((*fused)->Find(kDown0)->to(at::kDouble) - want).abs().max().item<double>(),
            2 * 0.0079 * want.abs().max().item<double>());
}

// Logits of each prompt run through Transformer::Step: prefill, then `decode`
// single-token steps feeding back the argmax. All prompts in one batch, each
// row with its own weights' delta (`deltas[i]`, may be null).
std::vector<at::Tensor> StepLogits(const Transformer& model, const ModelWeights& w,
                                   const std::vector<std::vector<int32_t>>& prompts,
                                   const std::vector<const WeightDelta*>& deltas, int decode) {
  auto cache = KvCache::Create(model.config(), static_cast<int64_t>(prompts.size()), 32, at::kFloat);
  EXPECT_TRUE(cache.ok()) << cache.status();
  std::vector<SeqStep> steps;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int32_t slot = *(*cache)->Acquire();
    steps.push_back({slot, prompts[i], deltas[i]});
  }
  std::vector<at::Tensor> out;
  for (int round = 0; round <= decode; ++round) {
    auto logits = model.Step(w, **cache, steps);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return out;
    out.push_back(*logits);
    for (size_t i = 0; i < steps.size(); ++i)
      steps[i].tokens = {static_cast<int32_t>(logits->select(0, i).argmax().item<int64_t>())};
  }
  return at::stack(out, 1).unbind(0);  // per row: [decode + 1, vocab]
}

// Factorized serving (ComposeFactorized + SeqStep::delta) against the merged
// weights (ComposeWeights): single, weighted, several packs, module-filtered,
// and rows of different sets (and none) mixed in one batch.
// Float32, float16 and int8 factors (the server's host tier holds int8 ones
// by default), both stored transposed as the host tier keeps them: each way
// the factorized step equals the weights merged from the same decoded factors,
// with the kernel (SmallGemmAccumulate for both) and through ATen. The
// kernel's paths for contiguous factors: FactorizedStepTakesEitherFactorLayout.
TEST_F(ComposerTest, FactorizedStepMatchesMergedWeights) {
  for (FactorPrecision prec : {FactorPrecision::kFloat32, FactorPrecision::kFloat16, FactorPrecision::kInt8}) {
    for (bool kernel : {true, false}) {
      SCOPED_TRACE(absl::StrCat(FactorPrecisionName(prec), " factors, ", kernel ? "kernel" : "ATen"));
      SetSmallGemmEnabled(kernel);
      std::vector<DecodedPack> dec;
      for (size_t i = 0; i < packs_.size(); ++i) {
        auto d = DecodePack(packs_[i], /*keep_factors=*/i != 1, prec);  // pack 1 dense-only
        ASSERT_TRUE(d.ok()) << d.status();
        dec.push_back(*std::move(d));
      }
      int64_t factored = 0;
      for (const auto& [name, m] : dec[0].modules) {
        if (!m.factored()) continue;
        ++factored;
        const at::ScalarType want = prec == FactorPrecision::kFloat16 ? at::kHalf
                                    : prec == FactorPrecision::kInt8  ? at::kChar
                                                                      : at::kFloat;
        EXPECT_EQ(m.us.scalar_type(), want) << name;
        EXPECT_EQ(m.rank_scale.defined(), prec == FactorPrecision::kInt8) << name;
        // The host tier's layout (UsLayout, VtLayout): both stored transposed, the kernel's fast paths.
        EXPECT_TRUE(m.us.t().is_contiguous()) << name;
        EXPECT_TRUE(m.vt.t().is_contiguous()) << name;
      }
      EXPECT_GT(factored, 0);
      // A pack's dense_quant modules are kept, and served, as their codes
      // (QuantRows) at every precision; a dense matrix as float16 unless the
      // factors are float32; 1-D modules stay float32.
      for (const ModuleDelta& m : packs_[2].modules) {
        const DecodedModule& d = dec[2].modules.at(m.name);
        EXPECT_EQ(d.is_quant(), m.op == ModuleOp::kDenseQuant) << m.name;
        if (m.op != ModuleOp::kDense) continue;
        const bool matrix = m.shape.size() == 2;
        EXPECT_EQ(d.delta.scalar_type(), matrix && prec != FactorPrecision::kFloat32 ? at::kHalf : at::kFloat)
            << m.name;
      }
      // The pruned embedding is kept, and served, as sparse rows.
      ASSERT_TRUE(dec[0].modules.at("model.embed_tokens.weight").is_sparse());
      const Transformer model(config_);
      const std::vector<std::vector<Term>> sets = {
          {{&dec[0], 1.0f, {}}},                                                       // one pack
          {{&dec[1], -0.6f, {}}},                                                      // dense-only, weighted
          {{&dec[0], 0.7f, {}}, {&dec[1], 0.4f, {}}, {&dec[2], 1.3f, {}}},             // three packs
          {{&dec[0], 1.0f, {"layers.0", "embed_tokens"}}, {&dec[2], 0.5f, {"norm"}}},  // module filters
      };
      std::vector<std::shared_ptr<const WeightDelta>> deltas;
      std::vector<std::shared_ptr<const ModelWeights>> merged;
      for (const auto& set : sets) {
        std::vector<PackSelection> sel;
        std::vector<const DecodedPack*> packs;
        for (const Term& t : set) {
          sel.push_back({"", t.weight, t.modules});
          packs.push_back(t.pack);
        }
        auto d = ComposeFactorized(*base_, sel, packs);
        ASSERT_TRUE(d.ok()) << d.status();
        EXPECT_GT((*d)->bytes(), 0);
        deltas.push_back(*d);
        merged.push_back(*ComposeWeights(*base_, sel, packs));
      }
      ASSERT_NE(deltas[0]->Find("model.embed_tokens.weight"), nullptr);
      EXPECT_TRUE(deltas[0]->Find("model.embed_tokens.weight")->front().is_sparse());
      // The filtered set keeps only its filtered modules.
      for (const auto& [name, terms] : deltas[3]->terms()) {
        EXPECT_TRUE(name.find("layers.0") != std::string::npos || name == "model.embed_tokens.weight" ||
                    name == "model.norm.weight")
            << name;
      }
      at::Generator gen = at::detail::createCPUGenerator(9);
      std::vector<std::vector<int32_t>> prompts;
      // Set 0's two prompts (rows 0 and 5) are 18 rows of x in the prefill: more
      // than the kernel's 16, so they run as two pieces.
      for (int64_t len : {9, 3, 7, 4, 6, 9}) {
        at::Tensor t = at::randint(0, config_.vocab_size, {len}, gen, at::kInt);
        prompts.emplace_back(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + len);
      }
      // Row i runs set rows[i] (-1: the base).
      const std::vector<int> rows = {0, -1, 2, 3, 1, 0};
      std::vector<const WeightDelta*> row_deltas;
      for (int r : rows) row_deltas.push_back(r < 0 ? nullptr : deltas[r].get());
      const std::vector<at::Tensor> mixed = StepLogits(model, *base_, prompts, row_deltas, 3);
      ASSERT_EQ(mixed.size(), rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        SCOPED_TRACE(absl::StrCat("row ", i, " set ", rows[i]));
        const ModelWeights& w = rows[i] < 0 ? *base_ : *merged[rows[i]];
        const at::Tensor want = StepLogits(model, w, {prompts[i]}, {nullptr}, 3)[0];
        EXPECT_LE((mixed[i] - want).abs().max().item<double>(), 1e-4 * (1 + want.abs().max().item<double>()));
        // Alone in its batch too (the single-set fast path).
        if (rows[i] >= 0) {
          const at::Tensor alone = StepLogits(model, *base_, {prompts[i]}, {row_deltas[i]}, 3)[0];
          EXPECT_LE((alone - want).abs().max().item<double>(), 1e-4 * (1 + want.abs().max().item<double>()));
        }
      }
      // The deltas change the output: the comparison above is not vacuous.
      const at::Tensor plain = StepLogits(model, *base_, {prompts[0]}, {nullptr}, 3)[0];
      EXPECT_GT((mixed[0] - plain).abs().max().item<double>(), 1e-2);
    }
  }
  SetSmallGemmEnabled(true);
}

TEST(FactorPrecisionTest, ParsesItsNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseFactorPrecision("float16"), FactorPrecision::kFloat16);
  EXPECT_EQ(*ParseFactorPrecision("float32"), FactorPrecision::kFloat32);
  EXPECT_EQ(*ParseFactorPrecision("int8"), FactorPrecision::kInt8);
  for (FactorPrecision p : {FactorPrecision::kFloat32, FactorPrecision::kFloat16, FactorPrecision::kInt8}) {
    EXPECT_EQ(*ParseFactorPrecision(FactorPrecisionName(p)), p);
  }
  EXPECT_STREQ(FactorPrecisionName(FactorPrecision::kFloat16), "float16");
  const Status bad = ParseFactorPrecision("fp16").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("'fp16'"));
}

// Float16 factors: half the bytes, each factor scaled by a power of two into
// float16's normal range, so ΔŴ keeps float16's relative precision whatever
// the singular values: tiny ones (U·diag(σ) would be subnormal) and huge ones
// (past 65504) alike. The same for a dense (full-precision) matrix's ΔŴ,
// kept float16 (StoreDeltaAsHalf): each entry within float16's rounding of its
// own value. Dense_quant modules keep their codes: exact.
TEST_F(ComposerTest, HalfFactorsKeepTheirPrecisionAtAnyScale) {
  for (double sigma_scale : {1.0, 1e-6, 1e7}) {
    SCOPED_TRACE(absl::StrCat("sigma x ", sigma_scale));
    const auto [f32, f16] = DecodeScaled(sigma_scale, FactorPrecision::kFloat16);
    int64_t halved = 0, halved_dense = 0, coded = 0;
    for (const auto& [name, m] : f16.modules) {
      const DecodedModule& ref = f32.modules.at(name);
      if (m.delta.defined() && m.delta.dim() == 2) {
        ++halved_dense;
        ExpectHalfDelta(m, ref);
        continue;
      }
      if (!m.factored()) {
        coded += m.is_quant();  // the pack's own codes: exact at any precision
        EXPECT_TRUE(at::equal(m.DenseDelta(), ref.DenseDelta())) << name;
        continue;
      }
      ++halved;
      EXPECT_EQ(m.us.scalar_type(), at::kHalf) << name;
      EXPECT_EQ(m.vt.scalar_type(), at::kHalf) << name;
      EXPECT_EQ(m.bytes() * 2, ref.bytes()) << name;
      EXPECT_EQ(ref.factor_scale, 1.0f);
      const at::Tensor got = m.DenseDelta(), want = ref.DenseDelta();
      EXPECT_EQ(got.scalar_type(), at::kFloat);
      const double peak = want.abs().max().item<double>();
      ASSERT_GT(peak, 0.0) << name;
      EXPECT_LE((got - want).abs().max().item<double>(), 5e-3 * peak) << name;
    }
    EXPECT_GT(halved, 0);
    EXPECT_EQ(halved_dense, 1);
    EXPECT_EQ(coded, 2);
    // The factorized composition carries factor_scale into the terms' scales.
    auto delta = ComposeFactorized(*base_, {{"", 0.5f, {}}}, {&f16});
    ASSERT_TRUE(delta.ok()) << delta.status();
    for (const auto& [name, terms] : (*delta)->terms()) {
      const DecodedModule& m = f16.modules.at(name);
      if (m.factored() || m.delta.defined()) {
        EXPECT_FLOAT_EQ(terms[0].scale, 0.5f * m.factor_scale) << name;
      }
    }
  }
}

// Int8 factors: a quarter of float32's factor bytes (plus 4 bytes of scale
// per rank component), ΔŴ within the codes' rounding of the float32 one at
// any scale of the singular values, and the terms carry the rank scales.
TEST_F(ComposerTest, Int8FactorsStayWithinTheirRoundingAtAnyScale) {
  for (double sigma_scale : {1.0, 1e-6, 1e7}) {
    SCOPED_TRACE(absl::StrCat("sigma x ", sigma_scale));
    const auto [f32, q8] = DecodeScaled(sigma_scale, FactorPrecision::kInt8);
    int64_t coded = 0;
    for (const auto& [name, m] : q8.modules) {
      const DecodedModule& ref = f32.modules.at(name);
      if (m.delta.defined() && m.delta.dim() == 2) {
        ExpectHalfDelta(m, ref);  // a dense matrix is kept float16 at int8 too (pack/decode.h)
        continue;
      }
      if (!m.factored()) {
        EXPECT_TRUE(at::equal(m.DenseDelta(), ref.DenseDelta())) << name;
        continue;
      }
      ++coded;
      const int64_t rank = ref.us.size(1);
      EXPECT_EQ(m.us.scalar_type(), at::kChar) << name;
      EXPECT_EQ(m.vt.scalar_type(), at::kChar) << name;
      EXPECT_EQ(m.rank_scale.sizes(), (std::vector<int64_t>{rank})) << name;
      EXPECT_EQ(m.factor_scale, 1.0f);
      EXPECT_EQ(m.bytes(), ref.bytes() / 4 + 4 * rank) << name;
      const at::Tensor got = m.DenseDelta(), want = ref.DenseDelta();
      EXPECT_EQ(got.scalar_type(), at::kFloat);
      // Each factor entry within half a step (1/254 of its line's largest):
      // for Gaussian-like lines ~0.7% of each factor in root mean square, so
      // ΔŴ within ~1% of its own size; measured 0.72-0.80% here.
      const double rel = ((got - want).norm() / want.norm()).item<double>();
      EXPECT_LE(rel, 1.5e-2) << name;
      EXPECT_GT(rel, 0.0) << name << ": int8 codes cannot be exact for random factors";
    }
    EXPECT_GT(coded, 0);
    auto delta = ComposeFactorized(*base_, {{"", 0.5f, {}}}, {&q8});
    ASSERT_TRUE(delta.ok()) << delta.status();
    for (const auto& [name, terms] : (*delta)->terms()) {
      const DecodedModule& m = q8.modules.at(name);
      if (!m.factored()) continue;
      EXPECT_FLOAT_EQ(terms[0].scale, 0.5f) << name;
      EXPECT_TRUE(terms[0].rank_scale.is_same(m.rank_scale)) << name << ": the term references the pack's scales";
    }
  }
}

// lm_head terms (untied), and on a tied base the embedding's terms serve the
// output projection too; served by the raw loops and through ATen, each
// form a pack's heads may take.
TEST_F(ComposerTest, FactorizedStepAppliesHeadTerms) {
  // The heads as a pack may store them: pruned (sparse rows), dense_quant
  // (the allocator's dense fallback: the codes), or dense (a float16 delta).
  for (ModuleOp op : {ModuleOp::kSparse, ModuleOp::kDenseQuant, ModuleOp::kDense})
    for (auto [tie, kernel] : {std::pair{false, true}, {true, true}, {false, false}, {true, false}}) {
      SCOPED_TRACE(
          absl::StrCat(ModuleOpName(op), " heads, ", tie ? "tied" : "untied", kernel ? ", raw loops" : ", ATen"));
      SetSmallGemmEnabled(kernel);
      const ModelConfig c = testutil::SmallConfig(tie);
      const auto base = testutil::RandomBase(c, 4);
      at::Generator gen = at::detail::createCPUGenerator(6);
      SkillPack p = testutil::EveryOpPack(31, *BaseFingerprint(*base));
      auto head_module = [&](const std::string& name, int bits, int64_t group, bool act_order, int64_t nnz) {
        return op == ModuleOp::kDenseQuant ? testutil::DenseQuantModule(name, 97, 32, bits, group, act_order, gen)
               : op == ModuleOp::kDense    ? testutil::DenseModule(name, {97, 32}, gen)
                                           : testutil::SparseModule(name, 97, 32, nnz, gen);
      };
      // Modules are sorted by name: the embedding first, lm_head.weight before it.
      p.modules.front() = head_module("model.embed_tokens.weight", 8, 32, false, 150);
      if (!tie) p.modules.insert(p.modules.begin(), head_module("lm_head.weight", 4, 12, true, 300));
      const DecodedPack d = *DecodePack(p, true, FactorPrecision::kFloat16);
      for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
        if (tie && std::string(name) == "lm_head.weight") continue;
        const DecodedModule& head = d.modules.at(name);
        ASSERT_EQ(head.is_sparse(), op == ModuleOp::kSparse) << name;
        ASSERT_EQ(head.is_quant(), op == ModuleOp::kDenseQuant) << name;
        if (op == ModuleOp::kDense) {
          ASSERT_EQ(head.delta.scalar_type(), at::kHalf) << name;
        }
      }
      const std::vector<PackSelection> sel = {{"", 0.9f, {}}};
      auto delta = ComposeFactorized(*base, sel, {&d});
      ASSERT_TRUE(delta.ok()) << delta.status();
      auto fused = ComposeWeights(*base, sel, {&d});
      ASSERT_TRUE(fused.ok()) << fused.status();
      const Transformer model(c);
      const std::vector<std::vector<int32_t>> prompts = {{3, 14, 15, 92, 65}, {35, 89}};
      const std::vector<at::Tensor> got = StepLogits(model, *base, prompts, {delta->get(), nullptr}, 2);
      const at::Tensor want = StepLogits(model, **fused, {prompts[0]}, {nullptr}, 2)[0];
      EXPECT_LE((got[0] - want).abs().max().item<double>(), 1e-4 * (1 + want.abs().max().item<double>()));
      const at::Tensor base_row = StepLogits(model, *base, {prompts[1]}, {nullptr}, 2)[0];
      EXPECT_LE((got[1] - base_row).abs().max().item<double>(), 1e-5 * (1 + base_row.abs().max().item<double>()));
    }
  SetSmallGemmEnabled(true);
}

// An lm_head wide enough that the raw loops split its output rows across the
// intra-op threads (from ~1M weights: 70000 rows of 32), as a pack may store
// it: dense_quant codes, a float16 dense delta, or sparse rows (half kept);
// two sequences of the set in one step, against the merged weights.
TEST(FactorizedWideHeadTest, OutputRowsSplitAcrossThreadsMatchMergedWeights) {
  const ModelConfig c = testutil::TestConfig({{"vocab_size", 70000}});
  const auto base = testutil::RandomBase(c, 5);
  // The split needs two threads, on any machine; the suite's count is put back however the test ends.
  struct Threads {
    int before = at::get_num_threads();
    Threads() { at::set_num_threads(2); }
    ~Threads() { at::set_num_threads(before); }
  } two_threads;
  const Transformer model(c);
  for (ModuleOp op : {ModuleOp::kDenseQuant, ModuleOp::kDense, ModuleOp::kSparse}) {
    SCOPED_TRACE(ModuleOpName(op));
    at::Generator gen = at::detail::createCPUGenerator(8);
    SkillPack p;
    p.manifest.name = "wide";
    p.manifest.base_fingerprint = *BaseFingerprint(*base);
    p.modules.push_back(op == ModuleOp::kDenseQuant
                            ? testutil::DenseQuantModule("lm_head.weight", 70000, 32, 4, 12, true, gen)
                        : op == ModuleOp::kDense ? testutil::DenseModule("lm_head.weight", {70000, 32}, gen)
                                                 : testutil::SparseModule("lm_head.weight", 70000, 32, 1120000, gen));
    const DecodedPack d = *DecodePack(p, true, FactorPrecision::kFloat16);
    const std::vector<PackSelection> sel = {{"", 1.1f, {}}};
    auto delta = ComposeFactorized(*base, sel, {&d});
    ASSERT_TRUE(delta.ok()) << delta.status();
    auto fused = ComposeWeights(*base, sel, {&d});
    ASSERT_TRUE(fused.ok()) << fused.status();
    const std::vector<std::vector<int32_t>> prompts = {{3, 69999, 15}, {35, 89, 4, 7}};
    const std::vector<at::Tensor> got = StepLogits(model, *base, prompts, {delta->get(), delta->get()}, 2);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const at::Tensor want = StepLogits(model, **fused, {prompts[i]}, {nullptr}, 2)[0];
      EXPECT_LE((got[i] - want).abs().max().item<double>(), 1e-4 * (1 + want.abs().max().item<double>())) << i;
      const at::Tensor plain = StepLogits(model, *base, {prompts[i]}, {nullptr}, 2)[0];
      EXPECT_GT((want - plain).abs().max().item<double>(), 1e-3) << i << ": the head's delta changes the logits";
    }
  }
}

// The kernel computes t = x · vtᵀ from either layout of vt: transposed (the
// host tier's, SmallGemmAccumulate's rank-wide vectors of sums) or contiguous
// (SmallGemm, a horizontal sum per output), and adds t · usᵀ from either layout of
// us: transposed (the host tier's, SmallGemmAccumulate straight into the
// outputs) or contiguous (SmallGemm into a buffer, then added), for float32,
// float16 and int8 factors, over a prefill (pieces of many rows) and decode
// steps (one row per sequence); all four equal the merged weights.
// ... and factors the kernel cannot read in place (vt's rows apart: the
// term's view is not ready) go through the ATen path, to the same logits.
TEST_F(ComposerTest, FactorizedStepTakesEitherFactorLayout) {
  for (FactorPrecision prec : {FactorPrecision::kFloat32, FactorPrecision::kFloat16, FactorPrecision::kInt8}) {
    SCOPED_TRACE(FactorPrecisionName(prec));
    const DecodedPack transposed = *DecodePack(packs_[0], /*keep_factors=*/true, prec);
    DecodedPack us_contiguous = transposed, vt_contiguous = transposed, contiguous = transposed, strided = transposed;
    int64_t moved = 0;
    for (auto& [name, m] : us_contiguous.modules) {
      if (!m.factored()) continue;
      m.us = m.us.contiguous();
      moved += m.us.size(0) > 1 && m.us.size(1) > 1 ? 1 : 0;
    }
    ASSERT_GT(moved, 0);
    for (auto& [name, m] : vt_contiguous.modules) {
      if (m.factored()) m.vt = m.vt.contiguous();
    }
    for (auto& [name, m] : contiguous.modules) {
      if (!m.factored()) continue;
      m.us = m.us.contiguous();
      m.vt = m.vt.contiguous();
    }
    for (auto& [name, m] : strided.modules) {
      if (m.factored()) m.vt = at::cat({m.vt, m.vt}, 1).narrow(1, 0, m.vt.size(1));
    }
    const std::vector<PackSelection> sel = {{"", 0.8f, {}}};
    auto fused = ComposeWeights(*base_, sel, {&transposed});
    ASSERT_TRUE(fused.ok()) << fused.status();
    const Transformer model(config_);
    const std::vector<std::vector<int32_t>> prompts = {
        {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32, 7, 9, 50, 28, 8}, {27, 18}};
    const std::vector<at::Tensor> want = StepLogits(model, **fused, prompts, {nullptr, nullptr}, 3);
    for (const DecodedPack* d :
         std::vector<const DecodedPack*>{&transposed, &us_contiguous, &vt_contiguous, &contiguous, &strided}) {
      SCOPED_TRACE(d == &transposed      ? "both transposed"
                   : d == &us_contiguous ? "us contiguous"
                   : d == &vt_contiguous ? "vt contiguous"
                   : d == &contiguous    ? "both contiguous"
                                         : "vt strided");
      auto delta = ComposeFactorized(*base_, sel, {d});
      ASSERT_TRUE(delta.ok()) << delta.status();
      int64_t ready = 0, low_rank = 0;
      for (const auto& [name, terms] : (*delta)->terms()) {
        for (const DeltaTerm& t : terms) {
          low_rank += t.low_rank() ? 1 : 0;
          ready += t.view.ready ? 1 : 0;
        }
      }
      ASSERT_GT(low_rank, 0);
      EXPECT_EQ(ready, d == &strided ? 0 : low_rank);
      const std::vector<at::Tensor> got = StepLogits(model, *base_, prompts, {delta->get(), delta->get()}, 3);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_LE((got[i] - want[i]).abs().max().item<double>(), 1e-4 * (1 + want[i].abs().max().item<double>()));
      }
    }
  }
}

// A model with biases (qwen2: q, k and v projections): a delta's dense bias
// terms are added to the rows they belong to, beside low-rank terms on the
// same layer's weight, decode and prefill, equal to the merged weights; rows
// without the delta keep the base.
TEST(FactorizedBiasTest, BiasTermsAreAddedToTheirRows) {
  const ModelConfig c = testutil::TestConfig({{"model_type", "qwen2"}});
  ASSERT_TRUE(c.attention_bias);
  const auto base = testutil::RandomTestWeights(c, 7);
  at::Generator gen = at::detail::createCPUGenerator(8);
  const std::string bias = "model.layers.1.self_attn.k_proj.bias", weight = "model.layers.1.self_attn.k_proj.weight";
  const at::Tensor b = base->tensors().at(bias), w = base->tensors().at(weight);
  DeltaTerm dense{at::Tensor(), at::Tensor(), at::randn(b.sizes(), gen), 0.7f};
  DeltaTerm low_rank{at::randn({w.size(0), 2}, gen) * 0.3, at::randn({2, w.size(1)}, gen) * 0.3, at::Tensor(), 1.5f};
  auto delta = WeightDelta::Create(c, {{bias, {dense}}, {weight, {low_rank}}});
  ASSERT_TRUE(delta.ok()) << delta.status();
  std::map<std::string, at::Tensor> merged = base->tensors();
  merged[bias] = b + 0.7f * dense.dense;
  merged[weight] = w + 1.5f * low_rank.us.matmul(low_rank.vt);
  auto merged_weights = ModelWeights::Create(c, merged);
  ASSERT_TRUE(merged_weights.ok()) << merged_weights.status();
  const Transformer model(c);
  const std::vector<std::vector<int32_t>> prompts = {{5, 17, 3, 44, 9}, {60, 2}};
  const std::vector<at::Tensor> got = StepLogits(model, *base, prompts, {delta->get(), nullptr}, 3);
  const at::Tensor want = StepLogits(model, **merged_weights, {prompts[0]}, {nullptr}, 3)[0];
  const at::Tensor plain = StepLogits(model, *base, {prompts[1]}, {nullptr}, 3)[0];
  EXPECT_LE((got[0] - want).abs().max().item<double>(), 1e-4 * (1 + want.abs().max().item<double>()));
  EXPECT_LE((got[1] - plain).abs().max().item<double>(), 1e-4 * (1 + plain.abs().max().item<double>()));
  EXPECT_GT((want - plain.narrow(0, 0, 1)).abs().max().item<double>(), 0.0);
}

// WeightDelta::Create gives each low-rank term the kernel's view of its
// factors (pointers, sizes, type, both factors' layouts), replacing whatever
// the caller left there, and finds terms by name.
TEST(WeightDeltaTest, ViewsNameTheFactorsInPlace) {
  const ModelConfig c = testutil::SmallConfig(true);
  const std::string name = "model.layers.0.mlp.down_proj.weight";  // [32, 48]
  DeltaTerm codes{at::randn({32, 3}).to(at::kChar), at::randn({3, 48}).to(at::kChar), at::Tensor(), 0.5f,
                  at::ones({3})};
  codes.view.ready = true;
  codes.view.rank = 99;  // stale: replaced
  DeltaTerm half{UsLayout(at::randn({32, 2}).to(at::kHalf)), at::randn({2, 48}).to(at::kHalf), at::Tensor(), 1.0f};
  DeltaTerm vt_transposed{at::randn({32, 2}), VtLayout(at::randn({2, 48})), at::Tensor(), 1.0f};
  DeltaTerm strided{at::randn({32, 2}), at::randn({2, 96}).narrow(1, 0, 48), at::Tensor(), 1.0f};
  DeltaTerm dense{at::Tensor(), at::Tensor(), at::zeros({32}), 1.0f};
  auto d = WeightDelta::Create(c, {{name, {codes, half, vt_transposed, strided}}, {"model.norm.weight", {dense}}});
  ASSERT_TRUE(d.ok()) << d.status();
  const std::vector<DeltaTerm>* terms = (*d)->Find(name);
  ASSERT_NE(terms, nullptr);
  ASSERT_EQ(terms->size(), 4u);
  const FactorView& v0 = (*terms)[0].view;
  EXPECT_TRUE(v0.ready);
  EXPECT_EQ(v0.type, at::kChar);
  EXPECT_EQ(v0.rank, 3);
  EXPECT_EQ(v0.in, 48);
  EXPECT_EQ(v0.out, 32);
  EXPECT_EQ(v0.vt, codes.vt.data_ptr());
  EXPECT_EQ(v0.us, codes.us.data_ptr());
  EXPECT_FALSE(v0.us_transposed);
  EXPECT_FALSE(v0.vt_transposed);
  EXPECT_EQ(v0.rank_scale, codes.rank_scale.data_ptr<float>());
  const FactorView& v1 = (*terms)[1].view;
  EXPECT_TRUE(v1.ready);
  EXPECT_EQ(v1.type, at::kHalf);
  EXPECT_TRUE(v1.us_transposed);
  EXPECT_FALSE(v1.vt_transposed);
  EXPECT_EQ(v1.us, half.us.data_ptr());
  EXPECT_EQ(v1.rank_scale, nullptr);
  const FactorView& v2 = (*terms)[2].view;
  EXPECT_TRUE(v2.ready);
  EXPECT_TRUE(v2.vt_transposed);
  EXPECT_FALSE(v2.us_transposed);
  EXPECT_EQ(v2.vt, vt_transposed.vt.data_ptr());
  EXPECT_EQ(v2.rank, 2);
  EXPECT_EQ(v2.in, 48);
  EXPECT_FALSE((*terms)[3].view.ready) << "a vt whose rows are apart is not read in place";
  ASSERT_NE((*d)->Find("model.norm.weight"), nullptr);
  EXPECT_FALSE((*d)->Find("model.norm.weight")->front().view.ready);
  EXPECT_EQ((*d)->Find("model.layers.0.mlp.up_proj.weight"), nullptr);
}

// Every layer tensor found by position (the step's lookups) is the one found
// by its name, for a model with every bias; none outside the layers, and
// LayerTensorSuffix names each layer tensor ExpectedTensors lists, once.
TEST(WeightDeltaTest, FindsLayerTensorsByPositionAsByName) {
  const ModelConfig c = testutil::TestConfig({{"attention_bias", true}, {"mlp_bias", true}});
  ASSERT_TRUE(c.o_proj_bias && c.mlp_bias);
  std::map<std::string, std::vector<DeltaTerm>> terms;
  std::set<std::string> layer_names;
  float scale = 1.0f;
  for (const TensorSpec& s : ExpectedTensors(c)) {
    terms[s.name].push_back(DeltaTerm{at::Tensor(), at::Tensor(), at::zeros(s.shape), scale++});
    if (absl::StartsWith(s.name, "model.layers.")) layer_names.insert(s.name);
  }
  auto d = WeightDelta::Create(c, std::move(terms));
  ASSERT_TRUE(d.ok()) << d.status();
  std::set<std::string> suffixed;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int t = 0; t < kLayerTensors; ++t) {
      const std::string name = LayerTensorName(l, LayerTensorSuffix(static_cast<LayerTensor>(t)));
      EXPECT_TRUE(suffixed.insert(name).second) << name;
      const std::vector<DeltaTerm>* by_name = (*d)->Find(name);
      ASSERT_NE(by_name, nullptr) << name;
      EXPECT_EQ((*d)->Find(l, static_cast<LayerTensor>(t)), by_name) << name;
    }
  }
  EXPECT_EQ(suffixed, layer_names);
  EXPECT_EQ((*d)->Find(c.num_hidden_layers, LayerTensor::kQ), nullptr);
  EXPECT_EQ((*d)->Find(-1, LayerTensor::kDownBias), nullptr);
  // A delta without a layer's tensor finds none there.
  auto one = WeightDelta::Create(
      c, {{LayerTensorName(1, "mlp.up_proj.weight"),
           {DeltaTerm{at::Tensor(), at::Tensor(), at::zeros({c.intermediate_size, c.hidden_size}), 1.0f}}}});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_NE((*one)->Find(1, LayerTensor::kUp), nullptr);
  EXPECT_EQ((*one)->Find(0, LayerTensor::kUp), nullptr);
  EXPECT_EQ((*one)->Find(1, LayerTensor::kGate), nullptr);
}

// WeightDelta::Create refuses what does not fit the model, naming the tensor.
TEST(WeightDeltaTest, RefusesTermsThatDoNotFit) {
  const ModelConfig c = testutil::SmallConfig(true);
  auto make = [&](const std::string& name, DeltaTerm t) { return WeightDelta::Create(c, {{name, {t}}}).status(); };
  DeltaTerm lr{at::zeros({32, 2}), at::zeros({2, 48}), at::Tensor(), 1.0f};
  EXPECT_TRUE(make("model.layers.0.mlp.down_proj.weight", lr).ok());
  EXPECT_THAT(make("model.layers.0.mlp.up_proj.weight", lr).message(), HasSubstr("up_proj.weight"));
  EXPECT_THAT(make("lm_head.weight", lr).message(), HasSubstr("ties lm_head"));
  EXPECT_THAT(make("model.layers.9.mlp.down_proj.weight", lr).message(), HasSubstr("not a tensor of the model"));
  EXPECT_THAT(make("model.norm.weight", lr).message(), HasSubstr("2-D"));
  DeltaTerm nan = lr;
  nan.scale = std::nanf("");
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", nan).message(), HasSubstr("not finite"));
  DeltaTerm dense{at::Tensor(), at::Tensor(), at::zeros({31}), 1.0f};
  EXPECT_THAT(make("model.norm.weight", dense).message(), HasSubstr("expected [32]"));
  DeltaTerm dbl{at::Tensor(), at::Tensor(), at::zeros({32}, at::kDouble), 1.0f};
  EXPECT_THAT(make("model.norm.weight", dbl).message(), HasSubstr("float32"));
  DeltaTerm half{at::zeros({32, 2}, at::kHalf), at::zeros({2, 48}, at::kHalf), at::Tensor(), 1.0f};
  EXPECT_TRUE(make("model.layers.0.mlp.down_proj.weight", half).ok()) << "float16 factors are served";
  DeltaTerm mixed{at::zeros({32, 2}, at::kHalf), at::zeros({2, 48}), at::Tensor(), 1.0f};
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", mixed).message(),
              HasSubstr("both float32, both float16 or both int8"));
  DeltaTerm codes{at::zeros({32, 2}, at::kChar), at::zeros({2, 48}, at::kChar), at::Tensor(), 1.0f, at::ones({2})};
  EXPECT_TRUE(make("model.layers.0.mlp.down_proj.weight", codes).ok()) << "int8 factors are served";
  DeltaTerm unscaled = codes;
  unscaled.rank_scale = at::Tensor();
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", unscaled).message(),
              HasSubstr("need a float32 rank_scale of 2 entries"));
  DeltaTerm short_scale = codes;
  short_scale.rank_scale = at::ones({3});
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", short_scale).message(), HasSubstr("rank_scale of 2"));
  DeltaTerm scaled_float = lr;
  scaled_float.rank_scale = at::ones({2});
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", scaled_float).message(), HasSubstr("int8 factors only"));
  DeltaTerm half_dense{at::Tensor(), at::Tensor(), at::zeros({32}, at::kHalf), 1.0f};
  EXPECT_THAT(make("model.norm.weight", half_dense).message(),
              HasSubstr("dense terms must be float32 (or float16 on a 2-D tensor)"));
  DeltaTerm half_matrix{at::Tensor(), at::Tensor(), at::zeros({32, 48}, at::kHalf), 1.0f};
  EXPECT_TRUE(make("model.layers.0.mlp.down_proj.weight", half_matrix).ok()) << "a float16 dense matrix is served";
  DeltaTerm codes_matrix{at::Tensor(), at::Tensor(), at::zeros({32, 48}, at::kChar), 1.0f};
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", codes_matrix).message(), HasSubstr("dense terms must be"));
  // Sparse rows: 2-D tensors only, checked (CheckSparseRows), one form per term.
  DeltaTerm sparse;
  sparse.sparse = SparseRows::FromFlat(at::tensor({3, 40, 41}, at::kLong), at::ones({3}), 32, 48);
  EXPECT_TRUE(make("model.layers.0.mlp.down_proj.weight", sparse).ok()) << "sparse rows are served";
  EXPECT_THAT(make("model.layers.0.mlp.up_proj.weight", sparse).message(),
              AllOf(HasSubstr("up_proj.weight"), HasSubstr("offsets must be int64 [49]")));
  EXPECT_THAT(make("model.norm.weight", sparse).message(), HasSubstr("sparse terms need a 2-D tensor"));
  DeltaTerm both = sparse;
  both.dense = at::zeros({32, 48});
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", both).message(), HasSubstr("exactly one of"));
  DeltaTerm none;
  EXPECT_THAT(make("model.layers.0.mlp.down_proj.weight", none).message(), HasSubstr("exactly one of"));
  DeltaTerm zero{at::Tensor(), at::Tensor(), at::zeros({32}), 0.0f};
  auto d = WeightDelta::Create(c, {{"model.norm.weight", {zero}}});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*d)->terms().empty());  // weight-0 terms are dropped
}

}  // namespace
}  // namespace skillpack
