// Stand-alone timing of t = x · vtᵀ for one group of a tiny pack set (rank 16,
// int8 codes, 8 sets' factors cycled as a step cycles them): SmallGemmI8 over
// a contiguous vt [rank, in] (sums along in, a horizontal sum per output)
// against SmallGemmAccumulateI8 over vt stored transposed [in, rank] (t from
// zero, summed as rank-wide vectors: the narrow kernel of core/small_gemm.cc).
// With the argument "avx2", both through the AVX2 kernels (SetSmallGemmIsa).
// Build: g++ -O3 -std=c++17 -I. vt_timing.cc core/small_gemm.cc -o vt_timing
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/small_gemm.h"

using namespace skillpack;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "avx2" && !SetSmallGemmIsa(SmallGemmIsa::kAvx2)) return 1;
  const int64_t rank = 16, sets = 8, reps = 20000;
  std::mt19937 rng(1);
  for (int64_t k : {256, 704}) {
    std::vector<std::vector<int8_t>> vt(sets, std::vector<int8_t>(rank * k)), vtt(sets, std::vector<int8_t>(rank * k));
    for (int64_t s = 0; s < sets; ++s) {
      for (int64_t r = 0; r < rank; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          vt[s][r * k + c] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
          vtt[s][c * rank + r] = vt[s][r * k + c];
        }
      }
    }
    std::vector<float> x(16 * k), t(16 * rank), t2(16 * rank);
    for (float& v : x) v = static_cast<float>(rng() % 1000) * 1e-3f;
    for (int64_t m : {1, 2, 4}) {
      std::vector<float*> rows(m);
      for (int64_t i = 0; i < m; ++i) rows[i] = t2.data() + i * rank;
      double contiguous = 1e9, transposed = 1e9;
      for (int round = 0; round < 5; ++round) {
        auto t0 = Clock::now();
        for (int64_t r = 0; r < reps; ++r) {
          SmallGemmI8(x.data(), m, k, k, vt[r % sets].data(), nullptr, 0, rank, t.data(), rank);
        }
        contiguous = std::min(contiguous, std::chrono::duration<double>(Clock::now() - t0).count() / reps * 1e6);
        t0 = Clock::now();
        for (int64_t r = 0; r < reps; ++r) {
          std::fill_n(t2.data(), m * rank, 0.0f);
          SmallGemmAccumulateI8(x.data(), m, k, k, vtt[r % sets].data(), rank, rows.data());
        }
        transposed = std::min(transposed, std::chrono::duration<double>(Clock::now() - t0).count() / reps * 1e6);
      }
      double diff = 0;
      for (int64_t e = 0; e < m * rank; ++e) diff = std::max(diff, static_cast<double>(std::abs(t[e] - t2[e])));
      std::printf(
          "k=%lld m=%lld: SmallGemmI8 (vt contiguous) %.3f us, "
          "SmallGemmAccumulateI8 (vt transposed) %.3f us, %.2fx; max "
          "|diff| %.2g\n",
          static_cast<long long>(k), static_cast<long long>(m), contiguous, transposed, contiguous / transposed, diff);
    }
  }
}
