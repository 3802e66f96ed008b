// Stand-alone timing of SmallGemm over 1.1B linears (not committed).
#include <immintrin.h>
#include <sys/mman.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#include "core/small_gemm.h"
using namespace skillpack;
using Clock = std::chrono::steady_clock;

struct Mat {
  int64_t n, k;
  float* w;
};

std::atomic<int> g_phase{0};
struct Barrier {
  std::atomic<int> count{0};
  std::atomic<int> gen{0};
  int n;
  void wait() {
    int g = gen.load();
    if (count.fetch_add(1) + 1 == n) {
      count = 0;
      gen.fetch_add(1);
    } else {
      while (gen.load() == g) _mm_pause();
    }
  }
};

__attribute__((target("avx512f"))) void PeakBody(double* out) {
  __m512 a[24];
  for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-7f);
  const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-8f);
  const int64_t iters = 20000000;
  auto t0 = Clock::now();
  __m512 a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5], a6 = a[6], a7 = a[7], a8 = a[8], a9 = a[9],
         a10 = a[10], a11 = a[11];
  for (int64_t it = 0; it < iters * 2; ++it) {
    __asm__ volatile(
        "vfmadd231ps %[b], %[c], %[a0]\n vfmadd231ps %[b], %[c], %[a1]\n vfmadd231ps %[b], %[c], %[a2]\n vfmadd231ps "
        "%[b], %[c], %[a3]\n"
        "vfmadd231ps %[b], %[c], %[a4]\n vfmadd231ps %[b], %[c], %[a5]\n vfmadd231ps %[b], %[c], %[a6]\n vfmadd231ps "
        "%[b], %[c], %[a7]\n"
        "vfmadd231ps %[b], %[c], %[a8]\n vfmadd231ps %[b], %[c], %[a9]\n vfmadd231ps %[b], %[c], %[a10]\n vfmadd231ps "
        "%[b], %[c], %[a11]\n"
        : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6),
          [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
        : [b] "v"(b), [c] "v"(c));
  }
  a[0] = _mm512_add_ps(
      a0,
      _mm512_add_ps(
          a1,
          _mm512_add_ps(
              a2,
              _mm512_add_ps(
                  a3,
                  _mm512_add_ps(
                      a4, _mm512_add_ps(
                              a5, _mm512_add_ps(
                                      a6, _mm512_add_ps(
                                              a7, _mm512_add_ps(a8, _mm512_add_ps(a9, _mm512_add_ps(a10, a11)))))))))));
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 24; ++i) sink += _mm512_reduce_add_ps(a[i]);
  if (sink == 12345) std::puts("x");
  *out = iters * 24.0 * 32 / s / 1e9;
}
double FmaPeak(int threads) {
  auto body = PeakBody;
  std::vector<double> r(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back(body, &r[t]);
  for (auto& t : ts) t.join();
  double sum = 0;
  for (double v : r) sum += v;
  return sum;
}

int main(int argc, char** argv) {
  int m_list[] = {1, 12, 16};
  const int threads = 2;
  const bool hot = argc > 1 && std::strcmp(argv[1], "hot") == 0;
  std::vector<Mat> mats;
  bool huge_flag = false;
  auto add = [&](int64_t n, int64_t k) {
    size_t bytes = (n * k * 4 + (2 << 20) - 1) / (2 << 20) * (2 << 20);
    Mat mm{n, k, static_cast<float*>(aligned_alloc(2 << 20, bytes))};
    if (huge_flag && madvise(mm.w, bytes, MADV_HUGEPAGE) != 0) perror("madvise");
    for (int64_t i = 0; i < n * k; ++i) mm.w[i] = (i % 97) * 0.001f - 0.05f;
    mats.push_back(mm);
  };
  if (hot) {  // fits L2 per thread: each thread's half 24 rows x 2048 = 192 KB
    for (int l = 0; l < 2000; ++l) {
      if (l == 0) add(240, 1024);
    }
  } else {
    for (int l = 0; l < 22; ++l) {
      add(2048, 2048);
      add(256, 2048);
      add(256, 2048);
      add(2048, 2048);
      add(5632, 2048);
      add(5632, 2048);
      add(2048, 5632);
    }
    add(32000, 2048);
    huge_flag = true;
    for (int l = 0; l < 22; ++l) {
      add(2048, 2048);
      add(256, 2048);
      add(256, 2048);
      add(2048, 2048);
      add(5632, 2048);
      add(5632, 2048);
      add(2048, 5632);
    }
    add(32000, 2048);
  }
  {
    FILE* f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    while (fgets(line, 256, f))
      if (strstr(line, "AnonHuge")) fputs(line, stdout);
    fclose(f);
  }
  const size_t half_mats = mats.size() / 2;
  double flops1 = 0;
  for (size_t i = 0; i < half_mats; ++i) flops1 += 2.0 * mats[i].n * mats[i].k;
  const int reps = hot ? 2000 : 1;
  const int64_t ldx = SmallGemmRowStride(5632);
  std::vector<float> x(16 * ldx, 0.01f), y(16 * 32000 + 64);
  std::printf("isa %s walk %s peak %.1f GFLOP/s (2 threads)\n", SmallGemmIsaName(SmallGemmActiveIsa()),
              SmallGemmWalkName(SmallGemmActiveWalk()), FmaPeak(threads));
  Barrier bar;
  bar.n = threads;
  for (int round = 0; round < 5; ++round) {
    for (int m : m_list)
      for (int hp = 0; hp < 2; ++hp) {
        std::vector<double> sec(threads);
        auto body = [&](int t) {
          bar.wait();
          auto t0 = Clock::now();
          for (int r = 0; r < reps; ++r)
            for (size_t mi = hp * half_mats; mi < (hp + 1) * half_mats; ++mi) {
              auto& mm = mats[mi];
              const int64_t half = (mm.n / 2 + 23) / 24 * 24;
              const int64_t b = t == 0 ? 0 : half, e = t == 0 ? half : mm.n;
              SmallGemm(x.data(), m, mm.k, ldx, mm.w, nullptr, b, e, y.data(), 32000);
              if (!hot) bar.wait();
            }
          sec[t] = std::chrono::duration<double>(Clock::now() - t0).count();
        };
        std::thread t1(body, 1);
        body(0);
        t1.join();
        const double s = std::max(sec[0], sec[1]);
        std::printf("%s round %d m %2d  %.2f ms  %.1f GFLOP/s  %.1f GB/s\n", hp ? "2M" : "4K", round, m,
                    s * 1e3 / (hot ? reps : 1), flops1 * m * reps / s / 1e9, flops1 / 2 * 4 * reps / s / 1e9);
      }
  }
}
