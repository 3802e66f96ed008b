#include "server/submission.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/chat_template.h"

namespace skillpack {

bool IsAutoSkills(const v1::Skills& skills) {
  return skills.mode() == v1::Skills::AUTO || skills.mode() == v1::Skills::MODE_UNSPECIFIED;
}

namespace {

constexpr size_t kMaxPacksPerRequest = 8;
constexpr float kMaxPackWeight = 16.0f;

// Longest request_id accepted (it is echoed in every response).
constexpr size_t kMaxRequestIdBytes = 256;

Status CheckRequestId(const std::string& id) {
  if (id.size() <= kMaxRequestIdBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("request_id: ", id.size(), " bytes, at most ", kMaxRequestIdBytes, " allowed"));
}

template <typename Request>
StatusOr<std::vector<int32_t>> PromptTokensOf(const Request& req, const ServingContext& ctx) {
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

}  // namespace

StatusOr<RoutingPolicy> RoutingPolicyFor(const v1::Skills& skills, const RoutingPolicy& server_default) {
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

namespace {

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
    if (!IsAutoSkills(skills)) RETURN_IF_ERROR(CheckNoRoutingFields(skills));
    return out;  // AUTO (the router, if any, decides in PrepareGeneration) and NONE: the base model
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

}  // namespace

StatusOr<PreparedGeneration> PrepareGeneration(const ServingContext& ctx, const v1::GenerateRequest& req) {
  PreparedGeneration p;
  ASSIGN_OR_RETURN(p.gen.prompt_tokens, PromptTokens(req, ctx));
  p.gen.params = SamplingFromProto(req.sampling());
  RETURN_IF_ERROR(ctx.scheduler->Validate(p.gen));
  ASSIGN_OR_RETURN(p.packs, PackSelections(req.skills()));
  if (ctx.scheduler->Stats().draining) return absl::UnavailableError("server is shutting down");
  if (IsAutoSkills(req.skills())) {
    ASSIGN_OR_RETURN(RoutingPolicy policy, RoutingPolicyFor(req.skills(), ctx.router->options().default_policy));
    // Routed here, on the request's preparation thread, before it is queued (see
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

StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& req, const ServingContext& ctx) {
  return PromptTokensOf(req, ctx);
}

StatusOr<std::vector<int32_t>> PromptTokens(const v1::RouteRequest& req, const ServingContext& ctx) {
  return PromptTokensOf(req, ctx);
}

namespace {

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

}  // namespace

StatusOr<std::shared_ptr<RequestState>> SubmitGeneration(const ServingContext& ctx, const PreparedGeneration& p,
                                                         absl::Time deadline, bool stream) {
  if (ctx.metrics) {
    if (p.packs.empty()) ctx.metrics->pack_requests.WithLabels({"none"}).Increment();
    for (const PackSelection& c : p.packs) ctx.metrics->pack_requests.WithLabels({c.name}).Increment();
  }
  return ctx.scheduler->Submit(p.gen, deadline, stream);
}

StatusOr<GenerationResult> RunGeneration(const ServingContext& ctx, const PreparedGeneration& p, absl::Time deadline,
                                         bool stream, GenerationSink* sink) {
  ASSIGN_OR_RETURN(std::shared_ptr<RequestState> state, SubmitGeneration(ctx, p, deadline, stream));
  return AwaitGeneration(ctx, state, stream, sink);
}

StatusOr<GenerationResult> AwaitGeneration(const ServingContext& ctx, const std::shared_ptr<RequestState>& state,
                                           bool stream, GenerationSink* sink) {
  bool cancelled = false;
  auto cancel = [&](CancelCause cause) {
    if (cancelled || cause == CancelCause::kNone) return;
    cancelled = true;
    ctx.scheduler->Cancel(state, cause);
  };
  std::vector<StreamChunk> chunks;
  bool done = false;
  while (!done) {
    done = state->Wait(sink->CheckEvery(), stream ? &chunks : nullptr);
    if (!done) cancel(sink->ClientGone());
    // While running, deliver every chunk; once done the last one is returned
    // to go with the summary.
    if (stream && !cancelled) {
      const size_t keep = done && !chunks.empty() ? 1 : 0;
      for (size_t i = 0; i + keep < chunks.size() && !cancelled; ++i) cancel(sink->Deliver(std::move(chunks[i])));
      chunks.erase(chunks.begin(), chunks.end() - static_cast<std::ptrdiff_t>(keep));
    }
  }
  std::optional<StreamChunk> last;
  if (stream && !chunks.empty()) last = std::move(chunks.back());
  return FinishedGeneration(*state, std::move(last));
}

StatusOr<GenerationResult> FinishedGeneration(const RequestState& state, std::optional<StreamChunk> last_chunk) {
  GenerationResult result;
  result.output = state.output();
  RETURN_IF_ERROR(FinalStatus(state, result.output));
  result.last_chunk = std::move(last_chunk);
  return result;
}

}  // namespace skillpack
