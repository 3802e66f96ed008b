// Random-initialised tiny Llama models in Hugging Face layout (config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json,
// generation_config.json): the models of the project's tiny world.
#ifndef SKILLPACK_CORE_TINY_MODEL_H_
#define SKILLPACK_CORE_TINY_MODEL_H_

#include <cstdint>
#include <string>

#include "core/model_config.h"
#include "core/status.h"

namespace skillpack {

struct TinyModelOptions {
  int64_t layers = 4;
  int64_t hidden = 256;
  int64_t heads = 8;
  int64_t kv_heads = 4;
  int64_t intermediate = 0;  // 0: about 8/3 * hidden, rounded up to a multiple of 64
  int64_t vocab = 0;         // 0: the byte-level tokenizer's size; else >= that size
  int64_t max_positions = 1024;
  uint64_t seed = 0;
  bool tie_embeddings = false;
};

// The config a TinyModelOptions describes (validated).
StatusOr<ModelConfig> TinyModelConfig(const TinyModelOptions& o);

// Writes the model folder to `dir` (created if missing). Weights are drawn from
// N(0, 0.02) with a generator seeded by o.seed (same seed, same bytes); norms are 1.
Status InitTinyModel(const TinyModelOptions& o, const std::string& dir);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_TINY_MODEL_H_
