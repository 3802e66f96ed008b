// The spectrum of a fine-tuning delta: for each projection (attention q/k/v/o,
// MLP gate/up/down) of Δ = W_tuned − W_base, its singular values and the
// fraction of the delta's energy (squared Frobenius norm, Σσ²) that its best
// rank-r approximation keeps. A refinement delta (tuned from a pretrained
// base) concentrates its energy in few directions; a delta from a random base
// is spread over nearly every rank. This is what the compressor's energy-based
// rank (β) exploits, measured independently of it.
#ifndef SKILLPACK_PACK_SPECTRUM_H_
#define SKILLPACK_PACK_SPECTRUM_H_

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/json_util.h"
#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

struct SpectrumOptions {
  std::vector<int64_t> ranks = {1, 2, 4, 8, 16, 32, 64, 128};  // energy kept at these ranks
  std::vector<double> energies = {0.9, 0.95, 0.99};            // smallest rank reaching these
};

// INVALID_ARGUMENT naming the option: ranks must be >= 1, energies in (0, 1].
Status ValidateSpectrumOptions(const SpectrumOptions& o);

struct MatrixSpectrum {
  int64_t rows = 0, cols = 0;
  double energy = 0;                    // Σσ² (= ‖Δ‖_F²)
  std::vector<double> singular_values;  // descending, min(rows, cols) of them
  // energy_at_rank[i]: Σ_{j<=ranks[i]} σ_j² / Σσ² (1 when the rank is >= min(rows, cols);
  // 1 for a zero matrix).
  std::vector<double> energy_at_rank;
  // rank_for_energy[i]: the smallest k with Σ_{j<=k} σ_j² >= energies[i] · Σσ² (0 for a zero matrix).
  std::vector<int64_t> rank_for_energy;
};

// The spectrum of one 2-D matrix (any float dtype; computed in float64).
// INVALID_ARGUMENT when `m` is not 2-D, is empty, or holds a non-finite value.
StatusOr<MatrixSpectrum> ComputeSpectrum(const at::Tensor& m, const SpectrumOptions& o);

// Per projection of every layer, the spectrum of tuned − base, and per
// projection type the mean of energy_at_rank / rank_for_energy over layers.
// JSON: {"ranks", "energies", "modules": [{"name", "type", "rows", "cols",
// "delta_fro_norm", "relative_delta" (‖Δ‖/‖W_base‖), "energy_at_rank",
// "rank_for_energy", "top_singular_values" (at most 8)}],
// "by_type": {"q_proj": {"modules", "full_rank", "mean_energy_at_rank",
// "mean_rank_for_energy"}, ...}}.
// INVALID_ARGUMENT when the two models' configs disagree in shape (the tensor
// named) or a projection is missing from `tuned`.
StatusOr<Json> DeltaSpectrumReport(const ModelWeights& base, const ModelWeights& tuned, const SpectrumOptions& o);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_SPECTRUM_H_
