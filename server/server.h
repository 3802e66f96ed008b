// SkillpackServer: the whole inference server in one object. Loads the base
// model and tokenizer, opens the pack store, builds the pack cache, the
// request router (loading --router) and the scheduler, and serves
// skillpack.v1.Inference, skillpack.v1.Admin, grpc.health.v1.Health and
// server reflection on one gRPC port (optionally with TLS), plus Prometheus
// metrics over HTTP and the OpenAI-compatible HTTP API on their own ports. Shutdown() is graceful: health goes
// NOT_SERVING, new generations are refused with UNAVAILABLE, and running ones get a grace period to finish before they
// are cancelled.
#ifndef SKILLPACK_SERVER_SERVER_H_
#define SKILLPACK_SERVER_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/status.h"
#include "pack/factor_precision.h"

namespace skillpack {

struct ServerOptions {
  std::string model_dir;
  std::string packs_dir;
  std::string grpc_address = "0.0.0.0";
  int grpc_port = 50051;  // 0 = pick a free port
  std::string metrics_address = "0.0.0.0";
  int metrics_port = 9090;  // 0 = pick a free port, -1 = no metrics endpoint
  // The OpenAI-compatible HTTP API (server/openai_http.h).
  std::string http_address = "0.0.0.0";
  int http_port = -1;             // 0 = pick a free port, -1 = no HTTP API (the default)
  std::string http_api_key;       // empty = no authentication (as gRPC Inference)
  std::string served_model_name;  // the base's `model` name; empty = the model folder's name
  std::string admin_token;        // empty = the Admin service refuses every call
  std::string tls_cert_file;      // PEM; both or neither of cert and key
  std::string tls_key_file;
  int32_t max_running = 8;  // sequences decoded together
  int32_t max_queued = 64;  // accepted requests beyond those running
  int32_t kv_slots = 0;     // 0 = max_running
  int64_t max_seq_len = 0;  // per-sequence KV length; 0 = min(model context, 4096)
  int64_t host_cache_bytes = int64_t{4} << 30;
  int64_t fused_cache_bytes = int64_t{8} << 30;
  // How pack sets are served (server/pack_cache.h): "merged", "factorized" or
  // "auto" (factorized, merging sets that hold at least merge_share of recent
  // requests).
  std::string serving_mode = "auto";
  // How decoded packs keep their low-rank factors: "int8" (the default:
  // a quarter of float32's bytes in the host tier and in what a factorized
  // decode step streams), "float16" (half) or "float32"
  // (pack/factor_precision.h).
  std::string factor_precision = FactorPrecisionName(kServedFactorPrecision);
  double merge_share = 0.9;
  int64_t max_pack_bytes = int64_t{4} << 30;  // upload limit
  // How often the pack directory is rescanned for packs that another server
  // sharing it added, replaced or removed (server/pack_registry.h); 0 = never.
  double pack_rescan_seconds = 2;
  int64_t max_prompt_bytes = int64_t{1} << 20;  // prompt / chat text, checked before tokenizing
  int32_t max_concurrent_uploads = 4;           // Admin.UploadPack calls in progress at once
  double upload_idle_timeout_seconds = 30;      // an upload sending nothing this long is cancelled
  int32_t threads = 0;                          // intra-op threads; 0 = libtorch's default
  // Router (docs/router-format.md): a file to load at start-up (empty = none;
  // Admin.SetRouter can load one later) and the default routing policy.
  std::string router_file;
  std::string routing_mode = "top1";  // "top1" or "topk"
  int32_t routing_k = 2;              // topk: at most k packs, in [1, 16]
  float routing_threshold = 0.5f;     // in [0, 1]
  int32_t router_max_tokens = 512;    // prompt tokens the router's features look at
};

class SkillpackServer {
 public:
  // Loads everything and starts serving. INVALID_ARGUMENT for bad options,
  // the loader's errors for a bad model folder or router file,
  // FAILED_PRECONDITION for a router that does not fit the base or the
  // store, UNAVAILABLE when a port cannot be bound.
  static StatusOr<std::unique_ptr<SkillpackServer>> Start(const ServerOptions& options);
  ~SkillpackServer();

  int grpc_port() const;
  int metrics_port() const;  // -1 when disabled
  int http_port() const;     // -1 when disabled
  // "listening grpc=HOST:PORT metrics=HOST:PORT http=HOST:PORT" (off for a
  // disabled one).
  std::string ListeningLine() const;

  // Graceful shutdown (idempotent): NOT_SERVING, refuse new generations,
  // wait up to `grace` for running ones, cancel the rest, stop the servers.
  void Shutdown(absl::Duration grace);

  class Impl;

 private:
  explicit SkillpackServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The process settings the server runs under, for main() to call first thing
// (before any thread starts) in the server and in the benchmarks that measure
// it, so that they run as it does: OpenMP's passive wait and OpenBLAS's short
// spin (core/omp_wait_policy.h; re-executes the program once if it set
// either) and malloc's thresholds (core/malloc_policy.h), each unless the
// environment sets it.
void ApplyServerProcessSettings(char** argv);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SERVER_H_
