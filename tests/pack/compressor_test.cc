#include "pack/compressor.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/weights.h"
#include "pack/calibration.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "tests/core/test_models.h"

namespace skillpack {
namespace {

constexpr char kQ[] = "model.layers.0.self_attn.q_proj.weight";

ModelConfig TinyConfig() {
  return testutil::TestConfig({{"vocab_size", 96}, {"hidden_size", 64}, {"intermediate_size", 160}});
}

std::shared_ptr<const ModelWeights> RandomWeights(const ModelConfig& c, uint64_t seed) {
  return testutil::RandomTestWeights(c, seed, 0.1);
}

// A "fine-tuned" copy: projections get a rank-`rank` delta plus small noise,
// embeddings a few changed rows, norms a small shift.
std::shared_ptr<const ModelWeights> Perturb(const ModelWeights& base, uint64_t seed, int64_t rank) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> t;
  for (const auto& [name, w] : base.tensors()) {
    at::Tensor d;
    if (!ProjectionType(name).empty()) {
      const int64_t m = w.size(0), n = w.size(1);
      d = 0.02 * at::matmul(at::randn({m, rank}, gen), at::randn({rank, n}, gen)) / std::sqrt(rank) +
          0.002 * at::randn({m, n}, gen);
    } else if (IsEmbeddingModule(name)) {
      d = at::zeros_like(w);
      d.narrow(0, 10, 8).copy_(0.05 * at::randn({8, w.size(1)}, gen));
      d = d + 1e-4 * at::randn(w.sizes(), gen);
    } else {
      d = 0.01 * at::randn(w.sizes(), gen);
    }
    t[name] = w + d;
  }
  auto out = ModelWeights::Create(base.config(), std::move(t));
  EXPECT_TRUE(out.ok()) << out.status();
  return *out;
}

std::vector<std::vector<int32_t>> RandomSequences(int n, int len, int vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    at::Tensor t = at::randint(vocab, {len}, gen, at::kLong);
    std::vector<int32_t> s;
    for (int j = 0; j < len; ++j) s.push_back(static_cast<int32_t>(t[j].item<int64_t>()));
    out.push_back(s);
  }
  return out;
}

// ‖E X‖²/n expressed through H = 2 X Xᵀ / n: tr(E H Eᵀ) / 2.
double WeightedError(const at::Tensor& e, const at::Tensor& h) {
  return at::trace(at::matmul(at::matmul(e.to(at::kDouble), h.to(at::kDouble)), e.to(at::kDouble).t())).item<double>() /
         2;
}

TEST(PackCompressTest, LowRankPicksSmallestRankMeetingBeta) {
  at::Generator gen = at::detail::createCPUGenerator(7);
  // Δ with a decaying spectrum.
  at::Tensor u = std::get<0>(at::linalg_qr(at::randn({80, 48}, gen)));
  at::Tensor v = std::get<0>(at::linalg_qr(at::randn({96, 48}, gen)));
  at::Tensor s = at::pow(0.85, at::arange(48, at::kFloat));
  at::Tensor delta = at::matmul(u * s, v.t());
  at::Tensor sv = at::linalg_svdvals(delta.to(at::kDouble));
  for (double beta : {0.3, 0.5, 0.8, 0.95}) {
    CompressionConfig cfg;
    cfg.beta["q_proj"] = beta;
    cfg.dense_rank_fraction = 1.0;
    auto cm = CompressModule(kQ, delta, cfg, nullptr);
    ASSERT_TRUE(cm.ok()) << cm.status();
    ASSERT_FALSE(cm->omitted);
    const ModuleDelta& m = cm->delta;
    EXPECT_EQ(m.op, ModuleOp::kLowRank);
    // Smallest k with Σ_{i<=k} σ_i² >= β Σ σ_i², from the exact SVD.
    const double total = sv.pow(2).sum().item<double>();
    double acc = 0;
    int64_t expect = 0;
    while (acc < beta * total) acc += std::pow(sv[expect++].item<double>(), 2);
    EXPECT_EQ(m.rank(), expect) << "beta " << beta;
    EXPECT_TRUE(at::allclose(m.sigma.to(at::kDouble), sv.narrow(0, 0, expect), 1e-4, 1e-5));
    // Bands cover [0, rank) contiguously; widths follow the default layout.
    int64_t next = 0;
    for (const LowRankBand& b : m.bands) {
      EXPECT_EQ(b.rank_begin, next);
      EXPECT_GT(b.rank_end, b.rank_begin);
      EXPECT_EQ(b.u.rows, 80);
      EXPECT_EQ(b.vt.cols, 96);
      next = b.rank_end;
    }
    EXPECT_EQ(next, m.rank());
    // The decoded delta is close to the rank-k truncation.
    auto dec = DecodeModuleDelta(m);
    ASSERT_TRUE(dec.ok()) << dec.status();
    at::Tensor trunc = at::matmul(u.narrow(1, 0, expect) * s.narrow(0, 0, expect), v.narrow(1, 0, expect).t());
    EXPECT_LT((*dec - trunc).norm().item<double>(), 0.1 * trunc.norm().item<double>());
  }
}

