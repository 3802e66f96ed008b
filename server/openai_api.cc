#include "server/openai_api.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/sampler.h"

namespace skillpack {
namespace {

Status Bad(absl::string_view param, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", what));
}

// The value of `key` in `obj`, or null when absent or JSON null (OpenAI's
// clients send null for "not set").
const Json* Field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

StatusOr<std::optional<bool>> OptBool(const Json& obj, const char* key) {
  const Json* v = Field(obj, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean()) return Bad(key, "must be a boolean");
  return std::optional<bool>(v->get<bool>());
}

StatusOr<std::optional<double>> OptNumber(const Json& obj, const char* key) {
  const Json* v = Field(obj, key);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) return Bad(key, "must be a number");
  return std::optional<double>(v->get<double>());
}

StatusOr<std::optional<int64_t>> OptInt(const Json& obj, const char* key) {
  const Json* v = Field(obj, key);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_number_unsigned()) {
    if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(key, "out of range");
    }
    return std::optional<int64_t>(static_cast<int64_t>(v->get<uint64_t>()));
  }
  if (!v->is_number_integer()) return Bad(key, "must be an integer");
  return std::optional<int64_t>(v->get<int64_t>());
}

// A parameter this server does not implement: accepted only with its neutral
// value (null, or what `neutral` accepts).
Status Unsupported(const Json& obj, const char* key, const std::function<bool(const Json&)>& neutral,
                   absl::string_view why) {
  const Json* v = Field(obj, key);
  if (v == nullptr || neutral(*v)) return absl::OkStatus();
  return Bad(key, why);
}

bool IsZero(const Json& v) { return v.is_number() && v.get<double>() == 0; }
bool IsOne(const Json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; }
bool IsFalse(const Json& v) { return v.is_boolean() && !v.get<bool>(); }
bool IsEmpty(const Json& v) { return (v.is_object() || v.is_array() || v.is_string()) && v.empty(); }

Status ParseSampling(const Json& body, OpenAiRequest* r) {
  v1::SamplingParams* s = r->generate.mutable_sampling();
  const bool chat = r->endpoint == OpenAiEndpoint::kChatCompletions;
  // max_tokens (both; deprecated for chat) and max_completion_tokens (chat).
  ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, OptInt(body, "max_tokens"));
  const char* max_param = "max_tokens";
  if (chat) {
    ASSIGN_OR_RETURN(std::optional<int64_t> mct, OptInt(body, "max_completion_tokens"));
    if (mct.has_value()) {
      max_tokens = mct;
      max_param = "max_completion_tokens";
    }
  } else if (!max_tokens.has_value()) {
    max_tokens = kDefaultCompletionMaxTokens;
  }
  if (max_tokens.has_value()) {
    if (*max_tokens < 1 || *max_tokens > kMaxNewTokensLimit) {
      return Bad(max_param, absl::StrCat("must be in [1, ", kMaxNewTokensLimit, "], got ", *max_tokens));
    }
    s->set_max_new_tokens(static_cast<int32_t>(*max_tokens));
  }
  ASSIGN_OR_RETURN(std::optional<double> temperature, OptNumber(body, "temperature"));
  if (temperature.has_value()) s->set_temperature(static_cast<float>(*temperature));
  ASSIGN_OR_RETURN(std::optional<double> top_p, OptNumber(body, "top_p"));
  if (top_p.has_value()) s->set_top_p(static_cast<float>(*top_p));
  ASSIGN_OR_RETURN(std::optional<int64_t> seed, OptInt(body, "seed"));
  if (seed.has_value()) s->set_seed(static_cast<uint64_t>(*seed));  // negative seeds wrap: still one stream each
  if (const Json* stop = Field(body, "stop")) {
    if (stop->is_string()) {
      s->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > kMaxStopStrings) {
        return Bad("stop", absl::StrCat("at most ", kMaxStopStrings, " strings, got ", stop->size()));
      }
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) return Bad(absl::StrCat("stop[", i, "]"), "must be a string");
        s->add_stop((*stop)[i].get<std::string>());
      }
    } else {
      return Bad("stop", "must be a string or an array of strings");
    }
  }
  // Extensions of vLLM's that map one to one onto our sampler.
  ASSIGN_OR_RETURN(std::optional<int64_t> top_k, OptInt(body, "top_k"));
  if (top_k.has_value()) {
    if (*top_k < 0 || *top_k > std::numeric_limits<int32_t>::max()) return Bad("top_k", "must be >= 0");
    s->set_top_k(static_cast<int32_t>(*top_k));
  }
  ASSIGN_OR_RETURN(std::optional<double> min_p, OptNumber(body, "min_p"));
  if (min_p.has_value()) s->set_min_p(static_cast<float>(*min_p));
  ASSIGN_OR_RETURN(std::optional<double> rep, OptNumber(body, "repetition_penalty"));
  if (rep.has_value()) s->set_repetition_penalty(static_cast<float>(*rep));
  ASSIGN_OR_RETURN(std::optional<bool> ignore_eos, OptBool(body, "ignore_eos"));
  s->set_ignore_eos(ignore_eos.value_or(false));

  // n, best_of: one choice per request.
  RETURN_IF_ERROR(Unsupported(body, "n", IsOne, "only n = 1 is supported"));
  if (!chat) RETURN_IF_ERROR(Unsupported(body, "best_of", IsOne, "only best_of = 1 is supported"));
  RETURN_IF_ERROR(Unsupported(body, "presence_penalty", IsZero, "not supported (use repetition_penalty)"));
  RETURN_IF_ERROR(Unsupported(body, "frequency_penalty", IsZero, "not supported (use repetition_penalty)"));
  RETURN_IF_ERROR(Unsupported(body, "logit_bias", IsEmpty, "not supported"));

  // Log-probabilities: the engine reports the sampled token's own
  // log-probability only, so top alternatives are refused.
  if (chat) {
    ASSIGN_OR_RETURN(std::optional<bool> lp, OptBool(body, "logprobs"));
    r->logprobs = lp.value_or(false);
    ASSIGN_OR_RETURN(std::optional<int64_t> top, OptInt(body, "top_logprobs"));
    if (top.has_value()) {
      if (!r->logprobs) return Bad("top_logprobs", "only allowed with logprobs = true");
      if (*top != 0) {
        return Bad("top_logprobs",
                   "only 0 is supported: this server reports the sampled token's log-probability, not alternatives");
      }
    }
  } else {
    ASSIGN_OR_RETURN(std::optional<int64_t> lp, OptInt(body, "logprobs"));
    if (lp.has_value()) {
      if (*lp != 0) {
        return Bad("logprobs",
                   "only 0 is supported: this server reports the sampled token's log-probability, not alternatives");
      }
      r->logprobs = true;
    }
  }
  s->set_logprobs(r->logprobs);
  return absl::OkStatus();
}

