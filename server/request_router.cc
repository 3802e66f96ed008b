#include "server/request_router.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "core/model.h"
#include "core/sha256.h"
#include "core/tokenizer.h"
#include "router/router.h"
#include "server/server_metrics.h"

namespace skillpack {

const char* RoutingModeName(const RoutingPolicy& p) { return p.mode == RoutingPolicy::Mode::kTopK ? "topk" : "top1"; }

RequestRouter::RequestRouter(const LoadedModel* model, const Tokenizer* tokenizer, std::string base_fingerprint,
                             const PackStore* store, RequestRouterOptions options, ServerMetrics* metrics)
    : model_(model),
      tokenizer_(tokenizer),
      base_fingerprint_(std::move(base_fingerprint)),
      store_(store),
      options_(options),
      metrics_(metrics) {}

StatusOr<LoadedRouter> RequestRouter::Set(std::string bytes, const std::string& source) {
  LoadedRouter loaded;
  loaded.sha256 = Sha256Hex(bytes);
  loaded.source = source;
  const std::string what = absl::StrCat("router (", source, ")");
  ASSIGN_OR_RETURN(std::unique_ptr<Router> router, Router::Parse(std::move(bytes), what));
  absl::MutexLock admin(&admin_mu_);
  std::set<std::string> known;
  for (const StoredPack& p : store_->List()) known.insert(p.summary.name);
  Status fits = router->CheckFits(model_->config, base_fingerprint_, known);
  if (!fits.ok()) return Annotate(fits, what);
  if (router->NeedsText() && tokenizer_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": reads the prompt's text (lexicon features), and this server has no tokenizer"));
  }
  loaded.config = router->config();
  loaded.router = std::move(router);
  loaded.loaded_at = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    current_ = loaded;
  }
  if (metrics_) metrics_->router_labels.Set(static_cast<double>(loaded.router->config().labels.size()));
  std::fprintf(stderr, "router: loaded %s (%zu labels, layer %lld, sha256 %s)\n", source.c_str(),
               loaded.router->config().labels.size(), static_cast<long long>(loaded.router->config().layer),
               loaded.sha256.c_str());
  return loaded;
}

void RequestRouter::Clear() {
  absl::MutexLock admin(&admin_mu_);
  {
    absl::MutexLock lock(&mu_);
    current_ = LoadedRouter();
  }
  if (metrics_) metrics_->router_labels.Set(0);
  std::fprintf(stderr, "router: cleared\n");
}

LoadedRouter RequestRouter::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

StatusOr<RoutedRequest> RequestRouter::Route(const std::vector<int32_t>& prompt, const RoutingPolicy& policy) const {
  std::shared_ptr<const Router> router = Current().router;
  if (!router) return absl::FailedPreconditionError("no router is loaded (start with --router or use Admin.SetRouter)");
  return RouteWith(*router, prompt, policy);
}

StatusOr<std::optional<RoutedRequest>> RequestRouter::RouteIfLoaded(const std::vector<int32_t>& prompt,
                                                                    const RoutingPolicy& policy) const {
  std::shared_ptr<const Router> router = Current().router;
  if (!router) return std::optional<RoutedRequest>();
  ASSIGN_OR_RETURN(RoutedRequest r, RouteWith(*router, prompt, policy));
  return std::optional<RoutedRequest>(std::move(r));
}

StatusOr<RoutedRequest> RequestRouter::RouteWith(const Router& router, const std::vector<int32_t>& prompt,
                                                 const RoutingPolicy& policy) const {
  if (prompt.empty()) return absl::InvalidArgumentError("input: the prompt has no tokens");
  const auto t0 = std::chrono::steady_clock::now();
  RoutedRequest out;
  const size_t n = std::min(prompt.size(), static_cast<size_t>(options_.max_tokens));
  const std::vector<int32_t> head(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(n));
  StatusOr<RouteDecision> d = absl::InternalError("not routed");
  try {
    std::string text;
    if (router.NeedsText()) {
      if (tokenizer_ == nullptr) return absl::FailedPreconditionError("routing: the router reads text; no tokenizer");
      text = tokenizer_->Decode(head, true);
    }
    d = router.Route(*model_->transformer, *model_->weights, head, policy, router.NeedsText() ? &text : nullptr);
  } catch (const std::exception& e) {
    d = StatusFromException(e, "routing");
  }
  if (!d.ok()) return Annotate(d.status(), "routing");
  out.decision = *std::move(d);
  out.tokens = static_cast<int32_t>(n);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (metrics_) {
    metrics_->router_seconds.Observe(out.seconds);
    if (out.decision.packs.empty()) metrics_->router_decisions.WithLabels({kRouterNoneLabel}).Increment();
    for (const auto& [name, weight] : out.decision.packs) metrics_->router_decisions.WithLabels({name}).Increment();
  }
  return out;
}

Status RequestRouter::RemovePack(const std::string& name, const std::function<Status()>& remove) {
  absl::MutexLock admin(&admin_mu_);
  const LoadedRouter r = Current();
  if (r.router) {
    const auto& labels = r.router->config().labels;
    for (size_t i = 1; i < labels.size(); ++i) {
      if (labels[i] == name) {
        return absl::FailedPreconditionError(absl::StrCat(
            "pack '", name, "' is a label of the loaded router (", r.source, ", sha256 ", r.sha256.substr(0, 12),
            "); replace the router with Admin.SetRouter (or clear it) before deleting the pack"));
      }
    }
  }
  return remove();
}

}  // namespace skillpack
