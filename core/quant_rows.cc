#include "core/quant_rows.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/small_gemm.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

// Output rows per SmallGemmI8 call of one group: the products of a chunk
// ([m, kChunk] floats, 64 KiB at 16 rows of x) stay in L1/L2 while the chunk's
// groups add into them, and a 1.1B lm_head (32000 rows, 16 groups) takes ~4k
// calls per pack set, not one per group and 24 rows.
constexpr int64_t kChunk = 1024;

}  // namespace

int64_t QuantRows::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&codes, &scales, &shifts, &perm}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n;
}

at::Tensor QuantRows::GatherRows(const at::Tensor& ids) const {
  const at::Tensor idx = ids.to(codes.device(), at::kLong).reshape({-1});
  const int64_t n = idx.size(0), g = num_groups(), gs = group_size();
  // [g, n, gs] -> [n, g, gs] -> [n, g · gs], the padding dropped.
  const at::Tensor c = codes.index_select(1, idx).to(at::kFloat);
  const at::Tensor s = scales.index_select(1, idx).unsqueeze(2), z = shifts.index_select(1, idx).unsqueeze(2);
  const at::Tensor stored = ((c + z) * s).permute({1, 0, 2}).reshape({n, g * gs}).narrow(1, 0, num_cols);
  if (!perm.defined()) return stored.contiguous();
  at::Tensor out = at::empty({n, num_cols}, stored.options());
  out.index_copy_(1, perm, stored);  // stored column j is column perm[j]
  return out;
}

at::Tensor QuantRows::Dense() const { return GatherRows(at::arange(rows(), codes.options().dtype(at::kLong))); }

Status CheckQuantRows(const QuantRows& q, int64_t rows, int64_t cols) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat("quantised rows: ", what)); };
  if (!q.codes.defined() || !q.scales.defined() || !q.shifts.defined()) {
    return bad("codes, scales and shifts must all be set");
  }
  if (q.codes.scalar_type() != at::kChar || q.codes.dim() != 3 || q.codes.size(1) != rows || q.codes.size(2) < 1) {
    return bad(absl::StrCat("codes must be int8 [groups, ", rows, ", group size], got ",
                            c10::toString(q.codes.scalar_type()), " ", ShapeString(q.codes.sizes().vec())));
  }
  const int64_t gs = q.codes.size(2), groups = (cols + gs - 1) / gs;
  if (q.num_cols != cols || q.codes.size(0) != groups) {
    return bad(absl::StrCat(q.codes.size(0), " groups of ", gs, " for ", q.num_cols, " columns, expected ", cols,
                            " columns in ", groups, " groups"));
  }
  for (const at::Tensor* t : {&q.scales, &q.shifts}) {
    if (t->scalar_type() != at::kFloat || t->sizes().vec() != std::vector<int64_t>{groups, rows}) {
      return bad(absl::StrCat("scales and shifts must be float32 [", groups, ", ", rows, "]"));
    }
  }
  if (q.perm.defined() && (q.perm.scalar_type() != at::kLong || q.perm.dim() != 1 || q.perm.size(0) != cols)) {
    return bad(absl::StrCat("perm must be int64 [", cols, "]"));
  }
  for (const at::Tensor* t : {&q.scales, &q.shifts, &q.perm}) {
    if (t->defined() && t->device() != q.codes.device()) return bad("tensors on different devices");
  }
  if (!q.scales.isfinite().all().item<bool>() || !q.shifts.isfinite().all().item<bool>()) {
    return bad("a scale or shift is not finite");
  }
  if (q.perm.defined() && cols > 0) {
    // A permutation: every column exactly once.
    const at::Tensor p = q.perm.to(at::kCPU);
    if ((p < 0).any().item<bool>() || (p >= cols).any().item<bool>() ||
        at::bincount(p, /*weights=*/{}, cols).max().item<int64_t>() != 1) {
      return bad(absl::StrCat("perm is not a permutation of [0, ", cols, ")"));
    }
  }
  return absl::OkStatus();
}

int64_t QuantRowsInputStride(const QuantRows& q) { return SmallGemmRowStride(q.num_groups() * q.group_size()); }

void QuantRowsPrepareInputs(const QuantRows& q, const float* const* x_rows, int64_t m, float* xs, float* sums) {
  const int64_t ld = QuantRowsInputStride(q), groups = q.num_groups(), gs = q.group_size(), cols = q.num_cols;
  const int64_t* perm = q.perm.defined() ? q.perm.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < m; ++i) {
    float* dst = xs + i * ld;
    const float* src = x_rows[i];
    if (perm == nullptr) {
      std::copy_n(src, cols, dst);
    } else {
      for (int64_t j = 0; j < cols; ++j) dst[j] = src[perm[j]];
    }
    std::fill(dst + cols, dst + ld, 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      float s = 0.0f;
      for (int64_t j = g * gs; j < std::min(cols, (g + 1) * gs); ++j) s += dst[j];
      sums[i * groups + g] = s;
    }
  }
}

void QuantRowsLinearAdd(const QuantRows& q, float scale, const float* xs, const float* sums, int64_t m, int64_t r_begin,
                        int64_t r_end, float* const* y_rows) {
  const int64_t ld = QuantRowsInputStride(q), groups = q.num_groups(), gs = q.group_size(), rows = q.rows();
  const int8_t* codes = q.codes.data_ptr<int8_t>();
  const float* scales = q.scales.data_ptr<float>();
  const float* shifts = q.shifts.data_ptr<float>();
  thread_local std::vector<float> part, acc;
  for (int64_t c0 = r_begin; c0 < r_end; c0 += kChunk) {
    const int64_t n = std::min(kChunk, r_end - c0);
    part.resize(m * n);
    acc.assign(m * n, 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      // part[i][r] = Σ_jj codes[g][c0 + r][jj] · xs[i][g · gs + jj]
      SmallGemmI8(xs + g * gs, m, gs, ld, codes + (g * rows + c0) * gs, nullptr, 0, n, part.data(), n);
      const float* s = scales + g * rows + c0;
      const float* z = shifts + g * rows + c0;
      for (int64_t i = 0; i < m; ++i) {
        const float xsum = sums[i * groups + g];
        float* a = acc.data() + i * n;
        const float* p = part.data() + i * n;
        for (int64_t r = 0; r < n; ++r) a[r] += s[r] * (p[r] + z[r] * xsum);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      float* y = y_rows[i] + c0;
      const float* a = acc.data() + i * n;
      for (int64_t r = 0; r < n; ++r) y[r] += scale * a[r];
    }
  }
}

void QuantRowsGatherAdd(const QuantRows& q, float scale, const int64_t* ids, int64_t m, float* const* x_rows) {
  const int64_t groups = q.num_groups(), gs = q.group_size(), rows = q.rows(), cols = q.num_cols;
  const int8_t* codes = q.codes.data_ptr<int8_t>();
  const float* scales = q.scales.data_ptr<float>();
  const float* shifts = q.shifts.data_ptr<float>();
  const int64_t* perm = q.perm.defined() ? q.perm.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t r = ids[i];
    float* x = x_rows[i];
    for (int64_t g = 0; g < groups; ++g) {
      const float s = scale * scales[g * rows + r], z = shifts[g * rows + r];
      const int8_t* c = codes + (g * rows + r) * gs;
      for (int64_t j = g * gs; j < std::min(cols, (g + 1) * gs); ++j) {
        x[perm != nullptr ? perm[j] : j] += s * (static_cast<float>(c[j - g * gs]) + z);
      }
    }
  }
}

}  // namespace skillpack
