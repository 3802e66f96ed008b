#include "core/small_gemm.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>
#include <vector>

#include "core/horizontal_sum.h"

namespace skillpack {
namespace {

// F16C (CPUID leaf 1, ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool HasF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
}

SmallGemmIsa DetectIsa() {
  if (__builtin_cpu_supports("avx512f")) return SmallGemmIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c()) {
    return SmallGemmIsa::kAvx2;
  }
  return SmallGemmIsa::kOff;
}

const SmallGemmIsa g_best = DetectIsa();
std::atomic<SmallGemmIsa> g_active{g_best};

// AMD family 0x19 (Zen 3 and Zen 4; measured on Zen 4, with both kernels)
// looks ahead into L2; every other CPU walks plain k-blocks.
SmallGemmWalk DetectWalk() {
  return __builtin_cpu_is("amdfam19h") ? SmallGemmWalk::kL2Lookahead : SmallGemmWalk::kKBlocks;
}

const SmallGemmWalk g_best_walk = DetectWalk();
std::atomic<SmallGemmWalk> g_walk{g_best_walk};

// Weights are float32, IEEE binary16 (`Half`, the bits as uint16_t) or int8
// codes: a binary16 weight or a code is widened to float32 as it is loaded
// (F16C; sign extension and conversion), and every sum is the float32 one over
// the widened weights. The loaders below are the only places they differ.
using Half = uint16_t;

__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
__attribute__((target("avx2,fma,f16c"))) inline float ToFloat(float v) { return v; }
__attribute__((target("avx2,fma,f16c"))) inline float ToFloat(Half v) { return _cvtsh_ss(v); }
__attribute__((target("avx2,fma,f16c"))) inline float ToFloat(int8_t v) { return static_cast<float>(v); }

// ---- AVX2 + FMA: 12 weight rows per panel, tiles of 4 rows of x by 3 weight rows.

constexpr int64_t kAvx2Panel = 12;

// acc[i][j] += x row i · w row j over columns [0, k8) (k8 a multiple of 8), for MR rows of x (stride ldx) and NR rows
// of w (stride ldw). The MR·NR accumulators stay in registers (MR·NR + MR <= 16 ymm); each weight vector is loaded once
// per step and used by all MR rows. With l2_ahead > 0 each step also prefetches, into L2, the same columns of the rows
// l2_ahead below the tile's (the next panel's; the kL2Lookahead walk, small_gemm.h).
template <int MR, int NR, typename W>
__attribute__((target("avx2,fma,f16c"))) void Tile(const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t k8,
                                                   __m256* acc /* [MR][NR] */, int64_t l2_ahead) {
  __m256 a[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) a[i][j] = acc[i * NR + j];
  }
  for (int64_t kk = 0; kk < k8; kk += 8) {
    if (l2_ahead > 0) {
      for (int j = 0; j < NR; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w + (j + l2_ahead) * ldw + kk), _MM_HINT_T1);
      }
    }
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + kk);
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = Load8(w + j * ldw + kk);
      for (int i = 0; i < MR; ++i) a[i][j] = _mm256_fmadd_ps(xv[i], wv, a[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i * NR + j] = a[i][j];
  }
}

// Rows [m0, m0 + mr) of x (stride ldx) against panel rows [0, 12) over columns [0, k8):
// whole tiles for every mr: 4 rows of x by 3 weight rows, 3 by 4, 2 by 6 and 1
// by 4. acc holds the block's accumulators, [mr][12] in tile order. One row of
// x in one tile of all 12 weight rows streamed 12 rows side by side, which at
// k = 2048 (rows 8 KB apart, in the same L1 sets) is more than an 8-way L1
// keeps: on a Zen 3 (AVX2 only) a one-row pass over the 1.1B linears took
// 1.25-1.5x as long as in tiles of 4 rows, 3x with the weights in L2
// (bench/README.md, "One row on the AVX2 kernel").
template <typename W>
__attribute__((target("avx2,fma,f16c"))) void PanelTiles(const float* x, int64_t ldx, int64_t k, int64_t mr, const W* w,
                                                         int64_t k8, __m256* acc, int64_t l2_ahead) {
  switch (mr) {
    case 4:
      for (int64_t j = 0; j < 12; j += 3) Tile<4, 3>(x, ldx, w + j * k, k, k8, acc + j * 4, l2_ahead);
      break;
    case 3:
      for (int64_t j = 0; j < 12; j += 4) Tile<3, 4>(x, ldx, w + j * k, k, k8, acc + j * 3, l2_ahead);
      break;
    case 2:
      for (int64_t j = 0; j < 12; j += 6) Tile<2, 6>(x, ldx, w + j * k, k, k8, acc + j * 2, l2_ahead);
      break;
    default:
      for (int64_t j = 0; j < 12; j += 4) Tile<1, 4>(x, ldx, w + j * k, k, k8, acc + j, l2_ahead);
      break;
  }
}

// mr (1 to 4) rows of x against nr (3 or 1) weight rows: Tile's accumulators [mr][nr].
template <typename W>
void PartialTile(const float* x, int64_t ldx, int64_t mr, int64_t nr, const W* w, int64_t k, int64_t k8, __m256* acc) {
  static constexpr decltype(&Tile<1, 1, W>) kTiles[2][4] = {
      {&Tile<1, 1, W>, &Tile<2, 1, W>, &Tile<3, 1, W>, &Tile<4, 1, W>},
      {&Tile<1, 3, W>, &Tile<2, 3, W>, &Tile<3, 3, W>, &Tile<4, 3, W>}};
  kTiles[nr == 3][mr - 1](x, ldx, w, k, k8, acc, 0);
}

// The accumulator of (row i, panel row j) in PanelTiles' layout for `mr` rows
// (one row's tiles of 4 leave its 12 in panel order, as one tile of 12 would).
int64_t AccIndex(int64_t mr, int64_t i, int64_t j) {
  const int64_t nr = 12 / mr;
  return (j / nr) * nr * mr + i * nr + j % nr;
}

