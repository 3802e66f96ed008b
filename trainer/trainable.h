// The weights a training stage optimises, over a frozen base model: either
// every base tensor (full fine-tuning) or LoRA adapters on the seven
// projections (q, k, v, o, gate, up, down) of every layer; subclasses train
// other parametrisations (a pack's stored numbers: trainer/pack_refit.h).
//
// LoRA is applied by materialising W' = W + (alpha / rank) * B A for each
// adapted projection inside the autograd graph on every forward, then running
// the stock Transformer on W'. Since (W + s B A) x = W x + s B (A x), this is
// exactly the LoRA forward; for tiny models the extra [out, in] matmul per
// projection is cheap, and it keeps core/ free of trainer hooks. The merged
// export is the same W', so adapter and merged model agree to rounding.
#ifndef SKILLPACK_TRAINER_TRAINABLE_H_
#define SKILLPACK_TRAINER_TRAINABLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

struct LoraConfig {
  int64_t rank = 0;     // 0: LoRA off (full fine-tuning)
  double alpha = 16.0;  // scaling is alpha / rank
  // An adapter folder (trainer/lora_adapter.h) to start from instead of a
  // fresh adapter; the job checks that it was trained over the stage's model.
  std::string init;
  bool enabled() const { return rank > 0; }
};

// The suffixes of the seven adapted projections, e.g. "self_attn.q_proj.weight".
const std::vector<std::string>& LoraTargetSuffixes();

class TrainableWeights {
 public:
  virtual ~TrainableWeights() = default;

  // Full fine-tuning: trainable float32 copies of every base tensor. LoRA:
  // A [rank, in] ~ U(-1/sqrt(in), 1/sqrt(in)) from a generator seeded by
  // `seed`, B [out, rank] = 0 (so training starts at the base model); or,
  // given `init` (parameter name -> tensor, as parameters() names them), A and
  // B copied from it, so that training continues that adapter.
  // INVALID_ARGUMENT for a negative rank or non-positive alpha, for `init`
  // without LoRA, and for an `init` that lacks a parameter, holds one of
  // another shape or holds a tensor that adapts no projection of `base`
  // (each named).
  static StatusOr<std::unique_ptr<TrainableWeights>> Create(std::shared_ptr<const ModelWeights> base,
                                                            const LoraConfig& lora, uint64_t seed,
                                                            const std::map<std::string, at::Tensor>* init = nullptr);

  // Trainable tensors (requires_grad) in a stable order, by name: base
  // tensor names, or "<projection weight name>.lora_A" / ".lora_B".
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return params_; }
  int64_t NumTrainable() const;

  // Weights for a differentiable forward pass (full: the trainable tensors
  // themselves; LoRA: W + s B A built now, in the autograd graph).
  virtual StatusOr<std::shared_ptr<const ModelWeights>> ForwardWeights() const;
  // Detached weights with any adapters merged, for generation and export. For
  // full fine-tuning they share storage with the trainable tensors.
  virtual StatusOr<std::shared_ptr<const ModelWeights>> Merged() const;

  const ModelWeights& base() const { return *base_; }
  std::shared_ptr<const ModelWeights> base_ptr() const { return base_; }
  const LoraConfig& lora() const { return lora_; }

 protected:
  // Other parametrisations of the same base (trainer/pack_refit.h) fill
  // base_ and params_ and override ForwardWeights / Merged.
  TrainableWeights() = default;

  std::shared_ptr<const ModelWeights> base_;
  std::vector<std::pair<std::string, at::Tensor>> params_;

 private:
  std::map<std::string, at::Tensor> LoraReplacements(bool detached) const;

  LoraConfig lora_;
  std::shared_ptr<const ModelWeights> full_;  // full fine-tuning: weights over params_
};

// Writes `weights` as a model folder `out_dir` (fp32 safetensors) with the
// config, tokenizer and generation files copied from `base_dir`.
Status ExportModelFolder(const ModelWeights& weights, const std::string& base_dir, const std::string& out_dir);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TRAINABLE_H_
