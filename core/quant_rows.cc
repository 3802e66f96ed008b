#include "core/quant_rows.h"

#include <ATen/ATen.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/small_gemm.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

// Output rows per kernel call: a chunk's products ([m, kChunk] floats, 64 KiB
// at 16 rows of x) stay in L1/L2 until they are added into y (and, group by
// group, while the chunk's groups add into them), and a 1.1B lm_head (32000
// rows, 16 groups) takes ~4k SmallGemmI8 calls per pack set, not one per
// group and 24 rows.
constexpr int64_t kChunk = 1024;

// Where the grouped kernel does not run (SmallGemmGroupedI8Runs: the AVX2
// kernel, or groups not a multiple of 16 columns), from this many rows of x on
// a block of kDequantBlock output rows is made float32 in L2 first and
// multiplied by the float32 kernel: the int8 kernel widens every code once per
// few rows of x and sums each group's 128 columns apart, so on a 1.1B lm_head
// (a probe, one thread, bench/README.md) it took 16.6 / 30.6 ms at 8 / 16 rows
// against 15.3 / 24.0 this way (and 10.0 against 11.9 at 4 rows).
constexpr int64_t kDequantMinRows = 8;
constexpr int64_t kDequantBlock = 2 * kSmallGemmBlock;

// w[j] = (c[j] + z) · s for j < n: one row's group of codes made float32.
__attribute__((target("avx2,fma"))) void DequantizeCodes(const int8_t* c, int64_t n, float s, float z, float* w) {
  const __m256 vs = _mm256_set1_ps(s), vzs = _mm256_set1_ps(z * s);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + j))));
    _mm256_storeu_ps(w + j, _mm256_fmadd_ps(v, vs, vzs));
  }
  for (; j < n; ++j) w[j] = (static_cast<float>(c[j]) + z) * s;
}

// y_rows[i][c0 + r] += scale · block[i · n + r]: a block of m rows × n
// outputs, each row's products, added to x's rows' outputs c0 .. c0 + n.
void AddScaledBlock(const float* block, int64_t m, int64_t n, float scale, int64_t c0, float* const* y_rows) {
  for (int64_t i = 0; i < m; ++i) {
    float* y = y_rows[i] + c0;
    const float* b = block + i * n;
    for (int64_t r = 0; r < n; ++r) y[r] += scale * b[r];
  }
}

// QuantRowsLinearAdd for m >= kDequantMinRows: blocks of output rows made
// float32 (their padding columns too: xs is zero there), then SmallGemm.
void DequantizedLinearAdd(const QuantRows& q, float scale, const float* xs, int64_t m, int64_t r_begin, int64_t r_end,
                          float* const* y_rows) {
  const int64_t ld = QuantRowsInputStride(q), groups = q.num_groups(), gs = q.group_size(), rows = q.rows();
  const int64_t width = groups * gs;
  const int8_t* codes = q.codes.data_ptr<int8_t>();
  const float* scales = q.scales.data_ptr<float>();
  const float* shifts = q.shifts.data_ptr<float>();
  thread_local std::vector<float> w, out;
  w.resize(kDequantBlock * width);
  out.resize(m * kDequantBlock);
  for (int64_t b0 = r_begin; b0 < r_end; b0 += kDequantBlock) {
    const int64_t nb = std::min(kDequantBlock, r_end - b0);
    for (int64_t r = 0; r < nb; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t gr = g * rows + b0 + r;  // group g's row b0 + r
        DequantizeCodes(codes + gr * gs, gs, scales[gr], shifts[gr], w.data() + r * width + g * gs);
      }
    }
    SmallGemm(xs, m, width, ld, w.data(), nullptr, 0, nb, out.data(), nb);
    AddScaledBlock(out.data(), m, nb, scale, b0, y_rows);
  }
}

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
  if (SmallGemmGroupedI8Runs(gs)) {
    thread_local std::vector<float> out;
    for (int64_t c0 = r_begin; c0 < r_end; c0 += kChunk) {
      const int64_t n = std::min(kChunk, r_end - c0);
      out.resize(m * n);
      SmallGemmGroupedI8(xs, sums, m, groups, gs, ld, codes, scales, shifts, rows, c0, c0 + n, out.data(), n);
      AddScaledBlock(out.data(), m, n, scale, c0, y_rows);
    }
    return;
  }
  if (m >= kDequantMinRows) {
    DequantizedLinearAdd(q, scale, xs, m, r_begin, r_end, y_rows);
    return;
  }
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
    AddScaledBlock(acc.data(), m, n, scale, c0, y_rows);
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
