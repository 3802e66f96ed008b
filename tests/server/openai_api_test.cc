// The OpenAI-compatible API's wire format (server/openai_api.h): request
// parsing and validation, model resolution, responses, SSE framing and the
// error mapping. The HTTP server itself is driven end to end by
// tests/e2e/openai_test.cc with the official `openai` npm client.
#include "server/openai_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace skillpack {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

StatusOr<OpenAiRequest> Completion(const std::string& body) {
  return ParseOpenAiRequest(OpenAiEndpoint::kCompletions, body);
}
StatusOr<OpenAiRequest> Chat(const std::string& body) {
  return ParseOpenAiRequest(OpenAiEndpoint::kChatCompletions, body);
}

// The OpenAI error a bad body becomes.
OpenAiError ErrorOf(const StatusOr<OpenAiRequest>& r) {
  EXPECT_FALSE(r.ok());
  return ToOpenAiError(r.status());
}

TEST(OpenAiApiTest, ParsesACompletion) {
  StatusOr<OpenAiRequest> r = Completion(
      R"({"model": "alpha", "prompt": "hi", "max_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 3,
          "stop": ["\n", "x"], "stream": true, "stream_options": {"include_usage": true}, "logprobs": 0,
          "n": 1, "presence_penalty": 0, "user": "u", "top_k": 4, "ignore_eos": true})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "alpha");
  EXPECT_EQ(r->generate.prompt(), "hi");
  const v1::SamplingParams& s = r->generate.sampling();
  EXPECT_EQ(s.max_new_tokens(), 7);
  EXPECT_EQ(s.temperature(), 0);
  EXPECT_FLOAT_EQ(s.top_p(), 0.5f);
  EXPECT_EQ(s.seed(), 3u);
  ASSERT_EQ(s.stop_size(), 2);
  EXPECT_EQ(s.stop(0), "\n");
  EXPECT_EQ(s.top_k(), 4);
  EXPECT_TRUE(s.ignore_eos());
  EXPECT_TRUE(s.logprobs());
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->logprobs);
}

