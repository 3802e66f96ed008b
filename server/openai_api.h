// The OpenAI-compatible HTTP API's wire format, without any transport: parsing
// and validating the JSON bodies of POST /v1/completions and
// /v1/chat/completions into a skillpack.v1.GenerateRequest (which then runs
// through the one submission path, submission.h), resolving the `model` field
// (base / "auto" / a pack: the multi-adapter convention of vLLM and LoRAX),
// and writing responses, SSE chunks, the model list and OpenAI-shaped errors.
// openai_http.h serves it; docs/api.md ("OpenAI-compatible HTTP API") is the
// user's reference.
#ifndef SKILLPACK_SERVER_OPENAI_API_H_
#define SKILLPACK_SERVER_OPENAI_API_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/generator.h"
#include "core/json_util.h"
#include "core/status.h"
#include "pack/selection.h"
#include "server/scheduler.h"
#include "skillpack/v1/inference.pb.h"

namespace skillpack {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

// The path of `e`: "/v1/completions" or "/v1/chat/completions".
const char* OpenAiPath(OpenAiEndpoint e);

// The model name that means "the router decides" (Skills.AUTO).
inline constexpr char kAutoModel[] = "auto";
// Longest `model` accepted.
inline constexpr size_t kMaxModelNameBytes = 256;
// Default max_tokens of /v1/completions when the request has none (OpenAI's);
// /v1/chat/completions leaves it to the server's default (64, as gRPC).
inline constexpr int32_t kDefaultCompletionMaxTokens = 16;

// One parsed request.
struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;
  // Input and sampling; `skills` is set by ResolveModel.
  v1::GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // per-token log-probabilities asked for
};

// Parses a request body of `endpoint`. INVALID_ARGUMENT whose message starts
// with the OpenAI parameter at fault ("temperature: must be a number"), for
// bad JSON, a wrong type, a value out of range, and for parameters this
// server does not implement given a value other than their neutral one (n or
// best_of > 1, echo, suffix, penalties, logit_bias, top alternatives in
// logprobs, tools): a clear refusal, never a silent ignore.
StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body);

// Sets req->generate's skills for req->model: `base_name` -> the base model
// (NONE), "auto" -> the router (AUTO), the name of a stored pack (per
// `pack_exists`) -> that pack alone (EXPLICIT). The base name wins over a
// pack of the same name, and "auto" over a pack called "auto". NOT_FOUND
// "model: ..." for anything else.
Status ResolveModel(const std::string& base_name, const std::function<bool(const std::string&)>& pack_exists,
                    OpenAiRequest* req);

// GET /v1/models: {"object": "list", "data": [...]}: the base, "auto", then
// each pack, each {"id", "object": "model", "created", "owned_by"}.
Json ModelList(const std::string& base_name, const std::vector<std::string>& packs, int64_t created);

// The value of the x-skillpack-packs response header: the packs that ran as
// "name=weight" joined by ",", "none" for the base model alone.
std::string PacksHeaderValue(const std::vector<PackSelection>& packs);

// What every response of one request shares.
struct OpenAiReplyMeta {
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  std::string model;                 // as the request named it
  std::vector<PackSelection> packs;  // what ran (the router's choice for "auto")
};

// Per-token text for logprobs (the token's raw bytes).
using TokenTextFn = std::function<std::string(int32_t)>;

// The non-streamed response body of a finished generation.
Json CompletionResponse(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out,
                        const TokenTextFn& token_text);

// Streaming. A stream is: FirstStreamChunk (chat only: the assistant role),
// one StreamChunkJson per piece of output, a last one with the finish reason
// (and the skillpack extension), a usage chunk when include_usage, then
// kSseDone. `text_offset` (completions logprobs) is the byte offset of this
// chunk's text in the whole completion.
std::optional<Json> FirstStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta);
Json StreamChunkJson(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const StreamChunk& chunk,
                     size_t text_offset, const TokenTextFn& token_text);
Json FinalStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out);
Json UsageStreamChunk(const OpenAiRequest& req, const OpenAiReplyMeta& meta, const GenerationOutput& out);

// One server-sent event carrying `j`: "data: <json>\n\n" (invalid UTF-8 in
// generated text becomes U+FFFD).
std::string SseEvent(const Json& j);
inline constexpr char kSseDone[] = "data: [DONE]\n\n";

// `j` as a response body (invalid UTF-8 replaced, as in SseEvent).
std::string JsonBody(const Json& j);

// An error as OpenAI reports it.
struct OpenAiError {
  int http_status = 500;
  std::string type;     // "invalid_request_error", "not_found_error", ...
  std::string code;     // "model_not_found", ... ("" = null)
  std::string param;    // the request parameter at fault ("" = null)
  std::string message;  // what is wrong
};

// The OpenAI error for a Status: INVALID_ARGUMENT and FAILED_PRECONDITION ->
// 400 invalid_request_error with the parameter named in the message (the
// GenerateRequest's field names mapped back to OpenAI's); NOT_FOUND -> 404
// model_not_found; UNAUTHENTICATED -> 401; RESOURCE_EXHAUSTED -> 429;
// UNAVAILABLE -> 503; DEADLINE_EXCEEDED -> 504; anything else -> 500.
OpenAiError ToOpenAiError(const Status& s);
// {"error": {"message", "type", "param", "code"}}.
Json ErrorJson(const OpenAiError& e);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_OPENAI_API_H_
