#include "server/admin_service.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/method_handler.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#include "rpc/bearer_auth.h"
#include "rpc/grpc_status.h"
#include "rpc/request_decode.h"

namespace skillpack {
namespace {

// An upload stream that ended short of its announced size: a client that
// stopped early, or one that went away (killed, connection reset). Reading
// fails a moment before gRPC marks such a call cancelled, so this waits up
// to 200 ms for the mark before calling the upload merely short.
bool CancelledSoon(grpc::ServerContext* context) {
  for (int i = 0; i < 20; ++i) {
    if (context->IsCancelled()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return context->IsCancelled();
}

void FillPackInfo(const StoredPack& p, const PackCache::PackState& state, v1::PackInfo* info) {
  info->set_name(p.summary.name);
  info->set_version(p.summary.version);
  info->set_description(p.summary.description);
  for (const std::string& t : p.summary.tags) info->add_tags(t);
  info->set_base_fingerprint(p.summary.base_fingerprint);
  info->set_created_at(p.summary.created_at);
  info->set_file_bytes(static_cast<uint64_t>(p.file_bytes));
  info->set_sha256(p.sha256);
  info->set_num_modules(p.summary.num_modules);
  info->set_loaded(state.loaded);
  info->set_pinned(state.pinned);
  info->set_host_bytes(static_cast<uint64_t>(state.host_bytes));
}

void FillRouterInfo(const LoadedRouter& r, v1::RouterInfo* info) {
  const RouterConfig& c = r.config;
  for (const std::string& l : c.labels) info->add_labels(l);
  info->set_layer(c.layer);
  info->set_hidden_size(c.hidden_size);
  info->set_width(c.width);
  info->set_base_fingerprint(c.base_fingerprint);
  info->set_sha256(r.sha256);
  info->set_source(r.source);
  info->set_loaded_at(absl::FormatTime(absl::RFC3339_sec, r.loaded_at, absl::UTCTimeZone()));
}

// Cancels an upload call whose client sends nothing for `timeout`: a thread
// waits for Touch() and calls TryCancel() once the call has been idle that
// long, which makes the handler's blocked Read() return false.
class UploadWatchdog {
 public:
  UploadWatchdog(grpc::ServerContext* context, absl::Duration timeout)
      : context_(context), timeout_(timeout), last_(absl::Now()), thread_([this] { Run(); }) {}
  ~UploadWatchdog() { Stop(); }
  // Ends the watch (nothing is cancelled after this returns); whether it
  // cancelled the call. Idempotent.
  bool Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    cv_.Signal();
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return fired_;
  }
  void Touch() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    last_ = absl::Now();
  }
  bool fired() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (!done_) {
      const absl::Time due = last_ + timeout_;
      if (absl::Now() >= due) {
        fired_ = true;
        context_->TryCancel();
        return;
      }
      cv_.WaitWithDeadline(&mu_, due);
    }
  }

  grpc::ServerContext* const context_;
  const absl::Duration timeout_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the fields above are set
};

Status CheckName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("name: must not be empty");
  return absl::OkStatus();
}

// Index of Admin method `name` in the generated service (the proto's order).
// REQUIRES: the method exists and takes `Request`.
template <typename Request>
int AdminMethodIndex(const char* name) {
  const google::protobuf::ServiceDescriptor* service = Request::descriptor()->file()->FindServiceByName("Admin");
  const google::protobuf::MethodDescriptor* method = service ? service->FindMethodByName(name) : nullptr;
  if (method == nullptr || method->input_type() != Request::descriptor()) {
    std::fprintf(stderr, "admin service: no method %s taking %s\n", name, Request::descriptor()->full_name().c_str());
    std::abort();
  }
  return method->index();
}

