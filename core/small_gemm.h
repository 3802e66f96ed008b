// Linear layers for a few rows at once (decode: 1 to 16 sequences),
// y = x · wᵀ + b, on the CPU, at the memory bound: each weight row is read
// from memory once for all rows of x, and every element is used by all of them
// in registers. BLAS GEMMs are built for large M and reach a fraction of that
// at M = 8 (bench/README.md, model_bench). No libtorch here: raw float32
// pointers, row-major; core/model.cc wraps it for tensors and threads.
//
// Two kernels, chosen at run time by what the CPU has: AVX-512 (8 rows of x by
// up to 8 weight rows in 32 registers, masked loads for the last columns; 9 to
// 16 rows as two groups that share each block of weights while it is in L1)
// and AVX2/FMA/F16C (4 rows of x by 3 weight rows). Both compute the same sums; only
// the order of the additions differs. Weights may also be IEEE binary16
// (SmallGemmF16: half the bytes to stream, each weight widened to float32 as it
// is loaded; x, the sums and y stay float32) or int8 codes (SmallGemmI8: a
// quarter of the bytes; the caller applies the codes' scales), or a pack's
// group-quantised codes with their scales (SmallGemmGroupedI8, AVX-512 only).
#ifndef SKILLPACK_CORE_SMALL_GEMM_H_
#define SKILLPACK_CORE_SMALL_GEMM_H_

#include <cstdint>

