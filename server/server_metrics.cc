#include "server/server_metrics.h"

namespace skillpack {
namespace {

// 1 ms .. ~524 s.
std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.001, 2, 20); }
// 0.1 ms .. ~3.3 s per token.
std::vector<double> TokenLatencyBuckets() { return ExponentialBuckets(0.0001, 2, 16); }

}  // namespace

ServerMetrics::ServerMetrics(MetricsRegistry* r)
    : queue_seconds(r->AddHistogram("skillpack_request_queue_seconds", "Time from acceptance to the start of prefill.",
                                    LatencyBuckets())
                        .WithLabels({})),
      time_to_first_token_seconds(r->AddHistogram("skillpack_time_to_first_token_seconds",
                                                  "Time from acceptance to the first generated token.",
                                                  LatencyBuckets())
                                      .WithLabels({})),
      time_per_output_token_seconds(
          r->AddHistogram("skillpack_time_per_output_token_seconds",
                          "Mean decode time per generated token after the first, per request.", TokenLatencyBuckets())
              .WithLabels({})),
      prompt_tokens(r->AddCounter("skillpack_prompt_tokens_total", "Prompt tokens processed.").WithLabels({})),
      generated_tokens(r->AddCounter("skillpack_generated_tokens_total", "Tokens generated.").WithLabels({})),
      pack_requests(r->AddCounter("skillpack_pack_requests_total",
                                  "Generation requests by pack used (\"none\" = base model).", {"pack"})),
      running(r->AddGauge("skillpack_requests_running", "Sequences holding a KV slot.").WithLabels({})),
      waiting(r->AddGauge("skillpack_requests_waiting", "Accepted requests waiting for a KV slot.").WithLabels({})),
      kv_slots_free(r->AddGauge("skillpack_kv_slots_free", "Free KV cache slots.").WithLabels({})),
      batch_size(r->AddHistogram("skillpack_batch_size", "Sequences in the engine per scheduling step.",
                                 ExponentialBuckets(1, 2, 10))
                     .WithLabels({})),
      cache_hits(r->AddCounter("skillpack_pack_cache_hits_total", "Pack cache hits.", {"tier"})),
      cache_misses(r->AddCounter("skillpack_pack_cache_misses_total", "Pack cache misses.", {"tier"})),
      cache_evictions(r->AddCounter("skillpack_pack_cache_evictions_total", "Pack cache evictions.", {"tier"})),
      cache_bytes(r->AddGauge("skillpack_pack_cache_bytes", "Bytes held by the pack cache.", {"tier"})),
      cache_budget_bytes(r->AddGauge("skillpack_pack_cache_budget_bytes", "Byte budget of the pack cache.", {"tier"})),
      pack_load_seconds(r->AddHistogram("skillpack_pack_load_seconds",
                                        "Time to read and decode a pack into host memory.", LatencyBuckets())
                            .WithLabels({})),
      pack_compose_seconds(
          r->AddHistogram("skillpack_pack_compose_seconds", "Time to compose a fused weight set.", LatencyBuckets())
              .WithLabels({})),
      router_decisions(r->AddCounter("skillpack_router_decisions_total",
                                     "Routing decisions by chosen pack (\"none\" = no pack).", {"pack"})),
      router_seconds(r->AddHistogram("skillpack_router_seconds",
                                     "Time to route one prompt (features, classifier, policy).", TokenLatencyBuckets())
                         .WithLabels({})),
      router_labels(
          r->AddGauge("skillpack_router_labels", "Labels of the loaded router, \"none\" included (0 = no router).")
              .WithLabels({})),
      registry_(r),
      request_duration_(r->AddHistogram("skillpack_request_duration_seconds", "RPC duration by method.",
                                        LatencyBuckets(), {"method"})),
      requests_(r->AddCounter("skillpack_requests_total", "RPCs by method and gRPC status code.", {"method", "code"})) {
}

void ServerMetrics::RecordRpc(const std::string& method, const std::string& code, double seconds) {
  request_duration_.WithLabels({method}).Observe(seconds);
  requests_.WithLabels({method, code}).Increment();
}

}  // namespace skillpack