class AdminServiceImpl final : public v1::Admin::Service {
 public:
  // Every method takes its request as raw bytes and decodes it itself
  // (rpc/request_decode.h), as the Inference service does: protobuf refuses a
  // string field holding invalid UTF-8 (a pack name, the upload header's
  // sha256), and gRPC's generated handler would answer that with INTERNAL and
  // no message; decoded here it is INVALID_ARGUMENT naming the field. The
  // bearer token is checked before the request is decoded. The bytes on the
  // wire are unchanged. MarkMethodStreamed swaps in a handler of our choice;
  // it also marks the method BIDI_STREAMING, which to the server only means
  // "do not read the request before the handler runs", true of both handlers
  // used here.
  explicit AdminServiceImpl(const ServingContext* ctx) : ctx_(*ctx) {
    const int upload = AdminMethodIndex<v1::UploadPackRequest>("UploadPack");
    MarkMethodStreamed(
        upload, new grpc::internal::ClientStreamingHandler<AdminServiceImpl, grpc::ByteBuffer, v1::UploadPackResponse>(
                    [](AdminServiceImpl* self, grpc::ServerContext* c, grpc::ServerReader<grpc::ByteBuffer>* r,
                       v1::UploadPackResponse* resp) { return self->RawUploadPack(c, r, resp); },
                    this));
    Unary("ListPacks", &AdminServiceImpl::DoListPacks);
    Unary("GetPack", &AdminServiceImpl::DoGetPack);
    Unary("LoadPack", &AdminServiceImpl::DoLoadPack);
    Unary("UnloadPack", &AdminServiceImpl::DoUnloadPack);
    Unary("DeletePack", &AdminServiceImpl::DoDeletePack);
    Unary("GetStats", &AdminServiceImpl::DoGetStats);
    Unary("SetRouter", &AdminServiceImpl::DoSetRouter);
    Unary("GetRouter", &AdminServiceImpl::DoGetRouter);
  }

 private:
  template <typename Request, typename Response>
  using Method = Status (AdminServiceImpl::*)(const Request&, Response*);

  // Serves unary method `name` with `body`, on the request decoded from raw bytes.
  template <typename Request, typename Response>
  void Unary(const char* name, Method<Request, Response> body) {
    using Streamer = grpc::ServerUnaryStreamer<grpc::ByteBuffer, Response>;
    MarkMethodStreamed(AdminMethodIndex<Request>(name),
                       new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, Response>(
                           [this, name, body](grpc::ServerContext* context, Streamer* stream) {
                             Response resp;
                             const grpc::Status s = Handle(name, context, [&]() -> Status {
                               Request req;
                               grpc::ByteBuffer bytes;
                               if (!stream->Read(&bytes)) return absl::InvalidArgumentError("no request message");
                               RETURN_IF_ERROR(ParseRequest(bytes, &req));
                               return (this->*body)(req, &resp);
                             });
                             if (s.ok()) stream->Write(resp);
                             return s;
                           }));
  }

