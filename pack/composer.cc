#include "pack/composer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

std::string PackLabel(const PackSelection& s, const DecodedPack* pack, size_t i) {
  if (!s.name.empty()) return absl::StrCat("pack ", s.name);
  return pack == nullptr ? absl::StrCat("packs[", i, "]") : absl::StrCat("pack ", pack->name);
}

}  // namespace

StatusOr<std::shared_ptr<const ModelWeights>> ComposeWeights(const ModelWeights& base,
                                                             const std::vector<PackSelection>& selections,
                                                             const std::vector<const DecodedPack*>& packs) {
  if (selections.size() != packs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("composing: ", selections.size(), " selections but ", packs.size(), " decoded packs"));
  }
  // module name -> (decoded module, weight), in `selections` order.
  std::map<std::string, std::vector<std::pair<const DecodedModule*, float>>> plan;
  for (size_t i = 0; i < selections.size(); ++i) {
    const PackSelection& s = selections[i];
    const DecodedPack* pack = packs[i];
    const std::string label = PackLabel(s, pack, i);
    if (pack == nullptr) return absl::InvalidArgumentError(absl::StrCat(label, ": null pack"));
    if (!std::isfinite(s.weight)) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": weight ", s.weight, " is not finite"));
    }
    RETURN_IF_ERROR(Annotate(ValidateModuleFilter(s.modules), label));
    bool filter_matched = s.modules.empty();
    for (const auto& [name, dm] : pack->modules) {
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
      const bool shape_ok =
          dm.factored() ? (dm.us.dim() == 2 && dm.vt.dim() == 2 && t->dim() == 2 && dm.us.size(0) == t->size(0) &&
                           dm.vt.size(1) == t->size(1) && dm.us.size(1) == dm.vt.size(0))
                        : (dm.delta.defined() && dm.delta.sizes().equals(t->sizes()));
      if (!shape_ok) {
        return absl::FailedPreconditionError(absl::StrCat(
            label, ": module '", name, "' does not match the base tensor's shape ", ShapeString(t->sizes().vec())));
      }
      if (ModuleFilterMatches(s.modules, name)) {
        filter_matched = true;
        if (s.weight != 0.0f) plan[name].emplace_back(&dm, s.weight);
      }
    }
    if (!filter_matched) {
      // Almost certainly a typo: serving the base while reporting the pack as used would hide it.
      return absl::InvalidArgumentError(absl::StrCat(label, ": module filter [", absl::StrJoin(s.modules, ", "),
                                                     "] matches none of its ", pack->modules.size(), " modules"));
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
                  "FactorizedLinear: factors of '", dm->name, "' do not fit a weight of shape ", w_base.sizes());
      const at::Tensor vt = dm->vt.to(x.options());
      const at::Tensor us = dm->us.to(x.options());
      y.add_(at::linear(at::linear(x, vt), us), w);
    } else {
      TORCH_CHECK(dm->delta.defined() && dm->delta.sizes().equals(w_base.sizes()), "FactorizedLinear: delta of '",
                  dm->name, "' does not match a weight of shape ", w_base.sizes());
      y.add_(at::linear(x, dm->delta.to(x.options())), w);
    }
  }
  return y;
}

}  // namespace skillpack
