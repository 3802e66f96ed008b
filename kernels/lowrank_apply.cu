// Segmented low-rank apply kernels and launcher (lowrank_apply.h).
//
// Phase 1 (down): grid (ceil(max_rank / 8), batch rows). A block stages its
// input row x[b] in shared memory; each of its 8 warps computes one
// t[b][k] = w σ_k (Vᵀ x)_k, the lanes splitting the Vᵀ row into chunks of 8
// codes (decoded on the fly) and reducing with shuffles.
// Phase 2 (up): grid (ceil(out / 256), batch rows). A block stages t[b] in
// shared memory; each thread owns one output o and walks row o of every U
// band (width codes, decoded on the fly), then adds into y[b][o].
// Both phases decode the pack's factors once per batch row: right for decode
// (a few rows per pack); prefill-sized batches are better served by the
// materialised path (dequant + GEMM).
#include <algorithm>

#include "kernels/lowrank_apply.h"
#include "kernels/quant_decode_inl.h"

namespace skillpack::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kDownWarps = 8;
constexpr int kDownThreads = kDownWarps * kWarp;
constexpr int kUpThreads = 256;
constexpr int kMaxGridY = 65535;
constexpr size_t kDefaultSharedBytes = 48 * 1024;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// The factor of batch row b, or null when the row has no (valid) pack.
__device__ __forceinline__ const LowRankFactorView* PackOfRow(const int32_t* row_pack, int b,
                                                              const LowRankFactorView* packs, int num_packs,
                                                              int max_rank) {
  const int p = row_pack[b];
  if (p < 0 || p >= num_packs) return nullptr;
  const LowRankFactorView* f = packs + p;
  if (f->rank <= 0 || f->rank > max_rank || f->sigma == nullptr) {
    return nullptr;
  }
  return f;
}

template <typename T>
__global__ void __launch_bounds__(kDownThreads)
    LowRankDownKernel(const T* __restrict__ x, int ld_x, const int32_t* __restrict__ row_pack, int batch,
                      const LowRankFactorView* __restrict__ packs, int num_packs, int in_features, int out_features,
                      int max_rank, float* __restrict__ t) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  T* xs = reinterpret_cast<T*>(shared_bytes);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int k = blockIdx.x * kDownWarps + warp;
  for (int b = blockIdx.y; b < batch; b += gridDim.y) {
    // Everything up to the barrier is uniform across the block.
    const LowRankFactorView* f = PackOfRow(row_pack, b, packs, num_packs, max_rank);
    if (f == nullptr || static_cast<int>(blockIdx.x) * kDownWarps >= f->rank) {
      continue;
    }
    const T* xb = x + static_cast<int64_t>(b) * ld_x;
    for (int i = threadIdx.x; i < in_features; i += kDownThreads) {
      xs[i] = xb[i];
    }
    __syncthreads();
    if (k < f->rank) {
      float acc = 0.0f;
      for (int bi = 0; bi < f->num_bands; ++bi) {
        const LowRankBandView& band = f->bands[bi];
        if (k < band.rank_begin || k >= band.rank_begin + band.vt.rows) {
          continue;
        }
        if (BandFits(band, in_features, out_features, f->rank)) {
          acc = VtRowPartialDot(band, k - band.rank_begin, xs, lane, kWarp);
        }
        break;
      }
      acc = WarpSum(acc);
      if (lane == 0) {
        t[static_cast<int64_t>(b) * max_rank + k] = f->weight * f->sigma[k] * acc;
      }
    }
    __syncthreads();  // xs is rewritten for the next row
  }
}

template <typename T>
__global__ void __launch_bounds__(kUpThreads)
    LowRankUpKernel(T* __restrict__ y, int ld_y, const int32_t* __restrict__ row_pack, int batch,
                    const LowRankFactorView* __restrict__ packs, int num_packs, int in_features, int out_features,
                    int max_rank, const float* __restrict__ t) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  float* ts = reinterpret_cast<float*>(shared_bytes);
  const int o = blockIdx.x * kUpThreads + threadIdx.x;
  for (int b = blockIdx.y; b < batch; b += gridDim.y) {
    const LowRankFactorView* f = PackOfRow(row_pack, b, packs, num_packs, max_rank);
    if (f == nullptr) continue;
    const float* tb = t + static_cast<int64_t>(b) * max_rank;
    for (int i = threadIdx.x; i < f->rank; i += kUpThreads) ts[i] = tb[i];
    __syncthreads();
    if (o < out_features) {
      const float acc = URowDot(*f, o, ts, in_features, out_features);
      T* yo = y + static_cast<int64_t>(b) * ld_y + o;
      *yo = FromFloat<T>::Convert(ToFloat(*yo) + acc);
    }
    __syncthreads();  // ts is rewritten for the next row
  }
}

// Allows `kernel` `bytes` of dynamic shared memory (needed above 48 KiB).
template <typename Kernel>
cudaError_t EnsureSharedMemory(Kernel kernel, size_t bytes) {
  if (bytes <= kDefaultSharedBytes) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace

template <typename T>
cudaError_t invokeSegmentedLowRankApply(const T* x, int ld_x, T* y, int ld_y, const int32_t* row_pack, int batch,
                                        const LowRankFactorView* packs, int num_packs, int in_features,
                                        int out_features, int max_rank, float* scratch, cudaStream_t stream) {
  if (batch < 0 || num_packs < 0 || in_features < 0 || out_features < 0 || max_rank < 0 || ld_x < in_features ||
      ld_y < out_features) {
    return cudaErrorInvalidValue;
  }
  if (batch == 0 || num_packs == 0 || max_rank == 0 || out_features == 0) {
    return cudaSuccess;
  }
  if (x == nullptr || y == nullptr || row_pack == nullptr || packs == nullptr || scratch == nullptr) {
    return cudaErrorInvalidValue;
  }
  const unsigned grid_y = static_cast<unsigned>(std::min(batch, kMaxGridY));

  const size_t down_shared = static_cast<size_t>(in_features) * sizeof(T);
  cudaError_t err = EnsureSharedMemory(LowRankDownKernel<T>, down_shared);
  if (err != cudaSuccess) return err;
  const dim3 down_grid((max_rank + kDownWarps - 1) / kDownWarps, grid_y);
  LowRankDownKernel<T><<<down_grid, kDownThreads, down_shared, stream>>>(x, ld_x, row_pack, batch, packs, num_packs,
                                                                         in_features, out_features, max_rank, scratch);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const size_t up_shared = static_cast<size_t>(max_rank) * sizeof(float);
  err = EnsureSharedMemory(LowRankUpKernel<T>, up_shared);
  if (err != cudaSuccess) return err;
  const dim3 up_grid((out_features + kUpThreads - 1) / kUpThreads, grid_y);
  LowRankUpKernel<T><<<up_grid, kUpThreads, up_shared, stream>>>(y, ld_y, row_pack, batch, packs, num_packs,
                                                                 in_features, out_features, max_rank, scratch);
  return cudaGetLastError();
}

template cudaError_t invokeSegmentedLowRankApply<__half>(const __half*, int, __half*, int, const int32_t*, int,
                                                         const LowRankFactorView*, int, int, int, int, float*,
                                                         cudaStream_t);
template cudaError_t invokeSegmentedLowRankApply<__nv_bfloat16>(const __nv_bfloat16*, int, __nv_bfloat16*, int,
                                                                const int32_t*, int, const LowRankFactorView*, int, int,
                                                                int, int, float*, cudaStream_t);

}  // namespace skillpack::kernels