TEST(PackCompressTest, BandsFollowFractionsAndMinWidth) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  at::Tensor delta = at::randn({128, 128}, gen);
  CompressionConfig cfg;
  cfg.beta["q_proj"] = 1.0;
  cfg.max_rank = 40;
  cfg.bands = {{0.1, 8}, {0.3, 4}, {1.0, 3}};
  cfg.min_band_width = 8;
  auto cm = CompressModule(kQ, delta, cfg, nullptr);
  ASSERT_TRUE(cm.ok()) << cm.status();
  const ModuleDelta& m = cm->delta;
  ASSERT_EQ(m.op, ModuleOp::kLowRank);
  ASSERT_EQ(m.rank(), 40);
  // 10% of 40 = 4 is widened to 8; 30% = 12 -> [8, 16) at least 8 wide; rest 3 bits.
  ASSERT_EQ(m.bands.size(), 3u);
  EXPECT_EQ(m.bands[0].rank_end, 8);
  EXPECT_EQ(m.bands[0].u.bits, 8);
  EXPECT_EQ(m.bands[1].rank_end, 16);
  EXPECT_EQ(m.bands[1].vt.bits, 4);
  EXPECT_EQ(m.bands[2].rank_end, 40);
  EXPECT_EQ(m.bands[2].u.bits, 3);
}

TEST(PackCompressTest, SparseKeepsLargestEntries) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  at::Tensor delta = at::randn({300, 64}, gen);
  CompressionConfig cfg;
  cfg.alpha = 0.1;
  auto cm = CompressModule("model.embed_tokens.weight", delta, cfg, nullptr);
  ASSERT_TRUE(cm.ok()) << cm.status();
  const ModuleDelta& m = cm->delta;
  ASSERT_EQ(m.op, ModuleOp::kSparse);
  const int64_t keep = std::llround(0.1 * delta.numel());
  ASSERT_EQ(m.indices.numel(), keep);
  EXPECT_EQ(m.values.scalar_type(), at::kHalf);
  EXPECT_TRUE((m.indices.slice(0, 1) > m.indices.slice(0, 0, keep - 1)).all().item<bool>());
  at::Tensor flat = delta.reshape({-1});
  at::Tensor kept_mask = at::zeros({flat.numel()}, at::kBool).index_fill_(0, m.indices, true);
  const double min_kept = flat.abs().masked_select(kept_mask).min().item<double>();
  const double max_dropped = flat.abs().masked_select(kept_mask.logical_not()).max().item<double>();
  EXPECT_GE(min_kept, max_dropped);
  EXPECT_TRUE(at::equal(m.values, flat.index_select(0, m.indices).to(at::kHalf)));
  // lm_head takes the same operator.
  auto lm = CompressModule("lm_head.weight", delta, cfg, nullptr);
  ASSERT_TRUE(lm.ok());
  EXPECT_EQ(lm->delta.op, ModuleOp::kSparse);
}