  grpc::Status RawUploadPack(grpc::ServerContext* context, grpc::ServerReader<grpc::ByteBuffer>* reader,
                             v1::UploadPackResponse* resp) {
    return Handle("UploadPack", context, [&]() -> Status {
      // At most max_concurrent_uploads at once: each holds a thread, a file
      // descriptor and a .part file until it ends.
      if (uploads_in_flight_.fetch_add(1) >= ctx_.max_concurrent_uploads) {
        uploads_in_flight_.fetch_sub(1);
        return absl::ResourceExhaustedError(absl::StrCat(
            "already ", ctx_.max_concurrent_uploads, " uploads in progress (--max-concurrent-uploads); retry later"));
      }
      struct Release {
        std::atomic<int>& n;
        ~Release() { n.fetch_sub(1); }
      } release{uploads_in_flight_};
      UploadWatchdog watchdog(context, ctx_.upload_idle_timeout);
      auto idle = [&]() {
        return absl::DeadlineExceededError(absl::StrCat("upload idle for more than ",
                                                        absl::FormatDuration(ctx_.upload_idle_timeout),
                                                        " (--upload-idle-timeout-seconds); nothing was stored"));
      };
      grpc::ByteBuffer bytes;
      v1::UploadPackRequest msg;
      if (!reader->Read(&bytes)) {
        if (watchdog.fired()) return idle();
        return absl::InvalidArgumentError("header: the first message must carry the upload header");
      }
      RETURN_IF_ERROR(ParseRequest(bytes, &msg));
      if (!msg.has_header())
        return absl::InvalidArgumentError("header: the first message must carry the upload header");
      const v1::UploadHeader& h = msg.header();
      if (h.total_size() > static_cast<uint64_t>(INT64_MAX)) {
        return absl::InvalidArgumentError("header.total_size: too large");
      }
      ASSIGN_OR_RETURN(
          std::unique_ptr<PackUpload> upload,
          ctx_.store->BeginUpload(h.name(), h.sha256(), static_cast<int64_t>(h.total_size()), h.overwrite()));
      watchdog.Touch();
      while (reader->Read(&bytes)) {
        watchdog.Touch();
        RETURN_IF_ERROR(ParseRequest(bytes, &msg));
        if (msg.part_case() != v1::UploadPackRequest::kChunk) {
          return absl::InvalidArgumentError("chunk: only the first message may carry a header");
        }
        RETURN_IF_ERROR(upload->Append(msg.chunk()));
      }
      // No cancellation from here on: a slow Commit (validation) is not idleness.
      if (watchdog.Stop()) return idle();
      if (context->IsCancelled() || (!upload->complete() && CancelledSoon(context))) {
        return absl::CancelledError("upload cancelled by the client");
      }
      // Also drops an overwritten pack's old cache entries.
      ASSIGN_OR_RETURN(StoredPack stored, ctx_.packs->Commit(upload.get()));
      std::fprintf(stderr, "pack store: stored %s (%lld bytes, sha256 %s)\n", stored.summary.name.c_str(),
                   static_cast<long long>(stored.file_bytes), stored.sha256.c_str());
      FillPackInfo(stored, ctx_.cache->StateOf(stored.summary.name), resp->mutable_pack());
      return absl::OkStatus();
    });
  }

  Status DoListPacks(const v1::ListPacksRequest&, v1::ListPacksResponse* resp) {
    for (const StoredPack& p : ctx_.store->List()) {
      FillPackInfo(p, ctx_.cache->StateOf(p.summary.name), resp->add_packs());
    }
    return absl::OkStatus();
  }

  Status DoGetPack(const v1::GetPackRequest& req, v1::GetPackResponse* resp) {
    RETURN_IF_ERROR(CheckName(req.name()));
    ASSIGN_OR_RETURN(StoredPack p, ctx_.store->Get(req.name()));
    FillPackInfo(p, ctx_.cache->StateOf(p.summary.name), resp->mutable_pack());
    ASSIGN_OR_RETURN(Json d, ctx_.store->runtime()->Describe(p.path));
    if (d.contains("modules") && d["modules"].is_array()) {
      for (const Json& m : d["modules"]) {
        v1::ModuleInfo* mi = resp->add_modules();
        mi->set_name(m.value("name", ""));
        mi->set_op(m.value("op", ""));
        if (m.contains("shape") && m["shape"].is_array()) {
          for (const Json& x : m["shape"]) mi->add_shape(x.get<int64_t>());
        }
        if (m.contains("rank") && m["rank"].is_number_integer()) mi->set_rank(m["rank"].get<int64_t>());
      }
    }
    if (d.contains("provenance")) resp->set_provenance_json(d["provenance"].dump());
    return absl::OkStatus();
  }

  Status DoLoadPack(const v1::LoadPackRequest& req, v1::LoadPackResponse* resp) {
    RETURN_IF_ERROR(CheckName(req.name()));
    ASSIGN_OR_RETURN(StoredPack p, ctx_.store->Get(req.name()));
    double secs = 0;
    RETURN_IF_ERROR(ctx_.cache->Load(req.name(), req.pin(), &secs));
    FillPackInfo(p, ctx_.cache->StateOf(p.summary.name), resp->mutable_pack());
    resp->set_load_seconds(secs);
    return absl::OkStatus();
  }

  Status DoUnloadPack(const v1::UnloadPackRequest& req, v1::UnloadPackResponse*) {
    RETURN_IF_ERROR(CheckName(req.name()));
    return ctx_.packs->Unload(req.name());
  }

