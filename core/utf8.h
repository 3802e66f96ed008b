// UTF-8 validation for every reader of outside text: request strings
// (rpc/request_decode.h) and corpus files (trainer/pretrain.h).
#ifndef SKILLPACK_CORE_UTF8_H_
#define SKILLPACK_CORE_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace skillpack {

// Offset of the first byte of `s` that does not start (or continue) a
// well-formed UTF-8 sequence (no overlongs, surrogates or code points above
// U+10FFFF, as protobuf requires; a sequence cut off by the end of `s` is
// invalid at its first byte), or std::string::npos when all of `s` is.
size_t FirstInvalidUtf8(absl::string_view s);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_UTF8_H_
