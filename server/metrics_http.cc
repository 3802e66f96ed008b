#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <dlfcn.h>
#include <pthread.h>
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

// Debian's civetweb asks for 100 KiB worker stacks (pthread_attr_setstacksize
// with 102400, a build-time constant with no runtime option). glibc carves a
// thread's static TLS out of its stack, and in a process that also links
// libtorch, OpenBLAS and glog the TLS alone is ~100 KiB, so pthread_create
// fails with EINVAL ("Cannot create first worker thread"). This definition
// interposes on the libc symbol for the whole process and only ever raises a
// requested size to kMinThreadStackBytes; smaller requests from any library
// get a larger stack, larger ones are passed through unchanged.
namespace {

constexpr int kWorkerThreads = 32;
constexpr int kRequestTimeoutMs = 3000;
constexpr size_t kMinThreadStackBytes = size_t{1} << 20;
}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (real == nullptr) return ENOSYS;
  return real(attr, size < kMinThreadStackBytes ? kMinThreadStackBytes : size);
}

namespace skillpack {
namespace {

constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    default:
      return "Error";
  }
}

// Writes a complete response with an explicit length; the body is left out
// for HEAD. Returns `status` (civetweb's "handled" value).
int Respond(mg_connection* conn, bool head, int status, const char* content_type, const std::string& body,
            const char* extra_headers = "") {
  const std::string headers =
      absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\nContent-Type: ", content_type,
                   "\r\nContent-Length: ", body.size(), "\r\nCache-Control: no-store\r\nConnection: close\r\n",
                   extra_headers, "\r\n");
  mg_write(conn, headers.data(), headers.size());
  if (!head && !body.empty()) mg_write(conn, body.data(), body.size());
  return status;
}

}  // namespace

StatusOr<mg_context*> StartCivetweb(const char* what, const std::string& bind_address, int port, int threads,
                                    int request_timeout_ms, int* bound_port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": port ", port, " out of range"));
  }
  // civetweb takes numeric addresses only; IPv6 ones in brackets.
  std::string host = bind_address == "localhost" ? "127.0.0.1" : bind_address;
  unsigned char parsed[sizeof(in6_addr)];
  if (inet_pton(AF_INET6, bind_address.c_str(), parsed) == 1) {
    if (mg_check_feature(8) == 0) {
      return absl::UnimplementedError(
          absl::StrCat(what, ": cannot bind ", bind_address, ": this civetweb is built without IPv6 support"));
    }
    host = absl::StrCat("[", bind_address, "]");
  } else if (inet_pton(AF_INET, host.c_str(), parsed) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": bind address \"", bind_address, "\" is not a numeric IPv4 or IPv6 address"));
  }
  const std::string listening_ports = absl::StrCat(host, ":", port);
  const std::string num_threads = absl::StrCat(threads);
  const std::string timeout = absl::StrCat(request_timeout_ms);

  static std::once_flag init_once;
  std::call_once(init_once, [] { mg_init_library(0); });

  const char* options[] = {"listening_ports",
                           listening_ports.c_str(),
                           "num_threads",
                           num_threads.c_str(),
                           "request_timeout_ms",
                           timeout.c_str(),
                           "enable_keep_alive",
                           "no",
                           nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  mg_init_data init;
  std::memset(&init, 0, sizeof(init));
  init.callbacks = &callbacks;
  init.configuration_options = options;
  char error_text[256] = "";
  unsigned error_code = 0;
  mg_error_data error;
  std::memset(&error, 0, sizeof(error));
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  mg_context* context = mg_start2(&init, &error);
  if (context == nullptr) {
    return absl::UnavailableError(absl::StrCat(what, ": cannot listen on ", listening_ports, ": ",
                                               error_text[0] != '\0' ? error_text : "civetweb failed"));
  }
  mg_server_port ports[4];
  std::memset(ports, 0, sizeof(ports));
  const int n = mg_get_server_ports(context, 4, ports);
  if (n < 1 || ports[0].port <= 0) {
    mg_stop(context);
    return absl::InternalError(absl::StrCat(what, ": civetweb reports no port for ", listening_ports));
  }
  *bound_port = ports[0].port;
  return context;
}

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& bind_address, int port,
                                                                      const MetricsRegistry* registry) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics server: registry is null");
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(registry));
  // A worker serves one connection from accept to close, so a client that
  // sends half a request holds a worker until request_timeout_ms. Enough
  // workers that a few slow clients cannot starve a scrape, and a timeout
  // well under Prometheus' default scrape timeout (10 s).
  ASSIGN_OR_RETURN(server->context_, StartCivetweb("metrics server", bind_address, port, kWorkerThreads,
                                                   kRequestTimeoutMs, &server->port_));
  // One handler for every path; it dispatches on the URI itself so that
  // unknown paths get our 404 rather than civetweb's file serving.
  mg_set_request_handler(server->context_, "/", &MetricsHttpServer::HandleRequest, server.get());
  return server;
}

namespace {

// The port and numeric address of an AF_INET / AF_INET6 socket address; false for other families.
bool PortAndAddress(const sockaddr_storage& sa, int* port, std::string* address) {
  char text[INET6_ADDRSTRLEN] = "";
  if (sa.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    *port = ntohs(in.sin_port);
    if (inet_ntop(AF_INET, &in.sin_addr, text, sizeof(text)) == nullptr) return false;
  } else if (sa.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(sa);
    *port = ntohs(in6.sin6_port);
    if (inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof(text)) == nullptr) return false;
  } else {
    return false;
  }
  *address = text;
  return true;
}

// Whether open descriptor `fd` is a TCP connection from `peer_address`:`peer_port` to local port `local_port`.
bool IsConnection(int fd, int local_port, const std::string& peer_address, int peer_port) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage sa;
  socklen_t len = sizeof(sa);
  int port = 0;
  std::string address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || !PortAndAddress(sa, &port, &address) ||
      port != local_port) {
    return false;
  }
  len = sizeof(sa);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || !PortAndAddress(sa, &port, &address)) {
    return false;
  }
  // An IPv4 peer of an IPv6 socket: civetweb may name it either way.
  constexpr char kMapped[] = "::ffff:";
  return port == peer_port && (address == peer_address || (absl::StartsWith(address, kMapped) &&
                                                           address.substr(sizeof(kMapped) - 1) == peer_address));
}

}  // namespace

int CivetwebSocket(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  const int listing = dirfd(dir);
  int found = -1;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == listing) continue;
    if (IsConnection(static_cast<int>(fd), info->server_port, info->remote_addr, info->remote_port)) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

bool PeerHasClosed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

int MetricsHttpServer::HandleRequest(mg_connection* conn, void* cbdata) {
  const auto* self = static_cast<const MetricsHttpServer*>(cbdata);
  const mg_request_info* info = mg_get_request_info(conn);
  const char* method = info->request_method != nullptr ? info->request_method : "";
  const char* uri = info->local_uri != nullptr ? info->local_uri : "";
  const bool head = std::strcmp(method, "HEAD") == 0;
  if (!head && std::strcmp(method, "GET") != 0) {
    return Respond(conn, false, 405, kTextContentType, "method not allowed\n", "Allow: GET, HEAD\r\n");
  }
  if (std::strcmp(uri, "/metrics") == 0) {
    return Respond(conn, head, 200, kExpositionContentType, self->registry_->Exposition());
  }
  if (std::strcmp(uri, "/healthz") == 0) {
    return Respond(conn, head, 200, kTextContentType, "ok");
  }
  return Respond(conn, head, 404, kTextContentType, "not found\n");
}

}  // namespace skillpack
