// The inference server's Prometheus metrics: every family the server exports,
// registered once on a MetricsRegistry (metrics.h) and handed to the
// scheduler, the pack cache and the gRPC services. Names follow the project
// rules: `skillpack_` prefix, base units, `_total` counters. docs/operations.md
// lists them.
#ifndef SKILLPACK_SERVER_SERVER_METRICS_H_
#define SKILLPACK_SERVER_SERVER_METRICS_H_

#include <string>

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

  // Per-request generation numbers (only requests that reached the engine).
  Histogram& queue_seconds;
  Histogram& time_to_first_token_seconds;
  Histogram& time_per_output_token_seconds;
  Counter& prompt_tokens;
  Counter& generated_tokens;
  // Requests by pack set member; "none" for the base model alone.
  Family<Counter>& pack_requests;

  // Engine state.
  Gauge& running;
  Gauge& waiting;
  Gauge& kv_slots_free;
  Histogram& batch_size;

  // Pack cache, by tier ("host", "fused").
  Family<Counter>& cache_hits;
  Family<Counter>& cache_misses;
  Family<Counter>& cache_evictions;
  Family<Gauge>& cache_bytes;
  Family<Gauge>& cache_budget_bytes;
  Histogram& pack_load_seconds;
  Histogram& pack_compose_seconds;

  // Router: decisions by chosen pack ("none" when it chose none; a top-k
  // decision counts each of its packs), the time one decision takes
  // (features + MLP + policy), and the loaded router's label count (0 = none).
  Family<Counter>& router_decisions;
  Histogram& router_seconds;
  Gauge& router_labels;

 private:
  MetricsRegistry* registry_;
  Family<Histogram>& request_duration_;
  Family<Counter>& requests_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SERVER_METRICS_H_
