#include "server/inference_service.h"

#include <chrono>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/proto_buffer_writer.h"

#include "rpc/grpc_status.h"
#include "rpc/request_decode.h"
#include "server/call_workers.h"
#include "server/submission.h"

namespace skillpack {
namespace {

// A call cancelled this close to its deadline counts as DEADLINE_EXCEEDED: the
// client's own timer fires first and its cancellation reaches us before our
// copy of the deadline (gRPC sends a relative timeout, restarted when the
// request is read, so ours runs late by the transit and queueing time).
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(500);

template <typename Response>
void AddScores(const RouteDecision& d, Response* resp) {
  for (const auto& [label, score] : d.scores) {
    v1::RouteScore* s = resp->add_route_scores();
    s->set_label(label);
    s->set_score(score);
  }
}

v1::FinishReason FinishToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return v1::LENGTH;
    case FinishReason::kStop:
      return v1::STOP;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

// Fills the summary fields (4-9) shared by GenerateResponse and the last
// GenerateStreamResponse.
template <typename Response>
void FillSummary(const v1::GenerateRequest& req, const PreparedGeneration& p, const GenerationOutput& out,
                 Response* resp) {
  resp->set_finish_reason(FinishToProto(out.finish_reason));
  resp->mutable_usage()->set_prompt_tokens(out.prompt_tokens);
  resp->mutable_usage()->set_completion_tokens(static_cast<int32_t>(out.tokens.size()));
  for (const PackSelection& c : p.packs) {
    v1::PackUse* u = resp->add_packs();
    u->set_name(c.name);
    u->set_weight(c.weight);
    for (const std::string& m : c.modules) u->add_modules(m);
  }
  v1::Timings* t = resp->mutable_timings();
  t->set_queue_seconds(out.queue_seconds);
  t->set_time_to_first_token_seconds(out.time_to_first_token_s);
  t->set_total_seconds(out.total_seconds);
  t->set_compose_seconds(p.compose_seconds);
  if (p.routed) {
    t->set_route_seconds(p.route.seconds);
    if (req.skills().return_scores()) AddScores(p.route.decision, resp);
  }
  resp->set_request_id(req.request_id());
}

void FillChunk(StreamChunk chunk, v1::GenerateStreamResponse* m) {
  m->set_text(std::move(chunk.text));
  for (int32_t id : chunk.tokens) m->add_token_ids(id);
  for (float lp : chunk.logprobs) m->add_logprobs(lp);
}

// `m` as the raw bytes of a response.
void Serialize(const google::protobuf::Message& m, grpc::ByteBuffer* out) {
  out->Clear();  // a buffer reused for the next message of a stream
  bool own = false;
  grpc::SerializationTraits<google::protobuf::Message>::Serialize(m, out, &own);
}

// Why a call's client is gone: at (or all but at) its deadline that is
// DEADLINE_EXCEEDED, else the client left.
CancelCause WhyGone(absl::Time deadline) {
  return absl::Now() + kDeadlineSlack >= deadline ? CancelCause::kDeadline : CancelCause::kClient;
}

Status GoneStatus(CancelCause cause) {
  return cause == CancelCause::kDeadline ? absl::DeadlineExceededError("deadline exceeded before the request started")
                                         : absl::CancelledError("request cancelled");
}

// One Generate or GenerateStream call, driven by events instead of a thread:
// gRPC's callback API calls OnCancel when the client leaves or its deadline
// passes, and the request's listener (RequestState::SetListener) calls Pump
// on the engine thread when there is new output or the request ended. The
// blocking preparation (decode, tokenize, route, compose) runs on a
// CallWorkers thread (Start).
//
// Locking: `mu_` guards the call's own state only; the request's lock may be
// taken under it (Poll), nothing else. gRPC's reactor methods (StartWrite,
// Finish) and the scheduler are called after it is released, so neither a
// reaction gRPC runs inline nor the scheduler can take locks in the other
// order. Once
// Finish is called no reactor method is called again (finished_), so a late
// listener call is harmless; the object lives until gRPC's OnDone and every
// listener call has returned (shared_ptr, the listener holds a weak_ptr).
template <class Reactor>
class GenerationCall : public Reactor, public std::enable_shared_from_this<GenerationCall<Reactor>> {
 public:
  static constexpr bool kStream = std::is_same_v<Reactor, grpc::ServerWriteReactor<grpc::ByteBuffer>>;