// Every row of x against weight rows [n0, n0 + rows), rows <= 12: the
// panel's weights are read from memory once, by the first group of 4 rows of
// x, in one pass over all of k (each weight row streams as one sequential run,
// which the hardware prefetcher follows); the other groups find them in L2.
// Blocking k so that slices of x and of the panel stay in L1 (256 columns,
// 28 KB) measured 20-30% slower at m = 4..16 on 1.1B shapes. A whole panel's
// tiles look l2_ahead rows ahead into L2 (Tile; 0: not).
template <typename W>
__attribute__((target("avx2,fma,f16c"))) void Panel(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w,
                                                    const float* bias, int64_t n0, int64_t rows, float* y, int64_t ldy,
                                                    int64_t l2_ahead) {
  const W* wp = w + n0 * k;
  const int64_t k8 = k / 8 * 8;  // the vector part; the rest is added in scalar code
  if (rows == kAvx2Panel) {
    alignas(32) __m256 acc[kSmallGemmMaxRows * kAvx2Panel];
    for (auto& a : acc) a = _mm256_setzero_ps();
    for (int64_t m0 = 0; m0 < m; m0 += 4) {
      PanelTiles(x + m0 * ldx, ldx, k, std::min<int64_t>(4, m - m0), wp, k8, acc + m0 * kAvx2Panel, l2_ahead);
    }
    for (int64_t m0 = 0; m0 < m; m0 += 4) {
      const int64_t mr = std::min<int64_t>(4, m - m0);
      for (int64_t i = 0; i < mr; ++i) {
        for (int64_t j = 0; j < kAvx2Panel; ++j) {
          float s = HorizontalSum(acc[m0 * kAvx2Panel + AccIndex(mr, i, j)]);
          for (int64_t t = k8; t < k; ++t) s += x[(m0 + i) * ldx + t] * ToFloat(wp[j * k + t]);
          y[(m0 + i) * ldy + n0 + j] = s + (bias ? bias[n0 + j] : 0.0f);
        }
      }
    }
    return;
  }
  // The last, partial panel: tiles of up to 4 rows of x by 3 weight rows, then
  // single weight rows. (One row at a time, each a chain of dependent FMAs, a
  // rank-16 x · Vᵀ at one row took 0.82 µs, float16, k = 704, hot: bench/README.md.)
  const int64_t whole = rows / 3 * 3;
  for (int64_t m0 = 0; m0 < m; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, m - m0);
    const float* xm = x + m0 * ldx;
    for (int64_t j0 = 0; j0 < rows;) {
      const int64_t nr = j0 < whole ? 3 : 1;
      __m256 acc[12];
      for (auto& a : acc) a = _mm256_setzero_ps();
      PartialTile(xm, ldx, mr, nr, wp + j0 * k, k, k8, acc);
      for (int64_t i = 0; i < mr; ++i) {
        for (int64_t j = 0; j < nr; ++j) {
          float s = HorizontalSum(acc[i * nr + j]);
          for (int64_t t = k8; t < k; ++t) s += xm[i * ldx + t] * ToFloat(wp[(j0 + j) * k + t]);
          y[(m0 + i) * ldy + n0 + j0 + j] = s + (bias ? bias[n0 + j0 + j] : 0.0f);
        }
      }
      j0 += nr;
    }
  }
}

// y_rows[i][j] += x row i · column j of w [k, n] (row-major) for MR rows,
// columns [c, c + 8·NB): MR·NB accumulators in registers, NB weight vectors,
// 1 broadcast x, over all of k (a k-block of the caller's).
template <int MR, int NB, typename W>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline void AccumulateTile256(const float* x, int64_t ldx,
                                                                                      int64_t k, const W* w, int64_t n,
                                                                                      int64_t c, float* const* y) {
  __m256 acc[MR][NB];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_loadu_ps(y[i] + c + 8 * j);
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    __m256 wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = Load8(w + kk * n + c + 8 * j);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_broadcast_ss(x + i * ldx + kk);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NB; ++j) _mm256_storeu_ps(y[i] + c + 8 * j, acc[i][j]);
  }
}

// MR rows: tiles of 16 columns, then 8, then the last n % 8 in scalar code.
template <int MR, typename W>
__attribute__((target("avx2,fma,f16c"))) void AccumulateTile(const float* x, int64_t ldx, int64_t k, const W* w,
                                                             int64_t n, float* const* y) {
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) AccumulateTile256<MR, 2>(x, ldx, k, w, n, c, y);
  for (; c + 8 <= n; c += 8) AccumulateTile256<MR, 1>(x, ldx, k, w, n, c, y);
  for (; c < n; ++c) {
    for (int i = 0; i < MR; ++i) {
      float s = y[i][c];
      for (int64_t kk = 0; kk < k; ++kk) s += x[i * ldx + kk] * ToFloat(w[kk * n + c]);
      y[i][c] = s;
    }
  }
}

// ---- Narrow outputs (SmallGemmAccumulate with n up to kNarrowVectors
// vectors, below): t = x · vtᵀ for a low-rank factor vt stored transposed,
// [in, rank], whose n is the rank. One pass over all of k (w is one
// sequential stream of k·n weights, nothing to block for), the row's n
// outputs in NB vectors, and the k steps dealt to KC interleaved sets of
// accumulators, so that at least 4 FMAs are independent: one row by one
// vector would wait on every FMA's latency (4 cycles), as the k-blocked
// tiles (AccumulateInKBlocks) do at n = 16, y loaded and stored every 8 steps.
// The last vector's lanes past n read the next weight row's first values
// (their sums are never stored) wherever 16 (or 8) loads stay inside w; the
// last rows of w go through a zero-padded copy. The sets are added at the
// end, so the sums' order differs from the k-blocked tiles'.
constexpr int KChains(int accumulators) { return accumulators >= 4 ? 1 : (accumulators == 1 ? 4 : 2); }

// The first k steps whose last vector, read whole, ends inside w [k, n]:
// rows kk with kk·n + last + width <= k·n.
inline int64_t WholeLoadRows(int64_t k, int64_t n, int64_t last, int64_t width) {
  const int64_t lim = k * n - last - width;
  return lim < 0 ? 0 : std::min(k, lim / n + 1);
}

template <typename W>
__attribute__((target("avx2,fma,f16c"))) inline __m256 LoadFirst8(const W* p, int64_t n) {
  W tail[8] = {};
  std::copy_n(p, n, tail);
  return Load8(tail);
}

template <int MR, int NB, typename W>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline void NarrowStep256(const float* x, int64_t ldx,
                                                                                  int64_t kk, const W* wrow, bool whole,
                                                                                  int64_t tail, __m256 (&acc)[MR][NB]) {
  __m256 wv[NB];
  for (int j = 0; j + 1 < NB; ++j) wv[j] = Load8(wrow + 8 * j);
  wv[NB - 1] = whole ? Load8(wrow + 8 * (NB - 1)) : LoadFirst8(wrow + 8 * (NB - 1), tail);
  for (int i = 0; i < MR; ++i) {
    const __m256 xv = _mm256_broadcast_ss(x + i * ldx + kk);
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
  }
}

// y_rows[i][0, n) += x row i · w rows [k0, k1) for MR rows, n in
// (8·(NB − 1), 8·NB], reading whole vectors (KC sets of accumulators) or the
// last one through a padded copy (one set: the last rows of w). Two separate
// functions, so that the copy's memcpy leaves the whole-vector loop's
// accumulators in registers.
template <int MR, int NB, int KC, bool kWhole, typename W>
__attribute__((target("avx2,fma,f16c"), noinline)) void NarrowRows256(const float* x, int64_t ldx, int64_t k0,
                                                                      int64_t k1, const W* w, int64_t n,
                                                                      float* const* y) {
  const int64_t tail = n - 8 * (NB - 1);
  __m256 acc[KC][MR][NB];
  for (auto& set : acc) {
    for (auto& row : set) {
      for (__m256& a : row) a = _mm256_setzero_ps();
    }
  }
  int64_t kk = k0;
  for (; kk + KC <= k1; kk += KC) {
    // Unrolled, so that every acc[q] is a constant index and stays in registers.
#pragma GCC unroll 4
    for (int q = 0; q < KC; ++q) NarrowStep256<MR, NB>(x, ldx, kk + q, w + (kk + q) * n, kWhole, tail, acc[q]);
  }
  for (; kk < k1; ++kk) {
    NarrowStep256<MR, NB>(x, ldx, kk, w + kk * n, kWhole, tail, acc[0]);
  }
  // The sums, unrolled too: an index into acc that is not a constant keeps it in memory.
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      __m256 s = acc[0][i][j];
      for (int q = 1; q < KC; ++q) s = _mm256_add_ps(s, acc[q][i][j]);
      float* yp = y[i] + 8 * j;
      if (j + 1 < NB || tail == 8) {
        _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), s));
      } else {
        alignas(32) float sums[8];
        _mm256_store_ps(sums, s);
        for (int64_t c = 0; c < tail; ++c) yp[c] += sums[c];
      }
    }
  }
}

