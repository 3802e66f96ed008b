// A 2-D tensor's few nonzero entries kept as compressed sparse rows (CSR):
// how the server's host tier keeps a pack's magnitude-pruned modules
// (embed_tokens, lm_head: pack/decode.h) and how factorized serving applies
// them (core/weight_delta.h), instead of a dense copy of the whole matrix per
// pack. Row r's entries are cols[p] / values[p] for p in [offsets[r],
// offsets[r + 1]), columns increasing within a row.
//
// Bytes: 4 per entry (an int16 column, up to 32768 columns: any model's hidden
// size, and the pack's float16 value, exact) plus 8 per row, against 4 per
// entry of the dense float32 matrix and 6 of the pack file's sparse form.
#ifndef SKILLPACK_CORE_SPARSE_ROWS_H_
#define SKILLPACK_CORE_SPARSE_ROWS_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "core/status.h"

namespace skillpack {

struct SparseRows {
  at::Tensor offsets;  // int64 [rows + 1], offsets[0] == 0, non-decreasing, offsets[rows] == nnz
  at::Tensor cols;     // int16 [nnz] (num_cols <= 32768) or int32, each in [0, num_cols), increasing within a row
  at::Tensor values;   // float16 or float32 [nnz]
  int64_t num_cols = 0;

  // Any of the three set (a well-formed one has all three: CheckSparseRows).
  bool defined() const { return offsets.defined() || cols.defined() || values.defined(); }
  int64_t rows() const { return offsets.defined() ? offsets.size(0) - 1 : 0; }
  int64_t nnz() const { return values.defined() ? values.size(0) : 0; }
  // Bytes of the three tensors.
  int64_t bytes() const;
  // The dense float32 [rows, num_cols] matrix, on the tensors' device.
  at::Tensor Dense() const;
  // Each entry's row, int64 [nnz] (the coordinate form).
  at::Tensor RowIds() const;
  // The ATen forms of the raw loops below, on any device, in x's floating
  // type: S[ids] as dense rows [n, num_cols] for int64 ids [n] (an
  // embedding's correction), and x · Sᵀ [m, rows] for x [m, num_cols] (a
  // linear layer's), in pieces of rows so that no intermediate passes 2^24
  // values.
  at::Tensor GatherRows(const at::Tensor& ids, at::ScalarType type) const;
  at::Tensor Linear(const at::Tensor& x) const;

  // From flat row-major indices (int64 [nnz], strictly increasing, each in
  // [0, rows · cols)) and their values ([nnz]: float16 ones are kept, others
  // become float32); on their device, int16 columns where cols <= 32768.
  // REQUIRES: indices as described (a validated pack's are).
  static SparseRows FromFlat(const at::Tensor& flat_indices, const at::Tensor& values, int64_t rows, int64_t cols);
};

// Checks s against a [rows, cols] tensor: dtypes, shapes, one device, and the
// offsets and columns as documented above. INVALID_ARGUMENT naming what is
// wrong. O(nnz).
Status CheckSparseRows(const SparseRows& s, int64_t rows, int64_t cols);

// The raw loops factorized serving runs on the CPU (core/model.cc splits the
// rows across threads), in AVX2 (eight entries a step: their columns of x
// gathered, their values widened from float16). REQUIRES: s's tensors
// contiguous on the CPU, CheckSparseRows(s, ...) ok, and a CPU with AVX2, FMA
// and F16C (SmallGemmAvailable(): where the small-batch kernel runs).
//
// y_rows[i][j] += scale · Σ_p values[p] · x_rows[i][cols[p]] over row j's
// entries, for every output row j in [j_begin, j_end) and i < m: y += scale ·
// x · Sᵀ (a linear layer's correction, S [out, in]).
void SparseRowsLinearAdd(const SparseRows& s, float scale, const float* const* x_rows, int64_t m, int64_t j_begin,
                         int64_t j_end, float* const* y_rows);
// x_rows[i][cols[p]] += scale · values[p] over row ids[i]'s entries, for
// i < m: x's rows += scale · S[ids] (an embedding's correction, S [vocab,
// hidden]).
void SparseRowsGatherAdd(const SparseRows& s, float scale, const int64_t* ids, int64_t m, float* const* x_rows);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SPARSE_ROWS_H_
