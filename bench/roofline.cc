#include "bench/roofline.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

// Runs fn(t) on threads 0..n-1 at once; returns the wall seconds of the slowest.
template <typename Fn>
double RunOnThreads(int n, Fn fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) {
      }
      fn(t);
    });
  }
  while (ready.load() < n) {
  }
  const auto t0 = Clock::now();
  go.store(true);
  for (std::thread& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One a = a·x + y on every chain, spelled out with constant indices so that
// the chains live in registers (a loop over an array index left them in
// memory: a load-FMA-store chain per step, a quarter of the peak).
template <size_t... I>
__attribute__((target("avx512f"))) inline void FmaStep512(__m512* a, __m512 x, __m512 y, std::index_sequence<I...>) {
  ((a[I] = _mm512_fmadd_ps(a[I], x, y)), ...);
}
template <size_t... I>
__attribute__((target("avx2,fma"))) inline void FmaStep256(__m256* a, __m256 x, __m256 y, std::index_sequence<I...>) {
  ((a[I] = _mm256_fmadd_ps(a[I], x, y)), ...);
}

// 24 independent chains of a = a·x + y: 24 zmm accumulators (more than the
// FMA latency × units in flight on any current core). Returns a value the
// compiler cannot drop.
__attribute__((target("avx512f"))) float FmaLoop512(int64_t iters) {
  __m512 a[24];
  for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  __m512 x = _mm512_set1_ps(0.999f);
  const __m512 y = _mm512_set1_ps(1e-4f);
  for (int64_t t = 0; t < iters; ++t) {
    FmaStep512(a, x, y, std::make_index_sequence<24>());
    __asm__("" : "+v"(x));
  }
  __m512 s = a[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, a[i]);
  alignas(64) float v[16];
  _mm512_store_ps(v, s);
  return v[0] + v[15];
}

__attribute__((target("avx2,fma"))) float FmaLoop256(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  __m256 x = _mm256_set1_ps(0.999f);
  const __m256 y = _mm256_set1_ps(1e-4f);
  for (int64_t t = 0; t < iters; ++t) {
    FmaStep256(a, x, y, std::make_index_sequence<12>());
    __asm__("" : "+x"(x));
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  alignas(32) float v[8];
  _mm256_store_ps(v, s);
  return v[0] + v[7];
}

float FmaLoopScalar(int64_t iters) {
  float a[8];
  for (int i = 0; i < 8; ++i) a[i] = 0.001f * static_cast<float>(i);
  float x = 0.999f;
  for (int64_t t = 0; t < iters; ++t) {
    for (float& v : a) v = v * x + 1e-4f;
    __asm__("" : "+x"(x));
  }
  return a[0] + a[7];
}

}  // namespace

FmaPeak MeasureFmaPeak(int threads, int reps) {
  FmaPeak out;
  int64_t fmas_per_iter = 8;  // lanes × chains
  float (*loop)(int64_t) = FmaLoopScalar;
  out.isa = "scalar";
  if (__builtin_cpu_supports("avx512f")) {
    loop = FmaLoop512;
    fmas_per_iter = 16 * 24;
    out.isa = "avx512";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    loop = FmaLoop256;
    fmas_per_iter = 8 * 12;
    out.isa = "avx2";
  }
  // ~0.2 s per run at 50 GFLOP/s per thread.
  const int64_t iters = int64_t{5'000'000'000} / fmas_per_iter;
  std::vector<float> sink(threads);
  for (int r = 0; r < reps; ++r) {
    const double s = RunOnThreads(threads, [&](int t) { sink[t] = loop(iters); });
    out.flops_per_s = std::max(out.flops_per_s, 2.0 * fmas_per_iter * iters * threads / s);
  }
  volatile float keep = sink.empty() ? 0.0f : sink[0];
  (void)keep;
  return out;
}

double MeasureReadBandwidth(size_t bytes, int threads, int reps) {
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(words, 1);
  std::vector<uint64_t> sums(threads);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double s = RunOnThreads(threads, [&](int t) {
      const size_t begin = words * t / threads, end = words * (t + 1) / threads;
      // Four independent sums so that the adds do not limit the loads.
      uint64_t a = 0, b = 0, c = 0, d = 0;
      size_t i = begin;
      for (; i + 4 <= end; i += 4) {
        a += buf[i];
        b += buf[i + 1];
        c += buf[i + 2];
        d += buf[i + 3];
      }
      for (; i < end; ++i) a += buf[i];
      sums[t] = a + b + c + d;
    });
    best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / s);
  }
  volatile uint64_t keep = sums.empty() ? 0 : sums[0];
  (void)keep;
  return best;
}

}  // namespace skillpack