// y_rows[i][0, n) += x row i · w [k, n] for MR rows, n in (8·(NB − 1), 8·NB].
template <int MR, int NB, typename W>
__attribute__((target("avx2,fma,f16c"))) void AccumulateNarrow256(const float* x, int64_t ldx, int64_t k, const W* w,
                                                                  int64_t n, float* const* y) {
  const int64_t whole = WholeLoadRows(k, n, 8 * (NB - 1), 8);
  if (whole > 0) NarrowRows256<MR, NB, KChains(MR * NB), true>(x, ldx, 0, whole, w, n, y);
  if (whole < k) NarrowRows256<MR, NB, 1, false>(x, ldx, whole, k, w, n, y);
}

// Rows of w per pass over y (SmallGemmAccumulate's k-blocks, below).
constexpr int64_t kAccumulateKBlock = 8;

// y_rows += x · w for every row of x: k in blocks of kAccumulateKBlock rows
// of w, each block streamed once along all n columns (by every group of up to
// 4 rows of x, the later ones from L2) and added into y; Rows::Run<MR> adds
// one block for MR rows (the AVX2 or the AVX-512 kernel).
// Taking all k for one tile of columns at a time instead, the tile's k rows
// (32 for a rank-32 factor) are as many interleaved streams 2n bytes apart,
// which the hardware prefetchers do not follow: from memory, one thread, a
// rank-32 float16 factor with 5632 columns took 72 µs against 21 µs in blocks
// of 8 rows (5.0 against 17.5 GB/s); y's rows, 22 KB, stay in L1/L2 between
// blocks.
template <typename Rows, typename W>
void AccumulateInKBlocks(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w, int64_t n, float* const* y) {
  for (int64_t k0 = 0; k0 < k; k0 += kAccumulateKBlock) {
    const int64_t kb = std::min(kAccumulateKBlock, k - k0);
    const W* wk = w + k0 * n;
    for (int64_t i = 0; i < m; i += 4) {
      const float* xi = x + i * ldx + k0;
      switch (std::min<int64_t>(4, m - i)) {
        case 4:
          Rows::template Run<4>(xi, ldx, kb, wk, n, y + i);
          break;
        case 3:
          Rows::template Run<3>(xi, ldx, kb, wk, n, y + i);
          break;
        case 2:
          Rows::template Run<2>(xi, ldx, kb, wk, n, y + i);
          break;
        default:
          Rows::template Run<1>(xi, ldx, kb, wk, n, y + i);
          break;
      }
    }
  }
}

struct Avx2AccumulateRows {
  template <int MR, typename W>
  static void Run(const float* x, int64_t ldx, int64_t k, const W* w, int64_t n, float* const* y) {
    AccumulateTile<MR>(x, ldx, k, w, n, y);
  }
};

// ---- AVX-512: tiles of up to 8 rows of x by NR weight rows in registers
// (MR·NR accumulators + NR weight vectors + 1 vector of x <= 32): each weight
// vector is loaded once per step and used by all MR rows, and each x vector
// once and used by all NR weight rows.
//
// x is first packed, per group of up to 8 rows, as [k / 16][MR][16] (zeros
// past k): a step's MR vectors of x are one 64-byte-aligned run at constant
// offsets from one pointer, so the loop needs no register per row of x. Panels
// of 24 weight rows, in blocks of 512 columns: the block's slice of packed x
// (8 rows, 16 KB) stays in L1 while the panel's tiles stream their weights
// past it; without the blocking 8 rows of x (64 KB at k = 2048) come from L2
// on every step and a batch-8 step took twice a batch-4 one (bench/README.md,
// model_bench; on the Zen 5 of that time). On a Zen 4 the next panel is also
// brought into L2 while a panel computes, and one row walks whole rows: the
// walks, small_gemm.h. 9 to 16 rows: TwoGroupPanel512 below.

constexpr int64_t kAvx512Panel = 24;

__attribute__((target("avx512f"))) inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
// (The masked conversions with every lane set: see HorizontalSum512, core/horizontal_sum.h.)
__attribute__((target("avx512f"))) inline __m512 Load16(const Half* p) {
  return _mm512_mask_cvtph_ps(_mm512_setzero_ps(), 0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
__attribute__((target("avx512f"))) inline __m512 Load16(const int8_t* p) {
  const __m512i wide = _mm512_maskz_cvtepi8_epi32(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_maskz_cvtepi32_ps(0xFFFF, wide);
}
// The first n < 16 weights at p, zeros after them.
__attribute__((target("avx512f"))) inline __m512 LoadFirst(const float* p, int64_t n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}
__attribute__((target("avx512f"))) inline __m512 LoadFirst(const Half* p, int64_t n) {
  // A masked 16-bit load needs AVX512BW; n < 16 values go through a zeroed copy instead.
  alignas(32) Half tail[16] = {};
  std::copy_n(p, n, tail);
  return _mm512_mask_cvtph_ps(_mm512_setzero_ps(), 0xFFFF, _mm256_load_si256(reinterpret_cast<const __m256i*>(tail)));
}
__attribute__((target("avx512f"))) inline __m512 LoadFirst(const int8_t* p, int64_t n) {
  alignas(16) int8_t tail[16] = {};
  std::copy_n(p, n, tail);
  return Load16(tail);
}
constexpr int64_t kAvx512KBlock = 512;

// acc[i * NR + j] += x row i · w row j over columns [k0, k1) (k0 a multiple
// of 16), for i < MR and j < NR; xp is the group's packed x, w rows are k
// apart. A block that ends at k not on a multiple of 16 ends with a masked
// load of the weights (packed x is zero there), so there is no scalar tail.
// Always inlined: GCC called it out of line from TwoGroupPanel512, once per
// tile and k-block, and a 16-row pass over the 1.1B linears took 37.1–37.5 ms
// instead of 31.0–31.8 (a stand-alone timing; bench/README.md). Without
// kPrefetch it issues no software prefetch (one row of x along whole rows).
// With l2_ahead > 0 it also prefetches, into L2, the same columns of the rows
// l2_ahead below the tile's (the next panel's, while this one computes; the
// kL2Lookahead walk, small_gemm.h).
template <int MR, int NR, typename W, bool kPrefetch = true>
__attribute__((target("avx512f"), always_inline)) inline void Block512(const float* xp, const W* w, int64_t k,
                                                                       int64_t k0, int64_t k1, __m512* acc,
                                                                       int64_t l2_ahead = 0) {
  __m512 a[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) a[i][j] = acc[i * NR + j];
  }
  int64_t kk = k0;
  const float* xs = xp + k0 * MR;  // step kk / 16 starts at xp + kk * MR
  for (; kk + 16 <= k1; kk += 16, xs += 16 * MR) {
    // The next tile's weights at the same columns, one tile ahead of use: the
    // hardware prefetchers lose track of rows read in 4 KB pieces (measured:
    // bench/README.md, model_bench).
    if constexpr (kPrefetch) {
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(w + (j + NR) * k + kk), _MM_HINT_T0);
      if (l2_ahead > 0) {
        for (int j = 0; j < NR; ++j) {
          _mm_prefetch(reinterpret_cast<const char*>(w + (j + l2_ahead) * k + kk), _MM_HINT_T1);
        }
      }
    }
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = Load16(w + j * k + kk);
    for (int i = 0; i < MR; ++i) {
      __m512 xv = _mm512_load_ps(xs + 16 * i);
      // Keeps xv in a register: folded into each FMA as a memory operand it
      // would be read NR times.
      __asm__("" : "+v"(xv));
      for (int j = 0; j < NR; ++j) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
    }
  }
  if (kk < k1) {
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = LoadFirst(w + j * k + kk, k1 - kk);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_load_ps(xs + 16 * i);
      for (int j = 0; j < NR; ++j) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i * NR + j] = a[i][j];
  }
}

