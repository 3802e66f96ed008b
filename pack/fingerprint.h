// The base-model fingerprint that ties a SkillPack to
// the exact base weights it was made from.
//
// Fingerprint definition (also in docs/skillpack-format.md, "Base
// fingerprint"): "sha256:" + the lowercase hex SHA-256 of this byte stream:
//   1. "skillpack-base-fingerprint-v1\n"
//   2. the canonical config: the compact JSON dump (keys sorted) of
//      {model_type, vocab_size, hidden_size, intermediate_size,
//       num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
//       tie_word_embeddings}, then "\n"
//   3. for every tensor of the ModelWeights in name order (a tied lm_head is
//      not a tensor of its own, so it is not listed): the name, "\n", the shape
//      as decimal dims joined by "," then "\n", then sampled values: each value
//      converted to float32 and written as 4 little-endian bytes. With n =
//      numel: all n values in row-major order when n <= 4096; otherwise 64
//      chunks of 16 consecutive values, chunk c (0..63) starting at flat index
//      floor(c * (n - 16) / 63) (first chunk at 0, last ending at n).
// The storage dtype does not matter (values are hashed as float32), so a model
// loaded in fp32 and a bf16-stored copy holding the same values agree.
#ifndef SKILLPACK_PACK_FINGERPRINT_H_
#define SKILLPACK_PACK_FINGERPRINT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/sha256.h"
#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

// Number of values sampled per tensor (see above); exposed for tests.
inline constexpr int64_t kFingerprintFullTensorMax = 4096;
inline constexpr int64_t kFingerprintChunks = 64;
inline constexpr int64_t kFingerprintChunkLen = 16;

// The fingerprint defined above: "sha256:<64 hex>". Works for tensors on any
// device and of any floating dtype. INTERNAL if libtorch fails.
StatusOr<std::string> BaseFingerprint(const ModelWeights& w);

// True for a well-formed fingerprint string: "sha256:" + 64 lowercase hex.
bool IsValidFingerprint(absl::string_view fingerprint);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_FINGERPRINT_H_
