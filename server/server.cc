#include "server/server.h"

#include <cstdio>

#include <ATen/Parallel.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/synchronization/mutex.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/kv_cache.h"
#include "core/malloc_policy.h"
#include "core/model.h"
#include "core/omp_wait_policy.h"
#include "core/tokenizer.h"
#include "grpc/health/v1/health.pb.h"
#include "pack/fingerprint.h"
#include "router/router.h"
#include "server/admin_service.h"
#include "server/inference_service.h"
#include "server/metrics_http.h"
#include "server/openai_http.h"
#include "server/pack_cache.h"
#include "server/pack_registry.h"
#include "server/pack_runtime.h"
#include "server/pack_store.h"
#include "server/reflection_v1.h"
#include "server/request_router.h"
#include "server/scheduler.h"
#include "server/server_metrics.h"
#include "server/serving_context.h"

namespace skillpack {
namespace {

constexpr char kInferenceServiceName[] = "skillpack.v1.Inference";
constexpr char kAdminServiceName[] = "skillpack.v1.Admin";

}  // namespace

class SkillpackServer::Impl {
 public:
  ServerOptions options;
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<PackRuntime> runtime;
  std::unique_ptr<PackStore> store;
  MetricsRegistry registry;
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<PackCache> cache;
  std::unique_ptr<RequestRouter> router;
  std::unique_ptr<PackRegistry> packs;  // after store, cache and router: destroyed first
  std::unique_ptr<Scheduler> scheduler;
  ServingContext ctx;
  std::unique_ptr<v1::Inference::Service> inference;
  std::unique_ptr<v1::Admin::Service> admin;
  std::unique_ptr<grpc::Service> reflection_v1;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  std::unique_ptr<OpenAiHttpServer> openai_http;
  int grpc_port = 0;

  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

namespace {

Status CheckOptions(const ServerOptions& o) {
  if (o.model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (o.packs_dir.empty()) return absl::InvalidArgumentError("--packs is required");
  if (o.grpc_port < 0 || o.grpc_port > 65535) return absl::InvalidArgumentError("--grpc-port must be in [0, 65535]");
  if (o.metrics_port < -1 || o.metrics_port > 65535) {
    return absl::InvalidArgumentError("--metrics-port must be in [-1, 65535]");
  }
  if (o.http_port < -1 || o.http_port > 65535) return absl::InvalidArgumentError("--http-port must be in [-1, 65535]");
  if (o.max_running < 1) return absl::InvalidArgumentError("--max-running must be >= 1");
  if (o.max_queued < 0) return absl::InvalidArgumentError("--max-queued must be >= 0");
  if (o.kv_slots < 0) return absl::InvalidArgumentError("--kv-slots must be >= 0");
  if (o.max_seq_len < 0) return absl::InvalidArgumentError("--max-seq-len must be >= 0");
  if (o.host_cache_bytes < 0 || o.fused_cache_bytes < 0) {
    return absl::InvalidArgumentError("cache budgets must be >= 0");
  }
  if (o.max_pack_bytes <= 0) return absl::InvalidArgumentError("--max-pack-bytes must be positive");
  if (!(o.pack_rescan_seconds >= 0 && o.pack_rescan_seconds <= 86400)) {
    return absl::InvalidArgumentError("--pack-rescan-seconds must be in [0, 86400]");
  }
  RETURN_IF_ERROR(Annotate(ParseServingMode(o.serving_mode).status(), "--serving-mode"));
  RETURN_IF_ERROR(Annotate(ParseFactorPrecision(o.factor_precision).status(), "--factor-precision"));
  if (!(o.merge_share > 0 && o.merge_share <= 1)) return absl::InvalidArgumentError("--merge-share must be in (0, 1]");
  RETURN_IF_ERROR(ParseRoutingPolicy(o.routing_mode, o.routing_k, o.routing_threshold).status());
  if (o.router_max_tokens < 1) return absl::InvalidArgumentError("--router-max-tokens must be >= 1");
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("give both --tls-cert and --tls-key, or neither");
  }
  return absl::OkStatus();
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  ASSIGN_OR_RETURN(std::string cert, ReadFileToString(o.tls_cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFileToString(o.tls_key_file));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

SkillpackServer::SkillpackServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SkillpackServer::~SkillpackServer() {
  Shutdown(absl::ZeroDuration());
  // Members go in reverse order of construction: servers first, then the
  // Inference service (waits for its preparation threads), the scheduler
  // (joins the engine thread), the cache and the model.
  impl_->openai_http.reset();
  impl_->metrics_http.reset();
  impl_->grpc_server.reset();
  impl_->inference.reset();
  impl_->scheduler.reset();
}

StatusOr<std::unique_ptr<SkillpackServer>> SkillpackServer::Start(const ServerOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.options = options;
  SetIntraOpThreads(options.threads);
  ASSIGN_OR_RETURN(s.model, LoadModel(options.model_dir, at::TensorOptions().dtype(at::kFloat)));
  ASSIGN_OR_RETURN(s.tokenizer, Tokenizer::FromModelDir(options.model_dir));
  ASSIGN_OR_RETURN(s.runtime, NewPackRuntime(s.model->weights, *ParseFactorPrecision(options.factor_precision)));
  ASSIGN_OR_RETURN(s.store, PackStore::Open(options.packs_dir, s.runtime.get(), options.max_pack_bytes));
  s.metrics = std::make_unique<ServerMetrics>(&s.registry);
  RegisterProcessMetrics(&s.registry);
  PackCacheOptions co;
  co.host_budget_bytes = options.host_cache_bytes;
  co.fused_budget_bytes = options.fused_cache_bytes;
  co.mode = *ParseServingMode(options.serving_mode);
  co.merge.merge_share = options.merge_share;
  co.merge.unmerge_share = std::min(co.merge.unmerge_share, options.merge_share);
  s.cache = std::make_unique<PackCache>(s.model->weights, s.store.get(), s.runtime.get(), co, s.metrics.get());
  RequestRouterOptions ro;
  ASSIGN_OR_RETURN(ro.default_policy,
                   ParseRoutingPolicy(options.routing_mode, options.routing_k, options.routing_threshold));
  ro.max_tokens = options.router_max_tokens;
  ASSIGN_OR_RETURN(std::string fingerprint, BaseFingerprint(*s.model->weights));
  s.router = std::make_unique<RequestRouter>(s.model.get(), s.tokenizer.get(), std::move(fingerprint), s.store.get(),
                                             ro, s.metrics.get());
  if (!options.router_file.empty()) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(options.router_file));
    RETURN_IF_ERROR(s.router->Set(std::move(bytes), options.router_file).status());
  }
  s.packs = std::make_unique<PackRegistry>(s.store.get(), s.cache.get(), s.router.get(), s.metrics.get());
  if (options.pack_rescan_seconds > 0) s.packs->StartRescans(absl::Seconds(options.pack_rescan_seconds));

  const int32_t slots = options.kv_slots > 0 ? options.kv_slots : options.max_running;
  const int64_t seq_len =
      options.max_seq_len > 0 ? options.max_seq_len : std::min<int64_t>(s.model->config.max_position_embeddings, 4096);
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv,
                   KvCache::Create(s.model->config, slots, seq_len, s.model->weights->embed_tokens().options()));
  SchedulerOptions so;
  so.max_running = options.max_running;
  so.max_queued = options.max_queued;
  s.scheduler = Scheduler::Create(*s.model->transformer, *s.tokenizer, std::move(kv),
                                  EosIds(s.model->config, *s.tokenizer), so, s.metrics.get());

