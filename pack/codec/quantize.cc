#include "pack/codec/quantize.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <exception>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "pack/codec/bitpack.h"

namespace skillpack {
namespace {

constexpr int kDampRetries = 4;  // after the first attempt, each 10x more

std::string ShapeString(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    absl::StrAppend(&s, d == 0 ? "" : ", ", t.size(d));
  }
  return s + "]";
}

Status CheckBitsAndGroup(int bits, int64_t group_size) {
  if (!IsSupportedCodeWidth(bits)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported bit width ", bits, " (want 2, 3, 4 or 8)"));
  }
  if (group_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("group size must be positive, got ", group_size));
  }
  return absl::OkStatus();
}

Status CheckMatrix(const at::Tensor& t, absl::string_view name) {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is undefined"));
  }
  if (t.dim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be 2-D, got ", t.dim(), " dimensions"));
  }
  if (!t.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be floating point"));
  }
  if (t.size(0) == 0 || t.size(1) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is empty [", t.size(0), ", ", t.size(1), "]"));
  }
  if (!at::isfinite(t).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has non-finite entries"));
  }
  return absl::OkStatus();
}

// Per-row grid parameters of one group (see the header). wg: float [rows, g].
// Returns scale and zero as float [rows, 1]; zero holds integers in [0, maxq].
std::pair<at::Tensor, at::Tensor> FindGroupParams(const at::Tensor& wg, double maxq) {
  at::Tensor lo = at::clamp_max(wg.amin(1, /*keepdim=*/true), 0.0);
  at::Tensor hi = at::clamp_min(wg.amax(1, /*keepdim=*/true), 0.0);
  const at::Tensor empty = (hi - lo) <= static_cast<double>(FLT_MIN);
  lo = lo.masked_fill(empty, -1.0);
  hi = hi.masked_fill(empty, 1.0);
  at::Tensor scale = (hi - lo) / maxq;
  at::Tensor zero = at::clamp(at::round(-lo / scale), 0.0, maxq);
  return {scale, zero};
}

// Codes (as float) of w under (scale, zero); shapes broadcast.
at::Tensor QuantizeToCodes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& zero, double maxq) {
  return at::clamp(at::round(w / scale) + zero, 0.0, maxq);
}

// Upper Cholesky factor of (H + damp I)⁻¹ as float32, raising the dampening
// 10x per retry while a factorisation fails. H: float64 [n, n] symmetric.
StatusOr<at::Tensor> InverseCholeskyUpper(const at::Tensor& h, double damp_percent) {
  const double mean_diag = h.diagonal().mean().item<double>();
  double damp = damp_percent * mean_diag;
  for (int attempt = 0; attempt <= kDampRetries; ++attempt) {
    at::Tensor hd = h.clone();
    hd.diagonal().add_(damp);
    at::Tensor lower, info;
    std::tie(lower, info) = at::linalg_cholesky_ex(hd, /*upper=*/false, /*check_errors=*/false);
    if (info.item<int64_t>() == 0) {
      const at::Tensor hinv = at::cholesky_inverse(lower, /*upper=*/false);
      at::Tensor upper;
      std::tie(upper, info) = at::linalg_cholesky_ex(hinv, /*upper=*/true, /*check_errors=*/false);
      if (info.item<int64_t>() == 0 && at::isfinite(upper).all().item<bool>()) {
        return upper.to(at::kFloat);
      }
    }
    damp = damp > 0 ? damp * 10.0 : 1e-4 * mean_diag;
  }
  return absl::FailedPreconditionError(absl::StrCat("Hessian is not positive definite even with dampening ",
                                                    damp / 10.0, " (", kDampRetries, " retries from damp_percent ",
                                                    damp_percent, ")"));
}

