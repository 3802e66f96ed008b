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

// module name -> (decoded module, weight), in `selections` order.
using CompositionPlan = std::map<std::string, std::vector<std::pair<const DecodedModule*, float>>>;

// Validates the selections against `base` and lists each module's deltas (the
// checks ComposeWeights documents).
StatusOr<CompositionPlan> Plan(const ModelWeights& base, const std::vector<PackSelection>& selections,
                               const std::vector<const DecodedPack*>& packs) {
  if (selections.size() != packs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("composing: ", selections.size(), " selections but ", packs.size(), " decoded packs"));
  }
  CompositionPlan plan;
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
          dm.factored()    ? (dm.us.dim() == 2 && dm.vt.dim() == 2 && t->dim() == 2 && dm.us.size(0) == t->size(0) &&
                           dm.vt.size(1) == t->size(1) && dm.us.size(1) == dm.vt.size(0))
          : dm.is_sparse() ? (t->dim() == 2 && dm.sparse.rows() == t->size(0) && dm.sparse.num_cols == t->size(1))
          : dm.is_quant()  ? (t->dim() == 2 && dm.quant.rows() == t->size(0) && dm.quant.num_cols == t->size(1))
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
  return plan;
}

}  // namespace

StatusOr<std::shared_ptr<const ModelWeights>> ComposeWeights(const ModelWeights& base,
                                                             const std::vector<PackSelection>& selections,
                                                             const std::vector<const DecodedPack*>& packs) {
  ASSIGN_OR_RETURN(CompositionPlan plan, Plan(base, selections, packs));
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

StatusOr<std::shared_ptr<const WeightDelta>> ComposeFactorized(const ModelWeights& base,
                                                               const std::vector<PackSelection>& selections,
                                                               const std::vector<const DecodedPack*>& packs) {
  ASSIGN_OR_RETURN(CompositionPlan plan, Plan(base, selections, packs));
  std::map<std::string, std::vector<DeltaTerm>> terms;
  for (const auto& [name, deltas] : plan) {
    for (const auto& [dm, w] : deltas) {
      DeltaTerm t;
      if (dm->factored()) {
        t.us = dm->us;
        t.vt = dm->vt;
        t.rank_scale = dm->rank_scale;
        t.scale = w * dm->factor_scale;
      } else if (dm->is_sparse()) {
        t.sparse = dm->sparse;
        t.scale = w;
      } else if (dm->is_quant()) {
        t.quant = dm->quant;
        t.scale = w;
      } else {
        t.dense = dm->delta;  // float32, or float16 times factor_scale
        t.scale = w * dm->factor_scale;
      }
      terms[name].push_back(std::move(t));
    }
  }
  return WeightDelta::Create(base.config(), std::move(terms));
}

}  // namespace skillpack
