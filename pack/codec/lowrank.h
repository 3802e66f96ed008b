// Truncated SVD of weight deltas for SkillPacks: the rank is the smallest that
// keeps a fraction beta of the delta's energy (GraftLLM's explained-variance
// rule, sum_{i<=k} s_i^2 >= beta * sum_i s_i^2), capped by a budget.
//
// Small matrices use an exact SVD; large ones a randomised SVD (Halko,
// Martinsson & Tropp 2011) whose sketch grows until the rule is met. Works on
// CPU or CUDA tensors; factors come back on the input's device.
#ifndef SKILLPACK_PACK_CODEC_LOWRANK_H_
#define SKILLPACK_PACK_CODEC_LOWRANK_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/status.h"

namespace skillpack {

// Pass as max_rank for "no cap".
inline constexpr int64_t kNoRankCap = -1;

// Smallest k with sum_{i<=k} s_i^2 >= beta * sum_i s_i^2 over the 1-D tensor
// of singular values s (sorted here, descending, so any order is accepted).
// Returns 0 when s is empty or all zero. beta is clamped to (0, 1]; beta = 1
// gives the number of nonzero singular values. Sums are in fp64.
int64_t EnergyRank(const at::Tensor& singular_values, double beta);

// Like EnergyRank but against an externally known total energy (e.g.
// ||Δ||_F^2 when s holds only the leading singular values): smallest k with
// sum_{i<=k} s_i^2 >= beta * total_energy, or -1 if all of s falls short.
// s must be sorted descending. Returns 0 if total_energy <= 0.
int64_t EnergyRankOfTotal(const at::Tensor& singular_values, double beta, double total_energy);

// delta ≈ u diag(s) vᵀ.
struct LowRank {
  at::Tensor u;  // float32 [m, k], orthonormal columns
  at::Tensor s;  // float32 [k], descending, >= 0
  at::Tensor v;  // float32 [n, k], orthonormal columns (WhitenedTruncatedSvd: not orthonormal)
  int64_t rank() const { return s.defined() ? s.size(0) : 0; }
};

struct SvdOptions {
  // min(m, n) above this uses the randomised SVD; at or below, the exact one.
  int64_t exact_max_dim = 1024;
  int64_t oversampling = 10;  // extra sketch columns, p
  int power_iterations = 2;   // q, each with QR re-orthonormalisation
  int64_t initial_rank = 64;  // first target rank; doubles until beta is met
  uint64_t seed = 0x5EED;     // sketch RNG (drawn on CPU), for reproducibility
};

// Top-k truncated SVD of delta (floating [m, n], finite), with k the smallest
// rank that keeps a fraction beta in (0, 1] of the energy, then capped at
// max_rank (kNoRankCap: no cap; 0 gives empty factors). k = 0 for an all-zero
// delta. Computed in fp32.
//
// Energy: the total is always ||Δ||_F^2 = sum of squares of all entries (=
// sum of all squared singular values). On the randomised path the sketch's
// singular values s~_i are those of Q Qᵀ Δ, so the returned factors satisfy
// ||Δ - u diag(s) vᵀ||_F^2 = ||Δ||_F^2 - sum_{i<=k} s~_i^2 exactly (up to
// rounding) and the rule sum_{i<=k} s~_i^2 >= beta ||Δ||_F^2 guarantees the
// same explained energy as the exact definition. Since s~_i <= s_i, the
// randomised k is never below the exact one (and in practice equal, or one
// more when a singular value sits right at the threshold). The sketch target
// rank starts at opts.initial_rank and doubles until the rule is met within
// it (or max_rank is reached); past min(m, n) / 2 the exact SVD is used.
// INVALID_ARGUMENT for bad shapes, dtypes, beta or non-finite entries.
StatusOr<LowRank> TruncatedSvd(const at::Tensor& delta, double beta, int64_t max_rank);
StatusOr<LowRank> TruncatedSvd(const at::Tensor& delta, double beta, int64_t max_rank, const SvdOptions& opts);

// Activation-aware truncation: the rank-k factors of Δ [m, n] that minimise
// the output error E‖(Δ − Δ̂) x‖² = tr((Δ − Δ̂) H (Δ − Δ̂)ᵀ) for inputs x with
// second moment `hessian` H [n, n] (symmetric, positive semi-definite), where
// TruncatedSvd minimises ‖Δ − Δ̂‖_F. Computed as the truncated SVD of Δ S with
// H + λI = S Sᵀ (Cholesky, lower; λ = damp · mean diag H, raised tenfold while
// the factorisation fails), mapped back: Δ̂ = u diag(s) (S⁻ᵀ v')ᵀ, i.e. u and s
// are those of Δ S and v = S⁻ᵀ v' (SVD-LLM's whitening: Wang et al., 2024).
// beta applies to the energies of Δ S, i.e. to output energy; H = I gives
// TruncatedSvd's factors. An H with no positive diagonal (a dead input) falls
// back to TruncatedSvd. INVALID_ARGUMENT as TruncatedSvd, and for an H of the
// wrong shape or with non-finite entries, or damp <= 0.
StatusOr<LowRank> WhitenedTruncatedSvd(const at::Tensor& delta, const at::Tensor& hessian, double beta,
                                       int64_t max_rank, double damp = 0.01);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_CODEC_LOWRANK_H_