StatusOr<QuantizedMatrix> QuantizeGptqImpl(const at::Tensor& w, const at::Tensor& hessian,
                                           const QuantizeOptions& opts) {
  RETURN_IF_ERROR(CheckBitsAndGroup(opts.bits, opts.group_size));
  if (opts.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("block size must be positive, got ", opts.block_size));
  }
  if (!(opts.damp_percent >= 0.0f) || !std::isfinite(opts.damp_percent)) {
    return absl::InvalidArgumentError(absl::StrCat("damp_percent must be finite and >= 0, got ", opts.damp_percent));
  }
  RETURN_IF_ERROR(CheckMatrix(w, "weight"));
  RETURN_IF_ERROR(CheckMatrix(hessian, "hessian"));
  const int64_t rows = w.size(0);
  const int64_t cols = w.size(1);
  if (hessian.size(0) != cols || hessian.size(1) != cols) {
    return absl::InvalidArgumentError(absl::StrCat("hessian is [", hessian.size(0), ", ", hessian.size(1),
                                                   "] but the weight has ", cols, " columns"));
  }
  const double maxq = static_cast<double>((1 << opts.bits) - 1);
  const int64_t gs = opts.group_size;
  const int64_t ng = NumGroups(cols, gs);

  at::Tensor W = w.to(at::kFloat).clone(at::MemoryFormat::Contiguous);
  at::Tensor H = hessian.to(W.device(), at::kDouble);
  H = (H + H.t()) * 0.5;

  // Dead inputs: never active in calibration, so their weights do not matter.
  const at::Tensor dead = H.diagonal() <= 0.0;
  if (dead.all().item<bool>()) {
    return absl::InvalidArgumentError("hessian is zero: no calibration inputs were accumulated");
  }
  if (dead.any().item<bool>()) {
    const at::Tensor dead_idx = dead.nonzero().view({-1});
    H.index_fill_(0, dead_idx, 0.0);
    H.index_fill_(1, dead_idx, 0.0);
    H.diagonal().masked_fill_(dead, 1.0);
    W.index_fill_(1, dead_idx, 0.0);
  }

  at::Tensor perm;
  if (opts.act_order) {
    perm = std::get<1>(at::sort(H.diagonal(), /*stable=*/true, /*dim=*/0,
                                /*descending=*/true));
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
  }

  ASSIGN_OR_RETURN(at::Tensor hinv, InverseCholeskyUpper(H, opts.damp_percent));
  H = at::Tensor();  // free

  at::Tensor codes = at::empty({rows, cols}, W.options().dtype(at::kByte));
  at::Tensor scales = at::empty({rows, ng}, W.options());
  at::Tensor zeros = at::empty({rows, ng}, W.options().dtype(at::kByte));
  at::Tensor scale, zero;  // float [rows, 1] of the current group

  for (int64_t i1 = 0; i1 < cols; i1 += opts.block_size) {
    const int64_t i2 = std::min(i1 + opts.block_size, cols);
    const int64_t count = i2 - i1;
    at::Tensor w1 = W.slice(1, i1, i2).clone(at::MemoryFormat::Contiguous);
    at::Tensor err1 = at::empty({rows, count}, W.options());
    const at::Tensor hinv1 = hinv.slice(0, i1, i2).slice(1, i1, i2);

    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      if (col % gs == 0) {
        // Parameters from the fully error-updated weights of the group:
        // in-block columns from w1; columns past the block from W plus the
        // pending update of this block's first i columns, so the result does
        // not depend on block_size.
        const int64_t gend = std::min(col + gs, cols);
        at::Tensor wg;
        if (gend <= i2) {
          wg = w1.slice(1, i, gend - i1);
        } else {
          at::Tensor rest = W.slice(1, i2, gend);
          if (i > 0) {
            rest = at::addmm(rest, err1.slice(1, 0, i), hinv.slice(0, i1, col).slice(1, i2, gend),
                             /*beta=*/1.0, /*alpha=*/-1.0);
          }
          wg = at::cat({w1.slice(1, i, count), rest}, 1);
        }
        std::tie(scale, zero) = FindGroupParams(wg, maxq);
        scales.select(1, col / gs).copy_(scale.squeeze(1));
        zeros.select(1, col / gs).copy_(zero.squeeze(1));
      }
      const at::Tensor wcol = w1.select(1, i);
      const at::Tensor q = QuantizeToCodes(wcol, scale.squeeze(1), zero.squeeze(1), maxq);
      codes.select(1, col).copy_(q);
      const at::Tensor wq = (q - zero.squeeze(1)) * scale.squeeze(1);
      const at::Tensor err = (wcol - wq) / hinv1.select(0, i).select(0, i);
      if (i + 1 < count) {
        w1.slice(1, i + 1, count)
            .addr_(err, hinv1.select(0, i).slice(0, i + 1, count),
                   /*beta=*/1.0, /*alpha=*/-1.0);
      }
      err1.select(1, i).copy_(err);
    }
    if (i2 < cols) {
      W.slice(1, i2, cols)
          .addmm_(err1, hinv.slice(0, i1, i2).slice(1, i2, cols),
                  /*beta=*/1.0, /*alpha=*/-1.0);
    }
  }

  QuantizedMatrix out;
  out.bits = opts.bits;
  out.rows = rows;
  out.cols = cols;
  out.group_size = gs;
  out.codes = codes;
  out.scales = scales;
  out.zeros = zeros;
  out.perm = perm;
  return out;
}

}  // namespace

