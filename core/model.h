// The Llama-family transformer on libtorch: embedding, RMSNorm, RoPE (with
// linear / llama3 scaling), grouped-query attention over a KV cache, SwiGLU MLP
// and lm_head. The model object holds only the configuration and RoPE tables;
// weights are passed to every call, so one model serves the base weights and any
// number of fused (pack-composed) weight sets side by side.
#ifndef SKILLPACK_CORE_MODEL_H_
#define SKILLPACK_CORE_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/kv_cache.h"
#include "core/model_config.h"
#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

// The inputs of one decoder layer's linear modules (what GPTQ calibrates on),
// as Transformer::LayerForward reports them. All [B, T, features].
struct LayerActivations {
  at::Tensor attn_in;  // input_layernorm output: the input of q_proj, k_proj, v_proj
  at::Tensor o_in;     // attention output before o_proj [B, T, heads * head_dim]
  at::Tensor mlp_in;   // post_attention_layernorm output: the input of gate_proj, up_proj
  at::Tensor down_in;  // silu(gate) * up: the input of down_proj [B, T, intermediate]
};

class WeightDelta;

// New tokens of one sequence for a Step: appended after what `slot` already
// holds. With a `delta` the sequence runs on the step's weights plus that
// delta's terms (core/weight_delta.h), applied to its rows only; sequences of
// one step may carry different deltas (or none) and still share the base GEMMs.
struct SeqStep {
  int32_t slot = -1;
  std::vector<int32_t> tokens;
  const WeightDelta* delta = nullptr;  // not owned; must outlive the Step
};

class Transformer {
 public:
  explicit Transformer(ModelConfig config);

  const ModelConfig& config() const { return config_; }

  // Runs each sequence's new tokens through the model, appending their keys and
  // values to the sequence's cache slot (and advancing its length). Sequences may
  // have different cached and new lengths. Returns float32 logits [B, vocab] for
  // each sequence's last new token, or [B, T_max, vocab] (padded) when all_logits.
  // INVALID_ARGUMENT when a token id is out of range or a slot would overflow.
  StatusOr<at::Tensor> Step(const ModelWeights& w, KvCache& cache, const std::vector<SeqStep>& batch,
                            bool all_logits = false) const;

  // Cache-free forward over right-padded sequences: tokens int64 [B, T],
  // attention_mask [B, T] (1 for real tokens, which come first). Differentiable
  // in the weights. Returns logits [B, T, vocab].
  at::Tensor Forward(const ModelWeights& w, const at::Tensor& tokens, const at::Tensor& attention_mask) const;

  // Hidden states after `num_layers` decoder layers (0 = embeddings), [B, T, hidden]:
  // the router's features.
  at::Tensor HiddenStates(const ModelWeights& w, const at::Tensor& tokens, const at::Tensor& attention_mask,
                          int64_t num_layers) const;

  // Runs decoder layer `layer` alone on hidden states x [B, T, hidden] (positions
  // 0..T-1, right-padded as in Forward, attention_mask [B, T] or undefined for no
  // padding) and returns its output hidden states. Chaining it from the
  // embeddings reproduces HiddenStates layer by layer. When `taps` is non-null
  // it receives the inputs of the layer's linear modules.
  // REQUIRES: 0 <= layer < num_hidden_layers.
  at::Tensor LayerForward(const ModelWeights& w, int64_t layer, const at::Tensor& x, const at::Tensor& attention_mask,
                          LayerActivations* taps) const;

 private:
  // cos/sin [B, 1, T, head_dim] for integer positions [B, T].
  std::pair<at::Tensor, at::Tensor> Rope(const at::Tensor& positions, at::ScalarType dtype) const;
  at::Tensor RunLayers(const ModelWeights& w, const at::Tensor& tokens, const at::Tensor& attention_mask,
                       int64_t num_layers) const;

  ModelConfig config_;
  at::Tensor inv_freq_;  // float32 [head_dim / 2], scaling applied
};

// A loaded model folder: config, tokenizer-independent weights and the transformer.
struct LoadedModel {
  std::string dir;
  ModelConfig config;
  std::shared_ptr<const ModelWeights> weights;
  std::unique_ptr<Transformer> transformer;
};

// Loads config.json and the safetensors weights of a Hugging Face model folder.
StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& dir, const at::TensorOptions& options);

// RMSNorm as Hugging Face computes it (in float32, then cast back).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// y = x · wᵀ + b (b may be undefined) as every linear layer of the model runs
// it: on the CPU the small-batch kernel for 2 to kSmallGemmMaxRows float32
// rows (core/small_gemm.h, split across the intra-op threads), GEMV for one
// row, BLAS otherwise. model_bench times it alone, beside whole decode steps.
at::Tensor LinearForward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_MODEL_H_
