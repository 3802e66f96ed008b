// Bit packing of small unsigned integer codes (quantised weights, zero points)
// into bytes. Plain byte buffers: no libtorch.
//
// On-disk layout (part of the SkillPack format spec, docs/skillpack-format.md):
//   A sequence of `count` codes, each `bits` wide (bits in {2, 3, 4, 8}), is
//   written as one little-endian bit stream. Bit k of the stream is bit
//   (k % 8) of byte (k / 8), bit 0 being the least significant bit of a byte.
//   Code i occupies stream bits [i * bits, (i + 1) * bits), its least
//   significant bit at stream bit i * bits. A code may straddle a byte
//   boundary (3-bit codes do). The buffer is PackedBytes(count, bits) =
//   ceil(count * bits / 8) bytes; unused high bits of the last byte are zero.
//   Examples: 4-bit codes {1, 2} -> byte 0x21; 2-bit codes {1, 2, 3, 0} ->
//   byte 0x39; 3-bit codes {5, 3, 7} -> bytes 0xDD 0x01.
//   A matrix of codes is packed row-major as one stream (rows are not padded
//   to byte boundaries) unless the caller packs rows separately.
#ifndef SKILLPACK_PACK_CODEC_BITPACK_H_
#define SKILLPACK_PACK_CODEC_BITPACK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "core/status.h"

namespace skillpack {

// True for the code widths the format supports: 2, 3, 4 and 8.
bool IsSupportedCodeWidth(int bits);

// Bytes needed for `count` codes of width `bits`: ceil(count * bits / 8).
// REQUIRES: count >= 0 and IsSupportedCodeWidth(bits) (returns 0 otherwise).
size_t PackedBytes(int64_t count, int bits);

// Packs codes[0, count) into out[0, PackedBytes(count, bits)), layout above.
// Returns INVALID_ARGUMENT for an unsupported width, a negative count or a code
// >= 2^bits (out is then unspecified). `out` must hold PackedBytes() bytes.
Status PackCodes(const uint8_t* codes, int64_t count, int bits, uint8_t* out);

// Unpacks `count` codes of width `bits` from `packed` (packed_bytes long) into
// codes[0, count). Returns INVALID_ARGUMENT for an unsupported width, a
// negative count or packed_bytes < PackedBytes(count, bits). Extra trailing
// bytes and padding bits are ignored.
Status UnpackCodes(const uint8_t* packed, size_t packed_bytes, int64_t count, int bits, uint8_t* codes);

// Vector conveniences over the two functions above.
StatusOr<std::vector<uint8_t>> PackCodes(absl::Span<const uint8_t> codes, int bits);
StatusOr<std::vector<uint8_t>> UnpackCodes(absl::Span<const uint8_t> packed, int64_t count, int bits);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_CODEC_BITPACK_H_
