// Composer tests: fused weights against base + Σ w_i ΔŴ_i computed here from
// DecodeModuleDelta, aliasing of untouched modules, base immutability, module
// filters, refusals, and FactorizedLinear against x W_fusedᵀ.
#include "pack/composer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/model.h"
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

using ::testing::HasSubstr;

constexpr char kDown0[] = "model.layers.0.mlp.down_proj.weight";
constexpr char kQ0[] = "model.layers.0.self_attn.q_proj.weight";
constexpr char kUp1[] = "model.layers.1.mlp.up_proj.weight";

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
    // Pack 2 touches a module the others do not.
    at::Generator gen = at::detail::createCPUGenerator(3);
    SkillPack& p2 = packs_[2];
    p2.modules.push_back(testutil::DenseModule("model.norm.weight", {32}, gen));
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

TEST_F(ComposerTest, FactorizedLinearMatchesFusedWeights) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const std::vector<float> weights = {0.8f, -0.45f, 1.3f};
  for (const char* name : {kDown0, kQ0}) {  // lowrank (factored / dense fallback), dense_quant
    for (size_t n = 1; n <= 3; ++n) {
      SCOPED_TRACE(absl::StrCat(name, " with ", n, " packs"));
      std::vector<Term> sel;
      std::vector<std::pair<const DecodedModule*, float>> deltas;
      for (size_t i = 0; i < n; ++i) {
        sel.push_back({&decoded_[i], weights[i], {}});
        deltas.emplace_back(&decoded_[i].modules.at(name), weights[i]);
      }
      auto fused = Compose(*base_, sel);
      ASSERT_TRUE(fused.ok()) << fused.status();
      const at::Tensor& w = *base_->Find(name);
      const at::Tensor bias = at::randn({w.size(0)}, gen);
      const at::Tensor x = at::randn({4, 3, w.size(1)}, gen);
      const at::Tensor want = at::linear(x, *(*fused)->Find(name), bias);
      const at::Tensor got = FactorizedLinear(x, w, bias, deltas);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LE((got - want).norm().item<double>(), 1e-5 * want.norm().item<double>());
      // Without bias too.
      const at::Tensor got_nb = FactorizedLinear(x, w, at::Tensor(), deltas);
      EXPECT_LE((got_nb - (want - bias)).norm().item<double>(), 1e-5 * want.norm().item<double>());
    }
  }
  // Shape mismatches throw c10::Error rather than crash.
  const at::Tensor x = at::randn({2, 48});
  EXPECT_THROW(FactorizedLinear(x, *base_->Find(kQ0), at::Tensor(), {{&decoded_[0].modules.at(kDown0), 1.0f}}),
               c10::Error);
  EXPECT_THROW(FactorizedLinear(x, *base_->Find(kDown0), at::Tensor(), {{nullptr, 1.0f}}), c10::Error);
}

}  // namespace
}  // namespace skillpack
