#include "server/openai_http.h"

#include <civetweb.h>

#include <chrono>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "rpc/bearer_auth.h"
#include "server/metrics_http.h"
#include "server/openai_api.h"
#include "server/submission.h"

namespace skillpack {
namespace {

// Per socket operation (reading a request, one write): a client that stalls
// this long is dropped. Generation itself has no limit.
constexpr int kRequestTimeoutMs = 10000;
constexpr char kJsonType[] = "application/json";

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Internal Server Error";
  }
}

// Writes all of `data`; false when the client is gone.
bool WriteAll(mg_connection* conn, const std::string& data) {
  return mg_write(conn, data.data(), data.size()) == static_cast<int>(data.size());
}

void Respond(mg_connection* conn, int status, const std::string& body, const std::string& extra_headers = "") {
  WriteAll(conn, absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\nContent-Type: ", kJsonType,
                              "\r\nContent-Length: ", body.size(),
                              "\r\nCache-Control: no-store\r\nConnection: close\r\n", extra_headers, "\r\n", body));
}

// A random id: "<prefix>-" and 24 hex digits.
std::string NewId(const char* prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx%08llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffffffu));
  return absl::StrCat(prefix, "-", buf);
}

// A response on a civetweb connection whose socket (CivetwebSocket, looked up
// once; none found, no watch) is watched for the client's hang-up while
// nothing is written to it: while queued, during a long prompt, or all along
// for a non-streamed request. AwaitGeneration asks ClientGone at least every
// 0.1 s.
class SocketSink : public GenerationSink {
 public:
  explicit SocketSink(mg_connection* conn) : fd_(CivetwebSocket(conn)) {}
  absl::Duration CheckEvery() override { return fd_ >= 0 ? absl::Milliseconds(100) : absl::InfiniteDuration(); }

 protected:
  bool HungUp() const { return fd_ >= 0 && PeerHasClosed(fd_); }

 private:
  const int fd_;
};

// A streamed HTTP response as AwaitGeneration sees it: every chunk is one SSE
// event; a failed write, or a hang-up seen on the socket before any, means the
// client went away.
class SseSink final : public SocketSink {
 public:
  SseSink(mg_connection* conn, const OpenAiRequest& req, const OpenAiReplyMeta& meta, const TokenTextFn& token_text)
      : SocketSink(conn), conn_(conn), req_(req), meta_(meta), token_text_(token_text) {}

  CancelCause ClientGone() override {
    if (!gone_ && HungUp()) gone_ = true;
    return gone_ ? CancelCause::kClient : CancelCause::kNone;
  }

  CancelCause Deliver(StreamChunk chunk) override {
    Send(StreamChunkJson(req_, meta_, chunk, offset_, token_text_));
    offset_ += chunk.text.size();
    return ClientGone();
  }

  void Send(const Json& j) { SendRaw(SseEvent(j)); }
  void SendRaw(const std::string& s) {
    if (!gone_ && !WriteAll(conn_, s)) gone_ = true;
  }

 private:
  mg_connection* const conn_;
  const OpenAiRequest& req_;
  const OpenAiReplyMeta& meta_;
  const TokenTextFn& token_text_;
  size_t offset_ = 0;
  bool gone_ = false;
};

// A non-streamed request: nothing is written until the end, so only the
// socket's hang-up tells that the client left.
class UnarySink final : public SocketSink {
 public:
  using SocketSink::SocketSink;
  CancelCause ClientGone() override { return HungUp() ? CancelCause::kClient : CancelCause::kNone; }
  CancelCause Deliver(StreamChunk) override { return CancelCause::kNone; }
};

// What a request's path asks for.
enum class Route { kModels, kCompletions, kChatCompletions, kUnknown };

Route RouteOf(const std::string& uri) {
  if (uri == "/v1/models" || absl::StartsWith(uri, "/v1/models/")) return Route::kModels;
  if (uri == "/v1/completions") return Route::kCompletions;
  if (uri == "/v1/chat/completions") return Route::kChatCompletions;
  return Route::kUnknown;
}

// The request metrics' label of a route: a bounded set, the three API paths
// and everything else as "http_other".
const char* MetricLabel(Route route) {
  switch (route) {
    case Route::kModels:
      return "/v1/models";
    case Route::kCompletions:
      return "/v1/completions";
    case Route::kChatCompletions:
      return "/v1/chat/completions";
    case Route::kUnknown:
      break;
  }
  return "http_other";
}

// One request. Every way it ends goes through Reply (or, for a stream, Count
// before the last event): the request is counted in the metrics before its
// last byte goes out, as the gRPC services count a call before Finish, so a
// client that scrapes /metrics after its answer always sees it counted.
class Handler {
 public:
  Handler(const OpenAiHttpOptions& options, const ServingContext& ctx, mg_connection* conn, Route route)
      : options_(options), ctx_(ctx), conn_(conn), route_(route), start_(std::chrono::steady_clock::now()) {}