int64_t NumGroups(int64_t cols, int64_t group_size) { return (cols + group_size - 1) / group_size; }

StatusOr<QuantizedMatrix> QuantizeRtn(const at::Tensor& w, int bits, int64_t group_size) {
  try {
    RETURN_IF_ERROR(CheckBitsAndGroup(bits, group_size));
    RETURN_IF_ERROR(CheckMatrix(w, "weight"));
    const int64_t rows = w.size(0);
    const int64_t cols = w.size(1);
    const int64_t ng = NumGroups(cols, group_size);
    const double maxq = static_cast<double>((1 << bits) - 1);
    const at::Tensor W = w.to(at::kFloat);

    QuantizedMatrix out;
    out.bits = bits;
    out.rows = rows;
    out.cols = cols;
    out.group_size = group_size;
    out.codes = at::empty({rows, cols}, W.options().dtype(at::kByte));
    out.scales = at::empty({rows, ng}, W.options());
    out.zeros = at::empty({rows, ng}, W.options().dtype(at::kByte));
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * group_size;
      const int64_t c1 = std::min(c0 + group_size, cols);
      const at::Tensor wg = W.slice(1, c0, c1);
      at::Tensor scale, zero;
      std::tie(scale, zero) = FindGroupParams(wg, maxq);
      out.codes.slice(1, c0, c1).copy_(QuantizeToCodes(wg, scale, zero, maxq));
      out.scales.select(1, g).copy_(scale.squeeze(1));
      out.zeros.select(1, g).copy_(zero.squeeze(1));
    }
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, "QuantizeRtn");
  }
}

HessianAccumulator::HessianAccumulator(int64_t cols) : cols_(cols) {}

Status HessianAccumulator::Add(const at::Tensor& x) {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != cols_) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration batch must be [..., ", cols_, "], got ", ShapeString(x)));
  }
  if (!x.is_floating_point()) {
    return absl::InvalidArgumentError("calibration batch must be floating");
  }
  try {
    at::Tensor x2 = x.reshape({-1, cols_}).to(at::kFloat);
    if (!at::isfinite(x2).all().item<bool>()) {
      return absl::InvalidArgumentError("calibration batch has non-finite entries");
    }
    if (!sum_.defined()) {
      sum_ = at::zeros({cols_, cols_}, x2.options());
    } else {
      x2 = x2.to(sum_.device());
    }
    sum_.addmm_(x2.t(), x2);
    count_ += x2.size(0);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e, "HessianAccumulator::Add");
  }
}

at::Tensor HessianAccumulator::Hessian() const {
  if (!sum_.defined() || count_ == 0) {
    return at::zeros({cols_, cols_}, at::kFloat);
  }
  return sum_ * (2.0 / static_cast<double>(count_));
}

