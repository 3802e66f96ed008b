// SHA-256 (FIPS 180-4): incremental hashing and hex digests. Used for pack
// files (upload checks, the pack store) and the base-model fingerprint.
#ifndef SKILLPACK_CORE_SHA256_H_
#define SKILLPACK_CORE_SHA256_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

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

// True for 64 lowercase hex characters (a Sha256Hex result).
bool IsSha256Hex(absl::string_view s);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SHA256_H_