  // Serves the request to `uri` (of route_); returns the status it ended with.
  Status Serve(const std::string& method, const std::string& uri) {
    if (!options_.api_key.empty()) RETURN_IF_ERROR(ReplyIfError(CheckApiKey()));
    switch (route_) {
      case Route::kModels:
        if (method != "GET") return MethodNotAllowed("GET");
        return Models(uri);
      case Route::kCompletions:
      case Route::kChatCompletions:
        if (method != "POST") return MethodNotAllowed("POST");
        return Generate(route_ == Route::kCompletions ? OpenAiEndpoint::kCompletions
                                                      : OpenAiEndpoint::kChatCompletions);
      case Route::kUnknown:
        break;
    }
    OpenAiError e{404, "invalid_request_error", "unknown_url", "",
                  absl::StrCat("unknown path ", uri.substr(0, 256),
                               " (this server serves /v1/models, "
                               "/v1/completions and /v1/chat/completions)")};
    return Reply(absl::NotFoundError("unknown path"), 404, JsonBody(ErrorJson(e)));
  }

 private:
  // Counts the request as ending with `outcome`; once.
  void Count(const Status& outcome) {
    if (counted_ || !ctx_.metrics) return;
    counted_ = true;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ctx_.metrics->RecordRpc(MetricLabel(route_), absl::StatusCodeToString(outcome.code()), secs);
  }

  // The whole response: counted, then written. Returns `outcome`.
  Status Reply(const Status& outcome, int http_status, const std::string& body, const std::string& extra_headers = "") {
    Count(outcome);
    Respond(conn_, http_status, body, extra_headers);
    return outcome;
  }

  Status ReplyIfError(Status s) { return s.ok() ? s : ReplyError(s); }

  Status ReplyError(const Status& s, const std::string& extra_headers = "") {
    const OpenAiError e = ToOpenAiError(ctx_.ClientFacing(s));
    std::string headers = extra_headers;
    if (e.http_status == 401) headers += "WWW-Authenticate: Bearer\r\n";
    return Reply(s, e.http_status, JsonBody(ErrorJson(e)), headers);
  }

  Status MethodNotAllowed(const char* allow) {
    OpenAiError e{405, "invalid_request_error", "method_not_allowed", "", absl::StrCat("use ", allow)};
    return Reply(absl::InvalidArgumentError("method not allowed"), 405, JsonBody(ErrorJson(e)),
                 absl::StrCat("Allow: ", allow, "\r\n"));
  }

  Status CheckApiKey() {
    const char* auth = mg_get_header(conn_, "Authorization");
    absl::string_view v = auth != nullptr ? auth : "";
    constexpr absl::string_view kScheme = "bearer ";
    if (v.size() < kScheme.size() || !absl::EqualsIgnoreCase(v.substr(0, kScheme.size()), kScheme)) {
      return absl::UnauthenticatedError("missing API key: send \"Authorization: Bearer <key>\"");
    }
    if (!ConstantTimeEquals(absl::StripAsciiWhitespace(v.substr(kScheme.size())), options_.api_key)) {
      return absl::UnauthenticatedError("incorrect API key");
    }
    return absl::OkStatus();
  }

  std::vector<std::string> PackNames() const {
    std::vector<std::string> names;
    for (const StoredPack& p : ctx_.store->List()) names.push_back(p.summary.name);
    return names;
  }

  Status Models(const std::string& uri) {
    const int64_t created = absl::ToUnixSeconds(ctx_.started);
    const Json list = ModelList(options_.base_model_name, PackNames(), created);
    if (uri == "/v1/models") return Reply(absl::OkStatus(), 200, JsonBody(list));
    const std::string id = uri.substr(std::strlen("/v1/models/"));
    for (const Json& m : list["data"]) {
      if (m["id"] == id) return Reply(absl::OkStatus(), 200, JsonBody(m));
    }
    return ReplyIfError(absl::NotFoundError(absl::StrCat("model: the model '", id.substr(0, 256), "' does not exist")));
  }

