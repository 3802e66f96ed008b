#include "core/sparse_rows.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/tensor_util.h"

namespace skillpack {

int64_t SparseRows::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&offsets, &cols, &values}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n;
}

at::Tensor SparseRows::RowIds() const {
  const at::Tensor counts = offsets.slice(0, 1) - offsets.slice(0, 0, rows());
  return at::repeat_interleave(at::arange(rows(), offsets.options()), counts);
}

at::Tensor SparseRows::Dense() const {
  at::Tensor d = at::zeros({rows() * num_cols}, values.options().dtype(at::kFloat));
  if (nnz() > 0) d.index_put_({RowIds() * num_cols + cols.to(at::kLong)}, values.to(at::kFloat));
  return d.view({rows(), num_cols});
}

at::Tensor SparseRows::GatherRows(const at::Tensor& ids, at::ScalarType type) const {
  const at::Tensor idx = ids.to(offsets.device(), at::kLong).reshape({-1});
  const int64_t n = idx.size(0);
  at::Tensor out = at::zeros({n, num_cols}, values.options().dtype(type));
  if (n == 0 || nnz() == 0) return out;
  // Entry e of id i: offsets[ids[i]] + (e minus the entries of the ids before i).
  const at::Tensor start = offsets.index_select(0, idx);
  const at::Tensor counts = offsets.index_select(0, idx + 1) - start;
  const int64_t total = counts.sum().item<int64_t>();
  if (total == 0) return out;
  const at::Tensor owner = at::repeat_interleave(at::arange(n, idx.options()), counts);
  const at::Tensor first = at::cumsum(counts, 0) - counts;  // entries before each id
  const at::Tensor entry =
      start.index_select(0, owner) + at::arange(total, idx.options()) - first.index_select(0, owner);
  out.index_put_({owner, cols.index_select(0, entry).to(at::kLong)}, values.index_select(0, entry).to(type),
                 /*accumulate=*/true);
  return out;
}

at::Tensor SparseRows::Linear(const at::Tensor& x) const {
  const int64_t m = x.size(0);
  at::Tensor out = at::zeros({m, rows()}, x.options());
  if (m == 0 || nnz() == 0) return out;
  const at::Tensor row_ids = RowIds().to(x.device());
  const at::Tensor col_ids = cols.to(x.device(), at::kLong);
  const at::Tensor vals = values.to(x.device(), x.scalar_type());
  const int64_t piece = std::max<int64_t>(1, (int64_t{1} << 24) / nnz());
  for (int64_t r0 = 0; r0 < m; r0 += piece) {
    const int64_t len = std::min(piece, m - r0);
    // [len, nnz]: each entry's product with its column of x, summed into its row.
    const at::Tensor prod = x.narrow(0, r0, len).index_select(1, col_ids) * vals;
    out.narrow(0, r0, len).index_add_(1, row_ids, prod);
  }
  return out;
}

SparseRows SparseRows::FromFlat(const at::Tensor& flat_indices, const at::Tensor& values, int64_t rows, int64_t cols) {
  SparseRows s;
  s.num_cols = cols;
  const at::Tensor idx = flat_indices.to(at::kLong).contiguous();
  const at::Tensor row = at::floor_divide(idx, cols);
  // Entries per row; indices increase, so each row's entries are consecutive.
  const at::Tensor counts = at::bincount(row, /*weights=*/{}, /*minlength=*/rows);
  s.offsets = at::cat({at::zeros({1}, idx.options()), at::cumsum(counts, 0)}).contiguous();
  s.cols = (idx - row * cols).to(at::kInt).contiguous();
  s.values = values.to(at::kFloat).contiguous();
  return s;
}

Status CheckSparseRows(const SparseRows& s, int64_t rows, int64_t cols) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat("sparse rows: ", what)); };
  if (!s.offsets.defined() || !s.cols.defined() || !s.values.defined()) {
    return bad("offsets, cols and values must all be set");
  }
  if (s.offsets.scalar_type() != at::kLong || s.offsets.dim() != 1 || s.offsets.size(0) != rows + 1) {
    return bad(absl::StrCat("offsets must be int64 [", rows + 1, "], got ", c10::toString(s.offsets.scalar_type()), " ",
                            ShapeString(s.offsets.sizes().vec())));
  }
  if (s.values.scalar_type() != at::kFloat || s.values.dim() != 1) return bad("values must be float32 1-D");
  const int64_t nnz = s.values.size(0);
  if (s.cols.scalar_type() != at::kInt || s.cols.dim() != 1 || s.cols.size(0) != nnz) {
    return bad(absl::StrCat("cols must be int32 [", nnz, "] like the values"));
  }
  if (s.num_cols != cols) return bad(absl::StrCat("num_cols ", s.num_cols, ", expected ", cols));
  if (s.offsets.device() != s.cols.device() || s.offsets.device() != s.values.device()) {
    return bad("offsets, cols and values on different devices");
  }
  if (s.offsets[0].item<int64_t>() != 0 || s.offsets[rows].item<int64_t>() != nnz) {
    return bad(absl::StrCat("offsets must run from 0 to nnz = ", nnz));
  }
  if (rows > 0 && (s.offsets.slice(0, 1) < s.offsets.slice(0, 0, rows)).any().item<bool>()) {
    return bad("offsets decrease");
  }
  if (nnz > 0) {
    if ((s.cols < 0).any().item<bool>() || (s.cols >= cols).any().item<bool>()) {
      return bad(absl::StrCat("a column is outside [0, ", cols, ")"));
    }
    // Within a row columns increase: flat positions row · cols + col increase overall.
    const at::Tensor flat = s.RowIds() * cols + s.cols.to(at::kLong);
    if (nnz > 1 && (flat.slice(0, 1) <= flat.slice(0, 0, nnz - 1)).any().item<bool>()) {
      return bad("columns do not increase within a row");
    }
  }
  if (!s.values.isfinite().all().item<bool>()) return bad("a value is not finite");
  return absl::OkStatus();
}

void SparseRowsLinearAdd(const int64_t* offsets, const int32_t* cols, const float* values, float scale,
                         const float* const* x_rows, int64_t m, int64_t j_begin, int64_t j_end, float* const* y_rows) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    const int64_t p0 = offsets[j], p1 = offsets[j + 1];
    if (p0 == p1) continue;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x_rows[i];
      // Four chains of additions, so the sum is not one multiply-add latency per entry.
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
      int64_t p = p0;
      for (; p + 4 <= p1; p += 4) {
        s0 += values[p] * xi[cols[p]];
        s1 += values[p + 1] * xi[cols[p + 1]];
        s2 += values[p + 2] * xi[cols[p + 2]];
        s3 += values[p + 3] * xi[cols[p + 3]];
      }
      for (; p < p1; ++p) s0 += values[p] * xi[cols[p]];
      y_rows[i][j] += scale * ((s0 + s1) + (s2 + s3));
    }
  }
}

void SparseRowsGatherAdd(const int64_t* offsets, const int32_t* cols, const float* values, float scale,
                         const int64_t* ids, int64_t m, float* const* x_rows) {
  for (int64_t i = 0; i < m; ++i) {
    float* xi = x_rows[i];
    for (int64_t p = offsets[ids[i]]; p < offsets[ids[i] + 1]; ++p) xi[cols[p]] += scale * values[p];
  }
}

}  // namespace skillpack
