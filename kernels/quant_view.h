// QuantMatrixView: how the CUDA kernels see one group-quantised matrix of a
// SkillPack (pack/codec/quantize.h's grid, pack/codec/bitpack.h's code layout) in device
// memory. Shared by the dequantisation, reconstruction and low-rank-apply
// launchers. Plain header: no CUDA needed to include it.
#ifndef SKILLPACK_KERNELS_QUANT_VIEW_H_
#define SKILLPACK_KERNELS_QUANT_VIEW_H_

#include <cstdint>

namespace skillpack::kernels {

// Element type of QuantMatrixView::scales.
enum ScaleType : int32_t {
  kScaleFloat32 = 0,
  kScaleFloat16 = 1,
};

// A [rows, cols] matrix quantised as in pack/codec/quantize.h: stored column j of
// row r holds code q; with g = j / group_size, s = scales[r][g] and
// z = zeros[r][g], its value is (q - z) * s and it belongs to ORIGINAL column
// perm[j] (j when perm is null). All pointers are device pointers (host
// pointers for the CPU twins) and are only read.
struct QuantMatrixView {
  // Packed codes: rows * cols codes of `bits` bits, row-major, columns in
  // stored order, as ONE little-endian bit stream (rows are not padded; code
  // i occupies stream bits [i * bits, (i + 1) * bits)). At least
  // ceil(rows * cols * bits / 8) bytes. No alignment required.
  const uint8_t* codes = nullptr;
  // [rows, num_groups] row-major; float (kScaleFloat32) or __half
  // (kScaleFloat16) per scale_type.
  const void* scales = nullptr;
  // [rows, num_groups] row-major zero-point codes: one per byte, or (with
  // zeros_packed) bit-packed at `bits` bits like the codes, as the pack file
  // stores them (docs/skillpack-format.md).
  const uint8_t* zeros = nullptr;
  // [cols] int32, a permutation of [0, cols), or null for the identity.
  const int32_t* perm = nullptr;
  int32_t rows = 0;
  int32_t cols = 0;
  int32_t bits = 0;        // 2, 3, 4 or 8
  int32_t group_size = 0;  // stored columns per group, > 0
  int32_t scale_type = kScaleFloat32;
  int32_t zeros_packed = 0;  // 0: one zero per byte, 1: bit-packed stream
};

// True for the code widths the kernels decode: 2, 3, 4 and 8.
inline bool IsSupportedCodeBits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

// ceil(cols / group_size). REQUIRES: group_size > 0.
inline int32_t NumGroupsOf(const QuantMatrixView& m) { return (m.cols + m.group_size - 1) / m.group_size; }

// Host-side structural check of a view before it is copied to the device:
// non-negative shape, supported bits, group_size > 0, a known scale type and
// non-null codes / scales / zeros when the matrix is non-empty. Does not (and
// cannot) look at the device data: code and perm ranges are the caller's
// contract (core's ValidateQuantizedMatrix checks them when a pack is read).
inline bool IsValidQuantMatrixView(const QuantMatrixView& m) {
  if (m.rows < 0 || m.cols < 0 || m.group_size <= 0) return false;
  if (!IsSupportedCodeBits(m.bits)) return false;
  if (m.scale_type != kScaleFloat32 && m.scale_type != kScaleFloat16) {
    return false;
  }
  if (m.rows == 0 || m.cols == 0) return true;
  return m.codes != nullptr && m.scales != nullptr && m.zeros != nullptr;
}

}  // namespace skillpack::kernels

#endif  // SKILLPACK_KERNELS_QUANT_VIEW_H_
