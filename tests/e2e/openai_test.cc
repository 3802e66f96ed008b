// The OpenAI-compatible HTTP API of the real skillpack-server (--http-port):
// driven by the official `openai` npm client (openai_client_test.mjs; the
// answers it must get are computed here through the gRPC API, so both
// transports are checked to run the same generation), and by curl and a raw
// socket for what a client library hides: the SSE bytes, HTTP statuses of
// malformed requests, the API key, and clients that disconnect mid-stream or
// while a non-streamed request runs (their generations are cancelled).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/tiny_model.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

// Single-quoted for the shell.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

std::string Post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
                      extra_headers, "Content-Length: ", body.size(), "\r\n\r\n", body);
}

int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;
  return std::stoi(response.substr(9, 3));
}

std::string BodyOf(const std::string& response) {
  const size_t p = response.find("\r\n\r\n");
  return p == std::string::npos ? "" : response.substr(p + 4);
}

class OpenAiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("skillpack-openai-e2e-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    // The base, packs alpha and beta, and a router, so that "auto" has something to decide with.
    MakeRoutedTinyWorld(*dir_);
    server_ = new ServerProcess();
    server_->Start({"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token"), "--router",
                    Path("router.safetensors"), "--http-port", "0", "--http-address", "127.0.0.1", "--metrics-port",
                    "0", "--max-running", "4", "--max-seq-len", "1024"},
                   Path("server.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string Path(const std::string& name) { return JoinPath(*dir_, name); }
  static std::string BaseUrl() { return absl::StrCat("http://127.0.0.1:", server_->http_port(), "/v1"); }

  static std::string* dir_;
  static ServerProcess* server_;
};
std::string* OpenAiTest::dir_ = nullptr;
ServerProcess* OpenAiTest::server_ = nullptr;

v1::GenerateRequest WithModel(v1::GenerateRequest r, const std::string& pack) {
  if (pack.empty()) {
    r.mutable_skills()->set_mode(v1::Skills::NONE);
  } else if (pack == "auto") {
    r.mutable_skills()->set_mode(v1::Skills::AUTO);
  } else {
    r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    r.mutable_skills()->add_packs()->set_name(pack);
  }
  return r;
}

const char* FinishName(v1::FinishReason r) { return r == v1::STOP ? "stop" : "length"; }

// The official client against the server; expectations from gRPC.
TEST_F(OpenAiTest, OfficialOpenAiClient) {
  ASSERT_GT(server_->http_port(), 0) << "no http=127.0.0.1:PORT in the listening line";
  const auto ch = server_->channel();
  const int kMax = 12;
  const std::string prompt = "Once upon a time";
  Json want;
  want["base"] = "base";  // the --model folder's name
  want["max_tokens"] = kMax;
  want["prompt"] = prompt;

  v1::GenerateRequest greedy = Request(prompt, Greedy(kMax));
  greedy.mutable_sampling()->set_logprobs(true);
  const v1::GenerateResponse alpha = MustGenerate(ch, WithModel(greedy, "alpha"));
  const v1::GenerateResponse base = MustGenerate(ch, WithModel(greedy, ""));
  ASSERT_NE(alpha.text(), base.text()) << "the pack must change the output for this test to mean anything";
  ASSERT_GE(alpha.text().size(), 3u);
  want["alpha_text"] = alpha.text();
  want["alpha_finish"] = FinishName(alpha.finish_reason());
  want["alpha_tokens"] = alpha.usage().completion_tokens();
  want["alpha_logprobs"] = std::vector<float>(alpha.logprobs().begin(), alpha.logprobs().end());
  want["prompt_tokens"] = alpha.usage().prompt_tokens();
  want["base_text"] = base.text();

  // A stop string: the second character of the greedy text (not the first, so
  // that the text before it is not empty), all of its UTF-8 bytes.
  auto char_end = [&](size_t i) {
    do ++i;
    while (i < alpha.text().size() && (static_cast<unsigned char>(alpha.text()[i]) & 0xC0) == 0x80);
    return i;
  };
  const size_t second = char_end(0);
  ASSERT_LT(second, alpha.text().size());
  const std::string stop = alpha.text().substr(second, char_end(second) - second);
  v1::GenerateRequest stopped = WithModel(greedy, "alpha");
  stopped.mutable_sampling()->add_stop(stop);
  const v1::GenerateResponse s = MustGenerate(ch, stopped);
  ASSERT_EQ(s.finish_reason(), v1::STOP);
  want["stop"] = stop;
  want["stop_text"] = s.text();

  SamplingParams sampled;
  sampled.max_new_tokens = kMax;
  sampled.temperature = 1;
  sampled.seed = 7;
  want["seed_text"] = MustGenerate(ch, WithModel(Request(prompt, sampled), "alpha")).text();
  sampled.seed = 8;
  want["seed8_text"] = MustGenerate(ch, WithModel(Request(prompt, sampled), "alpha")).text();

  const std::string chat_user = "What is 2+2?";
  v1::GenerateRequest chat = WithModel(Request("", Greedy(kMax)), "alpha");
  auto* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(chat_user);
  const v1::GenerateResponse c = MustGenerate(ch, chat);
  want["chat_user"] = chat_user;
  want["chat_text"] = c.text();
  want["chat_finish"] = FinishName(c.finish_reason());
  want["chat_prompt_tokens"] = c.usage().prompt_tokens();

  const std::string auto_prompt = "3+3=";
  const v1::GenerateResponse a = MustGenerate(ch, WithModel(Request(auto_prompt, Greedy(kMax)), "auto"));
  std::vector<std::string> used;
  for (const v1::PackUse& u : a.packs()) used.push_back(absl::StrCat(u.name(), "=", u.weight()));
  ASSERT_FALSE(used.empty()) << "the router chose no pack for '" << auto_prompt << "': auto would test nothing";
  want["auto_prompt"] = auto_prompt;
  want["auto_packs"] = used.empty() ? "none" : absl::StrJoin(used, ",");
  want["auto_text"] = a.text();

  ASSERT_TRUE(WriteFileAtomically(Path("expected.json"), want.dump(2)).ok());
  CommandResult npm =
      Shell(absl::StrCat("bash ", SKILLPACK_SOURCE_DIR, "/scripts/npm-test-deps.sh ", SKILLPACK_BINARY_DIR));
  ASSERT_EQ(npm.exit_code, 0) << npm.output;
  const CommandResult node =
      Shell(absl::StrCat("/usr/bin/node ", SKILLPACK_SOURCE_DIR, "/tests/e2e/openai_client_test.mjs ",
                         SKILLPACK_BINARY_DIR, "/npm ", BaseUrl(), " ", Path("expected.json")));
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.output.find("# fail 0"), std::string::npos) << node.output;
}

