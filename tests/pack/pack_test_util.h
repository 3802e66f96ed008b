// Test helpers shared by the SkillPack format, decode and composer tests: a
// small base model config and a pack exercising every op, bit width, act-order
// on and off, and a shorter last quantisation group.
#ifndef SKILLPACK_TESTS_CORE_PACK_TEST_UTIL_H_
#define SKILLPACK_TESTS_CORE_PACK_TEST_UTIL_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/model_config.h"
#include "core/weights.h"
#include "pack/codec/quantize.h"
#include "pack/skillpack.h"
#include "tests/core/test_models.h"

namespace skillpack {
namespace testutil {

// q [32, 32], k/v [16, 32], o [32, 32], gate/up [48, 32], down [32, 48].
inline ModelConfig SmallConfig(bool tie = false) { return TestConfig({{"tie_word_embeddings", tie}}); }

inline std::shared_ptr<const ModelWeights> RandomBase(const ModelConfig& c, uint64_t seed) {
  return RandomTestWeights(c, seed);
}

// RTN-quantised random [rows, cols]; with act_order a random permutation is
// attached (codes are then read as stored-order columns, which is all the
// format cares about).
inline QuantizedMatrix RandomQuant(int64_t rows, int64_t cols, int bits, int64_t group_size, bool act_order,
                                   at::Generator& gen) {
  auto q = QuantizeRtn(at::randn({rows, cols}, gen) * 0.3, bits, group_size);
  EXPECT_TRUE(q.ok()) << q.status();
  if (act_order) q->perm = at::randperm(cols, gen);
  return *q;
}

struct BandSpec {
  int64_t width;
  int bits;
  bool act_order;
};

inline ModuleDelta LowRankModule(const std::string& name, int64_t out, int64_t in, const std::vector<BandSpec>& bands,
                                 int64_t group_size, at::Generator& gen) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kLowRank;
  m.shape = {out, in};
  int64_t rank = 0;
  for (const BandSpec& b : bands) {
    LowRankBand band;
    band.rank_begin = rank;
    band.rank_end = rank + b.width;
    band.u = RandomQuant(out, b.width, b.bits, group_size, b.act_order, gen);
    band.vt = RandomQuant(b.width, in, b.bits, group_size, b.act_order, gen);
    m.bands.push_back(std::move(band));
    rank += b.width;
  }
  m.sigma = std::get<0>(at::sort(at::rand({rank}, gen) * 0.1, 0, /*descending=*/true)).contiguous();
  return m;
}

inline ModuleDelta SparseModule(const std::string& name, int64_t rows, int64_t cols, int64_t nnz, at::Generator& gen) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kSparse;
  m.shape = {rows, cols};
  m.indices = std::get<0>(at::sort(at::randperm(rows * cols, gen).slice(0, 0, nnz)));
  m.values = (at::randn({nnz}, gen) * 0.05).to(at::kHalf);
  return m;
}

inline ModuleDelta DenseModule(const std::string& name, std::vector<int64_t> shape, at::Generator& gen) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kDense;
  m.shape = shape;
  m.full = at::randn(shape, gen) * 0.01;
  return m;
}

inline ModuleDelta DenseQuantModule(const std::string& name, int64_t rows, int64_t cols, int bits, int64_t group_size,
                                    bool act_order, at::Generator& gen) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kDenseQuant;
  m.shape = {rows, cols};
  m.dense = RandomQuant(rows, cols, bits, group_size, act_order, gen);
  m.dense.scales = m.dense.scales * 0.01;  // a small delta
  return m;
}

inline std::string FakeFingerprint(char c = 'a') { return "sha256:" + std::string(64, c); }

// A pack for SmallConfig() with every op, every bit width (2, 3, 4, 8),
// act-order on and off and shorter last groups (48 = 20 + 20 + 8; 32 = 12 + 12 + 8).
inline SkillPack EveryOpPack(uint64_t seed, const std::string& fingerprint = FakeFingerprint()) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  SkillPack p;
  p.manifest.name = "every-op.pack_1";
  p.manifest.version = "3";
  p.manifest.base_fingerprint = fingerprint;
  p.manifest.description = "test pack";
  p.manifest.tags = {"math", "test"};
  p.manifest.provenance = {{"stages", {"sft", "dpo"}}, {"steps", 12}};
  p.manifest.created_at = "2025-01-02T03:04:05Z";
  p.modules.push_back(SparseModule("model.embed_tokens.weight", 97, 32, 150, gen));
  p.modules.push_back(DenseModule("model.layers.0.input_layernorm.weight", {32}, gen));
  p.modules.push_back(LowRankModule("model.layers.0.mlp.down_proj.weight", 32, 48,
                                    {{2, 8, false}, {2, 4, true}, {2, 3, false}, {1, 2, true}},
                                    /*group_size=*/20, gen));
  p.modules.push_back(DenseQuantModule("model.layers.0.self_attn.q_proj.weight", 32, 32, 3, 12, true, gen));
  p.modules.push_back(LowRankModule("model.layers.1.mlp.up_proj.weight", 48, 32, {{4, 4, false}}, 128, gen));
  p.modules.push_back(DenseQuantModule("model.layers.1.self_attn.o_proj.weight", 32, 32, 8, 32, false, gen));
  return p;
}

}  // namespace testutil
}  // namespace skillpack

#endif  // SKILLPACK_TESTS_CORE_PACK_TEST_UTIL_H_
