// Inline decoding of packed group-quantised codes, shared by the kernels
// (dequant.cu, lowrank_apply.cu) and by the host-side emulation in
// tests/kernels/. Every function here is __host__ __device__ under nvcc and a
// plain inline function under a host compiler, so the per-thread work of the
// kernels can be checked on a machine without a GPU. Internal to kernels/ and
// its tests; not part of the launcher API.
#ifndef SKILLPACK_KERNELS_QUANT_DECODE_INL_H_
#define SKILLPACK_KERNELS_QUANT_DECODE_INL_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/dequant.h"
#include "kernels/lowrank_apply.h"
#include "kernels/quant_view.h"

#if defined(__CUDACC__)
#define SKILLPACK_HD __host__ __device__ __forceinline__
#else
#define SKILLPACK_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define SKILLPACK_UNROLL _Pragma("unroll")
#else
#define SKILLPACK_UNROLL
#endif

namespace skillpack::kernels {

// Codes decoded per step: 8 codes of b bits are b whole bytes, and with the
// stream's bit offset they always fit one 64-bit window.
inline constexpr int kCodesPerChunk = 8;

// Read-only load: through the read-only data cache on the device.
template <typename P>
SKILLPACK_HD P LoadRO(const P* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

SKILLPACK_HD float ToFloat(float v) { return v; }
SKILLPACK_HD float ToFloat(__half v) { return __half2float(v); }
SKILLPACK_HD float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round-to-nearest-even conversion from float.
template <typename T>
struct FromFloat;
template <>
struct FromFloat<__half> {
  static SKILLPACK_HD __half Convert(float v) { return __float2half_rn(v); }
};
template <>
struct FromFloat<__nv_bfloat16> {
  static SKILLPACK_HD __nv_bfloat16 Convert(float v) { return __float2bfloat16_rn(v); }
};

#if defined(__CUDA_ARCH__)
// The 16 bits of a half / bfloat16 value.
__device__ __forceinline__ uint16_t Bits16(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ uint16_t Bits16(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
#endif

// Unpacks codes [first, first + n), 1 <= n <= 8, of width bits (2, 3, 4 or 8)
// from a bitpack.h stream into q[0, n); q[n, 8) are unspecified. Reads only
// the bytes that hold those codes: ceil((first * bits % 8 + n * bits) / 8) <= 8
// of them (for 8-bit codes the offset is 0; otherwise 7 + 8 * 4 < 64).
SKILLPACK_HD void LoadCodes(const uint8_t* stream, int64_t first, int n, int bits, uint32_t (&q)[kCodesPerChunk]) {
  const int64_t bit0 = first * bits;
  const uint8_t* p = stream + (bit0 >> 3);
  const int shift = static_cast<int>(bit0 & 7);
  const int num_bytes = (shift + n * bits + 7) >> 3;
  uint64_t window = 0;
  SKILLPACK_UNROLL
  for (int i = 0; i < 8; ++i) {
    if (i < num_bytes) {
      window |= static_cast<uint64_t>(LoadRO(p + i)) << (8 * i);
    }
  }
  window >>= shift;
  const uint32_t mask = (1u << bits) - 1u;
  SKILLPACK_UNROLL
  for (int i = 0; i < kCodesPerChunk; ++i) {
    q[i] = static_cast<uint32_t>(window >> (i * bits)) & mask;
  }
}

// scales[index] of m as float, whatever its scale_type.
SKILLPACK_HD float LoadScale(const QuantMatrixView& m, int64_t index) {
  if (m.scale_type == kScaleFloat16) {
    return ToFloat(LoadRO(static_cast<const __half*>(m.scales) + index));
  }
  return LoadRO(static_cast<const float*>(m.scales) + index);
}

// Zero point zeros[index] of m (either storage form), as float.
SKILLPACK_HD float LoadZero(const QuantMatrixView& m, int64_t index) {
  if (m.zeros_packed != 0) {
    uint32_t q[kCodesPerChunk];
    LoadCodes(m.zeros, index, 1, m.bits, q);
    return static_cast<float>(q[0]);
  }
  return static_cast<float>(LoadRO(m.zeros + index));
}

// Dequantised values ŵ = (q - z) * s of stored columns [j0, j0 + n) of row r,
// n = min(8, cols - j0), into w[0, n); returns n. Handles a chunk that
// crosses a group boundary. REQUIRES: 0 <= r < rows, 0 <= j0 < cols, m valid.
SKILLPACK_HD int DecodeChunk(const QuantMatrixView& m, int r, int j0, float (&w)[kCodesPerChunk]) {
  const int n = m.cols - j0 < kCodesPerChunk ? m.cols - j0 : kCodesPerChunk;
  uint32_t q[kCodesPerChunk];
  LoadCodes(m.codes, static_cast<int64_t>(r) * m.cols + j0, n, m.bits, q);
  const int num_groups = (m.cols + m.group_size - 1) / m.group_size;
  const int64_t row_base = static_cast<int64_t>(r) * num_groups;
  int g = j0 / m.group_size;
  int group_end = (g + 1) * m.group_size;
  float s = LoadScale(m, row_base + g);
  float z = LoadZero(m, row_base + g);
  SKILLPACK_UNROLL
  for (int i = 0; i < kCodesPerChunk; ++i) {
    if (i < n) {
      if (j0 + i >= group_end) {
        ++g;
        group_end += m.group_size;
        s = LoadScale(m, row_base + g);
        z = LoadZero(m, row_base + g);
      }
      w[i] = (static_cast<float>(q[i]) - z) * s;
    }
  }
  return n;
}

// The work of one dequant thread step: decodes stored columns
// [j0, j0 + 8) of row r of item.src and writes them to item.out (see
// DequantItem for the formula). REQUIRES: 0 <= r < rows, 0 <= j0 < cols.
template <typename T>
SKILLPACK_HD void DequantChunk(const DequantItem<T>& item, int r, int j0) {
  const QuantMatrixView& m = item.src;
  float w[kCodesPerChunk];
  const int n = DecodeChunk(m, r, j0, w);
  T* row = item.out + static_cast<int64_t>(r) * item.ld_out;
#if defined(__CUDA_ARCH__)
  // Fast path: 8 contiguous outputs, one 16-byte store.
  if (m.perm == nullptr && item.accumulate == 0 && n == kCodesPerChunk &&
      (reinterpret_cast<uintptr_t>(row + j0) & 15) == 0) {
    uint32_t words[kCodesPerChunk / 2];
    SKILLPACK_UNROLL
    for (int i = 0; i < kCodesPerChunk; i += 2) {
      float c0 = item.alpha, c1 = item.alpha;
      if (item.col_scale != nullptr) {
        c0 *= LoadRO(item.col_scale + j0 + i);
        c1 *= LoadRO(item.col_scale + j0 + i + 1);
      }
      T lo = FromFloat<T>::Convert(w[i] * c0);
      T hi = FromFloat<T>::Convert(w[i + 1] * c1);
      words[i / 2] = static_cast<uint32_t>(Bits16(lo)) | (static_cast<uint32_t>(Bits16(hi)) << 16);
    }
    *reinterpret_cast<uint4*>(row + j0) = make_uint4(words[0], words[1], words[2], words[3]);
    return;
  }
#endif
  SKILLPACK_UNROLL
  for (int i = 0; i < kCodesPerChunk; ++i) {
    if (i < n) {
      const int c = m.perm != nullptr ? LoadRO(m.perm + j0 + i) : j0 + i;
      if (c < 0 || c >= m.cols) continue;
      float coef = item.alpha;
      if (item.col_scale != nullptr) coef *= LoadRO(item.col_scale + c);
      float v = w[i] * coef;
      if (item.accumulate != 0) v += ToFloat(row[c]);
      row[c] = FromFloat<T>::Convert(v);
    }
  }
}

// Σ over stored columns j in [j0, j0 + 8) ∩ [0, cols) of ŵ[r, j] * x[perm[j]]
// (x[j] without perm): a chunk of row r of m times a vector in original
// column order. Columns with perm[j] outside [0, cols) contribute 0.
template <typename X>
SKILLPACK_HD float ChunkDot(const QuantMatrixView& m, int r, int j0, const X* x) {
  float w[kCodesPerChunk];
  const int n = DecodeChunk(m, r, j0, w);
  float acc = 0.0f;
  SKILLPACK_UNROLL
  for (int i = 0; i < kCodesPerChunk; ++i) {
    if (i < n) {
      const int c = m.perm != nullptr ? LoadRO(m.perm + j0 + i) : j0 + i;
      if (c >= 0 && c < m.cols) acc += w[i] * ToFloat(x[c]);
    }
  }
  return acc;
}

// True when band fits a module of [out_features, in_features] whose pack has
// `rank` singular directions: Vᵀ [width, in], U [out, width],
// [rank_begin, rank_begin + width) within [0, rank), both views valid.
SKILLPACK_HD bool BandFits(const LowRankBandView& band, int in_features, int out_features, int rank) {
  const QuantMatrixView& u = band.u;
  const QuantMatrixView& vt = band.vt;
  const bool bits_ok = (u.bits == 2 || u.bits == 3 || u.bits == 4 || u.bits == 8) &&
                       (vt.bits == 2 || vt.bits == 3 || vt.bits == 4 || vt.bits == 8);
  return bits_ok && u.group_size > 0 && vt.group_size > 0 && vt.cols == in_features && u.rows == out_features &&
         u.cols == vt.rows && band.rank_begin >= 0 && band.rank_begin + vt.rows <= rank;
}

// Phase 1 work of one lane: the part of (Vᵀ_band x)[i] over the chunks
// lane, lane + num_lanes, ... of Vᵀ row i; summing over lanes gives the full
// dot product. x is the input row in original order, in_features long.
template <typename T>
SKILLPACK_HD float VtRowPartialDot(const LowRankBandView& band, int i, const T* x, int lane, int num_lanes) {
  const int num_chunks = (band.vt.cols + kCodesPerChunk - 1) / kCodesPerChunk;
  float acc = 0.0f;
  for (int c = lane; c < num_chunks; c += num_lanes) {
    acc += ChunkDot(band.vt, i, c * kCodesPerChunk, x);
  }
  return acc;
}

// Phase 2 work of one thread: (U t)[o] over all bands of a factor, where
// t[k] (k in [0, rank)) already holds weight * σ_k * (Vᵀ x)_k. Bands that
// do not fit (BandFits) are skipped.
SKILLPACK_HD float URowDot(const LowRankFactorView& f, int o, const float* t, int in_features, int out_features) {
  float acc = 0.0f;
  for (int b = 0; b < f.num_bands; ++b) {
    const LowRankBandView& band = f.bands[b];
    if (!BandFits(band, in_features, out_features, f.rank)) continue;
    const float* tb = t + band.rank_begin;
    for (int j0 = 0; j0 < band.u.cols; j0 += kCodesPerChunk) {
      acc += ChunkDot(band.u, o, j0, tb);
    }
  }
  return acc;
}

}  // namespace skillpack::kernels

#endif  // SKILLPACK_KERNELS_QUANT_DECODE_INL_H_
