// LoRA adapters as files, in Hugging Face PEFT's layout, so that an adapter
// trained here loads with PEFT over the same base and a plain PEFT LoRA of the
// seven projections continues training here:
//
//   DIR/adapter_config.json        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8,
//                                   "lora_alpha": 16, "target_modules": ["q_proj", "k_proj",
//                                   "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
//                                   "lora_dropout": 0.0, "bias": "none", ...}
//   DIR/adapter_model.safetensors  float32 "base_model.model.model.layers.<l>.self_attn.q_proj.lora_A.weight"
//                                  [r, in] and "....lora_B.weight" [out, r] for every adapted
//                                  projection; metadata {"format": "pt",
//                                  "skillpack.base_fingerprint": "sha256:..."}
//
// The effective weight is W + (lora_alpha / r) B A. The fingerprint
// (pack/fingerprint.h, computed by the caller) names the model the adapter
// was trained over, so that the trainer never continues it over another.
#ifndef SKILLPACK_TRAINER_LORA_ADAPTER_H_
#define SKILLPACK_TRAINER_LORA_ADAPTER_H_

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/status.h"
#include "trainer/trainable.h"

namespace skillpack {

inline constexpr char kLoraAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kLoraAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kLoraAdapterFingerprintKey[] = "skillpack.base_fingerprint";

struct LoraAdapter {
  LoraConfig config;             // rank and alpha (init empty)
  std::string base_fingerprint;  // empty when the file records none (an adapter made by PEFT)
  // A and B by TrainableWeights::parameters() name:
  // "<projection weight name>.lora_A" [r, in] / ".lora_B" [out, r], float32.
  std::map<std::string, at::Tensor> tensors;
};

// Writes the adapter of `tw` (REQUIRES: tw.lora().enabled()) to the folder
// `dir`, each file atomically, replacing an adapter there.
Status WriteLoraAdapter(const TrainableWeights& tw, const std::string& base_fingerprint, const std::string& dir);

// adapter_config.json alone: rank and alpha. NOT_FOUND naming the file when
// absent; INVALID_ARGUMENT naming the file and the field for anything this
// trainer cannot continue exactly (not "LORA", other target modules, rsLoRA,
// DoRA, biases, per-module ranks or alphas, fan-in-fan-out layout, a subset
// of layers).
StatusOr<LoraConfig> ReadLoraAdapterConfig(const std::string& dir);

// The whole adapter: the config as above, then every tensor, which must be a
// 2-D lora_A [r, in] or lora_B [out, r] of a float dtype with a matching
// A / B beside it; INVALID_ARGUMENT naming the file and the tensor
// otherwise. Shapes against a model are checked by TrainableWeights::Create.
StatusOr<LoraAdapter> ReadLoraAdapter(const std::string& dir);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_LORA_ADAPTER_H_