  GenerationCall(const ServingContext& ctx, const char* method, absl::Time deadline)
      : ctx_(ctx), method_(method), deadline_(deadline), t0_(std::chrono::steady_clock::now()) {}

  // Hands the call to a worker thread (or refuses it), keeping it alive
  // until OnDone. `request` and `response` (unary) stay valid until Finish.
  static Reactor* Start(std::shared_ptr<GenerationCall> call, CallWorkers* workers, const grpc::ByteBuffer* request,
                        grpc::ByteBuffer* response) {
    call->response_ = response;
    {
      absl::MutexLock lock(&call->mu_);
      call->self_ = call;
    }
    const bool started = workers->TryRun([call, request] { call->Prepare(*request); });
    if (!started) {
      call->FinishWith(absl::ResourceExhaustedError(absl::StrCat(
          "server busy: ", workers->max_running(), " requests are being prepared (tokenized, routed, composed)")));
    }
    return call.get();
  }

  void OnCancel() override {
    std::shared_ptr<RequestState> state;
    CancelCause cause = WhyGone(deadline_);
    {
      absl::MutexLock lock(&mu_);
      if (gone_ == CancelCause::kNone) gone_ = cause;
      state = state_;
    }
    // Not yet submitted: Prepare sees gone_ and stops. Submitted: the engine
    // frees the slot at the next step and the listener finishes the call.
    if (state) ctx_.scheduler->Cancel(state, cause);
  }

  void OnDone() override {
    std::shared_ptr<GenerationCall> self;
    absl::MutexLock lock(&mu_);
    self.swap(self_);  // released after the lock
  }

 protected:
  // Streams: gRPC is done with the last StartWrite.
  void WriteDone(bool ok) {
    std::shared_ptr<RequestState> state;
    CancelCause cause = CancelCause::kNone;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !broken_) {
        broken_ = true;
        pending_.clear();
        cause = WhyGone(deadline_);
        if (gone_ == CancelCause::kNone) gone_ = cause;
        state = state_;
      }
    }
    if (state) ctx_.scheduler->Cancel(state, cause);
    Pump();
  }

 private:
  // On a worker thread: everything before the scheduler, then the handover.
  void Prepare(const grpc::ByteBuffer& bytes) {
    v1::GenerateRequest req;
    Status s = ParseRequest(bytes, &req);
    if (!bytes.Valid()) {
      // No request message: the call was cancelled (or ran out of time)
      // before it arrived, unless the client sent none at all.
      CancelCause gone = Gone();
      if (gone == CancelCause::kNone && absl::Now() + kDeadlineSlack >= deadline_) gone = CancelCause::kDeadline;
      s = gone != CancelCause::kNone ? GoneStatus(gone) : absl::InvalidArgumentError("no request message");
    }
    StatusOr<PreparedGeneration> p = s.ok() ? PrepareGeneration(ctx_, req) : StatusOr<PreparedGeneration>(s);
    if (!p.ok()) return FinishWith(p.status());
    if (CancelCause gone = Gone(); gone != CancelCause::kNone) return FinishWith(GoneStatus(gone));
    StatusOr<std::shared_ptr<RequestState>> state = SubmitGeneration(ctx_, *p, deadline_, kStream);
    if (!state.ok()) return FinishWith(state.status());
    CancelCause gone;
    {
      absl::MutexLock lock(&mu_);
      request_ = std::move(req);
      prepared_ = *std::move(p);
      state_ = *state;
      gone = gone_;
    }
    if (gone != CancelCause::kNone) ctx_.scheduler->Cancel(*state, gone);
    std::weak_ptr<GenerationCall> weak = this->shared_from_this();
    (*state)->SetListener([weak] {
      if (std::shared_ptr<GenerationCall> call = weak.lock()) call->Pump();
    });
  }

