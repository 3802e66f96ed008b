// Asymmetric group quantisation of weight matrices for SkillPacks: round to
// nearest (RTN) and GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers"), plus the Hessian
// accumulator that gathers GPTQ's calibration statistics and the dequantiser.
//
// Quantisation grid (the pack format's definition; docs/skillpack-format.md):
//   maxq = 2^bits - 1. Columns are taken in STORED order (the act-order
//   permutation when there is one) and split into groups of `group_size`
//   consecutive stored columns; the last group may be shorter. Group g of row
//   r has a scale s = scales[r][g] > 0 (fp32) and an integer zero point
//   z = zeros[r][g] in [0, maxq]. A code q in [0, maxq] stands for
//       w_hat = (q - z) * s.
//   Parameters come from the group's range widened to include 0:
//   lo = min(0, min w), hi = max(0, max w), s = (hi - lo) / maxq,
//   z = round(-lo / s), q = clamp(round(w / s) + z, 0, maxq) (round half to
//   even). A group whose range is (numerically) empty, hi - lo <= FLT_MIN,
//   uses lo = -1, hi = 1. So 0 is always represented exactly and RTN's error
//   is at most s / 2 per entry.
//   Scales are exact fp32; a container that stores them in fp16 perturbs w_hat
//   by that rounding (relative 2^-11), far below the quantisation error.
//
// All functions work on CPU or CUDA tensors; results live on the input's
// device. Errors come back as Status; libtorch exceptions are caught here.
#ifndef SKILLPACK_PACK_CODEC_QUANTIZE_H_
#define SKILLPACK_PACK_CODEC_QUANTIZE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/status.h"

namespace skillpack {

// A quantised [rows, cols] matrix. See the grid definition above.
struct QuantizedMatrix {
  int bits = 0;  // code width: 2, 3, 4 or 8
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t group_size = 0;  // stored columns per group (> 0)
  at::Tensor codes;        // uint8 [rows, cols], unpacked codes, columns in STORED
                           // order (the permuted order when perm is defined)
  at::Tensor scales;       // float32 [rows, num_groups]
  at::Tensor zeros;        // uint8 [rows, num_groups], zero-point codes in [0, maxq]
  at::Tensor perm;         // int64 [cols] or undefined (identity): stored column j
                           // holds original column perm[j]

  int64_t num_groups() const { return (cols + group_size - 1) / group_size; }
};

struct QuantizeOptions {
  int bits = 4;
  int64_t group_size = 128;
  // Quantise columns in order of descending Hessian diagonal; the permutation
  // is stored in QuantizedMatrix::perm and groups follow the permuted order.
  bool act_order = true;
  // Added to H's diagonal: damp_percent * mean(diag H). Retried with 10x more
  // (up to 4 times) while H is not positive definite.
  float damp_percent = 0.01f;
  // Columns per lazy-update block (> 0).
  int64_t block_size = 128;
};

// Number of groups for `cols` columns: ceil(cols / group_size).
// REQUIRES: group_size > 0.
int64_t NumGroups(int64_t cols, int64_t group_size);

// Round-to-nearest quantisation of w (floating [rows, cols], finite), no
// permutation. INVALID_ARGUMENT for bits not in {2,3,4,8}, group_size <= 0, a
// non-2-D or non-floating w, or non-finite entries.
StatusOr<QuantizedMatrix> QuantizeRtn(const at::Tensor& w, int bits, int64_t group_size);

// Accumulates GPTQ's Hessian H = 2 X Xᵀ / n over calibration inputs, where the
// n columns of X are the layer's input vectors (each of length `cols`), given
// in any number of batches. Sums in fp32 on the device of the first batch.
// Not thread-safe.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t cols);

  // Adds a batch x of shape [..., cols] (e.g. [n, cols] or [batch, seq, cols]):
  // every vector along the last dimension is one input. INVALID_ARGUMENT if
  // the last dimension is not `cols`, x is not floating, or holds non-finite
  // values (nothing is added then).
  Status Add(const at::Tensor& x);

  // H = 2 Σ x xᵀ / count, float32 [cols, cols]; all zeros while count() == 0.
  at::Tensor Hessian() const;

  // Number of input vectors added so far.
  int64_t count() const { return count_; }
  int64_t cols() const { return cols_; }

 private:
  int64_t cols_;
  int64_t count_ = 0;
  at::Tensor sum_;  // float32 [cols, cols], Σ x xᵀ; undefined until first Add
};

// GPTQ quantisation of w (floating [rows, cols], finite) with the Hessian of
// its inputs (floating [cols, cols], symmetric PSD, e.g. from
// HessianAccumulator). Minimises ||(W - Ŵ) X||_F column by column with error
// feedback through the upper Cholesky factor of H⁻¹, in lazy blocks of
// opts.block_size columns. Group parameters are computed when a group's first
// column is reached, from the weights updated with the error of every earlier
// column (also across a block boundary), so the result does not depend on
// block_size beyond rounding. Work is O(cols^3) for H (fp64) plus
// O(rows * cols^2) for the updates (fp32).
// Dead inputs (H_ii == 0) get H_ii = 1 and their weights set to 0, so their
// columns of Ŵ are exactly 0. INVALID_ARGUMENT for bad options or shapes,
// non-finite inputs, or an all-zero Hessian (no calibration data);
// FAILED_PRECONDITION if H stays non-positive-definite after the dampening
// retries.
StatusOr<QuantizedMatrix> QuantizeGptq(const at::Tensor& w, const at::Tensor& hessian, const QuantizeOptions& opts);

// Ŵ as float32 [rows, cols] in STORED column order (perm not applied).
// REQUIRES: ValidateQuantizedMatrix(q).ok().
at::Tensor DequantizeStored(const QuantizedMatrix& q);

// Ŵ as float32 [rows, cols] in ORIGINAL column order, on q.codes' device.
// REQUIRES: ValidateQuantizedMatrix(q).ok().
at::Tensor Dequantize(const QuantizedMatrix& q);

// Checks shapes, dtypes, devices and value ranges of q (codes and zeros
// <= maxq, finite positive scales, perm a permutation of [0, cols)). For data
// read from a file before it is used. Returns INVALID_ARGUMENT on the first
// problem found.
Status ValidateQuantizedMatrix(const QuantizedMatrix& q);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_CODEC_QUANTIZE_H_
