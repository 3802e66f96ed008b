// Linear layers for a few rows at once (batched decode: 2 to 8 sequences),
// y = x · wᵀ + b, on the CPU, at the memory bound: each weight row is read
// from memory once for all rows of x, and every element is used by all of them
// in registers. BLAS GEMMs are built for large M and reach a fraction of that
// at M = 8 (bench/README.md, model_bench). No libtorch here: raw float32
// pointers, row-major; core/model.cc wraps it for tensors and threads.
#ifndef SKILLPACK_CORE_SMALL_GEMM_H_
#define SKILLPACK_CORE_SMALL_GEMM_H_

#include <cstdint>

namespace skillpack {

// Rows of x the kernel is meant for; more is a job for a BLAS GEMM (at 16 rows
// OpenBLAS was 1.3x faster on 1.1B shapes, bench/README.md).
inline constexpr int64_t kSmallGemmMaxRows = 8;
// Output columns (weight rows) handled together; split work in multiples of it.
inline constexpr int64_t kSmallGemmBlock = 12;

// Whether this CPU runs the kernel (AVX2 and FMA) and it is enabled
// (SetSmallGemmEnabled; on by default).
bool SmallGemmAvailable();
// Turns the kernel off (true) or back on: benchmarks compare it with BLAS in one run.
void SetSmallGemmEnabled(bool enabled);

// For every row i < m of x and every output column j in [n_begin, n_end):
//   y[i * ldy + j] = sum_k x[i * k + kk] * w[j * k + kk] (+ bias[j] when bias is not null).
// x is [m, k] and w [n, k], both contiguous row-major float32. m in [1, kSmallGemmMaxRows].
// REQUIRES: SmallGemmAvailable().
void SmallGemm(const float* x, int64_t m, int64_t k, const float* w, const float* bias, int64_t n_begin, int64_t n_end,
               float* y, int64_t ldy);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SMALL_GEMM_H_