// Writes y for MR rows of x and weight rows [n0, n1) from their accumulators:
// tiles of NR rows on [n0, whole), of QR rows on [whole, quads), then single
// rows, the tile starting at row j0 at acc[(j0 - n0) * MR ...], [MR][its
// width]; each output the sum of its vector's lanes, plus the bias.
template <int MR, int NR, int QR>
__attribute__((target("avx512f"))) void WriteSums(const __m512* acc, const float* bias, int64_t n0, int64_t whole,
                                                  int64_t quads, int64_t n1, float* y, int64_t ldy) {
  for (int64_t j0 = n0; j0 < n1;) {
    const int64_t nr = j0 < whole ? NR : j0 < quads ? QR : 1;
    for (int64_t i = 0; i < MR; ++i) {
      for (int64_t j = 0; j < nr; ++j) {
        const float s = HorizontalSum512(acc[(j0 - n0) * MR + i * nr + j]);
        y[i * ldy + j0 + j] = s + (bias ? bias[j0 + j] : 0.0f);
      }
    }
    j0 += nr;
  }
}

// The rows ahead a tile of `width` rows at row j looks into L2 (Block512's
// l2_ahead): `ahead`, or 0 where those rows would pass the caller's last
// weight row n_end (another thread's rows, or past the matrix).
inline int64_t L2Ahead(int64_t j, int64_t width, int64_t ahead, int64_t n_end) {
  return ahead > 0 && j + ahead + width <= n_end ? ahead : 0;
}

// Panel512's tiles (rows [n0, whole) of NR, [whole, quads) of QR, the rest
// single) over columns [0, k) in blocks of `block`, looking `ahead` rows
// ahead into L2 (0: not) up to weight row n_end.
template <int MR, int NR, int QR, typename W, bool kPrefetch>
__attribute__((target("avx512f"))) void PanelBlocks512(const float* xp, int64_t k, const W* w, int64_t n0,
                                                       int64_t whole, int64_t quads, int64_t n1, int64_t block,
                                                       int64_t ahead, int64_t n_end, __m512* acc) {
  for (int64_t k0 = 0; k0 < k; k0 += block) {
    const int64_t k1 = std::min(k, k0 + block);
    for (int64_t j = n0; j < whole; j += NR) {
      Block512<MR, NR, W, kPrefetch>(xp, w + j * k, k, k0, k1, acc + (j - n0) * MR, L2Ahead(j, NR, ahead, n_end));
    }
    for (int64_t j = whole; j < quads; j += QR) {
      Block512<MR, QR, W, kPrefetch>(xp, w + j * k, k, k0, k1, acc + (j - n0) * MR, L2Ahead(j, QR, ahead, n_end));
    }
    for (int64_t j = quads; j < n1; ++j) {
      Block512<MR, 1, W, kPrefetch>(xp, w + j * k, k, k0, k1, acc + (j - n0) * MR, L2Ahead(j, 1, ahead, n_end));
    }
  }
}

// MR rows of x (packed) against weight rows [n0, n1), n1 - n0 <= kAvx512Panel,
// of the caller's rows up to n_end: tiles of NR weight rows, then (NR > 4) of
// 4, then single rows. A single row is one chain of dependent FMAs; the 4 rows
// a rank-16 factor leaves after its 12-row tile went one by one before (a
// one-row x · Vᵀ, float16, k = 704, hot: 0.57 -> 0.54 µs; the rest is the
// float16 conversions). The walk (small_gemm.h): k-blocks of kAvx512KBlock
// columns with the next tile prefetched; under kL2Lookahead also the next
// panel into L2, and one row of x along whole rows without software prefetch.
// On a Zen 4 one row along whole rows took 0.87x the time of k-blocks (the
// 1.1B linears, model_bench); with the prefetch kept it gained nothing (0.98x,
// a stand-alone timing): its lines only competed with the hardware
// prefetchers' (bench/README.md).
template <int MR, int NR, typename W>
__attribute__((target("avx512f"))) void Panel512(const float* xp, int64_t k, const W* w, const float* bias, int64_t n0,
                                                 int64_t n1, int64_t n_end, float* y, int64_t ldy, SmallGemmWalk walk) {
  constexpr int QR = NR > 4 ? 4 : 1;
  alignas(64) __m512 acc[MR * kAvx512Panel];
  for (int64_t t = 0; t < MR * (n1 - n0); ++t) acc[t] = _mm512_setzero_ps();
  const int64_t whole = n0 + (n1 - n0) / NR * NR;        // rows [n0, whole) in tiles of NR,
  const int64_t quads = whole + (n1 - whole) / QR * QR;  // [whole, quads) of QR, the rest one by one
  const bool lookahead = walk == SmallGemmWalk::kL2Lookahead;
  if constexpr (MR == 1) {
    if (lookahead) {  // whole rows, no software prefetch
      PanelBlocks512<MR, NR, QR, W, false>(xp, k, w, n0, whole, quads, n1, std::max<int64_t>(k, 1), 0, n_end, acc);
      return WriteSums<MR, NR, QR>(acc, bias, n0, whole, quads, n1, y, ldy);
    }
  }
  PanelBlocks512<MR, NR, QR, W, true>(xp, k, w, n0, whole, quads, n1, kAvx512KBlock, lookahead ? kAvx512Panel : 0,
                                      n_end, acc);
  WriteSums<MR, NR, QR>(acc, bias, n0, whole, quads, n1, y, ldy);
}

// 9 to 16 rows: two groups, the first of 8 rows (packed at xa) and the second
// of MB (at xb), against weight rows [n0, n1), n1 - n0 <= kAvx512TwoGroupPanel.
// Each tile's k-block serves both groups back to back, the second while the
// weights are still in L1, so the weights stream from memory once at the pace
// of 16 rows of FMAs. Group by group (the whole panel for the first, then
// again from L2 for the second) the first group waited on memory and the
// second on FMAs. A stand-alone timing of the 1.1B linears, 16 rows, both
// ways in two runs: 30.6–31.6 ms against 35.9–36.5 (1.55–1.60× a one-row pass
// against 1.85×; bench/README.md). The shorter k-blocks keep both groups'
// x (16 KB) in L1 beside the weights; the longer panels measured better than
// 24 rows.
constexpr int64_t kAvx512TwoGroupPanel = 48;
constexpr int64_t kAvx512TwoGroupKBlock = 256;

