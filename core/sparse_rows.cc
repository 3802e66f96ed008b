#include "core/sparse_rows.h"

#include <ATen/ATen.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/horizontal_sum.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

// Up to this many columns, every column index fits int16.
constexpr int64_t kMaxInt16Cols = int64_t{1} << 15;

}  // namespace

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
  s.cols = (idx - row * cols).to(cols <= kMaxInt16Cols ? at::kShort : at::kInt).contiguous();
  s.values = values.to(values.scalar_type() == at::kHalf ? at::kHalf : at::kFloat).contiguous();
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
  if ((s.values.scalar_type() != at::kHalf && s.values.scalar_type() != at::kFloat) || s.values.dim() != 1) {
    return bad("values must be float16 or float32 1-D");
  }
  const int64_t nnz = s.values.size(0);
  const bool short_cols = s.cols.defined() && s.cols.scalar_type() == at::kShort && cols <= kMaxInt16Cols;
  if ((!short_cols && s.cols.scalar_type() != at::kInt) || s.cols.dim() != 1 || s.cols.size(0) != nnz) {
    return bad(
        absl::StrCat("cols must be int32 (or int16 up to ", kMaxInt16Cols, " columns) [", nnz, "] like the values"));
  }
  if (s.num_cols != cols) return bad(absl::StrCat("num_cols ", s.num_cols, ", expected ", cols));
  if (s.offsets.device() != s.cols.device() || s.offsets.device() != s.values.device()) {
    return bad("offsets, cols and values on different devices");
  }
  if (s.offsets[0].item<int64_t>() != 0 || s.offsets[rows].item<int64_t>() != nnz) {
    return bad(absl::StrCat("offsets must run from 0 to nnz = ", nnz));
  }
  const std::string out_of_range = absl::StrCat("a column is outside [0, ", cols, ")");
  if (s.offsets.is_cpu() && s.offsets.is_contiguous() && s.cols.is_contiguous() && s.values.is_contiguous()) {
    // One pass in place: a server checks every pack set it serves
    // (WeightDelta::Create), and a pruned 1.1B lm_head has millions of entries.
    const int64_t* off = s.offsets.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      if (off[r + 1] < off[r]) return bad("offsets decrease");
    }
    auto check_cols = [&](const auto* c) -> Status {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t p = off[r]; p < off[r + 1]; ++p) {
          if (c[p] < 0 || c[p] >= cols) return bad(out_of_range);
          if (p > off[r] && c[p] <= c[p - 1]) return bad("columns do not increase within a row");
        }
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(s.cols.scalar_type() == at::kShort ? check_cols(s.cols.data_ptr<int16_t>())
                                                       : check_cols(s.cols.data_ptr<int32_t>()));
    if (s.values.scalar_type() == at::kHalf) {
      const auto* v = static_cast<const uint16_t*>(s.values.data_ptr());
      for (int64_t p = 0; p < nnz; ++p) {
        if ((v[p] & 0x7C00) == 0x7C00) return bad("a value is not finite");  // exponent all ones: inf or NaN
      }
    } else {
      const float* v = s.values.data_ptr<float>();
      for (int64_t p = 0; p < nnz; ++p) {
        if (!std::isfinite(v[p])) return bad("a value is not finite");
      }
    }
    return absl::OkStatus();
  }
  if (rows > 0 && (s.offsets.slice(0, 1) < s.offsets.slice(0, 0, rows)).any().item<bool>()) {
    return bad("offsets decrease");
  }
  if (nnz > 0) {
    if ((s.cols < 0).any().item<bool>() || (s.cols >= cols).any().item<bool>()) return bad(out_of_range);
    // Within a row columns increase: flat positions row · cols + col increase overall.
    const at::Tensor flat = s.RowIds() * cols + s.cols.to(at::kLong);
    if (nnz > 1 && (flat.slice(0, 1) <= flat.slice(0, 0, nnz - 1)).any().item<bool>()) {
      return bad("columns do not increase within a row");
    }
  }
  if (!s.values.isfinite().all().item<bool>()) return bad("a value is not finite");
  return absl::OkStatus();
}