Status ParsePrompt(const Json& body, v1::GenerateRequest* g) {
  const Json* p = Field(body, "prompt");
  if (p == nullptr) return Bad("prompt", "required");
  auto token_list = [&](const Json& a, v1::TokenInput* out) -> Status {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_number_integer() || a[i].get<int64_t>() < 0 ||
          a[i].get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Bad(absl::StrCat("prompt[", i, "]"), "must be a token id (a non-negative integer)");
      }
      out->add_ids(static_cast<int32_t>(a[i].get<int64_t>()));
    }
    return absl::OkStatus();
  };
  if (p->is_string()) {
    g->set_prompt(p->get<std::string>());
    return absl::OkStatus();
  }
  if (!p->is_array()) return Bad("prompt", "must be a string, an array of strings, or an array of token ids");
  if (p->empty()) return Bad("prompt", "must not be empty");
  const Json& first = (*p)[0];
  if (first.is_number()) return token_list(*p, g->mutable_tokens());
  if (p->size() != 1) return Bad("prompt", "one prompt per request is supported (n = 1, no batches)");
  if (first.is_string()) {
    g->set_prompt(first.get<std::string>());
    return absl::OkStatus();
  }
  if (first.is_array()) {
    if (first.empty()) return Bad("prompt[0]", "must not be empty");
    return token_list(first, g->mutable_tokens());
  }
  return Bad("prompt", "must be a string, an array of strings, or an array of token ids");
}

