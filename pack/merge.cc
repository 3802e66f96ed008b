#include "pack/merge.h"

#include <cmath>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

// `d` with all but its k = ceil(density · numel) largest-magnitude entries zeroed.
at::Tensor TrimToTop(const at::Tensor& d, double density) {
  const int64_t n = d.numel();
  const int64_t k = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(density * static_cast<double>(n) - 1e-9)));
  at::Tensor flat = d.reshape({-1});
  at::Tensor out = at::zeros_like(flat);
  if (k > 0) {
    at::Tensor idx = std::get<1>(at::topk(flat.abs(), k, 0, /*largest=*/true, /*sorted=*/false));
    out.index_put_({idx}, flat.index_select(0, idx));
  }
  return out.reshape(d.sizes());
}

}  // namespace

StatusOr<MergeOptions::Method> ParseMergeMethod(absl::string_view name) {
  if (name == "ta") return MergeOptions::Method::kTaskArithmetic;
  if (name == "ties") return MergeOptions::Method::kTies;
  if (name == "dare") return MergeOptions::Method::kDare;
  return absl::InvalidArgumentError(absl::StrCat("merge method must be ta, ties or dare, got '", name, "'"));
}

const char* MergeMethodName(MergeOptions::Method m) {
  switch (m) {
    case MergeOptions::Method::kTaskArithmetic:
      return "ta";
    case MergeOptions::Method::kTies:
      return "ties";
    case MergeOptions::Method::kDare:
      return "dare";
  }
  return "?";
}

Status ValidateMergeOptions(const MergeOptions& o) {
  if (!std::isfinite(o.lambda))
    return absl::InvalidArgumentError(absl::StrCat("lambda must be finite, got ", o.lambda));
  if (!(o.density > 0 && o.density <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("density must be in (0, 1], got ", o.density));
  }
  if (!(o.drop >= 0 && o.drop < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("drop must be in [0, 1), got ", o.drop));
  }
  return absl::OkStatus();
}

StatusOr<at::Tensor> MergeModuleDeltas(const std::vector<at::Tensor>& deltas, const MergeOptions& o,
                                       at::Generator* gen) {
  RETURN_IF_ERROR(ValidateMergeOptions(o));
  if (deltas.empty()) return absl::InvalidArgumentError("nothing to merge");
  for (const at::Tensor& d : deltas) {
    if (!d.defined() || !d.sizes().equals(deltas[0].sizes())) {
      return absl::InvalidArgumentError(
          absl::StrCat("deltas to merge differ in shape: ", ShapeString(deltas[0].sizes().vec()), " vs ",
                       d.defined() ? ShapeString(d.sizes().vec()) : "none"));
    }
  }
  if (o.method == MergeOptions::Method::kDare && gen == nullptr) {
    return absl::InvalidArgumentError("DARE needs a random generator");
  }
  try {
    c10::InferenceMode guard;
    at::Tensor sum = at::zeros(deltas[0].sizes(), at::TensorOptions().dtype(at::kFloat).device(deltas[0].device()));
    switch (o.method) {
      case MergeOptions::Method::kTaskArithmetic:
        for (const at::Tensor& d : deltas) sum.add_(d.to(at::kFloat));
        return sum * o.lambda;
      case MergeOptions::Method::kDare:
        for (const at::Tensor& d : deltas) {
          at::Tensor keep = at::empty(d.sizes(), at::TensorOptions().dtype(at::kFloat)).bernoulli_(1.0 - o.drop, *gen);
          sum.add_(d.to(at::kFloat) * keep.to(d.device()) / (1.0 - o.drop));
        }
        return sum * o.lambda;
      case MergeOptions::Method::kTies: {
        std::vector<at::Tensor> trimmed;
        for (const at::Tensor& d : deltas) {
          trimmed.push_back(TrimToTop(d.to(at::kFloat), o.density));
          sum.add_(trimmed.back());
        }
        const at::Tensor elected = at::sign(sum);
        at::Tensor total = at::zeros_like(sum), count = at::zeros_like(sum);
        for (const at::Tensor& t : trimmed) {
          const at::Tensor agree = (at::sign(t) == elected).logical_and(t != 0).to(at::kFloat);
          total.add_(t * agree);
          count.add_(agree);
        }
        return at::where(count > 0, total / count.clamp_min(1), at::zeros_like(total)) * o.lambda;
      }
    }
    return absl::InternalError("unknown merge method");
  } catch (const std::exception& e) {
    return StatusFromException(e, "merging deltas");
  }
}

StatusOr<std::map<std::string, at::Tensor>> MergePacks(const std::vector<const DecodedPack*>& packs,
                                                       const MergeOptions& o) {
  RETURN_IF_ERROR(ValidateMergeOptions(o));
  if (packs.size() < 2)
    return absl::InvalidArgumentError(absl::StrCat("merging needs at least two packs, got ", packs.size()));
  std::set<std::string> names;
  for (size_t i = 0; i < packs.size(); ++i) {
    if (packs[i] == nullptr) return absl::InvalidArgumentError(absl::StrCat("pack ", i, " is null"));
    for (const auto& [name, m] : packs[i]->modules) names.insert(name);
  }
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  std::map<std::string, at::Tensor> out;
  try {
    c10::InferenceMode guard;
    for (const std::string& name : names) {
      std::vector<at::Tensor> deltas;
      std::vector<int64_t> shape;
      for (const DecodedPack* p : packs) {
        auto it = p->modules.find(name);
        if (it == p->modules.end()) continue;
        at::Tensor d = it->second.DenseDelta();
        if (!shape.empty() && d.sizes().vec() != shape) {
          return absl::InvalidArgumentError(absl::StrCat("module '", name, "' has shape ", ShapeString(d.sizes().vec()),
                                                         " in pack '", p->name, "' but ", ShapeString(shape),
                                                         " in an earlier pack"));
        }
        shape = d.sizes().vec();
        deltas.push_back(d);
      }
      // Packs without the module contribute zeros (they matter to TIES' mean
      // only through the agreeing count, which zeros never join).
      while (deltas.size() < packs.size()) deltas.push_back(at::zeros_like(deltas[0]));
      StatusOr<at::Tensor> merged = MergeModuleDeltas(deltas, o, &gen);
      if (!merged.ok()) return Annotate(merged.status(), absl::StrCat("module '", name, "'"));
      out[name] = *merged;
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "merging packs");
  }
  return out;
}

}  // namespace skillpack