template <int MB, typename W>
__attribute__((target("avx512f"))) void TwoGroupPanel512(const float* xa, const float* xb, int64_t k, const W* w,
                                                         const float* bias, int64_t n0, int64_t n1, int64_t n_end,
                                                         float* y, int64_t ldy, SmallGemmWalk walk) {
  constexpr int NR = 3;
  alignas(64) __m512 acc_a[8 * kAvx512TwoGroupPanel];
  alignas(64) __m512 acc_b[MB * kAvx512TwoGroupPanel];
  for (int64_t t = 0; t < 8 * (n1 - n0); ++t) acc_a[t] = _mm512_setzero_ps();
  for (int64_t t = 0; t < MB * (n1 - n0); ++t) acc_b[t] = _mm512_setzero_ps();
  const int64_t whole = n0 + (n1 - n0) / NR * NR;
  const int64_t ahead = walk == SmallGemmWalk::kL2Lookahead ? kAvx512TwoGroupPanel : 0;
  for (int64_t k0 = 0; k0 < k; k0 += kAvx512TwoGroupKBlock) {
    const int64_t k1 = std::min(k, k0 + kAvx512TwoGroupKBlock);
    for (int64_t j = n0; j < whole; j += NR) {
      const int64_t l2 = L2Ahead(j, NR, ahead, n_end);
      Block512<8, NR, W>(xa, w + j * k, k, k0, k1, acc_a + (j - n0) * 8, l2);
      Block512<MB, NR, W>(xb, w + j * k, k, k0, k1, acc_b + (j - n0) * MB, l2);
    }
    for (int64_t j = whole; j < n1; ++j) {
      const int64_t l2 = L2Ahead(j, 1, ahead, n_end);
      Block512<8, 1, W>(xa, w + j * k, k, k0, k1, acc_a + (j - n0) * 8, l2);
      Block512<MB, 1, W>(xb, w + j * k, k, k0, k1, acc_b + (j - n0) * MB, l2);
    }
  }
  WriteSums<8, NR, 1>(acc_a, bias, n0, whole, whole, n1, y, ldy);
  WriteSums<MB, NR, 1>(acc_b, bias, n0, whole, whole, n1, y + 8 * ldy, ldy);
}

// Rows [0, mr) of x (stride ldx), mr <= 8, as [k16 / 16][mr][16] into xp (k16 = k rounded up to 16).
void PackRows(const float* x, int64_t mr, int64_t ldx, int64_t k, float* xp) {
  const int64_t k16 = (k + 15) / 16 * 16;
  for (int64_t s = 0; s < k16; s += 16) {
    const int64_t n = std::min<int64_t>(16, k - s);
    for (int64_t i = 0; i < mr; ++i) {
      float* dst = xp + s * mr + i * 16;
      std::copy_n(x + i * ldx + s, n, dst);
      std::fill(dst + n, dst + 16, 0.0f);
    }
  }
}

template <typename W>
__attribute__((target("avx512f"))) void Rows512(const float* xp, int64_t mr, int64_t k, const W* w, const float* bias,
                                                int64_t n0, int64_t n1, int64_t n_end, float* y, int64_t ldy,
                                                SmallGemmWalk walk) {
  switch (mr) {
    case 1:
      return Panel512<1, 12, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 2:
      return Panel512<2, 8, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 3:
      return Panel512<3, 6, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 4:
      return Panel512<4, 6, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 5:
      return Panel512<5, 4, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 6:
      return Panel512<6, 4, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    case 7:
      return Panel512<7, 3, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
    default:
      return Panel512<8, 3, W>(xp, k, w, bias, n0, n1, n_end, y, ldy, walk);
  }
}

// Rows 8 + mb of x, mb in [1, 8]: the first 8 packed at xp, the rest at xp + 8 * k16.
template <typename W, int... I>
constexpr auto TwoGroupPanels(std::integer_sequence<int, I...>) {
  return std::array{&TwoGroupPanel512<I + 1, W>...};  // [mb - 1]
}
template <typename W>
void TwoGroups512(const float* xp, int64_t k16, int64_t mb, int64_t k, const W* w, const float* bias, int64_t n0,
                  int64_t n1, int64_t n_end, float* y, int64_t ldy, SmallGemmWalk walk) {
  static constexpr auto kPanels = TwoGroupPanels<W>(std::make_integer_sequence<int, 8>{});
  kPanels[mb - 1](xp, xp + 8 * k16, k, w, bias, n0, n1, n_end, y, ldy, walk);
}

template <typename W>
void SmallGemm512(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w, const float* bias, int64_t n_begin,
                  int64_t n_end, float* y, int64_t ldy) {
  // Packed x of every group of 8 rows, one after another; 64-byte aligned.
  const int64_t k16 = (k + 15) / 16 * 16;
  struct alignas(64) Vec16 {
    float v[16];
  };
  // Grown, never shrunk: PackRows writes all of it that a call reads, and a
  // resize up after a smaller call would zero-fill what it then overwrites
  // (decode alternates k = hidden and k = intermediate every layer).
  thread_local std::vector<Vec16> packed;
  const size_t vecs = static_cast<size_t>(m * k16 / 16);
  if (packed.size() < vecs) packed.resize(vecs);
  float* xp = reinterpret_cast<float*>(packed.data());  // no member access: data() is null when k = 0
  for (int64_t i0 = 0; i0 < m; i0 += 8) PackRows(x + i0 * ldx, std::min<int64_t>(8, m - i0), ldx, k, xp + i0 * k16);
  const SmallGemmWalk walk = SmallGemmActiveWalk();
  if (m > 8) {
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512TwoGroupPanel) {
      TwoGroups512(xp, k16, m - 8, k, w, bias, n0, std::min(n0 + kAvx512TwoGroupPanel, n_end), n_end, y, ldy, walk);
    }
    return;
  }
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512Panel) {
    const int64_t n1 = std::min(n0 + kAvx512Panel, n_end);
    Rows512(xp, m, k, w, bias, n0, n1, n_end, y, ldy, walk);
  }
}

// ---- AVX-512 over group-quantised int8 codes (core/quant_rows.h's layout:
// codes[g][r][jj], a scale and a shift per row and group). Each code is
// widened and multiplied by its row's scale as it is loaded, so one tile's
// sums run across every group in registers; the shifts' part, Σ_g scale ·
// shift · (the group's sum of x), is added per panel afterwards. Summing each
// group apart instead (SmallGemmI8 over a group's columns, the group's sums
// scaled into y) costs a horizontal sum per row of x, output and group: on a
// 1.1B lm_head that made 16 rows of x 1.9× the float16 kernel's time
// (bench/README.md).