TEST(OpenAiApiTest, CompletionDefaultsAndPromptForms) {
  StatusOr<OpenAiRequest> r = Completion(R"({"model": "m", "prompt": ["one"], "stop": "."})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generate.prompt(), "one");
  EXPECT_EQ(r->generate.sampling().max_new_tokens(), kDefaultCompletionMaxTokens);
  EXPECT_FALSE(r->generate.sampling().has_temperature());
  EXPECT_FALSE(r->generate.sampling().has_seed());
  EXPECT_EQ(r->generate.sampling().stop(0), ".");
  EXPECT_FALSE(r->stream);
  r = Completion(R"({"model": "m", "prompt": [5, 6, 7]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generate.tokens().ids_size(), 3);
  r = Completion(R"({"model": "m", "prompt": [[8, 9]]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generate.tokens().ids(1), 9);
  // Nulls mean "not set", as OpenAI's clients send them.
  r = Completion(R"({"model": "m", "prompt": "p", "temperature": null, "stop": null, "n": null, "seed": null})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->generate.sampling().has_temperature());
}

TEST(OpenAiApiTest, ParsesAChat) {
  StatusOr<OpenAiRequest> r = Chat(
      R"({"model": "auto", "messages": [{"role": "developer", "content": "be brief"},
          {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
          "max_completion_tokens": 5, "max_tokens": 9, "logprobs": true, "top_logprobs": 0,
          "chat_template_kwargs": {"enable_thinking": false}, "response_format": {"type": "text"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  const v1::ChatInput& c = r->generate.chat();
  ASSERT_EQ(c.messages_size(), 2);
  EXPECT_EQ(c.messages(0).role(), "system");
  EXPECT_EQ(c.messages(1).content(), "ab");
  EXPECT_FALSE(c.enable_thinking());
  EXPECT_EQ(r->generate.sampling().max_new_tokens(), 5);  // max_completion_tokens wins
  EXPECT_TRUE(r->logprobs);
  // No max tokens: the server's default (as gRPC), not OpenAI's completions 16.
  r = Chat(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->generate.sampling().has_max_new_tokens());
}

struct BadCase {
  const char* body;
  bool chat;
  const char* param;    // expected "param"
  const char* message;  // a substring of the message
};

TEST(OpenAiApiTest, RefusesBadBodiesNamingTheParameter) {
  const BadCase cases[] = {
      {"", false, "", "not valid JSON"},
      {"[1]", false, "", "must be a JSON object"},
      {"{\"model\": \"m\", \"prompt\": \"\xff\"}", false, "", "not valid JSON"},  // invalid UTF-8
      {R"({"prompt": "p"})", false, "model", "required"},
      {R"({"model": 3, "prompt": "p"})", false, "model", "non-empty string"},
      {R"({"model": "m"})", false, "prompt", "required"},
      {R"({"model": "m", "prompt": ["a", "b"]})", false, "prompt", "one prompt per request"},
      {R"({"model": "m", "prompt": [1, -2]})", false, "prompt[1]", "token id"},
      {R"({"model": "m", "prompt": {}})", false, "prompt", "must be a string"},
      {R"({"model": "m", "prompt": "p", "max_tokens": 0})", false, "max_tokens", "[1, 1048576]"},
      {R"({"model": "m", "prompt": "p", "max_tokens": 1.5})", false, "max_tokens", "integer"},
      {R"({"model": "m", "prompt": "p", "temperature": "hot"})", false, "temperature", "number"},
      {R"({"model": "m", "prompt": "p", "stop": 3})", false, "stop", "string or an array"},
      {R"({"model": "m", "prompt": "p", "stop": ["a", 1]})", false, "stop[1]", "string"},
      {R"({"model": "m", "prompt": "p", "n": 2})", false, "n", "only n = 1"},
      {R"({"model": "m", "prompt": "p", "best_of": 3})", false, "best_of", "only best_of = 1"},
      {R"({"model": "m", "prompt": "p", "echo": true})", false, "echo", "not supported"},
      {R"({"model": "m", "prompt": "p", "suffix": "s"})", false, "suffix", "not supported"},
      {R"({"model": "m", "prompt": "p", "logprobs": 2})", false, "logprobs", "only 0"},
      {R"({"model": "m", "prompt": "p", "frequency_penalty": 1})", false, "frequency_penalty", "not supported"},
      {R"({"model": "m", "prompt": "p", "logit_bias": {"1": 5}})", false, "logit_bias", "not supported"},
      {R"({"model": "m", "prompt": "p", "stream": "yes"})", false, "stream", "boolean"},
      {R"({"model": "m", "prompt": "p", "stream_options": {"include_usage": true}})", false, "stream_options",
       "only allowed when stream"},
      {R"({"model": "m", "prompt": "p", "seed": "s"})", false, "seed", "integer"},
      {R"({"model": "m"})", true, "messages", "required"},
      {R"({"model": "m", "messages": []})", true, "messages", "must not be empty"},
      {R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})", true, "messages[0].role", "got 'tool'"},
      {R"({"model": "m", "messages": [{"role": "user"}]})", true, "messages[0].content", "required"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true,
       "messages[0].content[0].type", "only \"text\""},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2, "logprobs": true})", true,
       "top_logprobs", "only 0"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 0})", true, "top_logprobs",
       "only allowed with logprobs"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", true,
       "tools", "not supported"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -1})", true,
       "max_completion_tokens", "[1, 1048576]"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.body);
    const OpenAiError e = ErrorOf(c.chat ? Chat(c.body) : Completion(c.body));
    EXPECT_EQ(e.http_status, 400);
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param);
    EXPECT_THAT(e.message, HasSubstr(c.message));
  }
}

TEST(OpenAiApiTest, NeverCrashesOnDeepOrOddJson) {
  EXPECT_FALSE(Completion(std::string(100000, '[') + std::string(100000, ']')).ok());
  EXPECT_FALSE(Completion(std::string("{\"model\": \"m\", \"prompt\": \"") + std::string(3, '\0') + "\"}").ok());
  EXPECT_FALSE(Completion(R"({"model": "m", "prompt": "p", "max_tokens": 1e400})").ok());
  EXPECT_FALSE(Completion(R"({"model": "m", "prompt": "p", "seed": 18446744073709551615})").ok());
}