TEST(PackCompressTest, NormsDenseZeroOmittedFullRankDenseQuant) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  CompressionConfig cfg;
  at::Tensor norm_delta = 0.01 * at::randn({64}, gen);
  auto norm = CompressModule("model.layers.0.input_layernorm.weight", norm_delta, cfg, nullptr);
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(norm->delta.op, ModuleOp::kDense);
  EXPECT_TRUE(at::equal(norm->delta.full, norm_delta));

  auto zero = CompressModule(kQ, at::zeros({32, 32}), cfg, nullptr);
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->omitted);

  cfg.beta["q_proj"] = 0.99;  // a random square matrix needs most of its rank
  auto full = CompressModule(kQ, at::randn({64, 64}, gen), cfg, nullptr);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->delta.op, ModuleOp::kDenseQuant);
  EXPECT_EQ(full->delta.dense.bits, cfg.dense_bits);

  at::Tensor bad = at::randn({8, 8}, gen);
  bad[0][0] = NAN;
  auto nan = CompressModule(kQ, bad, cfg, nullptr);
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor h = at::eye(5);
  auto bad_h = CompressModule(kQ, at::randn({8, 8}, gen), cfg, &h);
  EXPECT_EQ(bad_h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_h.status().message().find("q_proj"), std::string::npos);
}

// GPTQ beats round-to-nearest on the calibration-weighted error with the real
// inputs of a tiny model, at the same bits.
TEST(PackCompressTest, GptqBeatsRtnOnRealActivations) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 2, 6);
  auto calib = CaptureCalibration(*base, RandomSequences(12, 32, c.vocab_size, 9));
  ASSERT_TRUE(calib.ok()) << calib.status();
  for (const char* name : {"model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.layers.0.mlp.up_proj.weight"}) {
    at::Tensor delta = *tuned->Find(name) - *base->Find(name);
    const at::Tensor* h = calib->Find(name);
    ASSERT_NE(h, nullptr) << name;
    CompressionConfig cfg;
    cfg.bands = {{1.0, 3}};
    cfg.beta = {{ProjectionType(name), 0.9}};
    cfg.group_size = 32;
    auto gptq = CompressModule(name, delta, cfg, h);
    auto rtn = CompressModule(name, delta, cfg, nullptr);
    ASSERT_TRUE(gptq.ok()) << gptq.status();
    ASSERT_TRUE(rtn.ok()) << rtn.status();
    ASSERT_EQ(gptq->delta.rank(), rtn->delta.rank());
    // Both against the same rank-k truncation, so only quantisation differs.
    const int64_t k = gptq->delta.rank();
    auto [uu, ss, vh] = at::linalg_svd(delta.to(at::kDouble), false);
    at::Tensor trunc = at::matmul(uu.narrow(1, 0, k) * ss.narrow(0, 0, k), vh.narrow(0, 0, k)).to(at::kFloat);
    const double e_gptq = WeightedError(trunc - *DecodeModuleDelta(gptq->delta), *h);
    const double e_rtn = WeightedError(trunc - *DecodeModuleDelta(rtn->delta), *h);
    EXPECT_LT(e_gptq, 0.9 * e_rtn) << name << ": gptq " << e_gptq << " rtn " << e_rtn;

    // Dense quantisation as well.
    cfg.dense_rank_fraction = 0.01;
    auto dq_gptq = CompressModule(name, delta, cfg, h);
    auto dq_rtn = CompressModule(name, delta, cfg, nullptr);
    ASSERT_TRUE(dq_gptq.ok() && dq_rtn.ok());
    ASSERT_EQ(dq_gptq->delta.op, ModuleOp::kDenseQuant);
    const double d_gptq = WeightedError(delta - *DecodeModuleDelta(dq_gptq->delta), *h);
    const double d_rtn = WeightedError(delta - *DecodeModuleDelta(dq_rtn->delta), *h);
    EXPECT_LT(d_gptq, d_rtn) << name;
  }
}

