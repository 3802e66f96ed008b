// What routing is, without tensors: the router's labels and configuration,
// routing policies, and how a row of scores becomes packs with weights. The
// learned classifier itself is router.h.
#ifndef SKILLPACK_ROUTER_POLICY_H_
#define SKILLPACK_ROUTER_POLICY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "pack/assignment.h"

namespace skillpack {

// Version 2 adds the optional module assignment; files without one are
// still written as version 1 so older readers keep reading them.
inline constexpr int kRouterFormatVersion = 2;
inline constexpr char kRouterNoneLabel[] = "none";

struct RouterConfig {
  std::vector<std::string> labels;  // labels[0] == "none"
  int64_t layer = 1;                // features after this many decoder layers
  int64_t hidden_size = 0;          // the base model's hidden size
  int64_t width = 128;              // MLP hidden width
  std::string base_fingerprint;     // of the base the features come from
  // Optional (the paper's R, explicit): each pack's modules when packs are
  // composed (pack/assignment.h). When set, every pack label must have an
  // entry, and the packs a route picks each get weight 1 on their own modules.
  ModuleAssignment assignment;
};

// How scores become packs (scores are a softmax over "none" and the packs).
//  - top1: the best label, when it is a pack whose score is >= threshold.
//  - topk: the k best packs, less those scoring under threshold/2 × the best
//    pack's score, are used when their scores together reach threshold
//    (several packs share the mass: with softmax scores no two packs can each
//    reach 0.5, so the threshold applies to the chosen set). Threshold 0 is
//    plain top-k.
struct RoutingPolicy {
  enum class Mode { kTop1, kTopK };
  Mode mode = Mode::kTop1;
  int32_t k = 2;           // kTopK: at most k packs
  float threshold = 0.5f;  // top1: the pack's score; topk: the chosen packs' total score
};
StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view mode, int32_t k, float threshold);

struct RouteDecision {
  // Chosen packs; weights sum to 1, or are all 1 under a module assignment.
  std::vector<std::pair<std::string, float>> packs;
  // Empty without a module assignment; else parallel to packs: each pack's
  // module filter (pack/selection.h) from the router's assignment.
  std::vector<std::vector<std::string>> modules;
  std::vector<std::pair<std::string, float>> scores;  // every label's score, descending
};

// Applies `policy` to one row of scores (probabilities over cfg labels).
RouteDecision DecideRoute(const std::vector<float>& scores, const std::vector<std::string>& labels,
                          const RoutingPolicy& policy);

// Gives each chosen pack its modules from `assignment` and weight 1 (disjoint
// modules: no pack is diluted by another). No-op for an empty assignment.
// REQUIRES: every pack of `d` has an entry (Router::Create checks the labels).
void ApplyRouterAssignment(const ModuleAssignment& assignment, RouteDecision* d);

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_POLICY_H_
