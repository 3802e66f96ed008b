// Composition of decoded SkillPacks onto the base weights (CPU reference):
//
//   W_fused(m) = W_base(m) + Σ_i w_i · g_i(m) · ΔŴ_i(m)
//
// where g_i(m) is 1 when module m passes pack i's module filter. Two ways to
// apply it: ComposeWeights materialises a fused ModelWeights (untouched
// modules alias the base: no copy), FactorizedLinear applies the deltas of one
// linear layer straight from the low-rank factors without forming W_fused.
//
// The module filter g_i is a PackSelection's (pack/selection.h).
#ifndef SKILLPACK_PACK_COMPOSER_H_
#define SKILLPACK_PACK_COMPOSER_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "core/weights.h"
#include "pack/decode.h"
#include "pack/selection.h"

namespace skillpack {

// The fused weights for `selections` applied in order, selections[i] using
// the decoded pack packs[i] (not owned; must outlive the call; the selection's
// name only labels errors). INVALID_ARGUMENT when the vectors differ in size. Every module of every
// selected pack must be a tensor of `base` with the same shape
// (FAILED_PRECONDITION naming pack and module otherwise; a delta for
// "lm_head.weight" on a base with tied embeddings is refused the same way).
// A module touched by at least one pack with a nonzero weight gets a new
// tensor, computed in fp32 as base + w_1 ΔŴ_1 + w_2 ΔŴ_2 + ... (in `packs`
// order) and cast to the base tensor's dtype on its device; every other module
// aliases the base tensor. Base tensors are never written. INVALID_ARGUMENT for
// a null pack, a non-finite weight, a bad filter or a filter that matches none
// of its pack's modules.
StatusOr<std::shared_ptr<const ModelWeights>> ComposeWeights(const ModelWeights& base,
                                                             const std::vector<PackSelection>& selections,
                                                             const std::vector<const DecodedPack*>& packs);

// Factorized apply of one linear module:
//   y = x W_baseᵀ + bias + Σ_i w_i (x V_iᵀᵀ) US_iᵀ       (factored modules)
//                         + Σ_i w_i x ΔŴ_iᵀ               (dense modules)
// x [..., in] -> y [..., out], in x's dtype and on x's device (factors are
// converted). `bias` may be undefined. Deltas with weight 0 are skipped.
// Throws c10::Error (TORCH_CHECK) on a null module or shapes that do not
// match w_base [out, in]; callers convert at their boundary.
at::Tensor FactorizedLinear(const at::Tensor& x, const at::Tensor& w_base, const at::Tensor& bias,
                            const std::vector<std::pair<const DecodedModule*, float>>& deltas);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_COMPOSER_H_
