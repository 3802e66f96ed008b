#include <immintrin.h>
namespace skillpack {
// lane j of the result = HorizontalSum512(v[j]) bit for bit (same additions, same order).
__attribute__((target("avx512f"), always_inline)) inline __m512 LaneSums16(const __m512* const* v) {
  // slot s = 4m + L holds output 4L + m
  __m512 c[8];
  for (int p = 0; p < 8; ++p) {
    const int s0 = 2 * p, s1 = 2 * p + 1;
    const __m512 a = *v[s0], b = *v[s1];
    c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  __m512 d[4];
  for (int q = 0; q < 4; ++q)
    d[q] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * q], c[2 * q + 1], 0x88),
                         _mm512_shuffle_f32x4(c[2 * q], c[2 * q + 1], 0xDD));
  __m512 e[2];
  for (int r = 0; r < 2; ++r)
    e[r] =
        _mm512_add_ps(_mm512_shuffle_ps(d[2 * r], d[2 * r + 1], 0x44), _mm512_shuffle_ps(d[2 * r], d[2 * r + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
}
}  // namespace skillpack
