// Materialised fused weights on the GPU (the composer's device path):
//   W_fused = W_base + Σ_i w_i U_i diag(σ_i) V_iᵀ   (low-rank modules)
//   W_fused[idx] += w_i · value                      (pruned, sparse modules)
// The base weight is never written: the output starts as a copy of it.
//
// A module's low-rank terms of all selected packs (and all their bands) form
// ONE GEMM: the caller dequantises (dequant.h) every U band side by side into
// a scratch Ucat [rows, K] with DequantItem::col_scale = w_i σ_i (so the
// diag(w σ) scaling is fused into the decode), every Vᵀ band stacked into
// Vcat [K, cols], then
//   invokeCopyBase      out = base            (cudaMemcpy2DAsync)
//   invokeLowRankGemm   out += Ucat · Vcat    (cuBLAS, fp32 accumulation)
//   invokeBatchedSparseAdd  for sparse modules
// Dense-quantised deltas are added by the dequant kernel itself
// (DequantItem::accumulate = 1, alpha = w_i).
#ifndef SKILLPACK_KERNELS_RECONSTRUCT_H_
#define SKILLPACK_KERNELS_RECONSTRUCT_H_

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace skillpack::kernels {

// One module: out = base + u · vt, all row-major with leading dimensions in
// elements. Device pointers.
template <typename T>
struct LowRankGemm {
  const T* base = nullptr;  // [rows, ld_base]; only read. Null: out already
                            // holds the starting value (no copy).
  T* out = nullptr;         // [rows, ld_out]
  const T* u = nullptr;     // [rows, ld_u], rank columns used, pre-scaled
  const T* vt = nullptr;    // [rank, ld_vt], cols columns used
  int32_t ld_base = 0;      // >= cols
  int32_t ld_out = 0;       // >= cols
  int32_t ld_u = 0;         // >= max(rank, 1)
  int32_t ld_vt = 0;        // >= cols
  int32_t rows = 0;
  int32_t cols = 0;
  int32_t rank = 0;  // 0: no low-rank term (out = base)
};

// Host-side check of one module's shapes and pointers.
template <typename T>
bool IsValidLowRankGemm(const LowRankGemm<T>& m) {
  if (m.rows < 0 || m.cols < 0 || m.rank < 0) return false;
  if (m.rows == 0 || m.cols == 0) return true;
  if (m.out == nullptr || m.ld_out < m.cols) return false;
  if (m.base != nullptr && m.ld_base < m.cols) return false;
  if (m.rank == 0) return true;
  return m.u != nullptr && m.vt != nullptr && m.ld_u >= m.rank && m.ld_vt >= m.cols;
}

// For each of modules[0, num_modules) (a HOST array) with base != null and
// base != out: copies base into out (rows x cols) on `stream`. Returns the
// first CUDA error, cudaErrorInvalidValue for num_modules < 0 or a module
// failing IsValidLowRankGemm (nothing is enqueued then). Instantiated for
// T = __half and __nv_bfloat16.
template <typename T>
cudaError_t invokeCopyBase(const LowRankGemm<T>* modules, int num_modules, cudaStream_t stream);

// For each of modules[0, num_modules) (a HOST array) with rank > 0:
// out += u · vt with one cublasGemmEx (inputs and output T, fp32 compute,
// alpha = beta = 1) on `stream`. The handle's stream is set to `stream` for
// the calls and restored afterwards; the handle must not be used
// concurrently by another thread. Returns the first cuBLAS error, or
// CUBLAS_STATUS_INVALID_VALUE for num_modules < 0 or an invalid module
// (checked before anything is enqueued). Instantiated for T = __half and
// __nv_bfloat16.
template <typename T>
cublasStatus_t invokeLowRankGemm(cublasHandle_t handle, const LowRankGemm<T>* modules, int num_modules,
                                 cudaStream_t stream);

// One pruned module's delta to add: out[indices[i]] += weight * values[i].
// Device pointers.
template <typename T>
struct SparseAddItem {
  T* out = nullptr;                  // contiguous, numel elements (the full
                                     // tensor, flat row-major)
  const int64_t* indices = nullptr;  // [nnz], distinct (the pack format
                                     // stores them strictly increasing)
  const __half* values = nullptr;    // [nnz]
  int64_t numel = 0;
  int64_t nnz = 0;
  float weight = 1.0f;
};

// out[idx] = T(float(out[idx]) + weight * float(value)) for every entry of
// d_items[0, num_items) (DEVICE array); indices outside [0, numel) are
// skipped. max_nnz must be >= every item's nnz (it sizes the grid).
// REQUIRES: no two entries of one launch hit the same element, i.e. items of
// one launch target different tensors (the adds are not atomic). Apply
// several packs' deltas to one tensor with one launch per pack; stream
// order then makes the result deterministic. Asynchronous; returns the launch
// error or cudaErrorInvalidValue for negative sizes. Instantiated for
// T = __half and __nv_bfloat16.
template <typename T>
cudaError_t invokeBatchedSparseAdd(const SparseAddItem<T>* d_items, int num_items, int64_t max_nnz,
                                   cudaStream_t stream);

}  // namespace skillpack::kernels

#endif  // SKILLPACK_KERNELS_RECONSTRUCT_H_
