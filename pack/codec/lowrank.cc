#include "pack/codec/lowrank.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

// Squared values of a 1-D tensor as fp64 on the host, in the tensor's order.
std::vector<double> SquaredHost(const at::Tensor& s) {
  const at::Tensor sq = s.detach().to(at::kCPU, at::kDouble).contiguous();
  std::vector<double> out(static_cast<size_t>(sq.numel()));
  const double* p = sq.data_ptr<double>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i] * p[i];
  return out;
}

// Smallest k with prefix sum of e[0..k) >= target; -1 if never.
int64_t PrefixReaching(const std::vector<double>& e, double target) {
  double acc = 0.0;
  for (size_t i = 0; i < e.size(); ++i) {
    acc += e[i];
    if (acc >= target) return static_cast<int64_t>(i) + 1;
  }
  return -1;
}

LowRank EmptyFactors(const at::Tensor& a) {
  const auto opts = a.options().dtype(at::kFloat);
  return LowRank{at::zeros({a.size(0), 0}, opts), at::zeros({0}, opts), at::zeros({a.size(1), 0}, opts)};
}

int64_t Cap(int64_t k, int64_t max_rank) { return max_rank >= 0 ? std::min(k, max_rank) : k; }

LowRank ExactTopK(const at::Tensor& a, double beta, int64_t max_rank) {
  at::Tensor u, s, vh;
  std::tie(u, s, vh) = at::linalg_svd(a, /*full_matrices=*/false);
  const int64_t k = Cap(EnergyRank(s, beta), max_rank);
  if (k == 0) return EmptyFactors(a);
  return LowRank{u.slice(1, 0, k).contiguous(), s.slice(0, 0, k).contiguous(), vh.slice(0, 0, k).t().contiguous()};
}

at::Tensor Orthonormal(const at::Tensor& y) { return std::get<0>(at::linalg_qr(y, "reduced")); }

LowRank RandomizedTopK(const at::Tensor& a, double beta, int64_t max_rank, const SvdOptions& opts) {
  const int64_t m = a.size(0);
  const int64_t n = a.size(1);
  const int64_t mn = std::min(m, n);
  const double total = a.square().sum(at::kDouble).item<double>();
  if (total <= 0.0 || max_rank == 0) return EmptyFactors(a);

  at::Generator gen = at::detail::createCPUGenerator(opts.seed);
  const int64_t p = std::max<int64_t>(opts.oversampling, 0);
  // The first sketch is not shrunk to a small cap: the extra columns make the
  // leading factors more accurate for little cost.
  int64_t l = std::max<int64_t>(opts.initial_rank, 1);
  while (true) {
    const int64_t ls = l + p;
    if (ls > mn / 2) return ExactTopK(a, beta, max_rank);
    const at::Tensor omega = at::randn({n, ls}, gen, at::TensorOptions().dtype(at::kFloat)).to(a.device());
    at::Tensor q = Orthonormal(at::mm(a, omega));
    for (int it = 0; it < opts.power_iterations; ++it) {
      q = Orthonormal(at::mm(a, Orthonormal(at::mm(a.t(), q))));
    }
    at::Tensor ub, s, vh;
    std::tie(ub, s, vh) = at::linalg_svd(at::mm(q.t(), a), /*full_matrices=*/false);
    // Only the target rank l counts; the oversampled tail is inaccurate.
    int64_t k = EnergyRankOfTotal(s.slice(0, 0, l), beta, total);
    const bool at_cap = max_rank >= 0 && l >= max_rank;
    if (k >= 0 || at_cap) {
      k = k >= 0 ? Cap(k, max_rank) : max_rank;
      if (k == 0) return EmptyFactors(a);
      return LowRank{at::mm(q, ub.slice(1, 0, k)).contiguous(), s.slice(0, 0, k).contiguous(),
                     vh.slice(0, 0, k).t().contiguous()};
    }
    l = Cap(2 * l, max_rank);  // at_cap holds on the next pass if capped
  }
}

StatusOr<LowRank> TruncatedSvdImpl(const at::Tensor& delta, double beta, int64_t max_rank, const SvdOptions& opts) {
  if (!(beta > 0.0 && beta <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("beta must be in (0, 1], got ", beta));
  }
  if (!delta.defined() || delta.dim() != 2) {
    return absl::InvalidArgumentError("delta must be a 2-D tensor");
  }
  if (!delta.is_floating_point()) {
    return absl::InvalidArgumentError("delta must be floating point");
  }
  const at::Tensor a = delta.detach().to(at::kFloat);
  if (a.numel() == 0) return EmptyFactors(a);
  if (!at::isfinite(a).all().item<bool>()) {
    return absl::InvalidArgumentError("delta has non-finite entries");
  }
  if (max_rank == 0) return EmptyFactors(a);
  if (std::min(a.size(0), a.size(1)) <= opts.exact_max_dim) {
    return ExactTopK(a, beta, max_rank);
  }
  return RandomizedTopK(a, beta, max_rank, opts);
}

}  // namespace

