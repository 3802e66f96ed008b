#include "server/inference_service.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <set>

#include "core/chat_template.h"
#include "pack/selection.h"
#include "rpc/grpc_status.h"
#include "rpc/request_decode.h"

namespace skillpack {
namespace {

constexpr size_t kMaxPacksPerRequest = 8;
constexpr float kMaxPackWeight = 16.0f;
// How often a waiting handler checks whether its client went away.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
// A call cancelled this close to its deadline counts as DEADLINE_EXCEEDED: the
// client's own timer fires first and its cancellation reaches us before our
// copy of the deadline (gRPC sends a relative timeout, restarted when the
// request is read, so ours runs late by the transit and queueing time).
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(500);

// A request turned into what the scheduler runs.
struct Prepared {
  GenerationRequest gen;
  std::vector<PackSelection> packs;
  double compose_seconds = 0;
  bool routed = false;  // AUTO with a router loaded
  RoutedRequest route;  // when routed
};

bool IsAuto(const v1::Skills& skills) {
  return skills.mode() == v1::Skills::AUTO || skills.mode() == v1::Skills::MODE_UNSPECIFIED;
}

// Longest request_id accepted (it is echoed in every response).
constexpr size_t kMaxRequestIdBytes = 256;

Status CheckRequestId(const std::string& id) {
  if (id.size() <= kMaxRequestIdBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("request_id: ", id.size(), " bytes, at most ", kMaxRequestIdBytes, " allowed"));
}

// The prompt's tokens of a GenerateRequest or RouteRequest (same input oneof),
// after the request_id and size checks that need no tokenizer.
template <typename Request>
StatusOr<std::vector<int32_t>> PromptTokens(const Request& req, const ServingContext& ctx) {
  const Tokenizer& tok = *ctx.tokenizer;
  RETURN_IF_ERROR(CheckRequestId(req.request_id()));
  auto too_long = [&](const char* field, size_t bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", bytes, " bytes exceeds the server's limit of ",
                                                   ctx.max_prompt_bytes, " (--max-prompt-bytes)"));
  };
  switch (req.input_case()) {
    case Request::kPrompt:
      if (req.prompt().empty()) return absl::InvalidArgumentError("prompt: must not be empty");
      if (static_cast<int64_t>(req.prompt().size()) > ctx.max_prompt_bytes) {
        return too_long("prompt", req.prompt().size());
      }
      return tok.Encode(req.prompt(), /*parse_special=*/true, /*add_bos=*/tok.bos_id().has_value());
    case Request::kChat: {
      const auto& msgs = req.chat().messages();
      if (msgs.empty()) return absl::InvalidArgumentError("chat.messages: must not be empty");
      size_t bytes = 0;
      for (const auto& m : msgs) bytes += m.role().size() + m.content().size();
      if (static_cast<int64_t>(bytes) > ctx.max_prompt_bytes) return too_long("chat.messages", bytes);
      std::vector<ChatMessage> chat;
      for (int i = 0; i < msgs.size(); ++i) {
        const std::string& role = msgs[i].role();
        if (role != "system" && role != "user" && role != "assistant") {
          return absl::InvalidArgumentError(
              absl::StrCat("chat.messages[", i, "].role: must be system, user or assistant, got '", role, "'"));
        }
        chat.push_back({role, msgs[i].content()});
      }
      StatusOr<ChatTemplateFamily> fam = DetectChatTemplateFamily(tok.chat_template());
      if (!fam.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("chat: the model has no usable chat template (", fam.status().message(), "); send a prompt"));
      }
      ChatTemplateOptions options;
      options.enable_thinking = !req.chat().has_enable_thinking() || req.chat().enable_thinking();
      ASSIGN_OR_RETURN(std::string text, ApplyChatTemplate(*fam, chat, options));
      return tok.Encode(text, /*parse_special=*/true, /*add_bos=*/false);
    }
    case Request::kTokens: {
      if (req.tokens().ids().empty()) return absl::InvalidArgumentError("tokens.ids: must not be empty");
      return std::vector<int32_t>(req.tokens().ids().begin(), req.tokens().ids().end());
    }
    case Request::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("input: set one of prompt, chat or tokens");
}

SamplingParams SamplingFromProto(const v1::SamplingParams& p) {
  SamplingParams s;
  if (p.has_max_new_tokens()) s.max_new_tokens = p.max_new_tokens();
  if (p.has_temperature()) s.temperature = p.temperature();
  s.top_k = p.top_k();
  if (p.has_top_p()) s.top_p = p.top_p();
  s.min_p = p.min_p();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_seed()) s.seed = p.seed();
  s.stop.assign(p.stop().begin(), p.stop().end());
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  s.ignore_eos = p.ignore_eos();
  s.logprobs = p.logprobs();
  return s;
}