namespace {

// Entry p's column and value, widened.
__attribute__((target("avx2,fma,f16c"))) inline int64_t Col(const int16_t* c, int64_t p) { return c[p]; }
__attribute__((target("avx2,fma,f16c"))) inline int64_t Col(const int32_t* c, int64_t p) { return c[p]; }
__attribute__((target("avx2,fma,f16c"))) inline float Val(const float* v, int64_t p) { return v[p]; }
__attribute__((target("avx2,fma,f16c"))) inline float Val(const uint16_t* v, int64_t p) { return _cvtsh_ss(v[p]); }
// Entries [p, p + 8)'s columns and values as vectors.
__attribute__((target("avx2,fma,f16c"))) inline __m256i Cols8(const int16_t* c, int64_t p) {
  return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + p)));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256i Cols8(const int32_t* c, int64_t p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + p));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 Vals8(const float* v, int64_t p) {
  return _mm256_loadu_ps(v + p);
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 Vals8(const uint16_t* v, int64_t p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + p)));
}

// Rows of x in groups of up to kRows: a row's entries are loaded once per
// group, their columns gathered from each row of the group.
constexpr int64_t kRows = 8;

template <typename C, typename V>
__attribute__((target("avx2,fma,f16c"))) void LinearAdd(const int64_t* offsets, const C* cols, const V* values,
                                                        float scale, const float* const* x_rows, int64_t m,
                                                        int64_t j_begin, int64_t j_end, float* const* y_rows) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    const int64_t p0 = offsets[j], p1 = offsets[j + 1];
    if (p0 == p1) continue;
    for (int64_t i0 = 0; i0 < m; i0 += kRows) {
      const int64_t rows = std::min(kRows, m - i0);
      __m256 acc[kRows];
      for (int64_t i = 0; i < rows; ++i) acc[i] = _mm256_setzero_ps();
      int64_t p = p0;
      for (; p + 8 <= p1; p += 8) {
        const __m256i idx = Cols8(cols, p);
        const __m256 v = Vals8(values, p);
        for (int64_t i = 0; i < rows; ++i) {
          acc[i] = _mm256_fmadd_ps(v, _mm256_i32gather_ps(x_rows[i0 + i], idx, 4), acc[i]);
        }
      }
      for (int64_t i = 0; i < rows; ++i) {
        float sum = HorizontalSum(acc[i]);
        for (int64_t q = p; q < p1; ++q) sum += Val(values, q) * x_rows[i0 + i][Col(cols, q)];
        y_rows[i0 + i][j] += scale * sum;
      }
    }
  }
}

template <typename C, typename V>
__attribute__((target("avx2,fma,f16c"))) void GatherAdd(const int64_t* offsets, const C* cols, const V* values,
                                                        float scale, const int64_t* ids, int64_t m,
                                                        float* const* x_rows) {
  for (int64_t i = 0; i < m; ++i) {
    float* xi = x_rows[i];
    for (int64_t p = offsets[ids[i]]; p < offsets[ids[i] + 1]; ++p) xi[Col(cols, p)] += scale * Val(values, p);
  }
}

// Calls f(offsets, cols, values) with s's pointers in their types.
template <typename F>
void WithPointers(const SparseRows& s, F&& f) {
  const int64_t* offsets = s.offsets.data_ptr<int64_t>();
  const bool half = s.values.scalar_type() == at::kHalf;
  const void* values = s.values.data_ptr();
  const auto* v16 = static_cast<const uint16_t*>(values);
  const auto* v32 = static_cast<const float*>(values);
  if (s.cols.scalar_type() == at::kShort) {
    const int16_t* c = s.cols.data_ptr<int16_t>();
    half ? f(offsets, c, v16) : f(offsets, c, v32);
  } else {
    const int32_t* c = s.cols.data_ptr<int32_t>();
    half ? f(offsets, c, v16) : f(offsets, c, v32);
  }
}

}  // namespace

void SparseRowsLinearAdd(const SparseRows& s, float scale, const float* const* x_rows, int64_t m, int64_t j_begin,
                         int64_t j_end, float* const* y_rows) {
  WithPointers(s, [&](const int64_t* offsets, const auto* cols, const auto* values) {
    LinearAdd(offsets, cols, values, scale, x_rows, m, j_begin, j_end, y_rows);
  });
}

void SparseRowsGatherAdd(const SparseRows& s, float scale, const int64_t* ids, int64_t m, float* const* x_rows) {
  WithPointers(s, [&](const int64_t* offsets, const auto* cols, const auto* values) {
    GatherAdd(offsets, cols, values, scale, ids, m, x_rows);
  });
}

}  // namespace skillpack
