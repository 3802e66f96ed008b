// The in-memory SkillPack: a fine-tuning delta compressed module by module.
// This is the contract between the compressor (compressor.h), the file
// format (format.h: read/write .skillpack files) and the decoder /
// composer (decode.h, composer.h). docs/skillpack-format.md specifies how
// each field is stored on disk.
#ifndef SKILLPACK_PACK_SKILLPACK_H_
#define SKILLPACK_PACK_SKILLPACK_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/json_util.h"
#include "core/status.h"
#include "pack/codec/quantize.h"
#include "pack/selection.h"  // ValidatePackName

namespace skillpack {

// The newest pack format version this build reads and writes. A file whose
// format_version is larger is refused ("made by a newer skillpack").
inline constexpr int kSkillPackFormatVersion = 1;

// How one module's delta is stored.
enum class ModuleOp {
  kLowRank,     // Δ ≈ Σ_bands deq(U_b) diag(σ_b) deq(Vᵀ_b); attention and MLP projections
  kSparse,      // magnitude-pruned: flat indices + fp16 values; embed_tokens, lm_head
  kDenseQuant,  // Δ quantised densely (rank came near full)
  kDense,       // Δ in full precision (norms, biases, other small tensors)
};
const char* ModuleOpName(ModuleOp op);  // "lowrank", "sparse", "dense_quant", "dense"
StatusOr<ModuleOp> ModuleOpFromName(absl::string_view name);

// One band of singular directions [rank_begin, rank_end), quantised at `bits`.
struct LowRankBand {
  int64_t rank_begin = 0;
  int64_t rank_end = 0;
  QuantizedMatrix u;   // [out_features, width]; GPTQ inputs: Σ_b · V̂ᵀ_b x
  QuantizedMatrix vt;  // [width, in_features]; GPTQ inputs: the module's inputs x
  int64_t width() const { return rank_end - rank_begin; }
};

struct ModuleDelta {
  std::string name;  // Hugging Face tensor name, e.g. "model.layers.0.mlp.up_proj.weight"
  ModuleOp op = ModuleOp::kDense;
  std::vector<int64_t> shape;  // the full tensor's shape
  // kLowRank
  at::Tensor sigma;                // float32 [rank]
  std::vector<LowRankBand> bands;  // contiguous, covering [0, rank)
  // kSparse
  at::Tensor indices;  // int64 [nnz], flat row-major indices, strictly increasing
  at::Tensor values;   // float16 [nnz]
  // kDenseQuant
  QuantizedMatrix dense;
  // kDense
  at::Tensor full;  // float32, `shape`

  int64_t rank() const { return sigma.defined() ? sigma.numel() : 0; }
};

struct PackManifest {
  int format_version = kSkillPackFormatVersion;
  std::string name;  // [a-z0-9][a-z0-9._-]{0,63}
  std::string version = "1";
  std::string base_fingerprint;  // BaseFingerprint() of the base model
  std::string description;
  std::vector<std::string> tags;
  Json provenance = Json::object();  // sources, data, stages, steps, compression settings
  std::string created_at;            // RFC 3339 UTC
};

struct SkillPack {
  PackManifest manifest;
  std::vector<ModuleDelta> modules;  // sorted by name, names unique
};

}  // namespace skillpack

#endif  // SKILLPACK_PACK_SKILLPACK_H_