// The routing policy of an AUTO request: the server's default with the
// request's overrides. INVALID_ARGUMENT naming the field for a bad override.
StatusOr<RoutingPolicy> PolicyFor(const v1::Skills& skills, const RoutingPolicy& server_default) {
  RoutingPolicy p = server_default;
  switch (skills.routing_mode()) {
    case v1::Skills::TOP1:
      p.mode = RoutingPolicy::Mode::kTop1;
      break;
    case v1::Skills::TOPK:
      p.mode = RoutingPolicy::Mode::kTopK;
      break;
    case v1::Skills::ROUTING_MODE_UNSPECIFIED:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("skills.routing_mode: unknown value ", skills.routing_mode()));
  }
  if (skills.has_routing_k()) {
    if (skills.routing_k() < 1 || skills.routing_k() > 16) {
      return absl::InvalidArgumentError(absl::StrCat("skills.routing_k: must be in [1, 16], got ", skills.routing_k()));
    }
    p.k = skills.routing_k();
  }
  if (skills.has_routing_threshold()) {
    const float t = skills.routing_threshold();
    if (!(t >= 0 && t <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("skills.routing_threshold: must be in [0, 1], got ", t));
    }
    p.threshold = t;
  }
  return p;
}

// The routing fields are for AUTO only: explicitly named packs (and NONE)
// bypass the router.
Status CheckNoRoutingFields(const v1::Skills& skills) {
  const char* field = skills.routing_mode() != v1::Skills::ROUTING_MODE_UNSPECIFIED ? "routing_mode"
                      : skills.has_routing_k()                                      ? "routing_k"
                      : skills.has_routing_threshold()                              ? "routing_threshold"
                      : skills.return_scores()                                      ? "return_scores"
                                                                                    : nullptr;
  if (field == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("skills.", field, ": only allowed with skills.mode = AUTO"));
}

StatusOr<std::vector<PackSelection>> PackSelections(const v1::Skills& skills) {
  std::vector<PackSelection> out;
  switch (skills.mode()) {
    case v1::Skills::MODE_UNSPECIFIED:
    case v1::Skills::AUTO:
    case v1::Skills::NONE:
    case v1::Skills::EXPLICIT:
      break;
    default:  // an enum value this server does not know (proto3 enums are open)
      return absl::InvalidArgumentError(absl::StrCat("skills.mode: unknown value ", skills.mode()));
  }
  if (skills.mode() != v1::Skills::EXPLICIT) {
    if (!skills.packs().empty()) {
      return absl::InvalidArgumentError("skills.packs: only allowed with skills.mode = EXPLICIT");
    }
    if (!IsAuto(skills)) RETURN_IF_ERROR(CheckNoRoutingFields(skills));
    return out;  // AUTO (the router, if any, decides in Prepare) and NONE: the base model
  }
  RETURN_IF_ERROR(CheckNoRoutingFields(skills));
  if (skills.packs().empty()) {
    return absl::InvalidArgumentError("skills.packs: EXPLICIT mode needs at least one pack");
  }
  if (static_cast<size_t>(skills.packs().size()) > kMaxPacksPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat("skills.packs: at most ", kMaxPacksPerRequest, " packs"));
  }
  std::set<std::string> seen;
  for (int i = 0; i < skills.packs().size(); ++i) {
    const v1::PackSelection& p = skills.packs(i);
    const std::string field = absl::StrCat("skills.packs[", i, "]");
    Status s = ValidatePackName(p.name());
    if (!s.ok()) return Annotate(s, absl::StrCat(field, ".name"));
    if (!seen.insert(p.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".name: pack '", p.name(), "' listed twice"));
    }
    PackSelection c;
    c.name = p.name();
    c.weight = p.has_weight() ? p.weight() : 1.0f;
    if (!std::isfinite(c.weight) || std::fabs(c.weight) > kMaxPackWeight) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".weight: must be finite and in [-", kMaxPackWeight, ", ",
                                                     kMaxPackWeight, "], got ", c.weight));
    }
    c.modules.assign(p.modules().begin(), p.modules().end());
    s = ValidateModuleFilter(c.modules);
    if (!s.ok()) return Annotate(s, absl::StrCat(field, ".modules"));
    out.push_back(std::move(c));
  }
  return out;
}

