#include "router/policy.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "router/lexicon.h"

namespace skillpack {

const char* PoolingName(Pooling p) {
  switch (p) {
    case Pooling::kMean:
      return "mean";
    case Pooling::kMax:
      return "max";
    case Pooling::kLast:
      return "last";
    case Pooling::kSurprisal:
      return "surprisal";
    case Pooling::kSurprisalProfile:
      return "surprisal_profile";
    case Pooling::kLexicon:
      return "lexicon";
    case Pooling::kLexiconMax:
      return "lexicon_max";
  }
  return "?";
}

bool HasPooling(const std::vector<Pooling>& pooling, Pooling kind) {
  return std::find(pooling.begin(), pooling.end(), kind) != pooling.end();
}

bool ReadsLexicon(const std::vector<Pooling>& pooling) {
  return std::any_of(pooling.begin(), pooling.end(), IsLexical);
}

int64_t RouterFeatureSize(int64_t hidden_size, size_t num_layers, const std::vector<Pooling>& pooling) {
  int64_t blocks = 0, other = 0;
  for (Pooling p : pooling) {
    if (PoolsHiddenStates(p)) {
      ++blocks;
    } else {
      other += IsLexical(p) ? kLexiconFeatureSize : kSurprisalProfileSize;
    }
  }
  return hidden_size * static_cast<int64_t>(num_layers) * blocks + other;
}

int64_t RouterConfig::FeatureSize() const { return RouterFeatureSize(hidden_size, layers.size(), pooling); }

StatusOr<Pooling> ParsePooling(absl::string_view name) {
  for (Pooling p : {Pooling::kMean, Pooling::kMax, Pooling::kLast, Pooling::kSurprisal, Pooling::kSurprisalProfile,
                    Pooling::kLexicon, Pooling::kLexiconMax}) {
    if (name == PoolingName(p)) return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "router pooling must be mean, max, last, surprisal, surprisal_profile, lexicon or lexicon_max, got '", name,
      "'"));
}

StatusOr<std::vector<Pooling>> ParsePoolingList(absl::string_view list) {
  std::vector<Pooling> out;
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    ASSIGN_OR_RETURN(Pooling p, ParsePooling(name));
    if (HasPooling(out, p)) {
      return absl::InvalidArgumentError(absl::StrCat("router pooling '", name, "' is listed twice"));
    }
    out.push_back(p);
  }
  return out;
}

StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view mode, int32_t k, float threshold) {
  RoutingPolicy p;
  if (mode == "top1") {
    p.mode = RoutingPolicy::Mode::kTop1;
  } else if (mode == "topk") {
    p.mode = RoutingPolicy::Mode::kTopK;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("routing mode must be top1 or topk, got '", mode, "'"));
  }
  if (k < 1 || k > 16) return absl::InvalidArgumentError(absl::StrCat("routing k must be in [1, 16], got ", k));
  if (!(threshold >= 0 && threshold <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("routing threshold must be in [0, 1], got ", threshold));
  }
  p.k = k;
  p.threshold = threshold;
  return p;
}

RouteDecision DecideRoute(const std::vector<float>& scores, const std::vector<std::string>& labels,
                          const RoutingPolicy& policy) {
  RouteDecision d;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  for (size_t i : order) d.scores.emplace_back(labels[i], scores[i]);
  if (policy.mode == RoutingPolicy::Mode::kTop1) {
    // The best label wins; "none" or a score under the threshold means no pack.
    size_t best = order.front();
    if (best != 0 && scores[best] >= policy.threshold) d.packs.emplace_back(labels[best], 1.0f);
    return d;
  }
  float best = -1, total = 0;
  for (size_t i : order) {
    if (static_cast<int32_t>(d.packs.size()) >= policy.k) break;
    if (i == 0 || !(scores[i] > 0)) continue;
    if (best < 0) best = scores[i];
    if (scores[i] < 0.5f * policy.threshold * best) break;  // `order` is descending
    d.packs.emplace_back(labels[i], scores[i]);
    total += scores[i];
  }
  if (d.packs.empty() || total < policy.threshold) {
    d.packs.clear();
    return d;
  }
  for (auto& [name, w] : d.packs) w /= total;
  return d;
}

void ApplyRouterAssignment(const ModuleAssignment& assignment, RouteDecision* d) {
  if (assignment.empty()) return;
  d->modules.clear();
  for (auto& [name, w] : d->packs) {
    w = 1.0f;
    auto it = assignment.filters.find(name);
    d->modules.push_back(it != assignment.filters.end() ? it->second : std::vector<std::string>());
  }
}

}  // namespace skillpack