TEST(OpenAiApiTest, ResolvesModels) {
  auto exists = [](const std::string& n) { return n == "alpha" || n == "auto" || n == "base"; };
  StatusOr<OpenAiRequest> r = Completion(R"({"model": "base", "prompt": "p"})");
  ASSERT_TRUE(ResolveModel("base", exists, &*r).ok());
  EXPECT_EQ(r->generate.skills().mode(), v1::Skills::NONE);  // the base wins over a pack of its name
  r = Completion(R"({"model": "auto", "prompt": "p"})");
  ASSERT_TRUE(ResolveModel("base", exists, &*r).ok());
  EXPECT_EQ(r->generate.skills().mode(), v1::Skills::AUTO);
  r = Completion(R"({"model": "alpha", "prompt": "p"})");
  ASSERT_TRUE(ResolveModel("base", exists, &*r).ok());
  EXPECT_EQ(r->generate.skills().mode(), v1::Skills::EXPLICIT);
  ASSERT_EQ(r->generate.skills().packs_size(), 1);
  EXPECT_EQ(r->generate.skills().packs(0).name(), "alpha");
  r = Completion(R"({"model": "Nope/../x", "prompt": "p"})");
  const Status s = ResolveModel("base", exists, &*r);
  const OpenAiError e = ToOpenAiError(s);
  EXPECT_EQ(e.http_status, 404);
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
  EXPECT_THAT(e.message, HasSubstr("'Nope/../x' does not exist"));
}

TEST(OpenAiApiTest, ListsModels) {
  const Json j = ModelList("base", {"alpha", "beta"}, 42);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 4u);
  EXPECT_EQ(j["data"][0]["id"], "base");
  EXPECT_EQ(j["data"][1]["id"], "auto");
  EXPECT_EQ(j["data"][3]["id"], "beta");
  EXPECT_EQ(j["data"][3]["object"], "model");
  EXPECT_EQ(j["data"][3]["created"], 42);
  EXPECT_EQ(j["data"][3]["owned_by"], "skillpack");
}

TEST(OpenAiApiTest, PacksHeader) {
  EXPECT_EQ(PacksHeaderValue({}), "none");
  PackSelection a{"alpha", 0.75f, {}};
  PackSelection b{"beta", 0.25f, {}};
  EXPECT_EQ(PacksHeaderValue({a, b}), "alpha=0.75,beta=0.25");
}

GenerationOutput Output() {
  GenerationOutput out;
  out.text = "ab";
  out.tokens = {97, 98};
  out.logprobs = {-0.5f, -1.5f};
  out.prompt_tokens = 4;
  out.finish_reason = FinishReason::kLength;
  return out;
}

OpenAiReplyMeta Meta() {
  OpenAiReplyMeta m;
  m.id = "cmpl-1";
  m.created = 7;
  m.model = "alpha";
  m.packs = {PackSelection{"alpha", 1.0f, {}}};
  return m;
}

std::string Text(int32_t id) { return std::string(1, static_cast<char>(id)); }

TEST(OpenAiApiTest, CompletionResponseShape) {
  StatusOr<OpenAiRequest> r = Completion(R"({"model": "alpha", "prompt": "p", "logprobs": 0})");
  ASSERT_TRUE(r.ok());
  const Json j = CompletionResponse(*r, Meta(), Output(), Text);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["model"], "alpha");
  EXPECT_EQ(j["choices"][0]["text"], "ab");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"], Json({"a", "b"}));
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"][1], -1.5);
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"], Json({0, 1}));
  EXPECT_EQ(j["usage"], Json({{"prompt_tokens", 4}, {"completion_tokens", 2}, {"total_tokens", 6}}));
  EXPECT_EQ(j["skillpack"]["packs"][0]["name"], "alpha");
}

TEST(OpenAiApiTest, ChatResponseShape) {
  StatusOr<OpenAiRequest> r = Chat(R"({"model": "alpha", "messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(r.ok());
  GenerationOutput out = Output();
  out.finish_reason = FinishReason::kStop;
  Json j = CompletionResponse(*r, Meta(), out, Text);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"], Json({{"role", "assistant"}, {"content", "ab"}}));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  r->logprobs = true;
  j = CompletionResponse(*r, Meta(), out, Text);
  const Json& c = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0]["token"], "a");
  EXPECT_EQ(c[0]["logprob"], -0.5);
  EXPECT_EQ(c[0]["bytes"], Json({97}));
  EXPECT_TRUE(c[0]["top_logprobs"].empty());
}

