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

namespace skillpack {

inline constexpr int kRouterFormatVersion = 1;
inline constexpr char kRouterNoneLabel[] = "none";

struct RouterConfig {
  std::vector<std::string> labels;  // labels[0] == "none"
  int64_t layer = 1;                // features after this many decoder layers
  int64_t hidden_size = 0;          // the base model's hidden size
  int64_t width = 128;              // MLP hidden width
  std::string base_fingerprint;     // of the base the features come from
};

// How scores become packs.
struct RoutingPolicy {
  enum class Mode { kTop1, kTopK };
  Mode mode = Mode::kTop1;
  int32_t k = 2;           // kTopK: at most k packs
  float threshold = 0.5f;  // a pack is used only when its score is >= threshold
};
StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view mode, int32_t k, float threshold);

struct RouteDecision {
  std::vector<std::pair<std::string, float>> packs;   // chosen packs, weights sum to 1
  std::vector<std::pair<std::string, float>> scores;  // every label's score, descending
};

// Applies `policy` to one row of scores (probabilities over cfg labels).
RouteDecision DecideRoute(const std::vector<float>& scores, const std::vector<std::string>& labels,
                          const RoutingPolicy& policy);

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_POLICY_H_
