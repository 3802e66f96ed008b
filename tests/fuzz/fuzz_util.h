// Helpers shared by the libFuzzer targets in tests/fuzz/ (built only with
// -DSKILLPACK_FUZZ=ON under clang; see tests/fuzz/README.md).
#ifndef SKILLPACK_TESTS_FUZZ_FUZZ_UTIL_H_
#define SKILLPACK_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>

#include "core/status.h"

namespace skillpack::fuzz {

// A property every accepted input must have; a violation is a finding, so the
// process aborts (libFuzzer keeps the input as crash-*).
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// A rejection must say what is wrong: a non-OK status with a non-empty message.
inline void CheckRejection(const Status& s) {
  if (!s.ok() && s.message().empty()) {
    std::fprintf(stderr, "rejected with an empty message (code %d)\n", static_cast<int>(s.code()));
    std::abort();
  }
}

}  // namespace skillpack::fuzz

#endif  // SKILLPACK_TESTS_FUZZ_FUZZ_UTIL_H_
