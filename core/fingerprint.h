// SHA-256 (FIPS 180-4) and the base-model fingerprint that ties a SkillPack to
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
#ifndef SKILLPACK_CORE_FINGERPRINT_H_
#define SKILLPACK_CORE_FINGERPRINT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

// Incremental SHA-256. Not thread-safe. After FinalHex() the object must be
// Reset() before further use.
class Sha256 {
 public:
  Sha256() { Reset(); }
  void Reset();
  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // The 32-byte digest of everything added since Reset().
  std::string FinalDigest();
  // The digest as 64 lowercase hex characters.
  std::string FinalHex();

 private:
  void Block(const uint8_t* p);  // compresses one 64-byte block

  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

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

#endif  // SKILLPACK_CORE_FINGERPRINT_H_
