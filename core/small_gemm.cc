#include "core/small_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>

namespace skillpack {
namespace {

std::atomic<bool> g_enabled{true};

bool CpuHasAvx2Fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// acc[i][j] += x row i · w row j over columns [0, k8) (k8 a multiple of 8), for MR rows of x (stride ldx) and NR rows
// of w (stride ldw). The MR·NR accumulators stay in registers (MR·NR + MR <= 16 ymm); each weight vector is loaded once
// per step and used by all MR rows.
template <int MR, int NR>
__attribute__((target("avx2,fma"))) void Tile(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t k8,
                                              __m256* acc /* [MR][NR] */) {
  __m256 a[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) a[i][j] = acc[i * NR + j];
  }
  for (int64_t kk = 0; kk < k8; kk += 8) {
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + kk);
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + j * ldw + kk);
      for (int i = 0; i < MR; ++i) a[i][j] = _mm256_fmadd_ps(xv[i], wv, a[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i * NR + j] = a[i][j];
  }
}

// Rows [m0, m0 + mr) of x against panel rows [0, 12) over columns [0, k8):
// whole tiles for every mr, as 12 = 3·4 = 4·3 = 6·2 = 12·1. acc holds the
// block's accumulators, [mr][12] in tile order.
__attribute__((target("avx2,fma"))) void PanelTiles(const float* x, int64_t k, int64_t mr, const float* w, int64_t k8,
                                                    __m256* acc) {
  switch (mr) {
    case 4:
      for (int64_t j = 0; j < 12; j += 3) Tile<4, 3>(x, k, w + j * k, k, k8, acc + j * 4);
      break;
    case 3:
      for (int64_t j = 0; j < 12; j += 4) Tile<3, 4>(x, k, w + j * k, k, k8, acc + j * 3);
      break;
    case 2:
      for (int64_t j = 0; j < 12; j += 6) Tile<2, 6>(x, k, w + j * k, k, k8, acc + j * 2);
      break;
    default:
      Tile<1, 12>(x, k, w, k, k8, acc);
      break;
  }
}

// The accumulator of (row i, panel row j) in PanelTiles' layout for `mr` rows.
int64_t AccIndex(int64_t mr, int64_t i, int64_t j) {
  const int64_t nr = 12 / mr;
  return (j / nr) * nr * mr + i * nr + j % nr;
}

__attribute__((target("avx2,fma"))) inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Every row of x against weight rows [n0, n0 + rows), rows <= 12: the
// panel's weights are read from memory once, by the first group of 4 rows of
// x, in one pass over all of k (each weight row streams as one sequential run,
// which the hardware prefetcher follows); the other groups find them in L2.
// Blocking k so that slices of x and of the panel stay in L1 (256 columns,
// 28 KB) measured 20-30% slower at m = 4..16 on 1.1B shapes.
__attribute__((target("avx2,fma"))) void Panel(const float* x, int64_t m, int64_t k, const float* w, const float* bias,
                                               int64_t n0, int64_t rows, float* y, int64_t ldy) {
  const float* wp = w + n0 * k;
  const int64_t k8 = k / 8 * 8;  // the vector part; the rest is added in scalar code
  if (rows == kSmallGemmBlock) {
    alignas(32) __m256 acc[kSmallGemmMaxRows * kSmallGemmBlock];
    for (auto& a : acc) a = _mm256_setzero_ps();
    for (int64_t m0 = 0; m0 < m; m0 += 4) {
      PanelTiles(x + m0 * k, k, std::min<int64_t>(4, m - m0), wp, k8, acc + m0 * kSmallGemmBlock);
    }
    for (int64_t m0 = 0; m0 < m; m0 += 4) {
      const int64_t mr = std::min<int64_t>(4, m - m0);
      for (int64_t i = 0; i < mr; ++i) {
        for (int64_t j = 0; j < kSmallGemmBlock; ++j) {
          float s = HorizontalSum(acc[m0 * kSmallGemmBlock + AccIndex(mr, i, j)]);
          for (int64_t t = k8; t < k; ++t) s += x[(m0 + i) * k + t] * wp[j * k + t];
          y[(m0 + i) * ldy + n0 + j] = s + (bias ? bias[n0 + j] : 0.0f);
        }
      }
    }
    return;
  }
  // The last, partial panel: one weight row at a time.
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      __m256 a = _mm256_setzero_ps();
      Tile<1, 1>(x + i * k, k, wp + j * k, k, k8, &a);
      float s = HorizontalSum(a);
      for (int64_t t = k8; t < k; ++t) s += x[i * k + t] * wp[j * k + t];
      y[i * ldy + n0 + j] = s + (bias ? bias[n0 + j] : 0.0f);
    }
  }
}

}  // namespace

bool SmallGemmAvailable() { return g_enabled.load(std::memory_order_relaxed) && CpuHasAvx2Fma(); }

void SetSmallGemmEnabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

void SmallGemm(const float* x, int64_t m, int64_t k, const float* w, const float* bias, int64_t n_begin, int64_t n_end,
               float* y, int64_t ldy) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kSmallGemmBlock) {
    Panel(x, m, k, w, bias, n0, std::min(kSmallGemmBlock, n_end - n0), y, ldy);
  }
}

}  // namespace skillpack
