// Composition of decoded SkillPacks onto the base weights (CPU reference):
//
//   W_fused(m) = W_base(m) + Σ_i w_i · g_i(m) · ΔŴ_i(m)
//
// where g_i(m) is 1 when module m passes pack i's module filter. Two ways to
// apply it: ComposeWeights materialises a fused ModelWeights (untouched
// modules alias the base: no copy); ComposeFactorized keeps the deltas as a
// WeightDelta that Transformer::Step applies per sequence on the base weights,
// straight from the low-rank factors, without forming W_fused.
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
#include "core/weight_delta.h"
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

// The same composition kept factorized (core/weight_delta.h): the same checks
// as ComposeWeights, then one term per (module, selection with a nonzero
// weight) referencing the decoded pack's tensors (low-rank factors or sparse
// rows where the module kept them, else the dense delta), scaled by the
// selection's weight.
// Running a sequence on the base with this delta (SeqStep::delta) equals
// running it on ComposeWeights' result up to rounding; no weight is copied.
StatusOr<std::shared_ptr<const WeightDelta>> ComposeFactorized(const ModelWeights& base,
                                                               const std::vector<PackSelection>& selections,
                                                               const std::vector<const DecodedPack*>& packs);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_COMPOSER_H_
