// The inference server's Prometheus metrics: every family the server exports,
// registered once on a MetricsRegistry (metrics.h) and handed to the
// scheduler, the pack cache and the gRPC services. Names follow the project
// rules: `skillpack_` prefix, base units, `_total` counters. docs/operations.md
// lists them.
#ifndef SKILLPACK_SERVER_SERVER_METRICS_H_
#define SKILLPACK_SERVER_SERVER_METRICS_H_

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/metrics.h"

namespace skillpack {

class ServerMetrics {
 public:
  // Registers the families on `registry`, which must outlive this object.
  explicit ServerMetrics(MetricsRegistry* registry);

  MetricsRegistry* registry() const { return registry_; }

  // One finished RPC of `method` ("Generate", "GenerateStream", "UploadPack", ...)
  // ending with gRPC code `code` (its name, e.g. "OK", "INVALID_ARGUMENT").
  void RecordRpc(const std::string& method, const std::string& code, double seconds);

  // One finished request (any outcome): its finish reason ("stop",
  // "length", "cancelled", "error") and, for requests that generated, the
  // prompt and generation lengths in tokens.
  void RecordFinished(const std::string& reason, int64_t prompt_tokens, int64_t generated_tokens);

  // Engine sequence `id` has produced `tokens` tokens so far (`done`: it has
  // finished). Observes the inter-token latency once per token that is new
  // since the previous call for `id`, the time since then split evenly
  // between them; the first call's tokens (the first engine step's: the
  // prefill's token, and a first decode run in the same step) start the
  // clock. Called from the engine thread.
  void ObserveSequenceTokens(int64_t id, size_t tokens, bool done) ABSL_LOCKS_EXCLUDED(token_mu_);

  // The KV cache's slots: sets kv_slots_free and kv_cache_usage_ratio.
  void SetKvSlots(int64_t free, int64_t total);

  // Per-request generation numbers (only requests that reached the engine).
  Histogram& queue_seconds;
  Histogram& time_to_first_token_seconds;
  Histogram& time_per_output_token_seconds;
  Histogram& inter_token_latency_seconds;
  Histogram& prompt_length_tokens;
  Histogram& generation_length_tokens;
  Family<Counter>& finished_requests;  // by "reason"
  Counter& prompt_tokens;
  Counter& generated_tokens;
  // Requests by pack set member; "none" for the base model alone.
  Family<Counter>& pack_requests;

  // Engine state.
  Gauge& running;
  Gauge& waiting;
  Gauge& kv_slots_free;
  Gauge& kv_cache_usage_ratio;  // fraction of KV slots in use, 0..1
  Histogram& batch_size;

  // Pack cache, by tier ("host", "fused").
  Family<Counter>& cache_hits;
  Family<Counter>& cache_misses;
  Family<Counter>& cache_evictions;
  Family<Gauge>& cache_bytes;
  Family<Gauge>& cache_budget_bytes;
  // By "pack": the pack's name (load), the composed set's names joined by
  // "+" in name order (compose).
  Family<Histogram>& pack_load_seconds;
  Family<Histogram>& pack_compose_seconds;
  // Pack store changes by "change" ("added", "replaced", "removed") that a
  // rescan found: made by another server sharing the pack directory.
  Family<Counter>& pack_store_changes;

  // Router: decisions by chosen pack ("none" when it chose none; a top-k
  // decision counts each of its packs), the time one decision takes
  // (features + MLP + policy), and the loaded router's label count (0 = none).
  Family<Counter>& router_decisions;
  Histogram& router_seconds;
  Gauge& router_labels;

 private:
  MetricsRegistry* registry_;
  struct TokenClock {
    absl::Time last = absl::InfinitePast();
    size_t seen = 0;
  };
  absl::Mutex token_mu_;
  absl::flat_hash_map<int64_t, TokenClock> token_clocks_ ABSL_GUARDED_BY(token_mu_);
  Family<Histogram>& request_duration_;
  Family<Counter>& requests_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SERVER_METRICS_H_