Status ParseMessages(const Json& body, v1::GenerateRequest* g) {
  const Json* msgs = Field(body, "messages");
  if (msgs == nullptr) return Bad("messages", "required");
  if (!msgs->is_array()) return Bad("messages", "must be an array");
  if (msgs->empty()) return Bad("messages", "must not be empty");
  v1::ChatInput* chat = g->mutable_chat();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const Json& m = (*msgs)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Bad(at, "must be an object");
    const Json* role = Field(m, "role");
    if (role == nullptr || !role->is_string()) return Bad(at + ".role", "required, a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for system instructions
    if (r != "system" && r != "user" && r != "assistant") {
      return Bad(at + ".role", absl::StrCat("must be system, developer, user or assistant, got '",
                                            role->get<std::string>().substr(0, 64), "'"));
    }
    if (Field(m, "tool_calls") != nullptr && !IsEmpty(m["tool_calls"])) {
      return Bad(at + ".tool_calls", "tools are not supported");
    }
    const Json* content = Field(m, "content");
    std::string text;
    if (content == nullptr) return Bad(at + ".content", "required");
    if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: text only.
      for (size_t j = 0; j < content->size(); ++j) {
        const Json& part = (*content)[j];
        const std::string pat = absl::StrCat(at, ".content[", j, "]");
        if (!part.is_object()) return Bad(pat, "must be an object");
        const Json* type = Field(part, "type");
        if (type == nullptr || !type->is_string() || type->get<std::string>() != "text") {
          return Bad(pat + ".type", "only \"text\" parts are supported");
        }
        const Json* t = Field(part, "text");
        if (t == nullptr || !t->is_string()) return Bad(pat + ".text", "required, a string");
        text += t->get<std::string>();
      }
    } else {
      return Bad(at + ".content", "must be a string or an array of text parts");
    }
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(r);
    out->set_content(std::move(text));
  }
  // vLLM's chat_template_kwargs: enable_thinking (qwen3 templates).
  if (const Json* kw = Field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) return Bad("chat_template_kwargs", "must be an object");
    ASSIGN_OR_RETURN(std::optional<bool> think, OptBool(*kw, "enable_thinking"));
    if (think.has_value()) chat->set_enable_thinking(*think);
  }
  return absl::OkStatus();
}

// The OpenAI parameter of a GenerateRequest field path at the start of an
// error message, and the message with that path in OpenAI's terms.
std::pair<std::string, std::string> OpenAiParam(absl::string_view message) {
  std::string msg(message);
  std::string field(message.substr(0, message.find(':')));
  if (field.size() == message.size()) field.clear();
  std::string param;
  if (field == "sampling") {
    // "sampling: temperature must be ..." (core/sampler.h's wording)
    absl::string_view rest = message.substr(field.size() + 1);
    while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
    param = std::string(rest.substr(0, rest.find_first_of(" :")));
    if (param == "max_new_tokens") param = "max_tokens";
    msg = std::string(rest);
  } else if (absl::StartsWith(field, "sampling.")) {
    // "sampling.max_new_tokens: prompt of N tokens plus max_new_tokens M exceeds ..."
    param = field.substr(9);
    if (param == "max_new_tokens") param = "max_tokens";
    msg = msg.substr(9);
  } else if (absl::StartsWith(field, "chat.")) {
    param = field.substr(5);
    msg = msg.substr(5);
  } else if (absl::StartsWith(field, "tokens") || field == "input" || field == "prompt") {
    param = "prompt";
  } else if (absl::StartsWith(field, "skills")) {
    param = "model";
  } else if (field == "chat") {
    param = "messages";
  } else {
    param = field;
  }
  msg = absl::StrReplaceAll(msg, {{"max_new_tokens", "max_tokens"}});
  if (param.find(' ') != std::string::npos) param.clear();
  return {param, msg};
}

// Dumps `j` with invalid UTF-8 (fragments of a character in generated text)
// replaced by U+FFFD instead of throwing.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

const char* FinishName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    default:
      return nullptr;
  }
}

Json FinishJson(FinishReason r) {
  const char* name = FinishName(r);
  return name ? Json(name) : Json(nullptr);
}

Json UsageJson(const GenerationOutput& out) {
  const int64_t completion = static_cast<int64_t>(out.tokens.size());
  return Json{{"prompt_tokens", out.prompt_tokens},
              {"completion_tokens", completion},
              {"total_tokens", out.prompt_tokens + completion}};
}

Json PacksJson(const std::vector<PackSelection>& packs) {
  Json arr = Json::array();
  for (const PackSelection& p : packs) {
    Json j{{"name", p.name}, {"weight", p.weight}};
    if (!p.modules.empty()) j["modules"] = p.modules;
    arr.push_back(std::move(j));
  }
  return Json{{"packs", std::move(arr)}};
}

// Completions' logprobs object for `tokens` starting at byte `offset`.
Json CompletionLogprobs(const std::vector<int32_t>& tokens, const std::vector<float>& logprobs, size_t offset,
                        const TokenTextFn& token_text) {
  Json toks = Json::array(), lps = Json::array(), offsets = Json::array(), tops = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string t = token_text(tokens[i]);
    toks.push_back(t);
    lps.push_back(i < logprobs.size() && std::isfinite(logprobs[i]) ? Json(logprobs[i]) : Json(nullptr));
    offsets.push_back(offset);
    tops.push_back(nullptr);
    offset += t.size();
  }
  return Json{{"tokens", std::move(toks)},
              {"token_logprobs", std::move(lps)},
              {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offsets)}};
}