// acc[i * NR + j] += Σ_{g in [g0, g1)} scale[g][j] · (x row i · codes row j of group g), for MR rows of packed x (xp:
// all the groups' columns, [k / 16][MR][16]) and NR weight rows; c points at codes[0][row 0 of the tile][0] and s at
// scales[0][row 0 of the tile]; groups are rows · gs codes (rows scales) apart.
template <int MR, int NR>
__attribute__((target("avx512f"), always_inline)) inline void GroupedBlock512(const float* xp, const int8_t* c,
                                                                              const float* s, int64_t rows, int64_t gs,
                                                                              int64_t g0, int64_t g1, __m512* acc) {
  __m512 a[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) a[i][j] = acc[i * NR + j];
  }
  for (int64_t g = g0; g < g1; ++g) {
    const int8_t* cg = c + g * rows * gs;
    __m512 vs[NR];
    for (int j = 0; j < NR; ++j) vs[j] = _mm512_set1_ps(s[g * rows + j]);
    const float* xs = xp + g * gs * MR;
    for (int64_t kk = 0; kk < gs; kk += 16, xs += 16 * MR) {
      // The next tile's codes (the rows after these in the group), one tile ahead.
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(cg + (j + NR) * gs + kk), _MM_HINT_T0);
      __m512 wv[NR];
      for (int j = 0; j < NR; ++j) wv[j] = _mm512_mul_ps(Load16(cg + j * gs + kk), vs[j]);
      for (int i = 0; i < MR; ++i) {
        __m512 xv = _mm512_load_ps(xs + 16 * i);
        __asm__("" : "+v"(xv));  // as in Block512
        for (int j = 0; j < NR; ++j) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i * NR + j] = a[i][j];
  }
}

// y[i * ldy + j] += Σ_g scales[g][j] · shifts[g][j] · sums[i][g] for MR rows and n outputs (scales and shifts point
// at the first one's, groups rows apart): the shifts' part of each output, 16 outputs per vector.
template <int MR>
__attribute__((target("avx512f"))) void AddShiftTerms(const float* sums, int64_t groups, const float* scales,
                                                      const float* shifts, int64_t rows, int64_t n, float* y,
                                                      int64_t ldy) {
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const __mmask16 mask = static_cast<__mmask16>((1u << std::min<int64_t>(16, n - j0)) - 1);
    __m512 t[MR];
    for (int i = 0; i < MR; ++i) t[i] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 sz = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, scales + g * rows + j0),
                                      _mm512_maskz_loadu_ps(mask, shifts + g * rows + j0));
      for (int i = 0; i < MR; ++i) t[i] = _mm512_fmadd_ps(_mm512_set1_ps(sums[i * groups + g]), sz, t[i]);
    }
    for (int i = 0; i < MR; ++i) {
      float* yi = y + i * ldy + j0;
      _mm512_mask_storeu_ps(yi, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, yi), t[i]));
    }
  }
}

// Up to 8 rows (packed at xp) against output rows [n0, n1), n1 - n0 <= kAvx512Panel, written to y[i * ldy + j - n0]:
// Panel512's tiles and k-blocks (whole groups of about kAvx512KBlock columns), then the shifts' part.
template <int MR, int NR>
__attribute__((target("avx512f"))) void GroupedPanel512(const float* xp, const float* sums, int64_t groups, int64_t gs,
                                                        const int8_t* codes, const float* scales, const float* shifts,
                                                        int64_t rows, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  constexpr int QR = NR > 4 ? 4 : 1;
  alignas(64) __m512 acc[MR * kAvx512Panel];
  for (int64_t t = 0; t < MR * (n1 - n0); ++t) acc[t] = _mm512_setzero_ps();
  const int64_t whole = n0 + (n1 - n0) / NR * NR;
  const int64_t quads = whole + (n1 - whole) / QR * QR;
  const int64_t per_block = std::max<int64_t>(1, kAvx512KBlock / gs);
  for (int64_t g0 = 0; g0 < groups; g0 += per_block) {
    const int64_t g1 = std::min(groups, g0 + per_block);
    for (int64_t j = n0; j < whole; j += NR) {
      GroupedBlock512<MR, NR>(xp, codes + j * gs, scales + j, rows, gs, g0, g1, acc + (j - n0) * MR);
    }
    for (int64_t j = whole; j < quads; j += QR) {
      GroupedBlock512<MR, QR>(xp, codes + j * gs, scales + j, rows, gs, g0, g1, acc + (j - n0) * MR);
    }
    for (int64_t j = quads; j < n1; ++j) {
      GroupedBlock512<MR, 1>(xp, codes + j * gs, scales + j, rows, gs, g0, g1, acc + (j - n0) * MR);
    }
  }
  WriteSums<MR, NR, QR>(acc, nullptr, 0, whole - n0, quads - n0, n1 - n0, y, ldy);
  AddShiftTerms<MR>(sums, groups, scales + n0, shifts + n0, rows, n1 - n0, y, ldy);
}

// 9 to 16 rows, as TwoGroupPanel512 (the first 8 packed at xa, the other MB at xb, each tile's block of groups
// serving both while its codes are in L1), written as GroupedPanel512 writes.
template <int MB>
__attribute__((target("avx512f"))) void GroupedTwoGroupPanel512(const float* xa, const float* xb, const float* sums,
                                                                int64_t groups, int64_t gs, const int8_t* codes,
                                                                const float* scales, const float* shifts, int64_t rows,
                                                                int64_t n0, int64_t n1, float* y, int64_t ldy) {
  constexpr int NR = 3;
  alignas(64) __m512 acc_a[8 * kAvx512TwoGroupPanel];
  alignas(64) __m512 acc_b[MB * kAvx512TwoGroupPanel];
  for (int64_t t = 0; t < 8 * (n1 - n0); ++t) acc_a[t] = _mm512_setzero_ps();
  for (int64_t t = 0; t < MB * (n1 - n0); ++t) acc_b[t] = _mm512_setzero_ps();
  const int64_t whole = n0 + (n1 - n0) / NR * NR;
  const int64_t per_block = std::max<int64_t>(1, kAvx512TwoGroupKBlock / gs);
  for (int64_t g0 = 0; g0 < groups; g0 += per_block) {
    const int64_t g1 = std::min(groups, g0 + per_block);
    for (int64_t j = n0; j < whole; j += NR) {
      GroupedBlock512<8, NR>(xa, codes + j * gs, scales + j, rows, gs, g0, g1, acc_a + (j - n0) * 8);
      GroupedBlock512<MB, NR>(xb, codes + j * gs, scales + j, rows, gs, g0, g1, acc_b + (j - n0) * MB);
    }
    for (int64_t j = whole; j < n1; ++j) {
      GroupedBlock512<8, 1>(xa, codes + j * gs, scales + j, rows, gs, g0, g1, acc_a + (j - n0) * 8);
      GroupedBlock512<MB, 1>(xb, codes + j * gs, scales + j, rows, gs, g0, g1, acc_b + (j - n0) * MB);
    }
  }
  WriteSums<8, NR, 1>(acc_a, nullptr, 0, whole - n0, whole - n0, n1 - n0, y, ldy);
  WriteSums<MB, NR, 1>(acc_b, nullptr, 0, whole - n0, whole - n0, n1 - n0, y + 8 * ldy, ldy);
  AddShiftTerms<8>(sums, groups, scales + n0, shifts + n0, rows, n1 - n0, y, ldy);
  AddShiftTerms<MB>(sums + 8 * groups, groups, scales + n0, shifts + n0, rows, n1 - n0, y + 8 * ldy, ldy);
}

template <int... I>
constexpr auto GroupedTwoGroupPanels(std::integer_sequence<int, I...>) {
  return std::array{&GroupedTwoGroupPanel512<I + 1>...};  // [mb - 1]
}

