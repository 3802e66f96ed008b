// Segmented low-rank apply for the factorized serving mode: a batch whose
// rows use different SkillPacks gets each row's pack delta added to the base
// projection straight from the packs' low-bit factors, without materialising
// any delta matrix:
//   y[b] += w_p · U_p diag(σ_p) V_pᵀ x[b]   for p = row_pack[b] (none if -1),
// where y[b] = W x[b] was computed by the caller (one base GEMM for the whole
// batch). Dequantisation is fused into the two GEMV phases.
#ifndef SKILLPACK_KERNELS_LOWRANK_APPLY_H_
#define SKILLPACK_KERNELS_LOWRANK_APPLY_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/quant_view.h"

namespace skillpack::kernels {

// One band of a pack's factors for one module (pack/skillpack.h LowRankBand):
// singular directions [rank_begin, rank_begin + width), width = vt.rows =
// u.cols. vt is [width, in_features] (its perm permutes input features); u is
// [out_features, width] (its perm permutes the band's rank columns).
struct LowRankBandView {
  QuantMatrixView u;
  QuantMatrixView vt;
  int32_t rank_begin = 0;
};

// One pack's delta for one module: bands covering [0, rank), σ and the pack's
// composition weight. Pointers are device pointers.
struct LowRankFactorView {
  const LowRankBandView* bands = nullptr;  // [num_bands]
  int32_t num_bands = 0;
  int32_t rank = 0;              // total rank, <= the launch's max_rank
  const float* sigma = nullptr;  // [rank], fp32
  float weight = 1.0f;           // w_p
};

// Applies the packs' deltas to y in place, in two kernels on `stream`:
//   phase 1: t[b][k] = w_p σ_p[k] (V_pᵀ x[b])_k   for k < rank_p
//   phase 2: y[b][o] = T(float(y[b][o]) + Σ_k U_p[o][k] t[b][k])
// Arguments (device pointers unless noted):
//   x          [batch, ld_x] row-major, the module's inputs (in_features used)
//   y          [batch, ld_y] row-major, holds W x on entry (out_features used)
//   row_pack   [batch] int32: index into packs, or -1 (row left unchanged).
//              Out-of-range indices are treated as -1.
//   packs      [num_packs] factor descriptors (and their bands) in device
//              memory; every band must satisfy BandFits for this module
//              (bands that do not are skipped, i.e. contribute nothing).
//   scratch    >= batch * max_rank floats of device memory (t).
//   max_rank   >= every pack's rank.
// Phase 1 keeps one input row (in_features elements of T) and phase 2 one t
// row (max_rank floats) in shared memory; the launcher raises the kernels'
// dynamic shared memory limit when more than 48 KiB is needed and returns the
// error if the device cannot give it. Asynchronous; returns the first launch
// error, cudaErrorInvalidValue for negative sizes or ld_x < in_features /
// ld_y < out_features. Instantiated for T = __half and __nv_bfloat16.
template <typename T>
cudaError_t invokeSegmentedLowRankApply(const T* x, int ld_x, T* y, int ld_y, const int32_t* row_pack, int batch,
                                        const LowRankFactorView* packs, int num_packs, int in_features,
                                        int out_features, int max_rank, float* scratch, cudaStream_t stream);

}  // namespace skillpack::kernels

#endif  // SKILLPACK_KERNELS_LOWRANK_APPLY_H_