  CancelCause Gone() {
    absl::MutexLock lock(&mu_);
    return gone_;
  }

  // What the request has for the client, if the call can take it now: the
  // next chunk (streams, one write at a time), or the end.
  void Pump() {
    enum { kNothing, kWrite, kEnd } action = kNothing;
    Status end;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_ || !state_) return;
      const bool done = state_->Poll(kStream && !broken_ ? &pending_ : nullptr);
      if (kStream && !broken_ && (pending_.size() > 1 || (!done && !pending_.empty()))) {
        // While it runs every chunk goes out; at the end the last one goes
        // with the summary.
        v1::GenerateStreamResponse m;
        FillChunk(std::move(pending_.front()), &m);
        pending_.erase(pending_.begin());
        Serialize(m, &out_);
        writing_ = true;
        action = kWrite;
      } else if (done) {
        std::optional<StreamChunk> last;
        if (!pending_.empty()) last = std::move(pending_.front());
        pending_.clear();
        StatusOr<GenerationResult> r = FinishedGeneration(*state_, std::move(last));
        end = r.status();
        if (r.ok() && !broken_) FillResponse(*std::move(r));
        finished_ = true;
        action = kEnd;
      }
    }
    if (action == kWrite) {
      if constexpr (kStream) this->StartWrite(&out_);
    } else if (action == kEnd) {
      EndCall(end);
    }
  }

  // Under mu_, once: the unary response, or the stream's last message.
  void FillResponse(GenerationResult r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const GenerationOutput& out = r.output;
    if constexpr (kStream) {
      v1::GenerateStreamResponse last;
      if (r.last_chunk) FillChunk(std::move(*r.last_chunk), &last);
      FillSummary(request_, prepared_, out, &last);
      Serialize(last, &out_);
      has_last_ = true;
    } else {
      v1::GenerateResponse resp;
      resp.set_text(out.text);
      for (int32_t id : out.tokens) resp.add_token_ids(id);
      for (float lp : out.logprobs) resp.add_logprobs(lp);
      FillSummary(request_, prepared_, out, &resp);
      Serialize(resp, response_);
    }
  }

  // A call that ends before (or without) a request in the scheduler.
  void FinishWith(const Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    EndCall(s);
  }

  // The one Finish of the call. Not under mu_.
  void EndCall(const Status& s) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    if (ctx_.metrics) ctx_.metrics->RecordRpc(method_, absl::StatusCodeToString(s.code()), secs);
    const grpc::Status status = ToGrpcStatus(ctx_.ClientFacing(s));
    if constexpr (kStream) {
      if (s.ok() && has_last_) return this->StartWriteAndFinish(&out_, grpc::WriteOptions(), status);
    }
    this->Finish(status);
  }

  const ServingContext& ctx_;
  const char* const method_;
  const absl::Time deadline_;
  const std::chrono::steady_clock::time_point t0_;
  grpc::ByteBuffer* response_ = nullptr;  // unary calls

  absl::Mutex mu_;
  std::shared_ptr<GenerationCall> self_ ABSL_GUARDED_BY(mu_);  // until OnDone
  CancelCause gone_ ABSL_GUARDED_BY(mu_) = CancelCause::kNone;
  std::shared_ptr<RequestState> state_ ABSL_GUARDED_BY(mu_);  // once submitted
  v1::GenerateRequest request_ ABSL_GUARDED_BY(mu_);
  PreparedGeneration prepared_ ABSL_GUARDED_BY(mu_);
  std::vector<StreamChunk> pending_ ABSL_GUARDED_BY(mu_);  // streams: taken, not yet written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;              // a StartWrite in flight
  bool broken_ ABSL_GUARDED_BY(mu_) = false;               // a write failed: write no more
  bool finished_ ABSL_GUARDED_BY(mu_) = false;             // Finish called (or about to be)
  // The message in flight (gRPC holds a pointer until OnWriteDone): written
  // under mu_ only while no write is in flight.
  grpc::ByteBuffer out_;
  bool has_last_ = false;  // out_ holds the stream's last message
};

class StreamCall final : public GenerationCall<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  using GenerationCall::GenerationCall;
  void OnWriteDone(bool ok) override { WriteDone(ok); }
};
using UnaryCall = GenerationCall<grpc::ServerUnaryReactor>;