void SmallGemmGrouped512(const float* x, const float* sums, int64_t m, int64_t groups, int64_t gs, int64_t ldx,
                         const int8_t* codes, const float* scales, const float* shifts, int64_t rows, int64_t n_begin,
                         int64_t n_end, float* y, int64_t ldy) {
  const int64_t k = groups * gs;  // a multiple of 16
  struct alignas(64) Vec16 {
    float v[16];
  };
  thread_local std::vector<Vec16> packed;  // grown, never shrunk (as SmallGemm512's)
  const size_t vecs = static_cast<size_t>(m * k / 16);
  if (packed.size() < vecs) packed.resize(vecs);
  float* xp = reinterpret_cast<float*>(packed.data());
  for (int64_t i0 = 0; i0 < m; i0 += 8) PackRows(x + i0 * ldx, std::min<int64_t>(8, m - i0), ldx, k, xp + i0 * k);
  if (m > 8) {
    static constexpr auto kPanels = GroupedTwoGroupPanels(std::make_integer_sequence<int, 8>{});
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512TwoGroupPanel) {
      const int64_t n1 = std::min(n0 + kAvx512TwoGroupPanel, n_end);
      kPanels[m - 9](xp, xp + 8 * k, sums, groups, gs, codes, scales, shifts, rows, n0, n1, y + (n0 - n_begin), ldy);
    }
    return;
  }
  using PanelFn = void (*)(const float*, const float*, int64_t, int64_t, const int8_t*, const float*, const float*,
                           int64_t, int64_t, int64_t, float*, int64_t);
  // Rows512's tile shapes.
  static constexpr PanelFn kPanels[8] = {&GroupedPanel512<1, 12>, &GroupedPanel512<2, 8>, &GroupedPanel512<3, 6>,
                                         &GroupedPanel512<4, 6>,  &GroupedPanel512<5, 4>, &GroupedPanel512<6, 4>,
                                         &GroupedPanel512<7, 3>,  &GroupedPanel512<8, 3>};
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512Panel) {
    const int64_t n1 = std::min(n0 + kAvx512Panel, n_end);
    kPanels[m - 1](xp, sums, groups, gs, codes, scales, shifts, rows, n0, n1, y + (n0 - n_begin), ldy);
  }
}

// y_rows[i][j] += x row i · column j of w [k, n] (row-major) for MR rows:
// tiles of MR rows by 64 columns (4·MR accumulators, 4 weight vectors, 1
// broadcast x), then by 16, then the last n % 16 columns with masked loads and
// stores of y (the weights through LoadFirst's zero-padded copy).
template <int MR, int NB, typename W>
__attribute__((target("avx512f"), always_inline)) inline void AccumulateTile512(const float* x, int64_t ldx, int64_t k,
                                                                                const W* w, int64_t n, int64_t c,
                                                                                float* const* y) {
  __m512 acc[MR][NB];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_loadu_ps(y[i] + c + 16 * j);
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    __m512 wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = Load16(w + kk * n + c + 16 * j);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_set1_ps(x[i * ldx + kk]);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NB; ++j) _mm512_storeu_ps(y[i] + c + 16 * j, acc[i][j]);
  }
}

template <int MR, typename W>
__attribute__((target("avx512f"))) void AccumulateRows512(const float* x, int64_t ldx, int64_t k, const W* w, int64_t n,
                                                          float* const* y) {
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) AccumulateTile512<MR, 4>(x, ldx, k, w, n, c, y);
  for (; c + 16 <= n; c += 16) AccumulateTile512<MR, 1>(x, ldx, k, w, n, c, y);
  if (c == n) return;
  const int64_t tail = n - c;
  const __mmask16 mask = static_cast<__mmask16>((1u << tail) - 1);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_maskz_loadu_ps(mask, y[i] + c);
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m512 wv = LoadFirst(w + kk * n + c, tail);
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + kk]), wv, acc[i]);
  }
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y[i] + c, mask, acc[i]);
}

struct Avx512AccumulateRows {
  template <int MR, typename W>
  static void Run(const float* x, int64_t ldx, int64_t k, const W* w, int64_t n, float* const* y) {
    AccumulateRows512<MR>(x, ldx, k, w, n, y);
  }
};

template <int MR, int NB, typename W>
__attribute__((target("avx512f"), always_inline)) inline void NarrowStep512(const float* x, int64_t ldx, int64_t kk,
                                                                            const W* wrow, bool whole, int64_t tail,
                                                                            __m512 (&acc)[MR][NB]) {
  __m512 wv[NB];
  for (int j = 0; j + 1 < NB; ++j) wv[j] = Load16(wrow + 16 * j);
  wv[NB - 1] = whole ? Load16(wrow + 16 * (NB - 1)) : LoadFirst(wrow + 16 * (NB - 1), tail);
  for (int i = 0; i < MR; ++i) {
    const __m512 xv = _mm512_set1_ps(x[i * ldx + kk]);
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
  }
}

// NarrowRows256 with 16 lanes.
template <int MR, int NB, int KC, bool kWhole, typename W>
__attribute__((target("avx512f"), noinline)) void NarrowRows512(const float* x, int64_t ldx, int64_t k0, int64_t k1,
                                                                const W* w, int64_t n, float* const* y) {
  const int64_t tail = n - 16 * (NB - 1);
  __m512 acc[KC][MR][NB];
  for (auto& set : acc) {
    for (auto& row : set) {
      for (__m512& a : row) a = _mm512_setzero_ps();
    }
  }
  int64_t kk = k0;
  for (; kk + KC <= k1; kk += KC) {
    // Unrolled, so that every acc[q] is a constant index and stays in registers.
#pragma GCC unroll 4
    for (int q = 0; q < KC; ++q) NarrowStep512<MR, NB>(x, ldx, kk + q, w + (kk + q) * n, kWhole, tail, acc[q]);
  }
  for (; kk < k1; ++kk) {
    NarrowStep512<MR, NB>(x, ldx, kk, w + kk * n, kWhole, tail, acc[0]);
  }
  const __mmask16 last = static_cast<__mmask16>((1u << tail) - 1);
  // The sums, unrolled too: an index into acc that is not a constant keeps it in memory.
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      __m512 s = acc[0][i][j];
      for (int q = 1; q < KC; ++q) s = _mm512_add_ps(s, acc[q][i][j]);
      float* yp = y[i] + 16 * j;
      const __mmask16 mask = j + 1 < NB ? static_cast<__mmask16>(0xFFFF) : last;
      _mm512_mask_storeu_ps(yp, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, yp), s));
    }
  }
}

// y_rows[i][0, n) += x row i · w [k, n] for MR rows, n in (16·(NB − 1), 16·NB]
// (AccumulateNarrow256's scheme with 16 lanes).
template <int MR, int NB, typename W>
__attribute__((target("avx512f"))) void AccumulateNarrow512(const float* x, int64_t ldx, int64_t k, const W* w,
                                                            int64_t n, float* const* y) {
  const int64_t whole = WholeLoadRows(k, n, 16 * (NB - 1), 16);
  if (whole > 0) NarrowRows512<MR, NB, KChains(MR * NB), true>(x, ldx, 0, whole, w, n, y);
  if (whole < k) NarrowRows512<MR, NB, 1, false>(x, ldx, whole, k, w, n, y);
}

}  // namespace

const char* SmallGemmIsaName(SmallGemmIsa isa) {
  switch (isa) {
    case SmallGemmIsa::kAvx2:
      return "avx2";
    case SmallGemmIsa::kAvx512:
      return "avx512";
    case SmallGemmIsa::kOff:
      break;
  }
  return "off";
}