namespace skillpack {

// Rows of x the kernel serves; more is a job for a BLAS GEMM.
inline constexpr int64_t kSmallGemmMaxRows = 16;
// Output columns (weight rows) handled together; split work in multiples of it.
inline constexpr int64_t kSmallGemmBlock = 24;

enum class SmallGemmIsa {
  kOff,     // no kernel: callers use BLAS
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512F
};
const char* SmallGemmIsaName(SmallGemmIsa isa);  // "off", "avx2", "avx512"

// The best kernel this CPU runs (kOff without AVX2/FMA/F16C).
SmallGemmIsa SmallGemmBestIsa();
// The kernel SmallGemm runs now: SmallGemmBestIsa() unless changed below.
SmallGemmIsa SmallGemmActiveIsa();
// Chooses the kernel (benchmarks and tests compare them, and BLAS, in one run).
// Returns false, changing nothing, when this CPU cannot run `isa`.
bool SetSmallGemmIsa(SmallGemmIsa isa);
// How the kernels walk the weights. kKBlocks: the AVX-512 kernel takes every
// tile in blocks of 512 columns (256 for 9 to 16 rows), so that the block's
// slice of packed x stays in L1, with the next tile's weights prefetched into
// L1; the AVX2 kernel streams each panel of 12 weight rows along whole rows.
// kL2Lookahead: the same, each step also prefetching into L2 the same columns
// of the next panel's weight rows (so one panel streams in from memory while
// the one before computes), except that one row of x on the AVX-512 kernel
// goes along whole weight rows, which the hardware prefetchers follow, with no
// software prefetch. Which is faster depends on the CPU: kL2Lookahead measured
// faster on Zen 4 (AMD family 0x19 with AVX-512, both kernels; bench/README.md,
// "The next panel into L2 on Zen 4"), the walk chosen on family 0x19 (Zen 3
// too, whose AVX2 kernel was not measured with it); every other CPU keeps
// kKBlocks, which the kernels were built and measured with on Zen 5 (family
// 0x1A). Both compute the same sums in the same order.
enum class SmallGemmWalk { kKBlocks, kL2Lookahead };
const char* SmallGemmWalkName(SmallGemmWalk walk);  // "k_blocks", "l2_lookahead"
// The walk chosen for this CPU.
SmallGemmWalk SmallGemmBestWalk();
// The walk SmallGemm runs now: SmallGemmBestWalk() unless changed below.
SmallGemmWalk SmallGemmActiveWalk();
// Chooses the walk (tests run both; benchmarks compare them in one run).
void SetSmallGemmWalk(SmallGemmWalk walk);
// Whether a kernel is active (SmallGemmActiveIsa() != kOff).
bool SmallGemmAvailable();
// Off (false), or back to the best kernel (true).
void SetSmallGemmEnabled(bool enabled);

// A row stride (in floats) for x with k columns that is at least k and not a
// multiple of 1 KiB: the kernel streams up to 8 rows of x beside the weight
// rows, and rows 4 KiB apart (k = 2048, 4096, ...) all fall into the same L1
// cache sets and evict each other (measured: bench/README.md, model_bench).
int64_t SmallGemmRowStride(int64_t k);

// For every row i < m of x and every output column j in [n_begin, n_end):
//   y[i * ldy + j] = sum_kk x[i * ldx + kk] * w[j * k + kk] (+ bias[j] when bias is not null).
// x is [m, k] with row stride ldx >= k, w [n, k] contiguous, both row-major
// float32; m in [1, kSmallGemmMaxRows].
// REQUIRES: SmallGemmAvailable().
void SmallGemm(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, const float* bias, int64_t n_begin,
               int64_t n_end, float* y, int64_t ldy);

// The same with w [n, k] as IEEE binary16 bit patterns (at::Half's storage):
// y = x · float(w)ᵀ + b, summed in float32.
// REQUIRES: SmallGemmAvailable().
void SmallGemmF16(const float* x, int64_t m, int64_t k, int64_t ldx, const uint16_t* w, const float* bias,
                  int64_t n_begin, int64_t n_end, float* y, int64_t ldy);

// The same with w [n, k] as int8 codes: y = x · float(w)ᵀ + b, summed in
// float32 over the codes' integer values (scales, if any, are the caller's:
// e.g. per weight row on y's columns, or per column of w folded into x).
// REQUIRES: SmallGemmAvailable().
void SmallGemmI8(const float* x, int64_t m, int64_t k, int64_t ldx, const int8_t* w, const float* bias, int64_t n_begin,
                 int64_t n_end, float* y, int64_t ldy);

// The same over a pack's group-quantised codes (core/quant_rows.h's layout:
// codes [groups, rows, group_size] int8, scales and shifts [groups, rows]
// float32): for every row i < m of x and every output row j in [n_begin, n_end),
//   y[i * ldy + j - n_begin] = Σ_g scales[g][j] · Σ_jj x[i * ldx + g · group_size + jj]
//                                                 · (codes[g][j][jj] + shifts[g][j]),
// given sums[i * groups + g] = Σ_jj x[i * ldx + g · group_size + jj]. Each
// code is widened and scaled as it is loaded, so a tile's sums run across all
// the groups in registers. x holds groups · group_size columns (zeros past
// the matrix's own); m in [1, kSmallGemmMaxRows].
// REQUIRES: SmallGemmGroupedI8Runs(group_size).
bool SmallGemmGroupedI8Runs(int64_t group_size);  // the AVX-512 kernel active, group_size a multiple of 16
void SmallGemmGroupedI8(const float* x, const float* sums, int64_t m, int64_t groups, int64_t group_size, int64_t ldx,
                        const int8_t* codes, const float* scales, const float* shifts, int64_t rows, int64_t n_begin,
                        int64_t n_end, float* y, int64_t ldy);

// For every row i < m of x and every column j < n:
//   y_rows[i][j] += sum_kk x[i * ldx + kk] * w[kk * n + j],
// w [k, n] row-major: y += x · w. The layout of a low-rank factor us [n, k]
// kept transposed, whose k (a rank) is small: the sums run along y's rows, k
// multiply-adds of a broadcast x value into vectors of outputs, where
// SmallGemm (sums along k) would spend more on each output's horizontal sum
// than on its k products (a rank-16 us with 704 outputs, one row: 2.7 µs
// through SmallGemmF16 on the AMD EPYC of bench/README.md). Narrow outputs
// (n up to 64 on AVX-512, 32 on AVX2: a vt [rank, in] stored transposed, k
// its inputs and n its rank) take all k in one pass with interleaved sets of
// accumulators; wider ones go in blocks of 8 rows of w. Row i's outputs
// are at y_rows[i] (rows anywhere, none overlapping). Any m >= 0.
// REQUIRES: SmallGemmAvailable().
void SmallGemmAccumulate(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                         float* const* y_rows);
// The same with w as binary16 bit patterns, and as int8 codes (summed over the
// codes' integer values; the scales are the caller's, e.g. folded into x).
void SmallGemmAccumulateF16(const float* x, int64_t m, int64_t k, int64_t ldx, const uint16_t* w, int64_t n,
                            float* const* y_rows);
void SmallGemmAccumulateI8(const float* x, int64_t m, int64_t k, int64_t ldx, const int8_t* w, int64_t n,
                           float* const* y_rows);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SMALL_GEMM_H_
