// `skillpack-server`: the inference server's main. Parses flags, starts
// SkillpackServer, prints "listening grpc=HOST:PORT metrics=HOST:PORT http=..." on
// stdout once it serves, and shuts down gracefully on SIGTERM / SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/args.h"
#include "core/stop_signals.h"
#include "rpc/bearer_auth.h"
#include "server/server.h"

namespace skillpack {
namespace {

constexpr char kUsage[] =
    "usage: skillpack-server --model DIR --packs DIR [flags]\n"
    "\n"
    "  --grpc-address ADDR        bind address for gRPC (default 0.0.0.0)\n"
    "  --grpc-port N              gRPC port; 0 picks a free one (default 50051)\n"
    "  --metrics-address ADDR     bind address for /metrics (default 0.0.0.0)\n"
    "  --metrics-port N           Prometheus port; 0 picks a free one, -1 disables (default 9090)\n"
    "  --http-address ADDR        bind address for the OpenAI-compatible HTTP API (default 0.0.0.0)\n"
    "  --http-port N              OpenAI-compatible HTTP API port; 0 picks a free one, -1 disables\n"
    "                             (default -1; vLLM's usual port is 8000)\n"
    "  --http-api-key-file FILE   bearer key the HTTP API requires (default: none, as gRPC Inference)\n"
    "  --served-model-name NAME   the base model's name in the HTTP API (default: the --model folder's name)\n"
    "  --admin-token-file FILE    bearer token the Admin API requires (without it Admin is disabled)\n"
    "  --tls-cert FILE --tls-key FILE   serve gRPC over TLS (PEM)\n"
    "  --max-running N            sequences decoded together (default 8)\n"
    "  --max-queued N             accepted requests waiting beyond those (default 64)\n"
    "  --kv-slots N               KV cache slots (default = --max-running)\n"
    "  --max-seq-len N            tokens per KV slot, prompt + output (default min(model, 4096))\n"
    "  --host-cache-bytes N       budget for decoded packs (default 4 GiB)\n"
    "  --fused-cache-bytes N      budget for fused weight sets (default 8 GiB)\n"
    "  --serving-mode M           merged | factorized | auto: how pack sets run (default auto:\n"
    "                             factorized on the shared base pass, hot sets merged)\n"
    "  --factor-precision P       int8 | float16 | float32: how decoded packs keep their low-rank factors\n"
    "                             (default int8: a quarter of float32's memory and of the bytes a step\n"
    "                             reads; float16 half; float32 the factors `pack apply` composes)\n"
    "  --merge-share F            auto: merge a pack set once it holds this share of recent\n"
    "                             requests, in (0, 1] (default 0.9)\n"
    "  --max-pack-bytes N         largest pack upload accepted (default 4 GiB)\n"
    "  --pack-rescan-seconds S    rescan the pack directory for packs other servers sharing it\n"
    "                             added, replaced or removed, every S seconds; 0 = never (default 2)\n"
    "  --max-prompt-bytes N       largest prompt / chat text, refused before tokenizing (default 1 MiB)\n"
    "  --max-concurrent-uploads N pack uploads in progress at once; more get RESOURCE_EXHAUSTED (default 4)\n"
    "  --upload-idle-timeout-seconds S  an upload sending nothing for S seconds is cancelled (default 30)\n"
    "  --router FILE              router to load at start-up (docs/router-format.md);\n"
    "                             Admin.SetRouter replaces it at run time\n"
    "  --routing-mode top1|topk   default routing policy of AUTO requests (default top1)\n"
    "  --routing-k N              topk: at most N packs per request, in [1, 16] (default 2)\n"
    "  --routing-threshold T      a pack is used only when its score is >= T, in [0, 1] (default 0.5)\n"
    "  --router-max-tokens N      prompt tokens the router's features look at (default 512)\n"
    "  --grace-seconds S          on SIGTERM, time running requests get to finish (default 30)\n"
    "  --threads N                intra-op CPU threads (default: the physical cores available)\n";

StatusOr<ServerOptions> ParseOptions(const Args& a, double* grace_seconds) {
  ServerOptions o;
  ASSIGN_OR_RETURN(o.model_dir, a.String("model"));
  ASSIGN_OR_RETURN(o.packs_dir, a.String("packs"));
  o.grpc_address = a.StringOr("grpc-address", o.grpc_address);
  o.metrics_address = a.StringOr("metrics-address", o.metrics_address);
  o.http_address = a.StringOr("http-address", o.http_address);
  ASSIGN_OR_RETURN(int64_t http_port, a.IntOr("http-port", o.http_port));
  o.served_model_name = a.StringOr("served-model-name", "");
  const std::string http_key_file = a.StringOr("http-api-key-file", "");
  ASSIGN_OR_RETURN(int64_t grpc_port, a.IntOr("grpc-port", o.grpc_port));
  ASSIGN_OR_RETURN(int64_t metrics_port, a.IntOr("metrics-port", o.metrics_port));
  ASSIGN_OR_RETURN(int64_t max_running, a.IntOr("max-running", o.max_running));
  ASSIGN_OR_RETURN(int64_t max_queued, a.IntOr("max-queued", o.max_queued));
  ASSIGN_OR_RETURN(int64_t kv_slots, a.IntOr("kv-slots", o.kv_slots));
  ASSIGN_OR_RETURN(o.max_seq_len, a.IntOr("max-seq-len", o.max_seq_len));
  ASSIGN_OR_RETURN(o.host_cache_bytes, a.IntOr("host-cache-bytes", o.host_cache_bytes));
  ASSIGN_OR_RETURN(o.fused_cache_bytes, a.IntOr("fused-cache-bytes", o.fused_cache_bytes));
  ASSIGN_OR_RETURN(o.max_pack_bytes, a.IntOr("max-pack-bytes", o.max_pack_bytes));
  o.serving_mode = a.StringOr("serving-mode", o.serving_mode);
  o.factor_precision = a.StringOr("factor-precision", o.factor_precision);
  ASSIGN_OR_RETURN(o.merge_share, a.DoubleOr("merge-share", o.merge_share));
  ASSIGN_OR_RETURN(o.max_prompt_bytes, a.IntOr("max-prompt-bytes", o.max_prompt_bytes));
  ASSIGN_OR_RETURN(int64_t max_uploads, a.IntOr("max-concurrent-uploads", o.max_concurrent_uploads));
  ASSIGN_OR_RETURN(o.pack_rescan_seconds, a.DoubleOr("pack-rescan-seconds", o.pack_rescan_seconds));
  ASSIGN_OR_RETURN(o.upload_idle_timeout_seconds,
                   a.DoubleOr("upload-idle-timeout-seconds", o.upload_idle_timeout_seconds));
  ASSIGN_OR_RETURN(int64_t threads, a.IntOr("threads", 0));
  ASSIGN_OR_RETURN(*grace_seconds, a.DoubleOr("grace-seconds", 30));
  o.router_file = a.StringOr("router", "");
  o.routing_mode = a.StringOr("routing-mode", o.routing_mode);
  ASSIGN_OR_RETURN(int64_t routing_k, a.IntOr("routing-k", o.routing_k));
  ASSIGN_OR_RETURN(double routing_threshold, a.DoubleOr("routing-threshold", o.routing_threshold));
  ASSIGN_OR_RETURN(int64_t router_max_tokens, a.IntOr("router-max-tokens", o.router_max_tokens));
  o.tls_cert_file = a.StringOr("tls-cert", "");
  o.tls_key_file = a.StringOr("tls-key", "");
  const std::string token_file = a.StringOr("admin-token-file", "");
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  auto in_range = [](int64_t v, int64_t lo, int64_t hi, const char* flag) -> Status {
    if (v < lo || v > hi)
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be in [", lo, ", ", hi, "]"));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(in_range(grpc_port, 0, 65535, "grpc-port"));
  RETURN_IF_ERROR(in_range(metrics_port, -1, 65535, "metrics-port"));
  RETURN_IF_ERROR(in_range(http_port, -1, 65535, "http-port"));
  RETURN_IF_ERROR(in_range(max_running, 1, 4096, "max-running"));
  RETURN_IF_ERROR(in_range(max_queued, 0, 1 << 20, "max-queued"));
  RETURN_IF_ERROR(in_range(kv_slots, 0, 4096, "kv-slots"));
  RETURN_IF_ERROR(in_range(threads, 0, 1024, "threads"));
  RETURN_IF_ERROR(in_range(routing_k, 1, 16, "routing-k"));
  RETURN_IF_ERROR(in_range(router_max_tokens, 1, 1 << 20, "router-max-tokens"));
  RETURN_IF_ERROR(in_range(o.max_prompt_bytes, 1, int64_t{64} << 20, "max-prompt-bytes"));
  RETURN_IF_ERROR(in_range(max_uploads, 1, 1024, "max-concurrent-uploads"));
  if (!(o.upload_idle_timeout_seconds > 0 && o.upload_idle_timeout_seconds <= 86400)) {
    return absl::InvalidArgumentError("--upload-idle-timeout-seconds must be in (0, 86400]");
  }
  o.max_concurrent_uploads = static_cast<int32_t>(max_uploads);
  if (!(routing_threshold >= 0 && routing_threshold <= 1)) {
    return absl::InvalidArgumentError("--routing-threshold must be in [0, 1]");
  }
  if (!(*grace_seconds >= 0)) return absl::InvalidArgumentError("--grace-seconds must be >= 0");
  o.grpc_port = static_cast<int>(grpc_port);
  o.metrics_port = static_cast<int>(metrics_port);
  o.http_port = static_cast<int>(http_port);
  o.max_running = static_cast<int32_t>(max_running);
  o.max_queued = static_cast<int32_t>(max_queued);
  o.kv_slots = static_cast<int32_t>(kv_slots);
  o.threads = static_cast<int32_t>(threads);
  o.routing_k = static_cast<int32_t>(routing_k);
  o.routing_threshold = static_cast<float>(routing_threshold);
  o.router_max_tokens = static_cast<int32_t>(router_max_tokens);
  if (!http_key_file.empty()) {
    ASSIGN_OR_RETURN(o.http_api_key, ReadBearerToken(http_key_file));
  }
  if (!token_file.empty()) {
    ASSIGN_OR_RETURN(o.admin_token, ReadBearerToken(token_file));
  }
  return o;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  // Before any thread starts (core/stop_signals.h).
  if (Status st = InstallStopSignals(); !st.ok()) {
    std::fprintf(stderr, "skillpack-server: %s\n", std::string(st.message()).c_str());
    return 1;
  }

  StatusOr<Args> args = Args::Parse(argc, argv, 1, {});
  double grace = 30;
  StatusOr<ServerOptions> options = args.ok() ? ParseOptions(*args, &grace) : args.status();
  if (!options.ok()) {
    std::fprintf(stderr, "skillpack-server: %s\n\n%s", std::string(options.status().message()).c_str(), kUsage);
    return 2;
  }
  StatusOr<std::unique_ptr<SkillpackServer>> server = SkillpackServer::Start(*options);
  if (!server.ok()) {
    std::fprintf(stderr, "skillpack-server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", (*server)->ListeningLine().c_str());
  std::fflush(stdout);
  // A signal that came during the start is taken here, at once.
  const int sig = WaitForStopSignal();
  std::fprintf(stderr, "skillpack-server: %s received, shutting down (grace %.1f s)\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", grace);
  (*server)->Shutdown(absl::Seconds(grace));
  server->reset();
  std::fprintf(stderr, "skillpack-server: stopped\n");
  return 0;
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ApplyServerProcessSettings(argv);  // server/server.h
  return skillpack::Main(argc, argv);
}
