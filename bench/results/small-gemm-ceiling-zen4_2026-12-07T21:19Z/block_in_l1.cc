#include <chrono>
#include <cstdio>
#include "core/small_gemm.cc"
using namespace skillpack;
using Clock = std::chrono::steady_clock;
template <int MR, int NR>
__attribute__((target("avx512f"), noinline)) double Run(int64_t kb, int64_t l2) {
  const int64_t k = kb;
  alignas(64) static float xp[16 * 4096];
  alignas(64) static float w[8 * 4096];
  for (int i = 0; i < 16 * 4096; ++i) xp[i] = 0.001f * (i % 7);
  for (int i = 0; i < 8 * 4096; ++i) w[i] = 0.001f * (i % 5);
  alignas(64) __m512 acc[64];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const int64_t reps = 400000000 / (MR * NR * kb);
  auto t0 = Clock::now();
  for (int64_t r = 0; r < reps; ++r) skillpack::Block512<MR, NR, float>(xp, w, k, 0, kb, acc, l2);
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  float sink = 0;
  for (auto& a : acc) sink += _mm512_reduce_add_ps(a);
  if (sink == 1234.5f) std::puts("");
  return reps * 2.0 * MR * NR * kb / s / 1e9;
}
int main() {
  for (int round = 0; round < 2; ++round) {
    std::printf("8x3 k256: %.1f  k512: %.1f  k1024 %.1f  (l2 pf) k256 %.1f\n", Run<8, 3>(256, 0), Run<8, 3>(512, 0),
                Run<8, 3>(1024, 0), Run<8, 3>(256, 3));
    std::printf("4x6 k256: %.1f  6x4 k256 %.1f  2x8 %.1f 1x12 %.1f\n", Run<4, 6>(256, 0), Run<6, 4>(256, 0),
                Run<2, 8>(256, 0), Run<1, 12>(256, 0));
  }
}
