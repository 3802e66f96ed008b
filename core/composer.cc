#include "core/composer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

bool IsDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// For a component "A-B" of two decimals, sets *lo/*hi and returns true.
bool ParseRange(absl::string_view c, int64_t* lo, int64_t* hi) {
  const size_t dash = c.find('-');
  if (dash == absl::string_view::npos) return false;
  const absl::string_view a = c.substr(0, dash), b = c.substr(dash + 1);
  if (!IsDecimal(a) || !IsDecimal(b)) return false;
  return absl::SimpleAtoi(a, lo) && absl::SimpleAtoi(b, hi);
}

bool ComponentMatches(absl::string_view pattern, absl::string_view name) {
  if (pattern == "*" || pattern == name) return true;
  int64_t lo = 0, hi = 0, v = 0;
  return ParseRange(pattern, &lo, &hi) && IsDecimal(name) && absl::SimpleAtoi(name, &v) && lo <= v && v <= hi;
}

bool PatternMatches(absl::string_view pattern, absl::string_view module) {
  const std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  const std::vector<absl::string_view> n = absl::StrSplit(module, '.');
  for (size_t start = 0; start + p.size() <= n.size(); ++start) {
    bool all = true;
    for (size_t k = 0; all && k < p.size(); ++k) all = ComponentMatches(p[k], n[start + k]);
    if (all) return true;
  }
  return false;
}

std::string PackLabel(const PackSelection& s, size_t i) {
  return s.pack == nullptr ? absl::StrCat("packs[", i, "]") : absl::StrCat("pack ", s.pack->name);
}

}  // namespace

Status ValidateModuleFilter(const std::vector<std::string>& filter) {
  for (const std::string& pattern : filter) {
    if (pattern.empty()) return absl::InvalidArgumentError("module filter: empty pattern");
    for (absl::string_view c : absl::StrSplit(pattern, '.')) {
      if (c.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("module filter: pattern '", pattern, "' has an empty component"));
      }
      int64_t lo = 0, hi = 0;
      if (ParseRange(c, &lo, &hi) && lo > hi) {
        return absl::InvalidArgumentError(
            absl::StrCat("module filter: pattern '", pattern, "' has an empty range ", c));
      }
    }
  }
  return absl::OkStatus();
}

bool ModuleFilterMatches(const std::vector<std::string>& filter, absl::string_view module) {
  if (filter.empty()) return true;
  for (const std::string& p : filter) {
    if (PatternMatches(p, module)) return true;
  }
  return false;
}

StatusOr<std::shared_ptr<const ModelWeights>> ComposeWeights(const ModelWeights& base,
                                                             const std::vector<PackSelection>& packs) {
  // module name -> (decoded module, weight), in `packs` order.
  std::map<std::string, std::vector<std::pair<const DecodedModule*, float>>> plan;
  for (size_t i = 0; i < packs.size(); ++i) {
    const PackSelection& s = packs[i];
    const std::string label = PackLabel(s, i);
    if (s.pack == nullptr) return absl::InvalidArgumentError(absl::StrCat(label, ": null pack"));
    if (!std::isfinite(s.weight)) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": weight ", s.weight, " is not finite"));
    }
    RETURN_IF_ERROR(Annotate(ValidateModuleFilter(s.module_filter), label));
    for (const auto& [name, dm] : s.pack->modules) {
      if (name == "lm_head.weight" && base.config().tie_word_embeddings) {
        return absl::FailedPreconditionError(
            absl::StrCat(label,
                         " has a delta for lm_head.weight, but this base ties lm_head to "
                         "model.embed_tokens.weight; such packs are refused"));
      }
      const at::Tensor* t = base.Find(name);
      if (t == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat(label, ": module '", name, "' is not a tensor of the base model"));
      }
      const bool shape_ok = dm.factored() ? (dm.us.dim() == 2 && dm.vt.dim() == 2 && t->dim() == 2 &&
                                             dm.us.size(0) == t->size(0) && dm.vt.size(1) == t->size(1) &&
                                             dm.us.size(1) == dm.vt.size(0))
                                          : (dm.delta.defined() && dm.delta.sizes().equals(t->sizes()));
      if (!shape_ok) {
        return absl::FailedPreconditionError(absl::StrCat(label, ": module '", name,
                                                          "' does not match the base tensor's shape ",
                                                          ShapeString(t->sizes().vec())));
      }
      if (s.weight != 0.0f && ModuleFilterMatches(s.module_filter, name)) {
        plan[name].emplace_back(&dm, s.weight);
      }
    }
  }
  try {
    std::map<std::string, at::Tensor> replacements;
    for (const auto& [name, deltas] : plan) {
      const at::Tensor& b = *base.Find(name);
      at::Tensor acc = b.detach().to(b.device(), at::kFloat, /*non_blocking=*/false, /*copy=*/true);
      for (const auto& [dm, w] : deltas) acc.add_(dm->DenseDelta().to(acc.device()), w);
      replacements.emplace(name, acc.to(b.scalar_type()));
    }
    return base.WithReplaced(replacements);
  } catch (const std::exception& e) {
    return StatusFromException(e, "composing packs");
  }
}

at::Tensor FactorizedLinear(const at::Tensor& x, const at::Tensor& w_base, const at::Tensor& bias,
                            const std::vector<std::pair<const DecodedModule*, float>>& deltas) {
  TORCH_CHECK(w_base.dim() == 2, "FactorizedLinear: w_base must be 2-D");
  at::Tensor y = at::linear(x, w_base, bias);
  for (const auto& [dm, w] : deltas) {
    TORCH_CHECK(dm != nullptr, "FactorizedLinear: null module");
    if (w == 0.0f) continue;
    if (dm->factored()) {
      TORCH_CHECK(dm->us.dim() == 2 && dm->vt.dim() == 2 && dm->us.size(0) == w_base.size(0) &&
                      dm->vt.size(1) == w_base.size(1) && dm->us.size(1) == dm->vt.size(0),
                  "FactorizedLinear: factors of '", dm->name, "' do not fit a weight of shape ",
                  w_base.sizes());
      const at::Tensor vt = dm->vt.to(x.options());
      const at::Tensor us = dm->us.to(x.options());
      y.add_(at::linear(at::linear(x, vt), us), w);
    } else {
      TORCH_CHECK(dm->delta.defined() && dm->delta.sizes().equals(w_base.sizes()),
                  "FactorizedLinear: delta of '", dm->name, "' does not match a weight of shape ",
                  w_base.sizes());
      y.add_(at::linear(x, dm->delta.to(x.options())), w);
    }
  }
  return y;
}

}  // namespace skillpack
