// Stand-alone: would bfloat16 arithmetic (AVX512_BF16's VDPBF16PS, two
// products per lane per instruction) bring 16-row linears within 1.3x of a
// one-row pass on the TinyLlama-1.1B shapes, where float32 FMAs cannot on this
// 2-core machine (bench/README.md, "Where 16 rows lose the FMA peak")? The
// weights stay float32 in memory (what the one-row pass streams); each block of
// 32 is rounded to bfloat16 as it is loaded (VCVTNE2PS2BF16) and x is rounded
// once, so the products are bfloat16 and the sums float32: oneDNN's
// "fpmath_mode bf16", not the model's float32 maths. Per round, on the same
// weights: one row and 16 rows through SmallGemm (float32, the product's
// kernel), 16 rows through the bfloat16 tile below, 2 threads splitting every
// matrix's rows as the model does; plus the bfloat16 outputs' error against
// float32 on one matrix.
// Build (repository root): g++ -O3 -std=c++17 -I. bf16_math_pass.cc
// core/small_gemm.cc -o bf16_math_pass -lpthread
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/small_gemm.h"

using namespace skillpack;
using Clock = std::chrono::steady_clock;

namespace {

struct Mat {
  int64_t n, k;
  float* w;
};

struct Barrier {
  std::atomic<int> count{0};
  std::atomic<int> gen{0};
  int n = 2;
  void wait() {
    const int g = gen.load();
    if (count.fetch_add(1) + 1 == n) {
      count = 0;
      gen.fetch_add(1);
    } else {
      while (gen.load() == g) _mm_pause();
    }
  }
};

constexpr int kRows = 8;   // rows of x per tile (two tiles for 16 rows)
constexpr int kCols = 3;   // weight rows per tile
constexpr int kStep = 32;  // k per VDPBF16PS

// x rows [m, k] float32 -> bfloat16 pairs packed [k / 32][m][32] (k a multiple
// of 32).
__attribute__((target("avx512f,avx512bf16"))) void PackX(const float* x, int64_t m, int64_t k, int64_t ldx,
                                                         __m512bh* out) {
  for (int64_t s = 0; s < k / kStep; ++s) {
    for (int64_t i = 0; i < m; ++i) {
      const float* p = x + i * ldx + s * kStep;
      out[s * m + i] = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
    }
  }
}

// y[i][j] = Σ x[i] · w[j] for 8 rows (xb: one tile's packed rows, stride m per
// step) and weight rows [j0, j0 + 3).
__attribute__((target("avx512f,avx512bf16"))) void Tile(const __m512bh* xb, int64_t m, const float* w, int64_t k,
                                                        int64_t j0, float* y, int64_t ldy) {
  __m512 acc[kRows][kCols];
  for (auto& r : acc) {
    for (__m512& a : r) a = _mm512_setzero_ps();
  }
  const float* wr[kCols];
  for (int c = 0; c < kCols; ++c) wr[c] = w + (j0 + c) * k;
  for (int64_t s = 0; s < k / kStep; ++s) {
    __m512bh wb[kCols];
    for (int c = 0; c < kCols; ++c) {
      const float* p = wr[c] + s * kStep;
      wb[c] = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
    }
    for (int i = 0; i < kRows; ++i) {
      const __m512bh xv = xb[s * m + i];
      for (int c = 0; c < kCols; ++c) acc[i][c] = _mm512_dpbf16_ps(acc[i][c], xv, wb[c]);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int c = 0; c < kCols; ++c) y[i * ldy + j0 + c] = _mm512_reduce_add_ps(acc[i][c]);
  }
}

// 16 rows (two tiles of 8 over the same 3 weight rows, the second from L1) for
// weight rows [b, e) (a multiple of 3 apart).
void Bf16Rows16(const __m512bh* xb, const float* w, int64_t k, int64_t b, int64_t e, float* y, int64_t ldy) {
  for (int64_t j = b; j < e; j += kCols) {
    Tile(xb, 16, w, k, j, y, ldy);
    Tile(xb + kRows, 16, w, k, j, y + kRows * ldy, ldy);
  }
}

__attribute__((target("avx512f"))) void PeakBody(double* out) {
  const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-8f);
  __m512 a0 = _mm512_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
         a10 = a0, a11 = a0;
  const int64_t iters = 40000000;
  const auto t0 = Clock::now();
  for (int64_t it = 0; it < iters; ++it) {
    __asm__ volatile(
        "vfmadd231ps %[b], %[c], %[a0]\n vfmadd231ps %[b], %[c], %[a1]\n "
        "vfmadd231ps %[b], %[c], %[a2]\n"
        "vfmadd231ps %[b], %[c], %[a3]\n vfmadd231ps %[b], %[c], %[a4]\n "
        "vfmadd231ps %[b], %[c], %[a5]\n"
        "vfmadd231ps %[b], %[c], %[a6]\n vfmadd231ps %[b], %[c], %[a7]\n "
        "vfmadd231ps %[b], %[c], %[a8]\n"
        "vfmadd231ps %[b], %[c], %[a9]\n vfmadd231ps %[b], %[c], %[a10]\n "
        "vfmadd231ps %[b], %[c], %[a11]\n"
        : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6),
          [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
        : [b] "v"(b), [c] "v"(c));
  }
  *out = iters * 12.0 * 32 / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) void DpPeakBody(double* out) {
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  __m512 a0 = _mm512_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
         a10 = a0, a11 = a0;
  const int64_t iters = 40000000;
  const auto t0 = Clock::now();
  for (int64_t it = 0; it < iters; ++it) {
    __asm__ volatile(
        "vdpbf16ps %[b], %[b], %[a0]\n vdpbf16ps %[b], %[b], %[a1]\n vdpbf16ps "
        "%[b], %[b], %[a2]\n"
        "vdpbf16ps %[b], %[b], %[a3]\n vdpbf16ps %[b], %[b], %[a4]\n vdpbf16ps "
        "%[b], %[b], %[a5]\n"
        "vdpbf16ps %[b], %[b], %[a6]\n vdpbf16ps %[b], %[b], %[a7]\n vdpbf16ps "
        "%[b], %[b], %[a8]\n"
        "vdpbf16ps %[b], %[b], %[a9]\n vdpbf16ps %[b], %[b], %[a10]\n "
        "vdpbf16ps %[b], %[b], %[a11]\n"
        : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6),
          [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
        : [b] "v"(b));
  }
  *out = iters * 12.0 * 64 / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
}