TEST(PackCompressTest, CompressDeltaCoversModelAndEstimateBoundsFile) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 2, 4);
  auto calib = CaptureCalibration(*base, RandomSequences(4, 16, c.vocab_size, 3));
  ASSERT_TRUE(calib.ok());
  std::vector<CompressProgress> seen;
  auto pack =
      CompressDelta(*base, *tuned, CompressionConfig(), &*calib, [&](const CompressProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(pack.ok()) << pack.status();
  EXPECT_EQ(seen.size(), base->tensors().size());
  EXPECT_EQ(seen.back().index, seen.back().total);
  std::map<std::string, ModuleOp> ops;
  for (const ModuleDelta& m : pack->modules) ops[m.name] = m.op;
  EXPECT_EQ(ops.size(), base->tensors().size());  // every tensor changed
  EXPECT_EQ(ops["model.embed_tokens.weight"], ModuleOp::kSparse);
  EXPECT_EQ(ops["lm_head.weight"], ModuleOp::kSparse);
  EXPECT_EQ(ops["model.norm.weight"], ModuleOp::kDense);
  EXPECT_EQ(ops["model.layers.1.mlp.gate_proj.weight"], ModuleOp::kLowRank);
  ASSERT_TRUE(pack->manifest.provenance.contains("compression"));

  pack->manifest.name = "test-pack";
  auto fp = BaseFingerprint(*base);
  ASSERT_TRUE(fp.ok());
  pack->manifest.base_fingerprint = *fp;
  auto bytes = SerializeSkillPack(*pack);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_LE(static_cast<int64_t>(bytes->size()), EstimatePackBytes(*pack));
  auto back = ParseSkillPack(*bytes, "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(CheckPackFitsBase(*back, *base, *fp).ok());
}

// A manifest as `pack create` writes it, for budget mode to measure the file with.
PackManifest TestManifest(const ModelWeights& base) {
  PackManifest mf;
  mf.name = "budget-test";
  auto fp = BaseFingerprint(base);
  EXPECT_TRUE(fp.ok());
  mf.base_fingerprint = *fp;
  mf.description = "a pack made under a byte budget";
  mf.tags = {"test"};
  mf.provenance["base_model"] = "/tmp/base";
  mf.created_at = "2026-01-02T03:04:05Z";
  return mf;
}

// Relative Frobenius error of base + pack against tuned over every tensor.
double PackError(const ModelWeights& base, const ModelWeights& tuned, const SkillPack& pack) {
  auto decoded = DecodePack(pack, /*keep_factors=*/false);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  double err = 0, total = 0;
  for (const auto& [name, b] : base.tensors()) {
    at::Tensor d = (*tuned.Find(name) - b).to(at::kDouble);
    at::Tensor e = d;
    auto it = decoded->modules.find(name);
    if (it != decoded->modules.end()) e = d - it->second.DenseDelta().to(at::kDouble);
    err += e.pow(2).sum().item<double>();
    total += d.pow(2).sum().item<double>();
  }
  return err / total;
}

// The file (header and manifest included) lands within [98%, 100%] of the
// budget on several shapes and budgets, and more bytes buy less error.
TEST(PackCompressTest, BudgetModeFileWithinTwoPercent) {
  const std::vector<ModelConfig> shapes = {
      TinyConfig(),
      testutil::TestConfig({{"vocab_size", 256}, {"hidden_size", 32}, {"intermediate_size", 96}}),
      testutil::TestConfig({{"vocab_size", 64},
                            {"hidden_size", 96},
                            {"intermediate_size", 64},
                            {"num_hidden_layers", 3},
                            {"tie_word_embeddings", true}}),
  };
  for (size_t s = 0; s < shapes.size(); ++s) {
    auto base = RandomWeights(shapes[s], 1 + s);
    auto tuned = Perturb(*base, 4 + s, 6);
    const int64_t fp16 = Fp16DeltaBytes(*base);
    const PackManifest mf = TestManifest(*base);
    double prev_error = 2;
    for (double ratio : {0.08, 0.15, 0.3, 0.6}) {
      CompressionConfig cfg;
      cfg.target_ratio = ratio;
      auto pack = CompressDelta(*base, *tuned, cfg, nullptr, nullptr, mf);
      ASSERT_TRUE(pack.ok()) << pack.status();
      auto bytes = SerializeSkillPack(*pack);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      const double target = std::floor(ratio * fp16);
      const double file = static_cast<double>(bytes->size());
      const double err = PackError(*base, *tuned, *pack);
      std::printf("shape %zu ratio %.2f: target %.0f file %.0f (%.2f%%) relative error %.5f\n", s, ratio, target, file,
                  100 * file / target, err);
      EXPECT_LE(file, target) << "shape " << s << " ratio " << ratio;
      EXPECT_GE(file, 0.98 * target) << "shape " << s << " ratio " << ratio;
      EXPECT_EQ(pack->manifest.name, "budget-test");
      EXPECT_EQ(pack->manifest.provenance["base_model"], "/tmp/base");
      EXPECT_EQ(pack->manifest.provenance["compression"]["budget"]["target_bytes"].get<int64_t>(),
                static_cast<int64_t>(target));
      EXPECT_LT(err, prev_error) << "shape " << s << " ratio " << ratio;
      prev_error = err;
    }
  }
}

TEST(PackCompressTest, BudgetModeByTargetBytesAndInfeasible) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 4, 6);
  const PackManifest mf = TestManifest(*base);
  CompressionConfig cfg;
  cfg.target_bytes = 30000;
  auto pack = CompressDelta(*base, *tuned, cfg, nullptr, nullptr, mf);
  ASSERT_TRUE(pack.ok()) << pack.status();
  auto bytes = SerializeSkillPack(*pack);
  ASSERT_TRUE(bytes.ok());
  EXPECT_LE(bytes->size(), 30000u);
  EXPECT_GE(bytes->size(), 29400u);

  CompressionConfig tiny;
  tiny.target_bytes = 100;
  auto none = CompressDelta(*base, *tuned, tiny, nullptr, nullptr, mf);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(none.status().message().find("smallest pack"), std::string::npos) << none.status();
}

