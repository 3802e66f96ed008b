// 64-bit FNV-1a: a fast, stable (the same on every build and machine), non-
// cryptographic hash of bytes, for splitting and bucketing (task prompt
// splits, the router's lexicon buckets). Files are fingerprinted with
// sha256.h instead.
#ifndef SKILLPACK_CORE_FNV1A_H_
#define SKILLPACK_CORE_FNV1A_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace skillpack {

inline uint64_t Fnv1a64(absl::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace skillpack

#endif  // SKILLPACK_CORE_FNV1A_H_