SmallGemmIsa SmallGemmBestIsa() { return g_best; }

SmallGemmIsa SmallGemmActiveIsa() { return g_active.load(std::memory_order_relaxed); }

bool SetSmallGemmIsa(SmallGemmIsa isa) {
  // Every CPU that runs the AVX-512 kernel runs the AVX2 one (x86-64 AVX-512F implies AVX2 and FMA).
  const bool runs =
      isa == SmallGemmIsa::kOff || isa == g_best || (isa == SmallGemmIsa::kAvx2 && g_best == SmallGemmIsa::kAvx512);
  if (runs) g_active.store(isa, std::memory_order_relaxed);
  return runs;
}

const char* SmallGemmWalkName(SmallGemmWalk walk) {
  return walk == SmallGemmWalk::kL2Lookahead ? "l2_lookahead" : "k_blocks";
}

SmallGemmWalk SmallGemmBestWalk() { return g_best_walk; }

SmallGemmWalk SmallGemmActiveWalk() { return g_walk.load(std::memory_order_relaxed); }

void SetSmallGemmWalk(SmallGemmWalk walk) { g_walk.store(walk, std::memory_order_relaxed); }

bool SmallGemmAvailable() { return SmallGemmActiveIsa() != SmallGemmIsa::kOff; }

void SetSmallGemmEnabled(bool enabled) {
  g_active.store(enabled ? g_best : SmallGemmIsa::kOff, std::memory_order_relaxed);
}

int64_t SmallGemmRowStride(int64_t k) { return k % 256 == 0 ? k + 16 : k; }

namespace {

template <typename W>
void Dispatch(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w, const float* bias, int64_t n_begin,
              int64_t n_end, float* y, int64_t ldy) {
  if (SmallGemmActiveIsa() == SmallGemmIsa::kAvx512) {
    SmallGemm512(x, m, k, ldx, w, bias, n_begin, n_end, y, ldy);
    return;
  }
  // Under kL2Lookahead a panel brings the next one into L2 where that is a
  // whole panel of the caller's rows.
  const bool lookahead = SmallGemmActiveWalk() == SmallGemmWalk::kL2Lookahead;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx2Panel) {
    const int64_t l2_ahead = lookahead && n0 + 2 * kAvx2Panel <= n_end ? kAvx2Panel : 0;
    Panel(x, m, k, ldx, w, bias, n0, std::min(kAvx2Panel, n_end - n0), y, ldy, l2_ahead);
  }
}

// Narrow outputs (AccumulateNarrow512 / AccumulateNarrow256): up to 4
// vectors per row; rows in groups of up to 4, each group one pass over w
// (every weight widened once per group), except on AVX2 with 3 or 4 vectors:
// groups of 2 there (at most 8 accumulators and 4 weight vectors of its 16
// registers; AVX-512 holds 16 and 4 in its 32).
constexpr int64_t kNarrowVectors = 4;

template <typename W, int V, int MR, int... NB>
constexpr auto NarrowKernels(std::integer_sequence<int, NB...>) {
  using Fn = void (*)(const float*, int64_t, int64_t, const W*, int64_t, float* const*);
  if constexpr (V == 16) {
    return std::array<Fn, sizeof...(NB)>{&AccumulateNarrow512<MR, NB + 1, W>...};
  } else {
    return std::array<Fn, sizeof...(NB)>{&AccumulateNarrow256<MR, NB + 1, W>...};
  }
}

template <typename W, int V, int... MR>
constexpr auto NarrowKernelTable(std::integer_sequence<int, MR...>) {
  return std::array{NarrowKernels<W, V, MR + 1>(std::make_integer_sequence<int, kNarrowVectors>())...};
}

// The rows of x in groups (above), each through the kernel for the group's
// size and n's count of V-lane vectors.
template <typename W, int V>
void AccumulateNarrow(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w, int64_t n, float* const* y) {
  static constexpr auto kTable = NarrowKernelTable<W, V>(std::make_integer_sequence<int, 4>());
  const int64_t vectors = (n + V - 1) / V;
  const int64_t rows = V == 8 && vectors > 2 ? 2 : 4;
  for (int64_t i = 0; i < m; i += rows) {
    kTable[std::min<int64_t>(rows, m - i) - 1][vectors - 1](x + i * ldx, ldx, k, w, n, y + i);
  }
}

template <typename W>
void DispatchAccumulate(const float* x, int64_t m, int64_t k, int64_t ldx, const W* w, int64_t n, float* const* y) {
  if (n <= 0) return;
  if (SmallGemmActiveIsa() == SmallGemmIsa::kAvx512) {
    if (n <= 16 * kNarrowVectors) {
      AccumulateNarrow<W, 16>(x, m, k, ldx, w, n, y);
    } else {
      AccumulateInKBlocks<Avx512AccumulateRows>(x, m, k, ldx, w, n, y);
    }
  } else if (n <= 8 * kNarrowVectors) {
    AccumulateNarrow<W, 8>(x, m, k, ldx, w, n, y);
  } else {
    AccumulateInKBlocks<Avx2AccumulateRows>(x, m, k, ldx, w, n, y);
  }
}

}  // namespace

void SmallGemm(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, const float* bias, int64_t n_begin,
               int64_t n_end, float* y, int64_t ldy) {
  Dispatch(x, m, k, ldx, w, bias, n_begin, n_end, y, ldy);
}

void SmallGemmF16(const float* x, int64_t m, int64_t k, int64_t ldx, const uint16_t* w, const float* bias,
                  int64_t n_begin, int64_t n_end, float* y, int64_t ldy) {
  Dispatch(x, m, k, ldx, w, bias, n_begin, n_end, y, ldy);
}

void SmallGemmI8(const float* x, int64_t m, int64_t k, int64_t ldx, const int8_t* w, const float* bias, int64_t n_begin,
                 int64_t n_end, float* y, int64_t ldy) {
  Dispatch(x, m, k, ldx, w, bias, n_begin, n_end, y, ldy);
}

bool SmallGemmGroupedI8Runs(int64_t group_size) {
  return SmallGemmActiveIsa() == SmallGemmIsa::kAvx512 && group_size > 0 && group_size % 16 == 0;
}

void SmallGemmGroupedI8(const float* x, const float* sums, int64_t m, int64_t groups, int64_t group_size, int64_t ldx,
                        const int8_t* codes, const float* scales, const float* shifts, int64_t rows, int64_t n_begin,
                        int64_t n_end, float* y, int64_t ldy) {
  SmallGemmGrouped512(x, sums, m, groups, group_size, ldx, codes, scales, shifts, rows, n_begin, n_end, y, ldy);
}

void SmallGemmAccumulate(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                         float* const* y_rows) {
  DispatchAccumulate(x, m, k, ldx, w, n, y_rows);
}

void SmallGemmAccumulateF16(const float* x, int64_t m, int64_t k, int64_t ldx, const uint16_t* w, int64_t n,
                            float* const* y_rows) {
  DispatchAccumulate(x, m, k, ldx, w, n, y_rows);
}

void SmallGemmAccumulateI8(const float* x, int64_t m, int64_t k, int64_t ldx, const int8_t* w, int64_t n,
                           float* const* y_rows) {
  DispatchAccumulate(x, m, k, ldx, w, n, y_rows);
}

}  // namespace skillpack