// The raw SSE bytes, as curl receives them.
TEST_F(OpenAiTest, CurlSeesServerSentEvents) {
  const std::string body =
      R"({"model": "alpha", "prompt": "Hello", "max_tokens": 5, "temperature": 0, "ignore_eos": true,
          "stream": true, "stream_options": {"include_usage": true}})";
  constexpr char kCompletionsOk[] = R"(skillpack_requests_total{method="/v1/completions",code="OK"})";
  const double ok_before = MetricValue(FetchMetrics(server_->metrics_port()), kCompletionsOk);
  const CommandResult r = Shell(absl::StrCat("curl -sS -N -i -H 'Content-Type: application/json' -d ", Quote(body), " ",
                                             BaseUrl(), "/completions"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Counted by the time [DONE] arrived: one scrape, no waiting.
  EXPECT_EQ(MetricValue(FetchMetrics(server_->metrics_port()), kCompletionsOk), ok_before + 1);
  const std::string& out = r.output;
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Type: text/event-stream\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x-skillpack-packs: alpha=1\r\n"), std::string::npos) << out;
  const std::string events = BodyOf(out);
  // Every event is one "data: ..." line and a blank line; the last is [DONE].
  ASSERT_GE(events.size(), 14u);
  EXPECT_EQ(events.substr(events.size() - 14), "data: [DONE]\n\n") << events;
  int text_events = 0;
  bool usage_seen = false;
  for (absl::string_view ev : absl::StrSplit(events, "\n\n", absl::SkipEmpty())) {
    ASSERT_TRUE(absl::StartsWith(ev, "data: ")) << ev;
    ASSERT_EQ(ev.find('\n'), absl::string_view::npos) << ev;
    if (ev == "data: [DONE]") continue;
    StatusOr<Json> j = ParseJson(ev.substr(6), "event");
    ASSERT_TRUE(j.ok()) << ev;
    if (!(*j)["choices"].empty() && !(*j)["choices"][0]["text"].get<std::string>().empty()) ++text_events;
    if ((*j)["choices"].empty()) {
      usage_seen = true;
      EXPECT_EQ((*j)["usage"]["completion_tokens"], 5);
    }
  }
  EXPECT_GE(text_events, 1);
  EXPECT_TRUE(usage_seen);
}

// Malformed requests get OpenAI-shaped errors with the right status.
TEST_F(OpenAiTest, HttpErrors) {
  const int port = server_->http_port();
  struct Case {
    std::string request;
    int status;
    const char* in_body;
  };
  constexpr int64_t kTooBig = int64_t{17} << 20;  // over the 16 MiB body limit; announced, never sent
  const Case cases[] = {
      {Post("/v1/completions", "{not json"), 400, "not valid JSON"},
      {Post("/v1/completions", "{\"model\": \"alpha\", \"prompt\": \"\xff\xfe\"}"), 400, "not valid JSON"},
      {Post("/v1/completions", R"({"model": "nope", "prompt": "x"})"), 404, "model_not_found"},
      {Post("/v1/chat/completions", R"({"model": "alpha", "messages": "hi"})"), 400, "\"param\":\"messages\""},
      {Post("/v1/completions", R"({"model": "alpha", "prompt": "x", "max_tokens": 5000})"), 400,
       "\"param\":\"max_tokens\""},
      {Post("/v1/embeddings", R"({"model": "alpha", "input": "x"})"), 404, "unknown path"},
      {"GET /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "use POST"},
      {"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "use GET"},
      {"GET /v1/models/nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "model_not_found"},
      {absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ", kTooBig, "\r\n\r\n"), 413,
       "exceeds the limit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request.substr(0, 120));
    const std::string resp = RawHttp(port, c.request);
    EXPECT_EQ(StatusOf(resp), c.status) << resp;
    const std::string body = BodyOf(resp);
    StatusOr<Json> j = ParseJson(body, "error body");
    ASSERT_TRUE(j.ok()) << resp;
    ASSERT_TRUE(j->contains("error")) << body;
    for (const char* key : {"message", "type", "param", "code"}) EXPECT_TRUE((*j)["error"].contains(key)) << body;
    EXPECT_NE(body.find(c.in_body), std::string::npos) << body;
  }
  // Still serving after all that.
  EXPECT_EQ(StatusOf(RawHttp(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")), 200);
  // Counted in the request metrics, by path and code.
  // One scrape: a request is counted before its response's last byte goes out.
  const std::string page = FetchMetrics(server_->metrics_port());
  EXPECT_GE(MetricValue(page, R"(skillpack_requests_total{method="/v1/completions",code="INVALID_ARGUMENT"})"), 2)
      << page;
  EXPECT_GE(MetricValue(page, R"(skillpack_requests_total{method="/v1/models",code="OK"})"), 1) << page;
  EXPECT_GE(MetricValue(page, R"(skillpack_requests_total{method="http_other",code="NOT_FOUND"})"), 1) << page;
}

// Opens a long streamed completion on 127.0.0.1:port and reads until its first
// event (so it holds a KV slot); returns the socket, -1 on failure (e.g. a 429
// while the slot of a request that just finished is not yet free again).
int TryOpenLongStream(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string req =
      Post("/v1/completions",
           R"({"model": "alpha", "prompt": "x", "max_tokens": 1000, "ignore_eos": true, "stream": true})");
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  std::string got;
  char buf[256];
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  if (got.rfind("HTTP/1.1 200 OK\r\n", 0) != 0 || got.find("\"error\"") != std::string::npos) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// TryOpenLongStream, retried for up to 5 s (times TimeoutScale()).
int OpenLongStream(int port) {
  const auto deadline = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(5));
  do {
    const int fd = TryOpenLongStream(port);
    if (fd >= 0) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return -1;
}

// A streaming client that goes away: its generation is cancelled, its slot freed.
TEST_F(OpenAiTest, DisconnectCancelsTheGeneration) {
  const int port = server_->http_port();
  const double before =
      MetricValue(FetchMetrics(server_->metrics_port()), R"(skillpack_request_finished_total{reason="cancelled"})");
  const int fd = OpenLongStream(port);
  ASSERT_GE(fd, 0);
  ::close(fd);  // mid-stream
  const double after = WaitForMetricAtLeast(server_->metrics_port(),
                                            R"(skillpack_request_finished_total{reason="cancelled"})", before + 1);
  EXPECT_GT(after, before) << "the generation ran on after its client left";
  EXPECT_TRUE(WaitForLoad(server_->channel(), 0));
}

// A non-streamed request's client that goes away: nothing has been written
// to it, yet its generation is cancelled (the server sees the socket's
// hang-up) rather than running its 1000 tokens for no one.
TEST_F(OpenAiTest, DisconnectCancelsANonStreamedGeneration) {
  const int port = server_->http_port();
  const std::string cancelled = R"(skillpack_request_finished_total{reason="cancelled"})";
  const double before = MetricValue(FetchMetrics(server_->metrics_port()), cancelled);
  ASSERT_TRUE(WaitForLoad(server_->channel(), 0));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req =
      Post("/v1/completions", R"({"model": "alpha", "prompt": "x", "max_tokens": 1000, "ignore_eos": true})");
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  ASSERT_TRUE(WaitForLoad(server_->channel(), 1, 5000));  // it runs
  ::close(fd);
  const double after = WaitForMetricAtLeast(server_->metrics_port(), cancelled, before + 1);
  EXPECT_EQ(after, before + 1) << "the generation ran on after its client left";
  EXPECT_TRUE(WaitForLoad(server_->channel(), 0));
}

// A full scheduler is 429, a draining server 503, both in OpenAI's shape.
TEST_F(OpenAiTest, BusyAndShuttingDown) {
  ServerProcess small;
  small.Start({"--model", Path("base"), "--packs", Path("packs"), "--http-port", "0", "--http-address", "127.0.0.1",
               "--max-running", "1", "--max-queued", "0", "--max-seq-len", "1024"},
              Path("server-small.log"));
  const int port = small.http_port();
  const std::string req = Post("/v1/completions", R"({"model": "alpha", "prompt": "x", "max_tokens": 2})");
  int fd = OpenLongStream(port);
  ASSERT_GE(fd, 0);
  std::string resp = RawHttp(port, req);
  EXPECT_EQ(StatusOf(resp), 429) << resp;
  EXPECT_NE(resp.find("\"rate_limit_error\""), std::string::npos) << resp;
  ::close(fd);
  // Once the stream's slot is freed the same request goes through.
  for (const auto until = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(5));
       StatusOf(resp) != 200 && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    resp = RawHttp(port, req);
  }
  EXPECT_EQ(StatusOf(resp), 200) << resp;

  // SIGTERM while a stream runs: the server drains (the stream may finish
  // within the grace period) and refuses new requests with 503.
  fd = OpenLongStream(port);
  ASSERT_GE(fd, 0);
  small.Signal(SIGTERM);
  resp.clear();
  for (const auto until = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(5));
       StatusOf(resp) != 503 && std::chrono::steady_clock::now() < until;) {
    resp = RawHttp(port, req);  // 429 until the drain starts (the stream holds the one slot), then 503
    if (StatusOf(resp) != 503) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(StatusOf(resp), 503) << resp;
  EXPECT_NE(resp.find("shutting down"), std::string::npos) << resp;
  ::close(fd);
  EXPECT_EQ(small.Stop(), 0);
}

// --http-api-key-file: every request needs the bearer key (401 otherwise).
TEST_F(OpenAiTest, ApiKey) {
  ASSERT_TRUE(WriteFileAtomically(Path("http-key"), "sk-test-key\n").ok());
  ServerProcess keyed;
  keyed.Start({"--model", Path("base"), "--packs", Path("packs"), "--http-port", "0", "--http-address", "127.0.0.1",
               "--http-api-key-file", Path("http-key"), "--served-model-name", "tiny-base"},
              Path("server-keyed.log"));
  const int port = keyed.http_port();
  std::string resp = RawHttp(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 401) << resp;
  EXPECT_NE(resp.find("WWW-Authenticate: Bearer"), std::string::npos) << resp;
  resp = RawHttp(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 401) << resp;
  EXPECT_NE(resp.find("invalid_api_key"), std::string::npos) << resp;
  resp = RawHttp(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: bearer sk-test-key\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_NE(resp.find("\"id\":\"tiny-base\""), std::string::npos) << resp;
  resp = RawHttp(port, Post("/v1/completions", R"({"model": "tiny-base", "prompt": "x", "max_tokens": 2})",
                            "Authorization: Bearer sk-test-key\r\n"));
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_EQ(keyed.Stop(), 0);
}

}  // namespace
}  // namespace skillpack