  StatusOr<std::string> ReadBody() {
    const mg_request_info* info = mg_get_request_info(conn_);
    if (info->content_length > options_.max_body_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("request body: ", info->content_length,
                                                       " bytes exceeds the limit of ", options_.max_body_bytes));
    }
    std::string body;
    char buf[16384];
    int n;
    while ((n = mg_read(conn_, buf, sizeof(buf))) > 0) {
      body.append(buf, static_cast<size_t>(n));
      if (static_cast<int64_t>(body.size()) > options_.max_body_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("request body: exceeds the limit of ", options_.max_body_bytes, " bytes"));
      }
    }
    return body;
  }

  Status Generate(OpenAiEndpoint endpoint) {
    StatusOr<std::string> body = ReadBody();
    if (!body.ok()) {
      // Too large: 413, in OpenAI's error shape.
      OpenAiError e{413, "invalid_request_error", "request_too_large", "", std::string(body.status().message())};
      return Reply(body.status(), 413, JsonBody(ErrorJson(e)));
    }
    StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, *body);
    if (!parsed.ok()) return ReplyIfError(parsed.status());
    OpenAiRequest& req = *parsed;
    RETURN_IF_ERROR(ReplyIfError(ResolveModel(
        options_.base_model_name, [&](const std::string& name) { return ctx_.store->Get(name).ok(); }, &req)));
    StatusOr<PreparedGeneration> p = PrepareGeneration(ctx_, req.generate);
    if (!p.ok()) return ReplyIfError(p.status());

    OpenAiReplyMeta meta;
    meta.id = NewId(endpoint == OpenAiEndpoint::kChatCompletions ? "chatcmpl" : "cmpl");
    meta.created = absl::ToUnixSeconds(absl::Now());
    meta.model = req.model;
    meta.packs = p->packs;
    const std::string packs_header = absl::StrCat("x-skillpack-packs: ", PacksHeaderValue(meta.packs), "\r\n");
    const Tokenizer& tok = *ctx_.tokenizer;
    const TokenTextFn token_text = [&tok](int32_t id) { return tok.TokenBytes(id); };

    if (!req.stream) {
      UnarySink sink(conn_);
      StatusOr<GenerationResult> r = RunGeneration(ctx_, *p, absl::InfiniteFuture(), /*stream=*/false, &sink);
      if (!r.ok()) return ReplyError(r.status(), packs_header);
      return Reply(absl::OkStatus(), 200, JsonBody(CompletionResponse(req, meta, r->output, token_text)), packs_header);
    }

    // Submitted before the status line, so that a full scheduler or a
    // draining server is still a 429 / 503 rather than an event.
    StatusOr<std::shared_ptr<RequestState>> state = SubmitGeneration(ctx_, *p, absl::InfiniteFuture(), /*stream=*/true);
    if (!state.ok()) return ReplyError(state.status(), packs_header);
    // SSE: the body ends when the connection closes (keep-alive is off).
    WriteAll(conn_, absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                                 "Connection: close\r\nX-Accel-Buffering: no\r\n",
                                 packs_header, "\r\n"));
    SseSink sink(conn_, req, meta, token_text);
    if (std::optional<Json> first = FirstStreamChunk(req, meta)) sink.Send(*first);
    StatusOr<GenerationResult> r = AwaitGeneration(ctx_, *state, /*stream=*/true, &sink);
    if (!r.ok()) {
      // The status line is gone: the error travels as an event (as vLLM's).
      sink.Send(ErrorJson(ToOpenAiError(ctx_.ClientFacing(r.status()))));
      Count(r.status());
      sink.SendRaw(kSseDone);
      return r.status();
    }
    if (r->last_chunk) sink.Deliver(std::move(*r->last_chunk));
    sink.Send(FinalStreamChunk(req, meta, r->output));
    if (req.include_usage) sink.Send(UsageStreamChunk(req, meta, r->output));
    Count(absl::OkStatus());
    sink.SendRaw(kSseDone);
    return absl::OkStatus();
  }

  const OpenAiHttpOptions& options_;
  const ServingContext& ctx_;
  mg_connection* const conn_;
  const Route route_;
  const std::chrono::steady_clock::time_point start_;
  bool counted_ = false;
};

}  // namespace

StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(const OpenAiHttpOptions& options,
                                                                    const ServingContext* ctx) {
  if (ctx == nullptr) return absl::InvalidArgumentError("http server: no serving context");
  if (options.base_model_name.empty()) return absl::InvalidArgumentError("http server: empty base model name");
  if (options.threads < 1 || options.threads > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("http server: threads ", options.threads, " not in [1, 4096]"));
  }
  std::unique_ptr<OpenAiHttpServer> server(new OpenAiHttpServer(options, ctx));
  ASSIGN_OR_RETURN(server->context_, StartCivetweb("http server", options.bind_address, options.port, options.threads,
                                                   kRequestTimeoutMs, &server->port_));
  mg_set_request_handler(server->context_, "/", &OpenAiHttpServer::HandleRequest, server.get());
  return server;
}

OpenAiHttpServer::~OpenAiHttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

int OpenAiHttpServer::HandleRequest(mg_connection* conn, void* cbdata) {
  const auto* self = static_cast<const OpenAiHttpServer*>(cbdata);
  const mg_request_info* info = mg_get_request_info(conn);
  const std::string method = info->request_method != nullptr ? info->request_method : "";
  std::string uri = info->local_uri != nullptr ? info->local_uri : "";
  if (uri.size() > 1 && uri.back() == '/') uri.pop_back();
  Handler handler(self->options_, self->ctx_, conn, RouteOf(uri));
  handler.Serve(method, uri).IgnoreError();  // answered and counted by the handler
  return 200;
}

}  // namespace skillpack
