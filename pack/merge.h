// Weight-merging baselines that SkillPack routing is measured against: they
// fold several packs' deltas into ONE delta, so skills share every module and
// may interfere. Each works module by module on the decoded deltas
// ΔŴ_1..ΔŴ_n (a pack without the module contributes zeros):
//  - Task Arithmetic (Ilharco et al. 2023): Δ = λ Σ_i ΔŴ_i.
//  - TIES (Yadav et al. 2023): trim each ΔŴ_i to its top `density` fraction
//    of entries by magnitude (the rest zero), elect a sign per entry
//    γ = sign(Σ_i trimmed_i) (the sign of the larger total mass), then take
//    the disjoint mean: the mean of the trimmed entries whose sign is γ
//    (entries with γ = 0 or no agreeing value are 0); Δ = λ · that.
//  - DARE (Yu et al. 2024): drop each entry of each ΔŴ_i with probability p,
//    rescale the kept ones by 1 / (1 − p), then Task Arithmetic. Drops come
//    from a generator seeded with `seed`, drawn module by module in name
//    order and pack by pack, so the same inputs and seed give the same merge.
#ifndef SKILLPACK_PACK_MERGE_H_
#define SKILLPACK_PACK_MERGE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "pack/decode.h"

namespace skillpack {

struct MergeOptions {
  enum class Method { kTaskArithmetic, kTies, kDare };
  Method method = Method::kTaskArithmetic;
  double lambda = 1.0;   // scale of the merged delta, finite
  double density = 0.2;  // TIES: fraction of entries kept per delta, in (0, 1]
  double drop = 0.5;     // DARE: drop probability p, in [0, 1)
  uint64_t seed = 0;     // DARE
};
// "ta", "ties" or "dare"; INVALID_ARGUMENT otherwise.
StatusOr<MergeOptions::Method> ParseMergeMethod(absl::string_view name);
const char* MergeMethodName(MergeOptions::Method m);
// Range checks (INVALID_ARGUMENT naming the field).
Status ValidateMergeOptions(const MergeOptions& o);

// Merges same-shaped float deltas of one module by `o.method`. `gen` is used
// by DARE only (must not be null then). INVALID_ARGUMENT for no deltas or
// differing shapes.
StatusOr<at::Tensor> MergeModuleDeltas(const std::vector<at::Tensor>& deltas, const MergeOptions& o,
                                       at::Generator* gen);

// Merges whole decoded packs: module name -> merged delta (float32), over the
// union of the packs' modules. INVALID_ARGUMENT for fewer than two packs, a
// null pack, bad options, or a module whose shape differs between packs.
StatusOr<std::map<std::string, at::Tensor>> MergePacks(const std::vector<const DecodedPack*>& packs,
                                                       const MergeOptions& o);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_MERGE_H_