// Chat's logprobs object: {"content": [{token, logprob, bytes, top_logprobs}]}.
Json ChatLogprobs(const std::vector<int32_t>& tokens, const std::vector<float>& logprobs,
                  const TokenTextFn& token_text) {
  Json content = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string t = token_text(tokens[i]);
    Json bytes = Json::array();
    for (unsigned char c : t) bytes.push_back(static_cast<int>(c));
    // OpenAI sends -9999.0 for a probability too small to represent.
    const float lp = i < logprobs.size() && std::isfinite(logprobs[i]) ? logprobs[i] : -9999.0f;
    content.push_back(
        Json{{"token", t}, {"logprob", lp}, {"bytes", std::move(bytes)}, {"top_logprobs", Json::array()}});
  }
  return Json{{"content", std::move(content)}};
}

bool IsChat(const OpenAiRequest& r) { return r.endpoint == OpenAiEndpoint::kChatCompletions; }

Json ChunkBase(const OpenAiRequest& req, const OpenAiReplyMeta& meta) {
  Json j{{"id", meta.id},
         {"object", IsChat(req) ? "chat.completion.chunk" : "text_completion"},
         {"created", meta.created},
         {"model", meta.model}};
  if (req.include_usage) j["usage"] = nullptr;
  return j;
}

}  // namespace

const char* OpenAiPath(OpenAiEndpoint e) {
  return e == OpenAiEndpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body) {
  StatusOr<Json> parsed = ParseJson(body, "request body");
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.status().message());
  const Json& j = *parsed;
  if (!j.is_object()) return absl::InvalidArgumentError("request body: must be a JSON object");
  OpenAiRequest r;
  r.endpoint = endpoint;
  const Json* model = Field(j, "model");
  if (model == nullptr) return Bad("model", "required");
  if (!model->is_string() || model->get<std::string>().empty()) return Bad("model", "must be a non-empty string");
  r.model = model->get<std::string>();
  if (r.model.size() > kMaxModelNameBytes) {
    return Bad("model", absl::StrCat(r.model.size(), " bytes, at most ", kMaxModelNameBytes));
  }
  if (endpoint == OpenAiEndpoint::kChatCompletions) {
    RETURN_IF_ERROR(ParseMessages(j, &r.generate));
    RETURN_IF_ERROR(Unsupported(j, "tools", IsEmpty, "tools are not supported"));
    RETURN_IF_ERROR(Unsupported(j, "functions", IsEmpty, "functions are not supported"));
    RETURN_IF_ERROR(Unsupported(
        j, "response_format", [](const Json& v) { return v.is_object() && v.value("type", "") == "text"; },
        "only {\"type\": \"text\"} is supported"));
  } else {
    RETURN_IF_ERROR(ParsePrompt(j, &r.generate));
    RETURN_IF_ERROR(Unsupported(j, "echo", IsFalse, "echo is not supported"));
    RETURN_IF_ERROR(Unsupported(j, "suffix", IsEmpty, "suffix is not supported"));
  }
  RETURN_IF_ERROR(ParseSampling(j, &r));
  ASSIGN_OR_RETURN(std::optional<bool> stream, OptBool(j, "stream"));
  r.stream = stream.value_or(false);
  if (const Json* so = Field(j, "stream_options")) {
    if (!r.stream) return Bad("stream_options", "only allowed when stream is true");
    if (!so->is_object()) return Bad("stream_options", "must be an object");
    ASSIGN_OR_RETURN(std::optional<bool> usage, OptBool(*so, "include_usage"));
    r.include_usage = usage.value_or(false);
  }
  if (const Json* user = Field(j, "user"); user != nullptr && !user->is_string())
    return Bad("user", "must be a string");
  return r;
}

Status ResolveModel(const std::string& base_name, const std::function<bool(const std::string&)>& pack_exists,
                    OpenAiRequest* req) {
  v1::Skills* skills = req->generate.mutable_skills();
  if (req->model == base_name) {
    skills->set_mode(v1::Skills::NONE);
  } else if (req->model == kAutoModel) {
    skills->set_mode(v1::Skills::AUTO);
  } else if (ValidatePackName(req->model).ok() && pack_exists(req->model)) {
    skills->set_mode(v1::Skills::EXPLICIT);
    skills->add_packs()->set_name(req->model);
  } else {
    return absl::NotFoundError(absl::StrCat(
        "model: the model '", req->model, "' does not exist (GET /v1/models lists the base, \"auto\" and the packs)"));
  }
  return absl::OkStatus();
}

