// Routing in the server: the loaded router (router/router.h), swappable at run
// time, the server's default policy, and the routing of one request.
//
// Where routing runs: on the request's own preparation thread (the gRPC
// service's CallWorkers thread, the HTTP API's connection thread), before the
// request is queued (submission.cc). The features are a forward pass of the first
// `layer` decoder layers over the prompt with the server's own model and BASE
// weights (no second copy of the model); Transformer::HiddenStates runs under
// InferenceMode and never writes to the weights, so any number of
// preparation threads may route while the engine thread decodes. The engine thread never
// waits for the router, and a request whose routing fails is refused before
// it takes a queue place.
//
// Invariant: every pack label of the loaded router names a pack in the store.
// Set() checks it, and RemovePack() refuses to delete a pack the loaded router
// names (FAILED_PRECONDITION naming the router): replace or clear the router
// first. Both run under one mutex so that neither can slip between the
// other's check and its action.
#ifndef SKILLPACK_SERVER_REQUEST_ROUTER_H_
#define SKILLPACK_SERVER_REQUEST_ROUTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/status.h"
#include "router/policy.h"
#include "server/pack_store.h"

namespace skillpack {

class ServerMetrics;
class Router;
struct LoadedModel;
class Tokenizer;

struct RequestRouterOptions {
  RoutingPolicy default_policy;  // --routing-mode / --routing-k / --routing-threshold
  // The features look at the first `max_tokens` prompt tokens only, which
  // bounds the router's time and memory (its attention is quadratic in length).
  int32_t max_tokens = 512;
};

// A loaded router with where it came from.
struct LoadedRouter {
  std::shared_ptr<const Router> router;
  RouterConfig config;  // router->config(), for readers that need no tensors
  std::string sha256;   // of the file
  std::string source;   // the --router path, or "admin"
  absl::Time loaded_at;
};

// One routing decision.
struct RoutedRequest {
  RouteDecision decision;  // packs (weights sum to 1) and every label's score
  double seconds = 0;      // features + classifier + policy
  int32_t tokens = 0;      // prompt tokens the features were computed over
};

// Thread-safe.
class RequestRouter {
 public:
  // `model`, `tokenizer`, `store` and `metrics` (may be null) must outlive
  // the router. `base_fingerprint` is BaseFingerprint(*model->weights). The
  // tokenizer decodes a prompt's routed tokens for a router that reads the
  // prompt's text (lexicon features); without one such routers are refused.
  RequestRouter(const LoadedModel* model, const Tokenizer* tokenizer, std::string base_fingerprint,
                const PackStore* store, RequestRouterOptions options, ServerMetrics* metrics);

  // Parses a router file and installs it in place of the current one.
  // INVALID_ARGUMENT for a malformed file; FAILED_PRECONDITION when it was
  // built for another base or names a pack that is not in the store.
  StatusOr<LoadedRouter> Set(std::string bytes, const std::string& source) ABSL_LOCKS_EXCLUDED(admin_mu_, mu_);
  // Removes the router: AUTO then means no pack.
  void Clear() ABSL_LOCKS_EXCLUDED(admin_mu_, mu_);
  // The loaded router; its `router` is null when none is loaded.
  LoadedRouter Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Routes one prompt with the router loaded now (a snapshot: a concurrent
  // Set() does not affect a decision in progress) under `policy`.
  // FAILED_PRECONDITION when no router is loaded; INVALID_ARGUMENT for an
  // empty prompt or a token id out of range.
  StatusOr<RoutedRequest> Route(const std::vector<int32_t>& prompt, const RoutingPolicy& policy) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // As Route, but std::nullopt (not an error) when no router is loaded: what
  // an AUTO request needs (no router = no pack).
  StatusOr<std::optional<RoutedRequest>> RouteIfLoaded(const std::vector<int32_t>& prompt,
                                                       const RoutingPolicy& policy) const ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `remove` (which removes pack `name` from the store) unless the
  // loaded router names that pack: FAILED_PRECONDITION then, naming the router.
  Status RemovePack(const std::string& name, const std::function<Status()>& remove) ABSL_LOCKS_EXCLUDED(admin_mu_, mu_);

  const RequestRouterOptions& options() const { return options_; }

 private:
  StatusOr<RoutedRequest> RouteWith(const Router& router, const std::vector<int32_t>& prompt,
                                    const RoutingPolicy& policy) const;

  const LoadedModel* model_;
  const Tokenizer* tokenizer_;
  const std::string base_fingerprint_;
  const PackStore* store_;
  const RequestRouterOptions options_;
  ServerMetrics* metrics_;

  // Serialises Set / Clear / RemovePack (held across check and action);
  // taken before mu_.
  absl::Mutex admin_mu_;
  mutable absl::Mutex mu_;
  LoadedRouter current_ ABSL_GUARDED_BY(mu_);
};

// The policy name for `p.mode`: "top1" or "topk".
const char* RoutingModeName(const RoutingPolicy& p);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_REQUEST_ROUTER_H_