// Where an embedding's delta is dense, 8-bit dense storage (about 1 byte per
// entry) beats sparse storage (6 bytes per kept entry) once more than a
// sixth of the entries are worth keeping: under a budget that cannot hold
// the sparse form of most entries the allocator takes the fallback. (With
// room for nearly all entries sparse, exact fp16 values win on error.)
TEST(PackCompressTest, BudgetModeAtOrAboveTheSmallestPackAlwaysGivesOne) {
  // Targets from the smallest pack's size up: the smallest allocation fits,
  // often below 98%, and a later attempt may overshoot; the pack that fit is
  // returned, never "cannot be met".
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 4, 6);
  const PackManifest mf = TestManifest(*base);
  CompressionConfig tiny;
  tiny.target_bytes = 100;
  auto none = CompressDelta(*base, *tuned, tiny, nullptr, nullptr, mf);
  ASSERT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(none.status().message());
  const size_t at = msg.find("the smallest pack is ");
  ASSERT_NE(at, std::string::npos) << msg;
  const int64_t smallest = std::stoll(msg.substr(at + std::strlen("the smallest pack is ")));
  // The manifest records the target and the plan, so the smallest pack at
  // another target differs by a few bytes of digits: start 40 bytes up.
  for (int64_t target = smallest + 40; target <= smallest + 840; target += 100) {
    CompressionConfig cfg;
    cfg.target_bytes = target;
    auto pack = CompressDelta(*base, *tuned, cfg, nullptr, nullptr, mf);
    ASSERT_TRUE(pack.ok()) << "target " << target << " (smallest " << smallest << "): " << pack.status();
    auto bytes = SerializeSkillPack(*pack);
    ASSERT_TRUE(bytes.ok());
    EXPECT_LE(static_cast<int64_t>(bytes->size()), target);
  }
}

