// The sum of a vector register's float lanes, for the CPU kernels:
// HorizontalSum in core/small_gemm.cc, core/decode_attention.cc and
// core/sparse_rows.cc,
// HorizontalSum512 in core/small_gemm.cc (decode_attention.cc folds its
// AVX-512 dot products in place, faster there).
#ifndef SKILLPACK_CORE_HORIZONTAL_SUM_H_
#define SKILLPACK_CORE_HORIZONTAL_SUM_H_

#include <immintrin.h>

namespace skillpack {

__attribute__((target("avx2,fma"))) inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx512f"))) inline float HorizontalSum512(__m512 v) {
  // The masked extracts with every lane set: GCC 12's _mm512_castps512_ps256
  // and _mm512_extractf64x4_pd warn of an uninitialized variable inside its
  // own header.
  const __m512d d = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xFF, d, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xFF, d, 1));
  return HorizontalSum(_mm256_add_ps(lo, hi));
}

}  // namespace skillpack

#endif  // SKILLPACK_CORE_HORIZONTAL_SUM_H_
