// The OpenAI-compatible HTTP API: a civetweb server on its own port
// (--http-port) in the server process, serving
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/completions, /v1/chat/completions  (JSON, or SSE with stream=true)
// Requests are parsed by openai_api.h into a skillpack.v1.GenerateRequest and
// run through the same submission path as gRPC's Generate (submission.h).
// Each response names the packs that ran in its x-skillpack-packs header.
// A streamed request whose client disconnects is cancelled at its next
// output. HTTP requests are counted in skillpack_requests_total and
// skillpack_request_duration_seconds with method = the path. docs/api.md
// ("OpenAI-compatible HTTP API") is the reference.
#ifndef SKILLPACK_SERVER_OPENAI_HTTP_H_
#define SKILLPACK_SERVER_OPENAI_HTTP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/serving_context.h"

struct mg_connection;
struct mg_context;

namespace skillpack {

struct OpenAiHttpOptions {
  std::string bind_address = "0.0.0.0";  // numeric, as MetricsHttpServer's
  int port = 8000;                       // 0 = a free port
  // The `model` name of the base model alone (GET /v1/models lists it).
  std::string base_model_name;
  // When not empty, every request needs "Authorization: Bearer <api_key>"
  // (401 otherwise); empty = no authentication, as the gRPC Inference service.
  std::string api_key;
  // Worker threads: each holds one connection for the whole generation.
  int threads = 80;
  // Largest request body accepted (413 beyond); gRPC's message limit.
  int64_t max_body_bytes = int64_t{16} << 20;
};

class OpenAiHttpServer {
 public:
  // Starts listening. INVALID_ARGUMENT for a bad address, port or options;
  // UNAVAILABLE when the port cannot be bound.
  // REQUIRES: `ctx` outlives the returned server.
  static StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(const OpenAiHttpOptions& options, const ServingContext* ctx);

  OpenAiHttpServer(const OpenAiHttpServer&) = delete;
  OpenAiHttpServer& operator=(const OpenAiHttpServer&) = delete;

  // Stops civetweb: waits for the requests in flight and joins its threads.
  ~OpenAiHttpServer();

  int port() const { return port_; }

 private:
  OpenAiHttpServer(OpenAiHttpOptions options, const ServingContext* ctx) : options_(std::move(options)), ctx_(*ctx) {}

  static int HandleRequest(mg_connection* conn, void* cbdata);

  const OpenAiHttpOptions options_;
  const ServingContext& ctx_;
  mg_context* context_ = nullptr;  // owned; released by mg_stop()
  int port_ = 0;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_OPENAI_HTTP_H_
