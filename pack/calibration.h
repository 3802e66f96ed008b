// Calibration statistics for SkillPack compression: the GPTQ Hessians
// H_x = 2 X Xᵀ / n of the inputs x of every linear module (q/k/v/o, gate/up/down)
// of a model, captured on calibration text, layer by layer. Which model is the
// caller's: `pack create` and the trainer's compress stage use the TUNED model
// by default, as GraftLLM's reference does (the deltas act on the tuned
// model's activations), the base on request.
//
// Capture runs the embeddings, then for each decoder layer l: computes the
// layer's module inputs from the hidden states entering l (q/k/v: the
// input_layernorm output; o_proj: the attention output; gate/up: the
// post_attention_layernorm output; down: silu(gate)·up), adds them to the
// per-module Hessians, and advances the hidden states through layer l ONCE,
// so layer l+1 calibrates on the output of layer l (the public GraftLLM code
// swaps its buffers once per band, which feeds later bands the wrong inputs).
// Padding positions never enter a Hessian.
//
// Why H_x is all that is needed: a low-rank band b stores Vᵀ_b (inputs x, so
// its GPTQ Hessian is H_x) and U_b whose inputs are z = Σ_b V̂ᵀ_b x. Then
//   H_z = 2/n Σ z zᵀ = (Σ_b V̂ᵀ_b) (2/n Σ x xᵀ) (Σ_b V̂ᵀ_b)ᵀ
//       = (Σ_b V̂ᵀ_b) H_x (Σ_b V̂ᵀ_b)ᵀ,
// exactly, so no activations are kept (compressor.cc computes H_z this way).
//
// Memory: one fp32 [in, in] matrix per distinct module input; q/k/v share one
// tensor, as do gate/up. For Llama-3-8B that is about 1 GiB per layer (the
// down_proj input alone is 14336² floats).
#ifndef SKILLPACK_PACK_CALIBRATION_H_
#define SKILLPACK_PACK_CALIBRATION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/status.h"
#include "core/tokenizer.h"
#include "core/weights.h"

namespace skillpack {

// Reads calibration text from `path` and tokenizes it: a file of plain text
// lines (one sample per non-empty line), or JSONL (detected when the first
// non-empty line starts with '{') whose objects hold "text", or "prompt" and
// "response" (concatenated). Each sample becomes at most `max_len` tokens (BOS
// first when the tokenizer has one); at most `max_samples` samples are taken.
// NOT_FOUND for a missing file; INVALID_ARGUMENT naming the line for bad JSON or
// an object without those fields, for max_samples / max_len < 1, or when no
// sample is found.
StatusOr<std::vector<std::vector<int32_t>>> LoadCalibrationSequences(const std::string& path,
                                                                     const Tokenizer& tokenizer, int64_t max_samples,
                                                                     int64_t max_len);

// Per-module input Hessians of a base model.
struct CalibrationStats {
  // Module weight name ("model.layers.0.self_attn.q_proj.weight") ->
  // H_x = 2 Σ x xᵀ / n, float32 [in_features, in_features] on base's device. Modules that
  // share an input share one tensor.
  std::map<std::string, at::Tensor> hessians;
  int64_t num_sequences = 0;
  int64_t num_tokens = 0;  // n: input vectors per module

  // nullptr when `module_name` has no Hessian.
  const at::Tensor* Find(const std::string& module_name) const;
};

struct CaptureOptions {
  int64_t batch_size = 8;  // sequences run through a layer at once (bounds memory)
  // Called after each layer with its index and its output hidden states
  // [num_sequences, T_max, hidden] (right-padded with zeros), e.g. for tests or
  // progress.
  std::function<void(int64_t layer, const at::Tensor& hidden)> on_layer_done;
};

// Captures the Hessians of every linear module of `base` on `sequences` (token
// ids, each non-empty and within the vocabulary and max_position_embeddings).
// Runs on the device of base's tensors, in their dtype. INVALID_ARGUMENT naming
// the sequence for an empty sequence or a bad token id, or when there is none.
StatusOr<CalibrationStats> CaptureCalibration(const ModelWeights& base,
                                              const std::vector<std::vector<int32_t>>& sequences,
                                              const CaptureOptions& options = {});

}  // namespace skillpack

#endif  // SKILLPACK_PACK_CALIBRATION_H_