int64_t EnergyRank(const at::Tensor& singular_values, double beta) {
  if (!singular_values.defined() || singular_values.numel() == 0) return 0;
  beta = std::min(std::max(beta, 0.0), 1.0);
  const at::Tensor sorted = std::get<0>(at::sort(singular_values.detach().reshape({-1}).abs(), /*stable=*/false,
                                                 /*dim=*/0, /*descending=*/true));
  const std::vector<double> e = SquaredHost(sorted);
  double total = 0.0;
  for (double x : e) total += x;
  if (total <= 0.0) return 0;
  if (beta <= 0.0) return 1;  // clamped: the smallest useful rank
  // Same summation order as the prefix sums, so beta = 1 is reached exactly
  // at the last nonzero value.
  const int64_t k = PrefixReaching(e, beta * total);
  return k >= 0 ? k : static_cast<int64_t>(e.size());
}

int64_t EnergyRankOfTotal(const at::Tensor& singular_values, double beta, double total_energy) {
  if (total_energy <= 0.0) return 0;
  if (!singular_values.defined() || singular_values.numel() == 0) return -1;
  return PrefixReaching(SquaredHost(singular_values.reshape({-1})), beta * total_energy);
}

StatusOr<LowRank> TruncatedSvd(const at::Tensor& delta, double beta, int64_t max_rank) {
  return TruncatedSvd(delta, beta, max_rank, SvdOptions());
}

StatusOr<LowRank> TruncatedSvd(const at::Tensor& delta, double beta, int64_t max_rank, const SvdOptions& opts) {
  try {
    return TruncatedSvdImpl(delta, beta, max_rank, opts);
  } catch (const std::exception& e) {
    return StatusFromException(e, "TruncatedSvd");
  }
}

StatusOr<LowRank> WhitenedTruncatedSvd(const at::Tensor& delta, const at::Tensor& hessian, double beta,
                                       int64_t max_rank, double damp) {
  try {
    if (!delta.defined() || delta.dim() != 2) return absl::InvalidArgumentError("delta must be a 2-D tensor");
    const int64_t n = delta.size(1);
    if (!hessian.defined() || hessian.dim() != 2 || hessian.size(0) != n || hessian.size(1) != n ||
        !hessian.is_floating_point()) {
      return absl::InvalidArgumentError(absl::StrCat("hessian must be a floating [", n, ", ", n, "] tensor"));
    }
    if (!(damp > 0.0) || !std::isfinite(damp)) {
      return absl::InvalidArgumentError(absl::StrCat("damp must be > 0, got ", damp));
    }
    at::Tensor h = hessian.detach().to(at::kDouble).cpu();
    if (!at::isfinite(h).all().item<bool>()) return absl::InvalidArgumentError("hessian has non-finite entries");
    h = (h + h.t()) * 0.5;
    if (n > 0 && h.diagonal().min().item<double>() < 0.0) {
      return absl::InvalidArgumentError("hessian is not positive semi-definite (a negative diagonal entry)");
    }
    const double mean_diag = n > 0 ? h.diagonal().mean().item<double>() : 0.0;
    if (!(mean_diag > 0.0)) return TruncatedSvd(delta, beta, max_rank);
    const at::Tensor eye = at::eye(n, h.options());
    at::Tensor chol;
    for (double lambda = damp * mean_diag;; lambda *= 10) {
      auto [l, info] = at::linalg_cholesky_ex(h + eye * lambda);
      if (info.item<int64_t>() == 0) {
        chol = l;
        break;
      }
      if (lambda > 1e6 * mean_diag) return absl::InvalidArgumentError("hessian is not positive semi-definite");
    }
    const at::Tensor d = delta.detach().to(at::kDouble).to(h.device());
    ASSIGN_OR_RETURN(LowRank lr, TruncatedSvd(at::mm(d, chol).to(at::kFloat), beta, max_rank));
    if (lr.rank() > 0) {
      // v = S⁻ᵀ v': solve Sᵀ v = v' (Sᵀ upper triangular).
      lr.v = at::linalg_solve_triangular(chol.t(), lr.v.to(at::kDouble), /*upper=*/true)
                 .to(at::kFloat)
                 .to(delta.device())
                 .contiguous();
      lr.u = lr.u.to(delta.device());
      lr.s = lr.s.to(delta.device());
    }
    return lr;
  } catch (const std::exception& e) {
    return StatusFromException(e, "WhitenedTruncatedSvd");
  }
}

}  // namespace skillpack
