// Hugging Face config.json for the Llama family (model_type llama, mistral,
// qwen2): sizes, grouped-query attention, RoPE and its scaling, norms, tied
// embeddings and attention bias. Anything else is refused with a message
// naming it.
#ifndef SKILLPACK_CORE_MODEL_CONFIG_H_
#define SKILLPACK_CORE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/status.h"

namespace skillpack {

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // bias on q, k, v (and o for llama's attention_bias)
  bool o_proj_bias = false;     // llama attention_bias covers o_proj; qwen2 has none there
  bool mlp_bias = false;
  int64_t sliding_window = 0;  // 0 = full attention
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";

  int64_t num_kv_groups() const { return num_attention_heads / num_key_value_heads; }
  // Number of parameters, counting a tied lm_head once.
  int64_t NumParameters() const;
};

// Parses and validates a config.json object. `what` names the source in errors.
StatusOr<ModelConfig> ParseModelConfig(const Json& j, absl::string_view what);
StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Hugging Face style config.json for `c` (architectures, model_type, ...).
Json ModelConfigToJson(const ModelConfig& c);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_MODEL_CONFIG_H_
