#include <sys/mman.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include "core/small_gemm.cc"
#include "lane_sums16.h"
using namespace skillpack;
using Clock = std::chrono::steady_clock;
namespace skillpack {
namespace {
template <int MR, int NR, int QR>
__attribute__((target("avx512f"))) void WriteSums2(const __m512* acc, const float* bias, int64_t n0, int64_t whole,
                                                   int64_t quads, int64_t n1, float* y, int64_t ldy) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < MR; ++i) {
    for (int64_t c0 = n0; c0 < n1; c0 += 16) {
      const int64_t cnt = std::min<int64_t>(16, n1 - c0);
      const __m512* p[16];
      for (int64_t s = 0; s < 16; ++s) {
        const int64_t j = c0 + s;
        if (s >= cnt) {
          p[s] = &zero;
          continue;
        }
        int64_t j0, nr;
        if (j < whole) {
          j0 = n0 + (j - n0) / NR * NR;
          nr = NR;
        } else if (j < quads) {
          j0 = whole + (j - whole) / QR * QR;
          nr = QR;
        } else {
          j0 = j;
          nr = 1;
        }
        p[s] = &acc[(j0 - n0) * MR + i * nr + (j - j0)];
      }
      const __m512* q[16];
      for (int s = 0; s < 16; ++s) q[s] = p[(s % 4) * 4 + s / 4];
      const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1);
      __m512 r = LaneSums16(q);
      if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, bias + c0));
      _mm512_mask_storeu_ps(y + i * ldy + c0, mask, r);
    }
  }
}
template <int MB, typename W, bool kPf, int kSums, int KB>
__attribute__((target("avx512f"))) void TG(const float* xa, const float* xb, int64_t k, const W* w, const float* bias,
                                           int64_t n0, int64_t n1, int64_t n_end, float* y, int64_t ldy,
                                           SmallGemmWalk walk) {
  constexpr int NR = 3;
  alignas(64) __m512 acc_a[8 * kAvx512TwoGroupPanel];
  alignas(64) __m512 acc_b[MB * kAvx512TwoGroupPanel];
  for (int64_t t = 0; t < 8 * (n1 - n0); ++t) acc_a[t] = _mm512_setzero_ps();
  for (int64_t t = 0; t < MB * (n1 - n0); ++t) acc_b[t] = _mm512_setzero_ps();
  const int64_t whole = n0 + (n1 - n0) / NR * NR;
  const int64_t ahead = walk == SmallGemmWalk::kL2Lookahead ? kAvx512TwoGroupPanel : 0;
  for (int64_t k0 = 0; k0 < k; k0 += KB) {
    const int64_t k1 = std::min(k, k0 + KB);
    for (int64_t j = n0; j < whole; j += NR) {
      const int64_t l2 = L2Ahead(j, NR, ahead, n_end);
      Block512<8, NR, W, kPf>(xa, w + j * k, k, k0, k1, acc_a + (j - n0) * 8, l2);
      Block512<MB, NR, W, kPf>(xb, w + j * k, k, k0, k1, acc_b + (j - n0) * MB, l2);
    }
  }
  if (kSums == 0) {
    WriteSums<8, NR, 1>(acc_a, bias, n0, whole, whole, n1, y, ldy);
    WriteSums<MB, NR, 1>(acc_b, bias, n0, whole, whole, n1, y + 8 * ldy, ldy);
  } else if (kSums == 1) {
    y[n0] = _mm512_reduce_add_ps(acc_a[0]) + _mm512_reduce_add_ps(acc_b[7]);
  } else {
    WriteSums2<8, NR, 1>(acc_a, bias, n0, whole, whole, n1, y, ldy);
    WriteSums2<MB, NR, 1>(acc_b, bias, n0, whole, whole, n1, y + 8 * ldy, ldy);
  }
}
}  // namespace
}  // namespace skillpack
template <bool kPf, int kSums, int KB>
double RunTG(int64_t n, int64_t k, SmallGemmWalk walk, int64_t total_rows) {
  size_t bytes = (total_rows * k * 4 + (2 << 20) - 1) / (2 << 20) * (2 << 20);
  float* w = static_cast<float*>(aligned_alloc(2 << 20, bytes));
  if (getenv("HUGE")) madvise(w, bytes, MADV_HUGEPAGE);
  for (int64_t i = 0; i < total_rows * k; ++i) w[i] = 0.001f * (i % 5);
  float* xp = static_cast<float*>(aligned_alloc(64, 16 * k * 4));
  for (int64_t i = 0; i < 16 * k; ++i) xp[i] = 0.001f * (i % 7);
  std::vector<float> y(16 * total_rows);
  const int64_t reps = std::max<int64_t>(1, 4000000000LL / (32 * total_rows * k));
  auto t0 = Clock::now();
  for (int64_t r = 0; r < reps; ++r)
    for (int64_t n0 = 0; n0 < total_rows; n0 += n)
      skillpack::TG<8, float, kPf, kSums, KB>(xp, xp + 8 * k, k, w, nullptr, n0, n0 + n, total_rows, y.data(),
                                              total_rows, walk);
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  free(w);
  free(xp);
  return reps * 32.0 * total_rows * k / s / 1e9;
}
int main() {
  const int64_t k = 2048;
  const int64_t mem = 48 * (65536 * 1024 / k / 48);
  auto W = SmallGemmWalk::kL2Lookahead;
  std::printf(
      "one thread, TwoGroupPanel512<8> (16 rows of x), panels of 48 weight rows, k = 2048, GFLOP/s; huge pages: %s\n",
      getenv("HUGE") ? "madvised" : "no");
  for (int round = 0; round < 3; ++round) {
    for (int64_t rows : {int64_t{48}, mem}) {
      std::printf(
          "%s: committed %.1f  no-prefetch %.1f  no-sums %.1f  lane-sums %.1f  kblock128 %.1f  kblock512 %.1f\n",
          rows == 48 ? "L2 (48 rows)" : "memory (256 MB)", RunTG<true, 0, 256>(48, k, W, rows),
          RunTG<false, 0, 256>(48, k, W, rows), RunTG<true, 1, 256>(48, k, W, rows),
          RunTG<true, 2, 256>(48, k, W, rows), RunTG<true, 0, 128>(48, k, W, rows),
          RunTG<true, 0, 512>(48, k, W, rows));
    }
  }
}