TEST(PackCompressTest, BudgetModeUsesDenseFallbackForDenseEmbeddingDeltas) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  at::Generator gen = at::detail::createCPUGenerator(9);
  std::map<std::string, at::Tensor> t;
  for (const auto& [name, w] : base->tensors()) {
    t[name] = IsEmbeddingModule(name) ? w + 0.05 * at::randn(w.sizes(), gen) : w.clone();
  }
  auto tuned = ModelWeights::Create(c, std::move(t));
  ASSERT_TRUE(tuned.ok());
  CompressionConfig cfg;
  cfg.target_ratio = 0.2;  // ~39 KB; each embedding: 12288 entries, 8-bit dense ~13 KB, all sparse ~74 KB
  auto pack = CompressDelta(*base, **tuned, cfg, nullptr, nullptr, TestManifest(*base));
  ASSERT_TRUE(pack.ok()) << pack.status();
  int embeddings = 0;
  for (const ModuleDelta& m : pack->modules) {
    if (IsEmbeddingModule(m.name)) {
      ++embeddings;
      EXPECT_EQ(m.op, ModuleOp::kDenseQuant) << m.name;
    }
  }
  EXPECT_EQ(embeddings, 2);
}

// With calibration the error is weighted by the input Hessians: the pack
// still fits the budget and records the measure.
TEST(PackCompressTest, BudgetModeCalibrated) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 4, 6);
  auto stats = CaptureCalibration(*base, RandomSequences(6, 12, 96, 5));
  ASSERT_TRUE(stats.ok()) << stats.status();
  CompressionConfig cfg;
  cfg.target_ratio = 0.2;
  auto pack = CompressDelta(*base, *tuned, cfg, &*stats, nullptr, TestManifest(*base));
  ASSERT_TRUE(pack.ok()) << pack.status();
  auto bytes = SerializeSkillPack(*pack);
  ASSERT_TRUE(bytes.ok());
  const double target = std::floor(0.2 * Fp16DeltaBytes(*base));
  EXPECT_LE(bytes->size(), target);
  EXPECT_GE(bytes->size(), 0.98 * target);
  EXPECT_EQ(pack->manifest.provenance["compression"]["budget"]["error"], "output (calibrated)");
}

// The activation-aware candidates (cfg.whiten): at the same
// budget the allocator's objective, Σ over modules of the output error with
// each module's Hessian scaled to mean diagonal 1 (Frobenius where there is
// none), is lower than with plain SVD candidates only. Round-to-nearest on
// both sides, so the errors the allocator measured are the pack's own.
TEST(PackCompressTest, BudgetModeWhitenedCandidatesLowerTheOutputError) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  auto tuned = Perturb(*base, 4, 24);
  auto stats = CaptureCalibration(*base, RandomSequences(6, 12, 96, 5));
  ASSERT_TRUE(stats.ok()) << stats.status();
  auto objective = [&](const SkillPack& pack) {
    std::map<std::string, at::Tensor> decoded;
    for (const ModuleDelta& m : pack.modules) decoded[m.name] = *DecodeModuleDelta(m);
    double total = 0;
    for (const auto& [name, w] : base->tensors()) {
      at::Tensor e = (*tuned->Find(name) - w).to(at::kDouble);
      if (auto it = decoded.find(name); it != decoded.end()) e = e - it->second.to(at::kDouble).reshape(e.sizes());
      const at::Tensor* h = stats->Find(name);
      if (h == nullptr || e.dim() != 2) {
        total += e.square().sum().item<double>();
        continue;
      }
      const at::Tensor hn = h->to(at::kDouble) * (static_cast<double>(h->size(0)) / at::trace(*h).item<double>());
      total += at::trace(at::mm(at::mm(e, hn), e.t())).item<double>();
    }
    return total;
  };
  CompressionConfig cfg;
  cfg.target_ratio = 0.1;
  cfg.quantizer = "rtn";
  cfg.whiten = true;
  auto whitened = CompressDelta(*base, *tuned, cfg, &*stats, nullptr, TestManifest(*base));
  cfg.whiten = false;
  auto plain = CompressDelta(*base, *tuned, cfg, &*stats, nullptr, TestManifest(*base));
  ASSERT_TRUE(whitened.ok() && plain.ok()) << whitened.status() << plain.status();
  const double e_white = objective(*whitened);
  const double e_plain = objective(*plain);
  EXPECT_LT(e_white, e_plain) << "whitened " << e_white << " plain " << e_plain;
  // Same budget, same format: both files fit it.
  auto wb = SerializeSkillPack(*whitened);
  auto pb = SerializeSkillPack(*plain);
  ASSERT_TRUE(wb.ok() && pb.ok());
  const double target = std::floor(0.1 * Fp16DeltaBytes(*base));
  EXPECT_LE(wb->size(), target);
  EXPECT_LE(pb->size(), target);
  EXPECT_EQ(whitened->manifest.provenance["compression"]["config"]["whiten"], true);
  EXPECT_EQ(plain->manifest.provenance["compression"]["config"]["whiten"], false);
}

