#include "pack/codec/bitpack.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

Status CheckArgs(int64_t count, int bits) {
  if (!IsSupportedCodeWidth(bits)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported code width ", bits, " (want 2, 3, 4 or 8)"));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative code count ", count));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsSupportedCodeWidth(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

size_t PackedBytes(int64_t count, int bits) {
  if (count < 0 || !IsSupportedCodeWidth(bits)) return 0;
  return static_cast<size_t>((count * bits + 7) / 8);
}

Status PackCodes(const uint8_t* codes, int64_t count, int bits, uint8_t* out) {
  RETURN_IF_ERROR(CheckArgs(count, bits));
  const unsigned limit = 1u << bits;
  for (int64_t i = 0; i < count; ++i) {
    if (codes[i] >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("code ", static_cast<int>(codes[i]), " at index ", i, " does not fit in ", bits, " bits"));
    }
  }
  if (bits == 8) {
    if (count > 0) std::memcpy(out, codes, static_cast<size_t>(count));
    return absl::OkStatus();
  }
  // General path: a bit accumulator flushed a byte at a time. Handles 2, 3 and
  // 4 bits alike; codes are range-checked above.
  uint32_t acc = 0;
  int filled = 0;
  size_t o = 0;
  for (int64_t i = 0; i < count; ++i) {
    acc |= static_cast<uint32_t>(codes[i]) << filled;
    filled += bits;
    while (filled >= 8) {
      out[o++] = static_cast<uint8_t>(acc & 0xFFu);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) out[o] = static_cast<uint8_t>(acc & 0xFFu);
  return absl::OkStatus();
}

Status UnpackCodes(const uint8_t* packed, size_t packed_bytes, int64_t count, int bits, uint8_t* codes) {
  RETURN_IF_ERROR(CheckArgs(count, bits));
  const size_t need = PackedBytes(count, bits);
  if (packed_bytes < need) {
    return absl::InvalidArgumentError(absl::StrCat("packed buffer of ", packed_bytes, " bytes is too small for ", count,
                                                   " codes of ", bits, " bits (need ", need, ")"));
  }
  if (bits == 8) {
    if (count > 0) std::memcpy(codes, packed, static_cast<size_t>(count));
    return absl::OkStatus();
  }
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t acc = 0;
  int filled = 0;
  size_t p = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (filled < bits) {
      acc |= static_cast<uint32_t>(packed[p++]) << filled;
      filled += 8;
    }
    codes[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
  return absl::OkStatus();
}

StatusOr<std::vector<uint8_t>> PackCodes(absl::Span<const uint8_t> codes, int bits) {
  const int64_t count = static_cast<int64_t>(codes.size());
  RETURN_IF_ERROR(CheckArgs(count, bits));
  std::vector<uint8_t> out(PackedBytes(count, bits), 0);
  RETURN_IF_ERROR(PackCodes(codes.data(), count, bits, out.data()));
  return out;
}

StatusOr<std::vector<uint8_t>> UnpackCodes(absl::Span<const uint8_t> packed, int64_t count, int bits) {
  RETURN_IF_ERROR(CheckArgs(count, bits));
  std::vector<uint8_t> codes(static_cast<size_t>(count), 0);
  RETURN_IF_ERROR(UnpackCodes(packed.data(), packed.size(), count, bits, codes.data()));
  return codes;
}

}  // namespace skillpack