using RawInference = v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::WithRawCallbackMethod_GenerateStream<
    v1::Inference::WithRawCallbackMethod_Route<v1::Inference::Service>>>;

class InferenceServiceImpl final : public RawInference {
 public:
  // Every method takes its request as raw bytes and decodes it itself
  // (rpc/request_decode.h): protobuf refuses a string field holding invalid
  // UTF-8, and gRPC's generated handler would answer that with INTERNAL and
  // no message before any of our code ran; decoded here it is
  // INVALID_ARGUMENT naming the field. The bytes on the wire are unchanged.
  // Handlers run on gRPC's callback threads and never block: the work goes
  // to `workers_`.
  InferenceServiceImpl(const ServingContext* ctx, int32_t max_preparing) : ctx_(*ctx), workers_(max_preparing) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override {
    auto call = std::make_shared<UnaryCall>(ctx_, "Generate", ToAbslTime(context->deadline()));
    return UnaryCall::Start(std::move(call), &workers_, request, response);
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request) override {
    auto call = std::make_shared<StreamCall>(ctx_, "GenerateStream", ToAbslTime(context->deadline()));
    return StreamCall::Start(std::move(call), &workers_, request, nullptr);
  }

  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const auto t0 = std::chrono::steady_clock::now();
    auto finish = [this, reactor, t0](const Status& s) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (ctx_.metrics) ctx_.metrics->RecordRpc("Route", absl::StatusCodeToString(s.code()), secs);
      reactor->Finish(ToGrpcStatus(ctx_.ClientFacing(s)));
    };
    const bool started = workers_.TryRun([this, request, response, finish] {
      v1::RouteRequest req;
      v1::RouteResponse resp;
      Status s = ParseRequest(*request, &req);
      if (s.ok()) s = RunRoute(req, &resp);
      if (s.ok()) Serialize(resp, response);
      finish(s);
    });
    if (!started) {
      finish(absl::ResourceExhaustedError(
          absl::StrCat("server busy: ", workers_.max_running(), " requests are being prepared")));
    }
    return reactor;
  }

 private:
  Status RunRoute(const v1::RouteRequest& req, v1::RouteResponse* resp) {
    if (!IsAutoSkills(req.skills())) {
      return absl::InvalidArgumentError("skills.mode: Route runs the router; leave it unset or AUTO");
    }
    if (!req.skills().packs().empty()) {
      return absl::InvalidArgumentError("skills.packs: only allowed with skills.mode = EXPLICIT");
    }
    ASSIGN_OR_RETURN(RoutingPolicy policy, RoutingPolicyFor(req.skills(), ctx_.router->options().default_policy));
    ASSIGN_OR_RETURN(std::vector<int32_t> tokens, PromptTokens(req, ctx_));
    const int64_t vocab = ctx_.model_config->vocab_size;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokens.ids[", i, "]: token id ", tokens[i], " out of range [0, ", vocab, ")"));
      }
    }
    ASSIGN_OR_RETURN(RoutedRequest r, ctx_.router->Route(tokens, policy));
    for (const auto& [name, weight] : r.decision.packs) {
      v1::PackUse* u = resp->add_packs();
      u->set_name(name);
      u->set_weight(weight);
    }
    for (const auto& [label, score] : r.decision.scores) {
      v1::RouteScore* sc = resp->add_scores();
      sc->set_label(label);
      sc->set_score(score);
    }
    resp->set_route_seconds(r.seconds);
    resp->set_routed_tokens(r.tokens);
    resp->set_request_id(req.request_id());
    return absl::OkStatus();
  }

  const ServingContext& ctx_;
  // Declared last: destroyed first, waiting for every worker thread (each
  // may still use ctx_) before the rest goes.
  CallWorkers workers_;
};

}  // namespace

std::unique_ptr<v1::Inference::Service> NewInferenceService(const ServingContext* ctx, int32_t max_preparing) {
  return std::make_unique<InferenceServiceImpl>(ctx, max_preparing);
}

}  // namespace skillpack