  s.ctx.model_config = &s.model->config;
  s.ctx.model_dir = s.model->dir;
  s.ctx.tokenizer = s.tokenizer.get();
  s.ctx.scheduler = s.scheduler.get();
  s.ctx.store = s.store.get();
  s.ctx.cache = s.cache.get();
  s.ctx.metrics = s.metrics.get();
  s.ctx.router = s.router.get();
  s.ctx.packs = s.packs.get();
  s.ctx.admin_token = options.admin_token;
  s.ctx.max_prompt_bytes = options.max_prompt_bytes;
  s.ctx.max_concurrent_uploads = options.max_concurrent_uploads;
  s.ctx.upload_idle_timeout = absl::Seconds(options.upload_idle_timeout_seconds);
  s.ctx.started = absl::Now();
  // As many calls may be prepared at once as the scheduler accepts, plus a
  // few that it will refuse.
  s.inference = NewInferenceService(&s.ctx, std::min(options.max_running + options.max_queued + 8, 1024));
  s.admin = NewAdminService(&s.ctx);
  // Reflection describes services from the generated descriptor pool; gRPC's
  // built-in health service has no descriptor of its own, so link ours in.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  s.reflection_v1 =
      NewReflectionV1Service({kInferenceServiceName, kAdminServiceName, "grpc.health.v1.Health",
                              "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, Credentials(options));
  grpc::ServerBuilder builder;
  const std::string addr = absl::StrCat(options.grpc_address, ":", options.grpc_port);
  builder.AddListeningPort(addr, creds, &s.grpc_port);
  builder.RegisterService(s.inference.get());
  builder.RegisterService(s.admin.get());
  builder.RegisterService(s.reflection_v1.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  s.grpc_server = builder.BuildAndStart();
  if (!s.grpc_server || s.grpc_port == 0) {
    s.scheduler.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", addr));
  }
  // SERVING for the whole server ("") and each of our services by name;
  // Shutdown turns them all to NOT_SERVING.
  grpc::HealthCheckServiceInterface* health = s.grpc_server->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const char* name : {kInferenceServiceName, kAdminServiceName}) health->SetServingStatus(name, true);
  if (options.metrics_port >= 0) {
    StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(options.metrics_address, options.metrics_port, &s.registry);
    if (!http.ok()) {
      s.grpc_server->Shutdown();
      s.scheduler.reset();
      return http.status();
    }
    s.metrics_http = *std::move(http);
  }
  if (options.http_port >= 0) {
    OpenAiHttpOptions ho;
    ho.bind_address = options.http_address;
    ho.port = options.http_port;
    ho.api_key = options.http_api_key;
    ho.base_model_name = options.served_model_name;
    if (ho.base_model_name.empty()) {
      std::string dir = s.model->dir;
      while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
      ho.base_model_name = dir.substr(dir.find_last_of('/') + 1);
      if (ho.base_model_name.empty()) ho.base_model_name = "base";
    }
    // A worker per accepted request (each holds its connection for the whole
    // generation), plus a few for /v1/models and refusals.
    ho.threads = std::min(options.max_running + options.max_queued + 8, 1024);
    StatusOr<std::unique_ptr<OpenAiHttpServer>> http = OpenAiHttpServer::Start(ho, &s.ctx);
    if (!http.ok()) {
      s.metrics_http.reset();
      s.grpc_server->Shutdown();
      s.scheduler.reset();
      return http.status();
    }
    s.openai_http = *std::move(http);
  }
  return std::unique_ptr<SkillpackServer>(new SkillpackServer(std::move(impl)));
}

int SkillpackServer::grpc_port() const { return impl_->grpc_port; }
int SkillpackServer::metrics_port() const { return impl_->metrics_http ? impl_->metrics_http->port() : -1; }
int SkillpackServer::http_port() const { return impl_->openai_http ? impl_->openai_http->port() : -1; }

std::string SkillpackServer::ListeningLine() const {
  auto host = [](const std::string& a) { return a == "0.0.0.0" || a.empty() ? std::string("127.0.0.1") : a; };
  std::string metrics = impl_->metrics_http ? absl::StrCat(host(impl_->options.metrics_address), ":", metrics_port())
                                            : std::string("off");
  std::string http =
      impl_->openai_http ? absl::StrCat(host(impl_->options.http_address), ":", http_port()) : std::string("off");
  return absl::StrCat("listening grpc=", host(impl_->options.grpc_address), ":", grpc_port(), " metrics=", metrics,
                      " http=", http);
}

void SkillpackServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  Impl& s = *impl_;
  s.grpc_server->GetHealthCheckService()->SetServingStatus(false);  // every service name
  s.scheduler->StartDraining();
  const absl::Time deadline = absl::Now() + grace;
  if (!s.scheduler->WaitIdle(deadline)) {
    std::fprintf(stderr, "shutdown: grace period over, cancelling running requests\n");
    s.scheduler->CancelAll();
    s.scheduler->WaitIdle(absl::Now() + absl::Seconds(5));
  }
  // Handlers return as soon as their requests are done; give them a moment to
  // write their last message before the transport goes.
  s.grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void ApplyServerProcessSettings(char** argv) {
  ReexecWithPassiveServerWaitsUnlessSet(argv);
  SetMallocThresholdsUnlessSet();
}

}  // namespace skillpack