StatusOr<QuantizedMatrix> QuantizeGptq(const at::Tensor& w, const at::Tensor& hessian, const QuantizeOptions& opts) {
  try {
    return QuantizeGptqImpl(w, hessian, opts);
  } catch (const std::exception& e) {
    return StatusFromException(e, "QuantizeGptq");
  }
}

at::Tensor DequantizeStored(const QuantizedMatrix& q) {
  // A group never spans more than a row: repeating scales by more than cols
  // would only allocate columns that the slice throws away.
  const int64_t gs = std::min(q.group_size, std::max<int64_t>(q.cols, 1));
  const at::Tensor scale = q.scales.repeat_interleave(gs, 1).slice(1, 0, q.cols);
  const at::Tensor zero = q.zeros.to(at::kFloat).repeat_interleave(gs, 1).slice(1, 0, q.cols);
  return (q.codes.to(at::kFloat) - zero) * scale;
}

at::Tensor Dequantize(const QuantizedMatrix& q) {
  at::Tensor stored = DequantizeStored(q);
  if (!q.perm.defined()) return stored;
  // out[:, perm[j]] = stored[:, j]
  return at::empty_like(stored).index_copy_(1, q.perm, stored);
}

Status ValidateQuantizedMatrix(const QuantizedMatrix& q) {
  try {
    RETURN_IF_ERROR(CheckBitsAndGroup(q.bits, q.group_size));
    if (q.rows < 0 || q.cols < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative shape [", q.rows, ", ", q.cols, "]"));
    }
    const int64_t ng = q.num_groups();
    const int64_t maxq = (1 << q.bits) - 1;
    auto check = [&](const at::Tensor& t, absl::string_view name, at::ScalarType dtype, int64_t d0,
                     int64_t d1) -> Status {
      if (!t.defined()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " is missing"));
      }
      if (t.scalar_type() != dtype) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " has dtype ", c10::toString(t.scalar_type()), ", want ", c10::toString(dtype)));
      }
      const bool shape_ok =
          d1 < 0 ? (t.dim() == 1 && t.size(0) == d0) : (t.dim() == 2 && t.size(0) == d0 && t.size(1) == d1);
      if (!shape_ok) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " has the wrong shape for a [", q.rows, ", ", q.cols, "] matrix with ", ng, " groups"));
      }
      if (t.device() != q.codes.device()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " is on a different device from codes"));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(check(q.codes, "codes", at::kByte, q.rows, q.cols));
    RETURN_IF_ERROR(check(q.scales, "scales", at::kFloat, q.rows, ng));
    RETURN_IF_ERROR(check(q.zeros, "zeros", at::kByte, q.rows, ng));
    if (q.codes.numel() > 0 && q.codes.max().item<int64_t>() > maxq) {
      return absl::InvalidArgumentError(absl::StrCat("a code exceeds ", maxq, " for ", q.bits, " bits"));
    }
    if (q.zeros.numel() > 0 && q.zeros.max().item<int64_t>() > maxq) {
      return absl::InvalidArgumentError(absl::StrCat("a zero point exceeds ", maxq, " for ", q.bits, " bits"));
    }
    if (q.scales.numel() > 0 && !(at::isfinite(q.scales).all().item<bool>() && (q.scales > 0).all().item<bool>())) {
      return absl::InvalidArgumentError("scales must be finite and positive");
    }
    if (q.perm.defined()) {
      RETURN_IF_ERROR(check(q.perm, "perm", at::kLong, q.cols, -1));
      const at::Tensor sorted = std::get<0>(at::sort(q.perm));
      if (!at::equal(sorted, at::arange(q.cols, q.perm.options()))) {
        return absl::InvalidArgumentError(absl::StrCat("perm is not a permutation of [0, ", q.cols, ")"));
      }
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e, "ValidateQuantizedMatrix");
  }
}

}  // namespace skillpack
