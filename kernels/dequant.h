// Batched dequantisation of group-quantised SkillPack matrices (packed 2/3/4/8
// bit codes, see quant_view.h) to fp16 or bf16, many matrices (pack x module x
// band, U and Vᵀ) in one kernel launch. Used to materialise fused weights
// (reconstruct.h) and to decode dense-quantised deltas.
#ifndef SKILLPACK_KERNELS_DEQUANT_H_
#define SKILLPACK_KERNELS_DEQUANT_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/quant_view.h"

namespace skillpack::kernels {

// One matrix to decode. For every stored element (r, j) with value
// ŵ = (q - z) * s and output column c = perm[j] (j without perm):
//   v = ŵ * alpha * (col_scale ? col_scale[c] : 1)
//   out[r * ld_out + c] = accumulate ? T(float(out[...]) + v) : T(v)
// (T() rounds to nearest even). So out holds the matrix in ORIGINAL column
// order. With col_scale = w·σ and alpha = 1 the U factor comes out already
// scaled for U diag(wσ) Vᵀ; with accumulate a dense-quantised delta is added
// straight onto a fused weight.
// REQUIRES: IsValidQuantMatrixView(src), ld_out >= src.cols, out holds
// rows x ld_out elements, perm (if any) is a permutation of [0, cols), codes
// and zeros are <= 2^bits - 1, and no two items of one launch write the same
// output element. Elements with perm[j] outside [0, cols) are skipped.
template <typename T>
struct DequantItem {
  QuantMatrixView src;
  T* out = nullptr;                  // [rows, ld_out] row-major
  const float* col_scale = nullptr;  // [cols] by OUTPUT column, or null
  float alpha = 1.0f;
  int32_t ld_out = 0;      // elements
  int32_t accumulate = 0;  // 0: overwrite, 1: add onto out
};

// Host-side check of one item (see DequantItem's REQUIRES).
template <typename T>
bool IsValidDequantItem(const DequantItem<T>& item) {
  if (!IsValidQuantMatrixView(item.src)) return false;
  if (item.src.rows == 0 || item.src.cols == 0) return true;
  return item.out != nullptr && item.ld_out >= item.src.cols;
}

// Decodes num_items items, d_items[0, num_items) in DEVICE memory, on
// `stream`. max_rows must be >= every item's rows (it sizes the grid; a larger
// value only adds blocks that exit at once). Asynchronous: returns the launch
// error (cudaErrorInvalidValue for num_items < 0 or max_rows < 0); errors of
// the kernel itself surface at the next synchronising call. The items and
// everything they point to must stay alive until the kernel has run.
// Instantiated for T = __half and __nv_bfloat16.
template <typename T>
cudaError_t invokeBatchedDequant(const DequantItem<T>* d_items, int num_items, int max_rows, cudaStream_t stream);

}  // namespace skillpack::kernels

#endif  // SKILLPACK_KERNELS_DEQUANT_H_