StatusOr<Prepared> Prepare(const ServingContext& ctx, const v1::GenerateRequest& req) {
  Prepared p;
  ASSIGN_OR_RETURN(p.gen.prompt_tokens, PromptTokens(req, ctx));
  p.gen.params = SamplingFromProto(req.sampling());
  RETURN_IF_ERROR(ctx.scheduler->Validate(p.gen));
  ASSIGN_OR_RETURN(p.packs, PackSelections(req.skills()));
  if (ctx.scheduler->Stats().draining) return absl::UnavailableError("server is shutting down");
  if (IsAuto(req.skills())) {
    ASSIGN_OR_RETURN(RoutingPolicy policy, PolicyFor(req.skills(), ctx.router->options().default_policy));
    // Routed here, on the handler thread, before the request is queued (see
    // request_router.h). No router loaded: no pack.
    ASSIGN_OR_RETURN(std::optional<RoutedRequest> routed, ctx.router->RouteIfLoaded(p.gen.prompt_tokens, policy));
    if (routed.has_value()) {
      p.route = *std::move(routed);
      p.routed = true;
      const RouteDecision& d = p.route.decision;
      for (size_t i = 0; i < d.packs.size(); ++i) {
        PackSelection c;
        c.name = d.packs[i].first;
        c.weight = d.packs[i].second;
        if (i < d.modules.size()) c.modules = d.modules[i];  // the router's module assignment
        p.packs.push_back(std::move(c));
      }
    }
  }
  ASSIGN_OR_RETURN(ServingWeights w, ctx.cache->Get(p.packs, &p.compose_seconds));
  p.gen.weights = std::move(w.weights);
  p.gen.delta = std::move(w.delta);
  return p;
}

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

// The status of a finished request: OK, or why it produced no full result.
Status FinalStatus(const RequestState& state, const GenerationOutput& out) {
  switch (out.finish_reason) {
    case FinishReason::kError:
      return out.status.ok() ? absl::InternalError("generation failed") : out.status;
    case FinishReason::kCancelled:
      switch (state.cancel_cause()) {
        case CancelCause::kDeadline:
          return absl::DeadlineExceededError(
              absl::StrCat("deadline exceeded after ", out.tokens.size(), " generated tokens"));
        case CancelCause::kShutdown:
          return absl::UnavailableError("server is shutting down");
        default:
          return absl::CancelledError("request cancelled");
      }
    default:
      return absl::OkStatus();
  }
}

// Fills the summary fields (4-9) shared by GenerateResponse and the last
// GenerateStreamResponse.
template <typename Response>
void FillSummary(const v1::GenerateRequest& req, const Prepared& p, const GenerationOutput& out, Response* resp) {
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
    if (!IsAuto(req.skills())) {
      return absl::InvalidArgumentError("skills.mode: Route runs the router; leave it unset or AUTO");
    }
    if (!req.skills().packs().empty()) {
      return absl::InvalidArgumentError("skills.packs: only allowed with skills.mode = EXPLICIT");
    }
    ASSIGN_OR_RETURN(RoutingPolicy policy, PolicyFor(req.skills(), ctx_.router->options().default_policy));
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
    ASSIGN_OR_RETURN(Prepared p, Prepare(ctx_, req));
    if (ctx_.metrics) {
      if (p.packs.empty()) ctx_.metrics->pack_requests.WithLabels({"none"}).Increment();
      for (const PackSelection& c : p.packs) ctx_.metrics->pack_requests.WithLabels({c.name}).Increment();
    }
    const absl::Time deadline = ToAbslTime(context->deadline());
    ASSIGN_OR_RETURN(std::shared_ptr<RequestState> state,
                     ctx_.scheduler->Submit(p.gen, deadline, /*stream=*/writer != nullptr));
    bool cancelled = false;
    // The call ended under us (cancelled, or a stream write failed): past (or
    // all but at) the deadline it is DEADLINE_EXCEEDED, else the client left.
    auto why_gone = [&]() {
      return absl::Now() + kDeadlineSlack >= deadline ? CancelCause::kDeadline : CancelCause::kClient;
    };
    auto cancel = [&](CancelCause cause) {
      if (cancelled) return;
      cancelled = true;
      ctx_.scheduler->Cancel(state, cause);
    };
    std::vector<StreamChunk> chunks;
    bool done = false;
    while (!done) {
      done = state->Wait(kPollInterval, writer ? &chunks : nullptr);
      if (!done && context->IsCancelled()) cancel(why_gone());
      // While running, send every chunk; once done the last one goes with the summary.
      if (writer && !cancelled) {
        const size_t keep = done && !chunks.empty() ? 1 : 0;
        for (size_t i = 0; i + keep < chunks.size(); ++i) {
          v1::GenerateStreamResponse m;
          m.set_text(std::move(chunks[i].text));
          for (int32_t id : chunks[i].tokens) m.add_token_ids(id);
          for (float lp : chunks[i].logprobs) m.add_logprobs(lp);
          if (!writer->Write(m)) cancel(why_gone());
        }
        chunks.erase(chunks.begin(), chunks.end() - static_cast<std::ptrdiff_t>(keep));
      }
    }
    const GenerationOutput out = state->output();
    RETURN_IF_ERROR(FinalStatus(*state, out));
    if (writer) {
      v1::GenerateStreamResponse last;
      if (!chunks.empty()) {
        last.set_text(std::move(chunks.back().text));
        for (int32_t id : chunks.back().tokens) last.add_token_ids(id);
        for (float lp : chunks.back().logprobs) last.add_logprobs(lp);
      }
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