TEST(PackCompressTest, MismatchedModelsNameTheTensor) {
  const ModelConfig c = TinyConfig();
  auto base = RandomWeights(c, 1);
  Json j = ModelConfigToJson(c);
  j["intermediate_size"] = 128;
  auto other_cfg = ParseModelConfig(j, "other");
  ASSERT_TRUE(other_cfg.ok());
  auto other = RandomWeights(*other_cfg, 2);
  auto pack = CompressDelta(*base, *other, CompressionConfig(), nullptr, nullptr);
  ASSERT_EQ(pack.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pack.status().message().find("model.layers.0.mlp.down_proj.weight"), std::string::npos) << pack.status();
}

TEST(PackCompressTest, ParseConfig) {
  auto cfg = ParseCompressionConfig(Json::parse(
      R"({"alpha": 0.05, "beta": {"q_proj": 0.7}, "bands": [[0.5, 4], [1.0, 2]], "group_size": 64,
          "act_order": false, "dense_bits": 8, "max_rank": 16})"));
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->alpha, 0.05);
  EXPECT_EQ(cfg->beta["q_proj"], 0.7);
  EXPECT_EQ(cfg->beta["k_proj"], 0.9);  // the default
  ASSERT_EQ(cfg->bands.size(), 2u);
  EXPECT_EQ(cfg->bands[1].second, 2);
  EXPECT_FALSE(cfg->act_order);
  EXPECT_EQ(cfg->max_rank, 16);
  auto round = ParseCompressionConfig(CompressionConfigToJson(*cfg));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(CompressionConfigToJson(*round), CompressionConfigToJson(*cfg));

  auto all = ParseCompressionConfig(Json::parse(R"({"beta": 0.9, "target_ratio": 0.1})"));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->beta["down_proj"], 0.9);
  EXPECT_EQ(*all->target_ratio, 0.1);

  auto expect_error = [](const char* text, const char* needle) {
    auto r = ParseCompressionConfig(Json::parse(text));
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  expect_error(R"({"alpah": 0.1})", "alpah");
  expect_error(R"({"alpha": 1.5})", "alpha");
  expect_error(R"({"alpha": "x"})", "alpha");
  expect_error(R"({"beta": {"x_proj": 0.5}})", "x_proj");
  expect_error(R"({"beta": {"q_proj": 0}})", "beta.q_proj");
  expect_error(R"({"bands": [[0.5, 4]]})", "bands");
  expect_error(R"({"bands": [[0.5, 5], [1.0, 2]]})", "bands[0]");
  expect_error(R"({"dense_bits": 6})", "dense_bits");
  expect_error(R"({"target_ratio": 0.1, "target_bytes": 10})", "target");
  expect_error(R"({"group_size": 0})", "group_size");
  expect_error(R"([1])", "object");
}

}  // namespace
}  // namespace skillpack