Json ModelList(const std::string& base_name, const std::vector<std::string>& packs, int64_t created) {
  Json data = Json::array();
  auto add = [&](const std::string& id) {
    data.push_back(Json{{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "skillpack"}});
  };
  add(base_name);
  add(kAutoModel);
  for (const std::string& p : packs) {
    if (p != base_name && p != kAutoModel) add(p);
  }
  return Json{{"object", "list"}, {"data", std::move(data)}};
}

std::string PacksHeaderValue(const std::vector<PackSelection>& packs) {
  if (packs.empty()) return "none";
  std::vector<std::string> parts;
  for (const PackSelection& p : packs) parts.push_back(absl::StrCat(p.name, "=", p.weight));
  return absl::StrJoin(parts, ",");
}

Json CompletionResponse(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out,
                        const TokenTextFn& token_text) {
  Json choice{{"index", 0}, {"finish_reason", FinishJson(out.finish_reason)}};
  Json logprobs = nullptr;
  if (IsChat(req)) {
    choice["message"] = Json{{"role", "assistant"}, {"content", out.text}};
    if (req.logprobs) logprobs = ChatLogprobs(out.tokens, out.logprobs, token_text);
  } else {
    choice["text"] = out.text;
    if (req.logprobs) logprobs = CompletionLogprobs(out.tokens, out.logprobs, 0, token_text);
  }
  choice["logprobs"] = std::move(logprobs);
  return Json{{"id", meta.id},
              {"object", IsChat(req) ? "chat.completion" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", Json::array({std::move(choice)})},
              {"usage", UsageJson(out)},
              {"skillpack", PacksJson(meta.packs)}};
}

std::optional<Json> FirstStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta) {
  if (!IsChat(req)) return std::nullopt;
  Json j = ChunkBase(req, meta);
  j["choices"] = Json::array({Json{{"index", 0},
                                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
  return j;
}

Json StreamChunkJson(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const StreamChunk& chunk,
                     size_t text_offset, const TokenTextFn& token_text) {
  Json j = ChunkBase(req, meta);
  Json choice{{"index", 0}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
  if (IsChat(req)) {
    choice["delta"] = Json{{"content", chunk.text}};
    if (req.logprobs) choice["logprobs"] = ChatLogprobs(chunk.tokens, chunk.logprobs, token_text);
  } else {
    choice["text"] = chunk.text;
    if (req.logprobs) choice["logprobs"] = CompletionLogprobs(chunk.tokens, chunk.logprobs, text_offset, token_text);
  }
  j["choices"] = Json::array({std::move(choice)});
  return j;
}

Json FinalStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out) {
  Json j = ChunkBase(req, meta);
  Json choice{{"index", 0}, {"finish_reason", FinishJson(out.finish_reason)}, {"logprobs", nullptr}};
  if (IsChat(req)) {
    choice["delta"] = Json::object();
  } else {
    choice["text"] = "";
  }
  j["choices"] = Json::array({std::move(choice)});
  j["skillpack"] = PacksJson(meta.packs);
  return j;
}

Json UsageStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out) {
  Json j = ChunkBase(req, meta);
  j["choices"] = Json::array();
  j["usage"] = UsageJson(out);
  return j;
}

std::string SseEvent(const Json& j) { return absl::StrCat("data: ", Dump(j), "\n\n"); }

std::string JsonBody(const Json& j) { return Dump(j); }

OpenAiError ToOpenAiError(const Status& s) {
  OpenAiError e;
  e.message = std::string(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: {
      e.http_status = 400;
      e.type = "invalid_request_error";
      auto [param, msg] = OpenAiParam(s.message());
      e.param = param;
      e.message = msg;
      break;
    }
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "invalid_request_error";
      e.code = "model_not_found";
      e.param = "model";
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "invalid_request_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "invalid_request_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "queue_full";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "server_error";
      e.code = "unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "server_error";
      e.code = "timeout";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      e.code = "internal_error";
      break;
  }
  if (e.message.empty()) e.message = absl::StatusCodeToString(s.code());
  return e;
}

Json ErrorJson(const OpenAiError& e) {
  return Json{{"error",
               {{"message", e.message},
                {"type", e.type},
                {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
                {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}}}};
}

}  // namespace skillpack
