// A 2-D tensor kept as a pack's group-quantised integer codes: how the
// server's host tier keeps a pack's dense_quant modules (pack/decode.h; the
// allocator's dense fallback, e.g. an lm_head where pruning would cost more)
// and how factorized serving applies them (core/weight_delta.h), without a
// dense float copy per pack. The values are exactly the pack's
// (pack/codec/quantize.h's grid):
//
//   W[r][perm[j]] = (q[r][j] - z[r][g]) · s[r][g],   stored column j in group g = j / group_size
//
// stored here group by group as
//
//   codes[g][r][jj] = q[r][g · group_size + jj] - center      (int8; center = 2^(bits-1))
//   scales[g][r]    = s[r][g]                                   (float32)
//   shifts[g][r]    = center - z[r][g]                          (float32)
//
// so that W[r][perm[j]] = (codes[g][r][jj] + shifts[g][r]) · scales[g][r],
// and a linear layer's correction is x · (codes · scales)ᵀ summed across the
// groups in registers, each code widened and scaled as it is loaded, plus
// Σ_g scales · shifts · (the group's sum of x) (the small-batch kernel's
// SmallGemmGroupedI8, core/small_gemm.h). Where that kernel does not run (no
// AVX-512, or groups not a multiple of 16 columns): for up to 7 rows of x, per
// group an int8 GEMM over that group's columns (SmallGemmI8) plus the shifts'
// part, times the scales; for more, blocks of W made float32 in cache and the
// float32 kernel. The last group is padded with zero codes to group_size columns.
//
// Bytes: 1 per entry (any code width up to 8 bits) plus 8 per row per group
// (1/16 of an entry at groups of 128), against 2 of a float16 dense matrix.
#ifndef SKILLPACK_CORE_QUANT_ROWS_H_
#define SKILLPACK_CORE_QUANT_ROWS_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "core/status.h"

namespace skillpack {

struct QuantRows {
  at::Tensor codes;   // int8 [num_groups, rows, group_size]
  at::Tensor scales;  // float32 [num_groups, rows], finite
  at::Tensor shifts;  // float32 [num_groups, rows], finite
  at::Tensor perm;    // int64 [num_cols], a permutation of [0, num_cols), or undefined (identity)
  int64_t num_cols = 0;

  // Any tensor set (a well-formed one has codes, scales and shifts: CheckQuantRows).
  bool defined() const { return codes.defined() || scales.defined() || shifts.defined() || perm.defined(); }
  int64_t rows() const { return codes.defined() && codes.dim() == 3 ? codes.size(1) : 0; }
  int64_t num_groups() const { return codes.defined() && codes.dim() == 3 ? codes.size(0) : 0; }
  int64_t group_size() const { return codes.defined() && codes.dim() == 3 ? codes.size(2) : 0; }
  // Bytes of the four tensors.
  int64_t bytes() const;
  // Rows `ids` (int64 [n]) of W as float32 [n, num_cols] on the tensors'
  // device (an embedding's correction; the ATen paths).
  at::Tensor GatherRows(const at::Tensor& ids) const;
  // W as float32 [rows, num_cols].
  at::Tensor Dense() const;
};

// Checks q against a [rows, cols] tensor: dtypes, shapes (num_groups ==
// ceil(cols / group_size)), one device, finite scales and shifts, perm a
// permutation. INVALID_ARGUMENT naming what is wrong. O(rows · num_groups +
// cols).
Status CheckQuantRows(const QuantRows& q, int64_t rows, int64_t cols);

// The raw loops factorized serving runs on the CPU (core/model.cc splits the
// output rows across threads). REQUIRES: q's tensors contiguous on the CPU,
// CheckQuantRows(q, ...) ok, and SmallGemmAvailable().
//
// The row stride of the inputs QuantRowsLinearAdd reads: at least
// num_groups · group_size (SmallGemmRowStride of it).
int64_t QuantRowsInputStride(const QuantRows& q);
// The m (<= kSmallGemmMaxRows) rows x_rows[i] [num_cols] in the codes' column
// order, zero-padded: xs [m, QuantRowsInputStride(q)], and each group's sum of
// them: sums [m, num_groups].
void QuantRowsPrepareInputs(const QuantRows& q, const float* const* x_rows, int64_t m, float* xs, float* sums);
// y_rows[i][r] += scale · Σ_j W[r][j] · x_rows[i][j] for every output row r
// in [r_begin, r_end) and i < m, from QuantRowsPrepareInputs's xs and sums:
// y += scale · x · Wᵀ (a linear layer's correction, W [out, in]), by
// SmallGemmGroupedI8 where it runs; elsewhere up to 7 rows of x read the codes
// group by group, and from 8 on blocks of 48 rows of W are made float32 first
// (the int8 kernel's per-group sums cost more than widening each code once
// there).
void QuantRowsLinearAdd(const QuantRows& q, float scale, const float* xs, const float* sums, int64_t m, int64_t r_begin,
                        int64_t r_end, float* const* y_rows);
// x_rows[i] += scale · W[ids[i]] for i < m (an embedding's correction, W
// [vocab, hidden]).
void QuantRowsGatherAdd(const QuantRows& q, float scale, const int64_t* ids, int64_t m, float* const* x_rows);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_QUANT_ROWS_H_