TEST(OpenAiApiTest, SseFraming) {
  EXPECT_EQ(SseEvent(Json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
  // A fragment of a UTF-8 character in generated text does not break the event.
  EXPECT_EQ(SseEvent(Json{{"t", std::string("\xe2\x82")}}), "data: {\"t\":\"\xef\xbf\xbd\"}\n\n");
}

TEST(OpenAiApiTest, CompletionStreamChunks) {
  StatusOr<OpenAiRequest> r = Completion(
      R"({"model": "alpha", "prompt": "p", "stream": true, "stream_options": {"include_usage": true}, "logprobs": 0})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(FirstStreamChunk(*r, Meta()).has_value());
  StreamChunk chunk{"b", {98}, {-1.5f}};
  Json j = StreamChunkJson(*r, Meta(), chunk, 1, Text);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "b");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"], Json({1}));
  EXPECT_TRUE(j.contains("usage") && j["usage"].is_null());  // include_usage: null until the last chunk
  j = FinalStreamChunk(*r, Meta(), Output());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["skillpack"]["packs"][0]["name"], "alpha");
  j = UsageStreamChunk(*r, Meta(), Output());
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["total_tokens"], 6);
}

TEST(OpenAiApiTest, ChatStreamChunks) {
  StatusOr<OpenAiRequest> r =
      Chat(R"({"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stream": true})");
  ASSERT_TRUE(r.ok());
  std::optional<Json> first = FirstStreamChunk(*r, Meta());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ((*first)["object"], "chat.completion.chunk");
  EXPECT_EQ((*first)["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(first->contains("usage"));
  Json j = StreamChunkJson(*r, Meta(), StreamChunk{"hi", {1, 2}, {}}, 0, Text);
  EXPECT_EQ(j["choices"][0]["delta"], Json({{"content", "hi"}}));
  j = FinalStreamChunk(*r, Meta(), Output());
  EXPECT_TRUE(j["choices"][0]["delta"].empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiApiTest, MapsStatusesToOpenAiErrors) {
  struct Case {
    Status s;
    int http;
    const char* type;
    const char* param;
    const char* message;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("sampling: temperature must be in [0, 100], got -1"), 400, "invalid_request_error",
       "temperature", "temperature must be in [0, 100], got -1"},
      {absl::InvalidArgumentError(
           "sampling.max_new_tokens: prompt of 9 tokens plus max_new_tokens 5000 exceeds the context length 64"),
       400, "invalid_request_error", "max_tokens", "max_tokens: prompt of 9 tokens plus max_tokens 5000"},
      {absl::InvalidArgumentError("prompt: 5000 bytes exceeds the server's limit"), 400, "invalid_request_error",
       "prompt", "prompt: 5000 bytes"},
      {absl::InvalidArgumentError("chat.messages: 5004 bytes exceeds"), 400, "invalid_request_error", "messages",
       "messages: 5004 bytes"},
      {absl::InvalidArgumentError("tokens.ids[3]: token id 999 out of range"), 400, "invalid_request_error", "prompt",
       "tokens.ids[3]"},
      {absl::FailedPreconditionError("chat: the model has no usable chat template"), 400, "invalid_request_error",
       "messages", "chat template"},
      {absl::NotFoundError("pack 'x' not found"), 404, "invalid_request_error", "model", "pack 'x'"},
      {absl::UnauthenticatedError("incorrect API key"), 401, "invalid_request_error", "", "incorrect"},
      {absl::ResourceExhaustedError("queue full"), 429, "rate_limit_error", "", "queue full"},
      {absl::UnavailableError("server is shutting down"), 503, "server_error", "", "shutting down"},
      {absl::InternalError("boom"), 500, "server_error", "", "boom"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.s.ToString());
    const OpenAiError e = ToOpenAiError(c.s);
    EXPECT_EQ(e.http_status, c.http);
    EXPECT_EQ(e.type, c.type);
    EXPECT_EQ(e.param, c.param);
    EXPECT_THAT(e.message, HasSubstr(c.message));
  }
  const Json j = ErrorJson(ToOpenAiError(absl::InvalidArgumentError("sampling: top_p must be in (0, 1], got 2")));
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["param"], "top_p");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_THAT(j["error"]["message"].get<std::string>(), StartsWith("top_p must be"));
}

}  // namespace
}  // namespace skillpack