  Status DoDeletePack(const v1::DeletePackRequest& req, v1::DeletePackResponse*) {
    RETURN_IF_ERROR(CheckName(req.name()));
    return ctx_.packs->Delete(req.name());
  }

  Status DoSetRouter(const v1::SetRouterRequest& req, v1::SetRouterResponse* resp) {
    if (req.clear()) {
      if (!req.router().empty()) return absl::InvalidArgumentError("router: must be empty with clear");
      ctx_.router->Clear();
      return absl::OkStatus();
    }
    if (req.router().empty()) return absl::InvalidArgumentError("router: must not be empty (or set clear)");
    ASSIGN_OR_RETURN(LoadedRouter r, ctx_.router->Set(req.router(), "admin"));
    FillRouterInfo(r, resp->mutable_router());
    return absl::OkStatus();
  }

  Status DoGetRouter(const v1::GetRouterRequest&, v1::GetRouterResponse* resp) {
    const LoadedRouter r = ctx_.router->Current();
    resp->set_loaded(r.router != nullptr);
    if (r.router) FillRouterInfo(r, resp->mutable_router());
    const RoutingPolicy& p = ctx_.router->options().default_policy;
    resp->mutable_policy()->set_mode(RoutingModeName(p));
    resp->mutable_policy()->set_k(p.k);
    resp->mutable_policy()->set_threshold(p.threshold);
    resp->set_max_tokens(ctx_.router->options().max_tokens);
    return absl::OkStatus();
  }

  Status DoGetStats(const v1::GetStatsRequest&, v1::GetStatsResponse* resp) {
    const SchedulerStats s = ctx_.scheduler->Stats();
    resp->set_running_requests(s.running);
    resp->set_waiting_requests(s.waiting);
    resp->set_kv_slots_total(s.kv_slots_total);
    resp->set_kv_slots_free(s.kv_slots_free);
    resp->set_requests_total(static_cast<uint64_t>(s.requests_total));
    resp->set_prompt_tokens_total(static_cast<uint64_t>(s.prompt_tokens_total));
    resp->set_generated_tokens_total(static_cast<uint64_t>(s.generated_tokens_total));
    for (const CacheTierStats& t : ctx_.cache->Stats()) {
      v1::CacheTierStats* c = resp->add_cache();
      c->set_tier(t.tier);
      c->set_bytes(static_cast<uint64_t>(t.bytes));
      c->set_budget_bytes(static_cast<uint64_t>(t.budget_bytes));
      c->set_entries(t.entries);
      c->set_hits(static_cast<uint64_t>(t.hits));
      c->set_misses(static_cast<uint64_t>(t.misses));
      c->set_evictions(static_cast<uint64_t>(t.evictions));
    }
    resp->set_stored_packs(static_cast<int32_t>(ctx_.store->List().size()));
    resp->set_model_dir(ctx_.model_dir);
    resp->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - ctx_.started));
    resp->set_serving(!s.draining);
    return absl::OkStatus();
  }

  // Checks the bearer token, runs `body`, records the RPC and maps its status.
  template <typename Body>
  grpc::Status Handle(const char* method, grpc::ServerContext* context, Body body) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = CheckAuth(*context);
    if (s.ok()) s = body();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (ctx_.metrics) ctx_.metrics->RecordRpc(method, absl::StatusCodeToString(s.code()), secs);
    return ToGrpcStatus(ctx_.ClientFacing(s));
  }

  Status CheckAuth(const grpc::ServerContext& context) const {
    if (ctx_.admin_token.empty()) {
      return absl::UnauthenticatedError("the admin API is disabled: start the server with --admin-token-file");
    }
    return CheckBearerToken(context.client_metadata(), ctx_.admin_token);
  }

  const ServingContext& ctx_;
  std::atomic<int> uploads_in_flight_{0};
};

}  // namespace

std::unique_ptr<v1::Admin::Service> NewAdminService(const ServingContext* ctx) {
  return std::make_unique<AdminServiceImpl>(ctx);
}

}  // namespace skillpack
