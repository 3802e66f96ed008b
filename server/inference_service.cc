#include "server/inference_service.h"

#include <chrono>
#include <utility>

#include "rpc/grpc_status.h"
#include "rpc/request_decode.h"
#include "server/submission.h"

namespace skillpack {
namespace {

// A call cancelled this close to its deadline counts as DEADLINE_EXCEEDED: the
// client's own timer fires first and its cancellation reaches us before our
// copy of the deadline (gRPC sends a relative timeout, restarted when the
// request is read, so ours runs late by the transit and queueing time).
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(500);
// How often a waiting handler checks whether its call was cancelled: the
// synchronous gRPC API offers no cancellation callback, only IsCancelled().
constexpr absl::Duration kCancelCheckInterval = absl::Milliseconds(20);

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

// A gRPC call as AwaitGeneration sees it: gone once the call is cancelled or a
// stream write fails; past (or all but at) the deadline that is
// DEADLINE_EXCEEDED, else the client left.
class CallSink final : public GenerationSink {
 public:
  CallSink(grpc::ServerContext* context, grpc::internal::WriterInterface<v1::GenerateStreamResponse>* writer,
           absl::Time deadline)
      : context_(context), writer_(writer), deadline_(deadline) {}

  CancelCause ClientGone() override { return context_->IsCancelled() ? WhyGone() : CancelCause::kNone; }
  absl::Duration ClientCheckInterval() const override { return kCancelCheckInterval; }

  CancelCause Deliver(StreamChunk chunk) override {
    v1::GenerateStreamResponse m;
    FillChunk(std::move(chunk), &m);
    return writer_->Write(m) ? CancelCause::kNone : WhyGone();
  }

 private:
  CancelCause WhyGone() const {
    return absl::Now() + kDeadlineSlack >= deadline_ ? CancelCause::kDeadline : CancelCause::kClient;
  }

  grpc::ServerContext* const context_;
  grpc::internal::WriterInterface<v1::GenerateStreamResponse>* const writer_;
  const absl::Time deadline_;
};

// Method indices of skillpack.v1.Inference in its generated service (the
// proto's order).
constexpr int kGenerateMethod = 0;
constexpr int kGenerateStreamMethod = 1;
constexpr int kRouteMethod = 2;

using RawUnary = grpc::ServerUnaryStreamer<grpc::ByteBuffer, v1::GenerateResponse>;
using RawStream = grpc::ServerSplitStreamer<grpc::ByteBuffer, v1::GenerateStreamResponse>;
using RawRoute = grpc::ServerUnaryStreamer<grpc::ByteBuffer, v1::RouteResponse>;

class InferenceServiceImpl final : public v1::Inference::Service {
 public:
  // Every method takes its request as raw bytes and decodes it itself
  // (rpc/request_decode.h): protobuf refuses a string field holding invalid
  // UTF-8, and gRPC's generated handler would answer that with INTERNAL and
  // no message before any of our code ran; decoded here it is
  // INVALID_ARGUMENT naming the field. The bytes on the wire are unchanged.
  // MarkMethodStreamed is the hook of gRPC's own WithStreamedUnaryMethod /
  // WithSplitStreamingMethod: one request message in, one (or a stream of)
  // responses out, exactly what unary and server-streaming clients do.
  explicit InferenceServiceImpl(const ServingContext* ctx) : ctx_(*ctx) {
    MarkMethodStreamed(kGenerateMethod,
                       new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, v1::GenerateResponse>(
                           [this](grpc::ServerContext* c, RawUnary* s) { return RawGenerate(c, s); }));
    MarkMethodStreamed(kGenerateStreamMethod,
                       new grpc::internal::SplitServerStreamingHandler<grpc::ByteBuffer, v1::GenerateStreamResponse>(
                           [this](grpc::ServerContext* c, RawStream* s) { return RawGenerateStream(c, s); }));
    MarkMethodStreamed(kRouteMethod, new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, v1::RouteResponse>(
                                         [this](grpc::ServerContext* c, RawRoute* s) { return RawRouteCall(c, s); }));
  }

 private:
  grpc::Status RawGenerate(grpc::ServerContext* context, RawUnary* stream) {
    const auto t0 = std::chrono::steady_clock::now();
    v1::GenerateRequest req;
    v1::GenerateResponse resp;
    Status s = ReadRequest(stream, &req);
    if (s.ok()) s = Run(context, req, nullptr, &resp);
    Finish("Generate", t0, s);
    if (s.ok()) stream->Write(resp);
    return ToGrpcStatus(ctx_.ClientFacing(s));
  }

  grpc::Status RawGenerateStream(grpc::ServerContext* context, RawStream* stream) {
    const auto t0 = std::chrono::steady_clock::now();
    v1::GenerateRequest req;
    Status s = ReadRequest(stream, &req);
    if (s.ok()) s = Run(context, req, stream, nullptr);
    Finish("GenerateStream", t0, s);
    return ToGrpcStatus(ctx_.ClientFacing(s));
  }

  grpc::Status RawRouteCall(grpc::ServerContext*, RawRoute* stream) {
    const auto t0 = std::chrono::steady_clock::now();
    v1::RouteRequest req;
    v1::RouteResponse resp;
    Status s = ReadRequest(stream, &req);
    if (s.ok()) s = RunRoute(req, &resp);
    Finish("Route", t0, s);
    if (s.ok()) stream->Write(resp);
    return ToGrpcStatus(ctx_.ClientFacing(s));
  }

  // The call's one request message, decoded.
  static Status ReadRequest(grpc::internal::ReaderInterface<grpc::ByteBuffer>* stream, google::protobuf::Message* req) {
    grpc::ByteBuffer bytes;
    if (!stream->Read(&bytes)) return absl::InvalidArgumentError("no request message");
    return ParseRequest(bytes, req);
  }

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

  void Finish(const char* method, std::chrono::steady_clock::time_point t0, const Status& s) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (ctx_.metrics) ctx_.metrics->RecordRpc(method, absl::StatusCodeToString(s.code()), secs);
  }

  // Runs one request; streams through `writer` when it is set, else fills `resp`.
  Status Run(grpc::ServerContext* context, const v1::GenerateRequest& req,
             grpc::internal::WriterInterface<v1::GenerateStreamResponse>* writer, v1::GenerateResponse* resp) {
    ASSIGN_OR_RETURN(PreparedGeneration p, PrepareGeneration(ctx_, req));
    const absl::Time deadline = ToAbslTime(context->deadline());
    CallSink sink(context, writer, deadline);
    ASSIGN_OR_RETURN(GenerationResult r, RunGeneration(ctx_, p, deadline, /*stream=*/writer != nullptr, &sink));
    const GenerationOutput& out = r.output;
    if (writer) {
      v1::GenerateStreamResponse last;
      if (r.last_chunk) FillChunk(std::move(*r.last_chunk), &last);
      FillSummary(req, p, out, &last);
      writer->Write(last);
    } else {
      resp->set_text(out.text);
      for (int32_t id : out.tokens) resp->add_token_ids(id);
      for (float lp : out.logprobs) resp->add_logprobs(lp);
      FillSummary(req, p, out, resp);
    }
    return absl::OkStatus();
  }

  const ServingContext& ctx_;
};

}  // namespace

std::unique_ptr<v1::Inference::Service> NewInferenceService(const ServingContext* ctx) {
  return std::make_unique<InferenceServiceImpl>(ctx);
}

}  // namespace skillpack
