// The metrics HTTP endpoint: a small civetweb server that Prometheus scrapes.
//   GET /metrics  -> 200, the registry's text exposition (format 0.0.4)
//   GET /healthz  -> 200, "ok" (liveness: the process is up and serving HTTP)
//   anything else -> 404 (or 405 for a method other than GET / HEAD)
// It runs beside the gRPC server on its own port (--metrics-port) and its own
// 32 worker threads (a worker holds one connection until it closes or 3 s
// pass without a full request, so a few slow clients cannot starve a scrape);
// a scrape never blocks request serving beyond the short per-family locks
// that MetricsRegistry::Exposition() takes.
// Also what every civetweb endpoint of the server shares (this one and
// openai_http.h): starting a context, and a connection's socket.
#ifndef SKILLPACK_SERVER_METRICS_HTTP_H_
#define SKILLPACK_SERVER_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "core/status.h"
#include "server/metrics.h"

struct mg_connection;
struct mg_context;

namespace skillpack {

// Starts a civetweb context listening on `bind_address`:`port` (the address
// rules of MetricsHttpServer::Start below) with `threads` workers, keep-alive
// off and `request_timeout_ms` per socket operation; stores the port bound in
// *bound_port. `what` names the server in errors. The caller registers its
// handlers and owns the context (mg_stop). Shared by every HTTP endpoint of
// the server (this one and openai_http.h).
StatusOr<mg_context*> StartCivetweb(const char* what, const std::string& bind_address, int port, int threads,
                                    int request_timeout_ms, int* bound_port);

// The socket under a civetweb connection, or -1 when it cannot be found.
// civetweb 1.15 does not expose it, so it is looked up among the process's
// open sockets by the connection's addresses (the listening port, the peer's
// address and port: unique among open TCP connections). Valid while the
// connection's handler runs: civetweb closes it after the handler returns.
// Costs a scan of /proc/self/fd: call it once per request.
int CivetwebSocket(mg_connection* conn);

// Whether the peer of socket `fd` has closed its side of the connection (or
// the connection failed): how a client that leaves mid-request looks while
// nothing is written to it. Never blocks. A client that only shuts down its
// sending side after the request looks the same, and is taken as gone (as
// Go's net/http does).
bool PeerHasClosed(int fd);

class MetricsHttpServer {
 public:
  // Starts listening on `bind_address`:`port`. `bind_address` is a numeric
  // address: "127.0.0.1" (or "localhost") for local scrapes only, "0.0.0.0"
  // for all IPv4 interfaces; an IPv6 literal ("::1", no brackets) only where
  // civetweb was built with IPv6 (Debian's 1.15 is not: UNIMPLEMENTED). `port`
  // 0 picks a free port; port() tells which. Returns INVALID_ARGUMENT for a bad
  // address or port, or a null registry, and UNAVAILABLE when civetweb cannot
  // listen (e.g. the port is taken).
  // REQUIRES: `registry` outlives the returned server.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& bind_address, int port,
                                                            const MetricsRegistry* registry);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Stops civetweb: waits for in-flight requests and joins its threads. Takes
  // up to ~2 s: civetweb's accept loop only checks its stop flag between
  // 2-second polls.
  ~MetricsHttpServer();

  // The port actually listened on (never 0).
  int port() const { return port_; }

 private:
  explicit MetricsHttpServer(const MetricsRegistry* registry) : registry_(registry) {}

  // civetweb request handler; `cbdata` is the MetricsHttpServer.
  static int HandleRequest(mg_connection* conn, void* cbdata);

  const MetricsRegistry* const registry_;
  mg_context* context_ = nullptr;  // owned; released by mg_stop()
  int port_ = 0;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_METRICS_HTTP_H_