template <typename F>
double OnTwoThreads(F body) {
  std::vector<double> r(2);
  std::thread t([&] { body(&r[1]); });
  body(&r[0]);
  t.join();
  return r[0] + r[1];
}

}  // namespace

int main(int argc, char** argv) {
  // "hot": one 240 x 2048 matrix (each thread's half, 480 KB, stays in its L2)
  // passed 400 times: the kernels' arithmetic rate with no memory traffic.
  const bool hot = argc > 1 && std::strcmp(argv[1], "hot") == 0;
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::puts("no AVX512_BF16 on this CPU");
    return 1;
  }
  std::vector<Mat> mats;
  auto add = [&](int64_t n, int64_t k) {
    Mat mm{n, k, static_cast<float*>(aligned_alloc(64, n * k * 4))};
    for (int64_t i = 0; i < n * k; ++i) mm.w[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-4f - 0.05f;
    mats.push_back(mm);
  };
  for (int l = 0; l < (hot ? 0 : 22); ++l) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{2048, 2048},
                        {256, 2048},
                        {256, 2048},
                        {2048, 2048},
                        {5632, 2048},
                        {5632, 2048},
                        {2048, 5632}}) {
      add(n, k);
    }
  }
  if (hot) {
    add(240, 2048);
  } else {
    add(32000, 2048);
  }
  const int reps = hot ? 400 : 1;
  double flops1 = 0;
  for (const Mat& mm : mats) flops1 += 2.0 * mm.n * mm.k;
  const int64_t ldx = SmallGemmRowStride(5632), ldy = 32000 + 64;
  std::vector<float> x(16 * ldx), y(16 * ldy), y2(16 * ldy);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i));
  // Packed x, 64-byte aligned (a std::vector of __m512bh would not be).
  auto* xb2048 = static_cast<__m512bh*>(aligned_alloc(64, 2048 / kStep * 16 * 64));
  auto* xb5632 = static_cast<__m512bh*>(aligned_alloc(64, 5632 / kStep * 16 * 64));
  std::printf(
      "float32 FMA peak %.1f GFLOP/s, bfloat16 dot-product peak %.1f "
      "GFLOP/s (2 threads)\n",
      OnTwoThreads(PeakBody), OnTwoThreads(DpPeakBody));
  // Error of the bfloat16 products on the first q_proj, against float32.
  {
    const Mat& q = mats[0];
    SmallGemm(x.data(), 16, q.k, ldx, q.w, nullptr, 0, q.n, y.data(), ldy);
    PackX(x.data(), 16, q.k, ldx, xb2048);
    Bf16Rows16(xb2048, q.w, q.k, 0, q.n - q.n % kCols, y2.data(), ldy);
    double num = 0, den = 0, worst = 0;
    for (int64_t i = 0; i < 16; ++i) {
      for (int64_t j = 0; j < q.n - q.n % kCols; ++j) {
        const double d = y2[i * ldy + j] - y[i * ldy + j];
        num += d * d;
        den += static_cast<double>(y[i * ldy + j]) * y[i * ldy + j];
        worst = std::max(worst, std::fabs(d));
      }
    }
    std::printf(
        "q_proj, 16 rows: bfloat16 vs float32 relative error "
        "(Frobenius) %.2e, largest |diff| %.2e\n",
        std::sqrt(num / den), worst);
  }
  Barrier bar;
  enum Variant { kF32x1, kF32x16, kBf16x16 };
  const char* names[] = {"float32 1 row ", "float32 16 rows", "bf16 16 rows  "};
  for (int round = 0; round < 5; ++round) {
    double ms[3];
    for (int v : {kF32x1, kF32x16, kBf16x16}) {
      std::vector<double> sec(2);
      auto body = [&](int t) {
        bar.wait();
        const auto t0 = Clock::now();
        for (int r = 0; r < reps; ++r)
          for (const Mat& mm : mats) {
            // Halves of each matrix's rows, in whole tiles (24 rows), as the
            // model splits them.
            const int64_t half = (mm.n / 2 + 23) / 24 * 24;
            const int64_t b = t == 0 ? 0 : half, e = t == 0 ? half : mm.n;
            if (v == kBf16x16) {
              // Each thread packs x itself (as a kernel call would).
              __m512bh* xb = mm.k == 2048 ? xb2048 : xb5632;
              if (t == 0) PackX(x.data(), 16, mm.k, ldx, xb);
              bar.wait();
              // (Up to 2 of a half's rows past its last whole tile are left
              // out: < 0.1% of the work.)
              Bf16Rows16(xb, mm.w, mm.k, b, b + (e - b) / kCols * kCols, y2.data(), ldy);
            } else {
              SmallGemm(x.data(), v == kF32x1 ? 1 : 16, mm.k, ldx, mm.w, nullptr, b, e, y.data(), ldy);
            }
            bar.wait();
          }
        sec[t] = std::chrono::duration<double>(Clock::now() - t0).count();
      };
      std::thread t1(body, 1);
      body(0);
      t1.join();
      ms[v] = std::max(sec[0], sec[1]) * 1e3 / reps;
      const int m = v == kF32x1 ? 1 : 16;
      std::printf("round %d %s %8.1f ms  %6.1f GFLOP/s\n", round, names[v], ms[v], flops1 * m / ms[v] / 1e6);
    }
    std::printf("round %d  16 rows / 1 row: float32 %.2f, bfloat16 products %.2f\n", round, ms[kF32x16] / ms[kF32x1],
                ms[kBf16x16] / ms[kF32x1]);
  }
}
