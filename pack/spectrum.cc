#include "pack/spectrum.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "core/tensor_util.h"
#include "pack/compressor.h"

namespace skillpack {

Status ValidateSpectrumOptions(const SpectrumOptions& o) {
  for (size_t i = 0; i < o.ranks.size(); ++i) {
    if (o.ranks[i] < 1)
      return absl::InvalidArgumentError(absl::StrCat("ranks[", i, "] must be >= 1, got ", o.ranks[i]));
  }
  for (size_t i = 0; i < o.energies.size(); ++i) {
    if (!(o.energies[i] > 0 && o.energies[i] <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("energies[", i, "] must be in (0, 1], got ", o.energies[i]));
    }
  }
  return absl::OkStatus();
}

StatusOr<MatrixSpectrum> ComputeSpectrum(const at::Tensor& m, const SpectrumOptions& o) {
  RETURN_IF_ERROR(ValidateSpectrumOptions(o));
  if (!m.defined() || m.dim() != 2 || m.numel() == 0) {
    return absl::InvalidArgumentError("spectrum: expected a non-empty 2-D matrix");
  }
  MatrixSpectrum s;
  s.rows = m.size(0);
  s.cols = m.size(1);
  try {
    at::Tensor d = m.to(at::kDouble).contiguous();
    if (!at::isfinite(d).all().item<bool>()) {
      return absl::InvalidArgumentError("spectrum: the matrix holds a non-finite value");
    }
    at::Tensor sv = at::linalg_svdvals(d);
    const double* p = sv.data_ptr<double>();
    s.singular_values.assign(p, p + sv.numel());
  } catch (const std::exception& e) {
    return StatusFromException(e, "spectrum: SVD");
  }
  std::sort(s.singular_values.rbegin(), s.singular_values.rend());
  std::vector<double> cum(s.singular_values.size());
  double total = 0;
  for (size_t i = 0; i < cum.size(); ++i) cum[i] = (total += s.singular_values[i] * s.singular_values[i]);
  s.energy = total;
  const int64_t full = static_cast<int64_t>(cum.size());
  for (int64_t r : o.ranks) {
    s.energy_at_rank.push_back(total > 0 ? cum[std::min(r, full) - 1] / total : 1.0);
  }
  for (double e : o.energies) {
    int64_t k = 0;
    if (total > 0) {
      // Relative slack so that e = 1 is reached at the last non-zero σ despite rounding.
      const double target = e * total * (1 - 1e-12);
      while (k < full && cum[k] < target) ++k;
      k = std::min(k + 1, full);
    }
    s.rank_for_energy.push_back(k);
  }
  return s;
}

StatusOr<Json> DeltaSpectrumReport(const ModelWeights& base, const ModelWeights& tuned, const SpectrumOptions& o) {
  RETURN_IF_ERROR(ValidateSpectrumOptions(o));
  Json report;
  report["ranks"] = o.ranks;
  report["energies"] = o.energies;
  report["modules"] = Json::array();
  struct TypeSum {
    int64_t modules = 0, full_rank = 0;
    std::vector<double> energy, rank;
  };
  std::map<std::string, TypeSum> by_type;
  for (const auto& [name, w] : base.tensors()) {
    const std::string type = ProjectionType(name);
    if (type.empty()) continue;
    const at::Tensor* t = tuned.Find(name);
    if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("tuned model: no tensor ", name));
    if (!t->sizes().equals(w.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat("tuned model: ", name, " has shape ",
                                                     ShapeString(t->sizes().vec()), ", the base ",
                                                     ShapeString(w.sizes().vec())));
    }
    at::Tensor delta;
    double base_norm = 0;
    try {
      delta = t->to(at::kDouble) - w.to(at::kDouble);
      base_norm = w.to(at::kDouble).norm().item<double>();
    } catch (const std::exception& e) {
      return StatusFromException(e, absl::StrCat("spectrum of ", name));
    }
    StatusOr<MatrixSpectrum> s = ComputeSpectrum(delta, o);
    if (!s.ok()) return Annotate(s.status(), name);
    Json m;
    m["name"] = name;
    m["type"] = type;
    m["rows"] = s->rows;
    m["cols"] = s->cols;
    m["delta_fro_norm"] = std::sqrt(s->energy);
    m["relative_delta"] = base_norm > 0 ? std::sqrt(s->energy) / base_norm : 0.0;
    m["energy_at_rank"] = s->energy_at_rank;
    m["rank_for_energy"] = s->rank_for_energy;
    m["top_singular_values"] = std::vector<double>(
        s->singular_values.begin(), s->singular_values.begin() + std::min<size_t>(8, s->singular_values.size()));
    report["modules"].push_back(m);
    TypeSum& ts = by_type[type];
    ts.modules += 1;
    ts.full_rank = std::min(s->rows, s->cols);
    ts.energy.resize(o.ranks.size());
    ts.rank.resize(o.energies.size());
    for (size_t i = 0; i < o.ranks.size(); ++i) ts.energy[i] += s->energy_at_rank[i];
    for (size_t i = 0; i < o.energies.size(); ++i) ts.rank[i] += static_cast<double>(s->rank_for_energy[i]);
  }
  if (by_type.empty()) return absl::InvalidArgumentError("base model: no attention / MLP projection found");
  Json types = Json::object();
  for (auto& [type, ts] : by_type) {
    for (double& v : ts.energy) v /= static_cast<double>(ts.modules);
    for (double& v : ts.rank) v /= static_cast<double>(ts.modules);
    types[type] = {{"modules", ts.modules},
                   {"full_rank", ts.full_rank},
                   {"mean_energy_at_rank", ts.energy},
                   {"mean_rank_for_energy", ts.rank}};
  }
  report["by_type"] = types;
  return report;
}

}  // namespace skillpack
