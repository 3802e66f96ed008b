// The weights of a Llama-family model, addressed by their Hugging Face names
// ("model.layers.3.self_attn.q_proj.weight"), with per-layer handles resolved
// once for the forward pass. A ModelWeights is immutable once built; a fused
// weight set is made with WithReplaced(), which aliases every tensor it does
// not replace, so base tensors are shared, never copied or written.
#ifndef SKILLPACK_CORE_WEIGHTS_H_
#define SKILLPACK_CORE_WEIGHTS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model_config.h"
#include "core/status.h"

namespace skillpack {

struct LayerWeights {
  at::Tensor input_norm, post_attention_norm;
  at::Tensor q, k, v, o;                      // [out, in]
  at::Tensor q_bias, k_bias, v_bias, o_bias;  // undefined when absent
  at::Tensor gate, up, down;
  at::Tensor gate_bias, up_bias, down_bias;
};

// Name and shape of a tensor a model folder must provide.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor `c` needs, in a stable order (embeddings, layers, final norm, lm_head).
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c);

class ModelWeights {
 public:
  // Takes the named tensors; every ExpectedTensors() entry must be present with
  // its shape (INVALID_ARGUMENT naming the first that is missing or wrong).
  // Extra names are an error too, except a tied "lm_head.weight", which is dropped.
  static StatusOr<std::shared_ptr<const ModelWeights>> Create(const ModelConfig& config,
                                                              std::map<std::string, at::Tensor> tensors);

  // Loads dir's safetensors (single file or sharded), upcasting F16/BF16 to
  // `dtype` on `device`.
  static StatusOr<std::shared_ptr<const ModelWeights>> Load(const ModelConfig& config, const std::string& dir,
                                                            const at::TensorOptions& options);

  // A new set equal to this one with `replacements` swapped in (same names and
  // shapes required); every other tensor aliases this set's storage.
  StatusOr<std::shared_ptr<const ModelWeights>> WithReplaced(
      const std::map<std::string, at::Tensor>& replacements) const;

  const ModelConfig& config() const { return config_; }
  const std::map<std::string, at::Tensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const at::Tensor* Find(const std::string& name) const;

  const at::Tensor& embed_tokens() const { return embed_; }
  const at::Tensor& final_norm() const { return norm_; }
  const at::Tensor& lm_head() const { return lm_head_; }  // aliases embed_tokens when tied
  const std::vector<LayerWeights>& layers() const { return layers_; }
  int64_t TotalBytes() const;

  // Writes the set as a Hugging Face model folder's safetensors (fp32 unless
  // `dtype_name` is "float16"/"bfloat16"), sharded when larger than max_shard_bytes.
  Status Save(const std::string& dir, const std::string& dtype_name = "float32",
              uint64_t max_shard_bytes = 5ull << 30) const;

 private:
  ModelWeights(ModelConfig config, std::map<std::string, at::Tensor> tensors);
  Status Resolve();

  ModelConfig config_;
  std::map<std::string, at::Tensor> tensors_;
  at::Tensor embed_, norm_, lm_head_;
  std::vector<LayerWeights> layers_;
};

// Hugging Face name of layer `i`'s tensor `suffix`, e.g. LayerTensorName(3, "self_attn.q_proj.weight").
std::string LayerTensorName(int64_t layer, absl::string_view suffix);

// A layer's tensors by position, for lookups made for every layer of every
// step (WeightDelta::Find(layer, t): no name built or hashed).
enum class LayerTensor {
  kInputNorm,
  kQ,
  kK,
  kV,
  kO,
  kQBias,
  kKBias,
  kVBias,
  kOBias,
  kPostAttentionNorm,
  kGate,
  kUp,
  kDown,
  kGateBias,
  kUpBias,
  kDownBias,
};
inline constexpr int kLayerTensors = static_cast<int>(LayerTensor::kDownBias) + 1;
// Its suffix in LayerTensorName, e.g. "self_attn.q_proj.weight" for kQ.
absl::string_view LayerTensorSuffix(LayerTensor t);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_WEIGHTS_H_
