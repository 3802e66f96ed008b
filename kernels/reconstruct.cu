// Fused-weight reconstruction (reconstruct.h): base copies, one cuBLAS GEMM
// per module for the concatenated low-rank terms, and the sparse scatter-add
// kernel for pruned modules.
#include <algorithm>
#include <type_traits>

#include "kernels/reconstruct.h"

namespace skillpack::kernels {
namespace {

constexpr int kSparseThreads = 256;
// Blocks per item aimed at when there are many items; blocks stride over nnz.
constexpr int64_t kSparseTargetBlocks = 8192;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
constexpr cudaDataType_t CudaDataType() {
  return std::is_same_v<T, __half> ? CUDA_R_16F : CUDA_R_16BF;
}

__device__ __forceinline__ float ToFloatDevice(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloatDevice(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void FromFloatDevice(float v, __half* out) { *out = __float2half_rn(v); }
__device__ __forceinline__ void FromFloatDevice(float v, __nv_bfloat16* out) { *out = __float2bfloat16_rn(v); }

// Grid: x = item, y = blocks striding over the item's entries.
template <typename T>
__global__ void __launch_bounds__(kSparseThreads) BatchedSparseAddKernel(const SparseAddItem<T>* items) {
  const SparseAddItem<T> item = items[blockIdx.x];
  if (item.out == nullptr || item.indices == nullptr || item.values == nullptr) {
    return;
  }
  const int64_t step = static_cast<int64_t>(gridDim.y) * kSparseThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * kSparseThreads + threadIdx.x; i < item.nnz; i += step) {
    const int64_t idx = __ldg(item.indices + i);
    if (idx < 0 || idx >= item.numel) continue;
    const float v = item.weight * __half2float(__ldg(item.values + i));
    T* dst = item.out + idx;
    FromFloatDevice(ToFloatDevice(*dst) + v, dst);
  }
}

}  // namespace

template <typename T>
cudaError_t invokeCopyBase(const LowRankGemm<T>* modules, int num_modules, cudaStream_t stream) {
  if (num_modules < 0 || (num_modules > 0 && modules == nullptr)) {
    return cudaErrorInvalidValue;
  }
  for (int i = 0; i < num_modules; ++i) {
    if (!IsValidLowRankGemm(modules[i])) return cudaErrorInvalidValue;
  }
  for (int i = 0; i < num_modules; ++i) {
    const LowRankGemm<T>& m = modules[i];
    if (m.base == nullptr || m.base == m.out || m.rows == 0 || m.cols == 0) {
      continue;
    }
    const cudaError_t err = cudaMemcpy2DAsync(
        m.out, static_cast<size_t>(m.ld_out) * sizeof(T), m.base, static_cast<size_t>(m.ld_base) * sizeof(T),
        static_cast<size_t>(m.cols) * sizeof(T), static_cast<size_t>(m.rows), cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename T>
cublasStatus_t invokeLowRankGemm(cublasHandle_t handle, const LowRankGemm<T>* modules, int num_modules,
                                 cudaStream_t stream) {
  if (handle == nullptr || num_modules < 0 || (num_modules > 0 && modules == nullptr)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  for (int i = 0; i < num_modules; ++i) {
    if (!IsValidLowRankGemm(modules[i])) return CUBLAS_STATUS_INVALID_VALUE;
  }
  cudaStream_t previous = nullptr;
  cublasStatus_t status = cublasGetStream(handle, &previous);
  if (status != CUBLAS_STATUS_SUCCESS) return status;
  status = cublasSetStream(handle, stream);
  if (status != CUBLAS_STATUS_SUCCESS) return status;

  // Row-major C[rows, cols] += U[rows, rank] · Vt[rank, cols] is, in cuBLAS's
  // column-major view, Cᵀ[cols, rows] += Vtᵀ[cols, rank] · Uᵀ[rank, rows].
  const float one = 1.0f;
  const cudaDataType_t type = CudaDataType<T>();
  for (int i = 0; i < num_modules && status == CUBLAS_STATUS_SUCCESS; ++i) {
    const LowRankGemm<T>& m = modules[i];
    if (m.rank == 0 || m.rows == 0 || m.cols == 0) continue;
    status = cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, m.cols, m.rows, m.rank, &one, m.vt, type, m.ld_vt, m.u,
                          type, m.ld_u, &one, m.out, type, m.ld_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  const cublasStatus_t restore = cublasSetStream(handle, previous);
  return status != CUBLAS_STATUS_SUCCESS ? status : restore;
}

template <typename T>
cudaError_t invokeBatchedSparseAdd(const SparseAddItem<T>* d_items, int num_items, int64_t max_nnz,
                                   cudaStream_t stream) {
  if (num_items < 0 || max_nnz < 0) return cudaErrorInvalidValue;
  if (num_items == 0 || max_nnz == 0) return cudaSuccess;
  if (d_items == nullptr) return cudaErrorInvalidValue;
  const int64_t per_item_cap = std::max<int64_t>(8, kSparseTargetBlocks / num_items);
  const int64_t blocks = std::min({(max_nnz + kSparseThreads - 1) / kSparseThreads, per_item_cap, kMaxGridY});
  const dim3 grid(static_cast<unsigned>(num_items), static_cast<unsigned>(blocks));
  BatchedSparseAddKernel<T><<<grid, kSparseThreads, 0, stream>>>(d_items);
  return cudaGetLastError();
}

template cudaError_t invokeCopyBase<__half>(const LowRankGemm<__half>*, int, cudaStream_t);
template cudaError_t invokeCopyBase<__nv_bfloat16>(const LowRankGemm<__nv_bfloat16>*, int, cudaStream_t);
template cublasStatus_t invokeLowRankGemm<__half>(cublasHandle_t, const LowRankGemm<__half>*, int, cudaStream_t);
template cublasStatus_t invokeLowRankGemm<__nv_bfloat16>(cublasHandle_t, const LowRankGemm<__nv_bfloat16>*, int,
                                                         cudaStream_t);
template cudaError_t invokeBatchedSparseAdd<__half>(const SparseAddItem<__half>*, int, int64_t, cudaStream_t);
template cudaError_t invokeBatchedSparseAdd<__nv_bfloat16>(const SparseAddItem<__nv_bfloat16>*, int, int64_t,
                                                           cudaStream_t);

}  // namespace skillpack::kernels
