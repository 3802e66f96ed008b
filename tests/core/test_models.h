// Small Llama-family configs and random weights for the core tests.
#ifndef SKILLPACK_TESTS_CORE_TEST_MODELS_H_
#define SKILLPACK_TESTS_CORE_TEST_MODELS_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "core/model_config.h"
#include "core/weights.h"

namespace skillpack {
namespace testutil {

// A 2-layer llama (vocab 97, hidden 32, MLP 48, 4 heads over 2 KV heads, 64
// positions) with `overrides` applied to its config.json fields.
inline ModelConfig TestConfig(const Json& overrides = Json::object()) {
  Json j = {{"model_type", "llama"},    {"vocab_size", 97},       {"hidden_size", 32},
            {"intermediate_size", 48},  {"num_hidden_layers", 2}, {"num_attention_heads", 4},
            {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},   {"max_position_embeddings", 64}};
  j.update(overrides);
  auto c = ParseModelConfig(j, "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Every tensor `c` needs: norms 1 + 0.1·N(0,1), the rest scale·N(0,1), drawn
// from a generator seeded with `seed`.
inline std::shared_ptr<const ModelWeights> RandomTestWeights(const ModelConfig& c, uint64_t seed, double scale = 0.2) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> t;
  for (const TensorSpec& s : ExpectedTensors(c)) {
    const bool norm = s.name.find("norm") != std::string::npos;
    t[s.name] = norm ? 1 + 0.1 * at::randn(s.shape, gen) : scale * at::randn(s.shape, gen);
  }
  auto w = ModelWeights::Create(c, std::move(t));
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

}  // namespace testutil
}  // namespace skillpack

#endif  // SKILLPACK_TESTS_CORE_TEST_MODELS_H_
