// Tests for server/metrics_http.h: the real civetweb server on a loopback
// port, fetched with a plain-socket HTTP client, and its exposition checked by
// an independent parser (Prometheus' own `promtool check metrics`).
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <civetweb.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

struct HttpResponse {
  int status = 0;  // 0: no parsable response
  std::string headers;
  std::string body;
};

// Opens a TCP connection to 127.0.0.1:`port`; returns the fd or -1.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one HTTP/1.0 request and reads the response until the server closes.
HttpResponse Fetch(int port, const std::string& method, const std::string& path) {
  HttpResponse response;
  const int fd = Connect(port);
  if (fd < 0) return response;
  const std::string request = method + " " + path +
                              " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return response;
  }
  std::string raw;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) raw.append(buf, n);
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return response;
  response.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  response.headers = raw.substr(0, end + 2);
  response.body = raw.substr(end + 4);
  return response;
}

// What a serving process registers: every metric type, labels, values that
// need escaping, special float values, and the process metrics.
void FillRegistry(MetricsRegistry* registry) {
  auto& requests =
      registry->AddCounter("skillpack_requests_total", "Generate requests by pack and status.", {"pack", "code"});
  requests.WithLabels({"math", "OK"}).Increment(41);
  requests.WithLabels({"weird \"pack\"\\name\nline2", "OK"}).Increment();
  registry->AddCounter("skillpack_generated_tokens_total", "Tokens generated.\nSecond line with a \\ backslash.")
      .WithLabels({})
      .Increment(12345);
  registry->AddGauge("skillpack_loaded_packs", "Packs loaded.").WithLabels({}).Set(3);
  auto& temperature = registry->AddGauge("skillpack_example_ratio", "Odd values.", {"kind"});
  temperature.WithLabels({"nan"}).Set(std::nan(""));
  temperature.WithLabels({"pos_inf"}).Set(std::numeric_limits<double>::infinity());
  temperature.WithLabels({"neg_inf"}).Set(-std::numeric_limits<double>::infinity());
  temperature.WithLabels({"tiny"}).Set(1.5e-12);
  auto& latency = registry->AddHistogram("skillpack_request_duration_seconds", "Request latency.",
                                         ExponentialBuckets(0.001, 4, 8), {"pack"});
  for (double v : {0.0005, 0.02, 0.3, 7.0, 1e6}) {
    latency.WithLabels({"math"}).Observe(v);
  }
  registry->AddHistogram("skillpack_pack_load_seconds", "Pack load time.", {0.1, 1, 10});  // no observations yet
  RegisterProcessMetrics(registry);
}

bool HavePromtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// Runs `promtool check metrics` on `text`; returns its exit status and puts
// its combined output in *output.
int PromtoolCheck(const std::string& text, std::string* output) {
  const std::string dir = ::testing::TempDir();
  const std::string input = dir + "/metrics_http_test_input.txt";
  const std::string result = dir + "/metrics_http_test_promtool.txt";
  std::ofstream(input, std::ios::binary) << text;
  const int rc = std::system(("promtool check metrics < '" + input + "' > '" + result + "' 2>&1").c_str());
  std::ifstream in(result);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::remove(input.c_str());
  std::remove(result.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<MetricsHttpServer>> server = MetricsHttpServer::Start("127.0.0.1", 0, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
  }

  MetricsRegistry registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpTest, ServesExposition) {
  registry_.AddCounter("skillpack_requests_total", "Requests.", {"code"}).WithLabels({"OK"}).Increment(7);
  const HttpResponse response = Fetch(server_->port(), "GET", "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.headers, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_EQ(response.body, registry_.Exposition());
  EXPECT_THAT(response.body, HasSubstr("skillpack_requests_total{code=\"OK\"} 7\n"));
  // Updates show up in the next scrape.
  registry_.AddCounter("skillpack_requests_total", "Requests.", {"code"}).WithLabels({"OK"}).Increment();
  EXPECT_THAT(Fetch(server_->port(), "GET", "/metrics").body, HasSubstr("skillpack_requests_total{code=\"OK\"} 8\n"));
}

TEST_F(MetricsHttpTest, Healthz) {
  const HttpResponse response = Fetch(server_->port(), "GET", "/healthz");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "ok");
}

TEST_F(MetricsHttpTest, UnknownPathIs404) {
  for (const char* path : {"/", "/nope", "/metrics/extra", "/healthz2"}) {
    EXPECT_EQ(Fetch(server_->port(), "GET", path).status, 404) << path;
  }
}

TEST_F(MetricsHttpTest, HeadHasNoBodyAndOtherMethodsAre405) {
  const HttpResponse head = Fetch(server_->port(), "HEAD", "/healthz");
  EXPECT_EQ(head.status, 200);
  EXPECT_THAT(head.headers, HasSubstr("Content-Length: 2\r\n"));
  EXPECT_EQ(head.body, "");
  const HttpResponse post = Fetch(server_->port(), "POST", "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_THAT(post.headers, HasSubstr("Allow: GET, HEAD\r\n"));
}

TEST_F(MetricsHttpTest, SlowClientsDoNotStarveAScrape) {
  // 16 clients that send half a request and then nothing (4 of them used to
  // delay a scrape by 9 s, 16 made it time out). The scrape must be answered
  // within Fetch's 5 s receive timeout.
  FillRegistry(&registry_);
  std::vector<int> slow;
  for (int i = 0; i < 16; ++i) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    const std::string half = "GET /metr";
    ASSERT_EQ(send(fd, half.data(), half.size(), 0), static_cast<ssize_t>(half.size()));
    slow.push_back(fd);
  }
  const HttpResponse r = Fetch(server_->port(), "GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("skillpack_loaded_packs 3\n"), std::string::npos);
  for (int fd : slow) close(fd);
}

TEST_F(MetricsHttpTest, ConcurrentScrapes) {
  FillRegistry(&registry_);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const HttpResponse r = Fetch(server_->port(), "GET", "/metrics");
        if (r.status == 200 && r.body.find("skillpack_loaded_packs 3\n") != std::string::npos) {
          ++ok[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok, std::vector<int>(4, 25));
}

TEST_F(MetricsHttpTest, PromtoolAcceptsServedExposition) {
  if (!HavePromtool()) {
    GTEST_SKIP() << "promtool not found on PATH (Debian package `prometheus`, "
                    "listed in scripts/install-deps.sh); cannot check the "
                    "exposition against Prometheus' own parser";
  }
  FillRegistry(&registry_);
  const HttpResponse response = Fetch(server_->port(), "GET", "/metrics");
  ASSERT_EQ(response.status, 200);
  // The text really exercises escaping and special values.
  EXPECT_THAT(response.body, HasSubstr("pack=\"weird \\\"pack\\\"\\\\name\\nline2\""));
  EXPECT_THAT(response.body, HasSubstr(" NaN\n"));
  EXPECT_THAT(response.body, HasSubstr(" -Inf\n"));
  EXPECT_THAT(response.body, HasSubstr("le=\"+Inf\""));
  EXPECT_THAT(response.body, HasSubstr("process_resident_memory_bytes "));
  std::string output;
  EXPECT_EQ(PromtoolCheck(response.body, &output), 0) << output << "\n---\n" << response.body;
  // Lint is clean too: promtool prints nothing.
  EXPECT_EQ(output, "");
}

TEST(PromtoolControlTest, PromtoolRejectsBrokenText) {
  if (!HavePromtool()) GTEST_SKIP() << "promtool not found on PATH";
  std::string output;
  // An unescaped quote inside a label value: a parse error.
  EXPECT_NE(PromtoolCheck("# TYPE a_total counter\na_total{l=\"x\"y\"} 1\n", &output), 0);
  // Lint problems (no HELP) fail too, so a clean pass above means something.
  EXPECT_NE(PromtoolCheck("# TYPE a_total counter\na_total 1\n", &output), 0);
  EXPECT_THAT(output, HasSubstr("no help text"));
}

TEST(MetricsHttpStartTest, RejectsBadArguments) {
  MetricsRegistry registry;
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1", 70000, &registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1", -1, &registry).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("", 0, &registry).status().code(), absl::StatusCode::kInvalidArgument);
  // Host names are not resolved (civetweb binds numeric addresses only).
  EXPECT_EQ(MetricsHttpServer::Start("metrics.example", 0, &registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1:80", 0, &registry).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1", 0, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsHttpStartTest, LocalhostMeansLoopback) {
  MetricsRegistry registry;
  auto server = MetricsHttpServer::Start("localhost", 0, &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(Fetch((*server)->port(), "GET", "/healthz").status, 200);
}

TEST(MetricsHttpStartTest, Ipv6ServesOrIsUnimplemented) {
  MetricsRegistry registry;
  auto server = MetricsHttpServer::Start("::1", 0, &registry);
  if (!server.ok()) {
    // Debian's civetweb 1.15 is built without IPv6.
    EXPECT_EQ(server.status().code(), absl::StatusCode::kUnimplemented) << server.status();
    return;
  }
  EXPECT_GT((*server)->port(), 0);
}

TEST(MetricsHttpStartTest, PortInUseIsUnavailable) {
  MetricsRegistry registry;
  auto first = MetricsHttpServer::Start("127.0.0.1", 0, &registry);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsHttpServer::Start("127.0.0.1", (*first)->port(), &registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

TEST(MetricsHttpStartTest, ListensOnAllInterfacesAndStopsOnDestruction) {
  MetricsRegistry registry;
  auto server = MetricsHttpServer::Start("0.0.0.0", 0, &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  EXPECT_EQ(Fetch(port, "GET", "/healthz").status, 200);
  server->reset();
  const int fd = Connect(port);
  EXPECT_LT(fd, 0) << "still accepting connections after destruction";
  if (fd >= 0) close(fd);
}

// What WatchForHangUp saw of its connection.
struct HangUpWatch {
  absl::Notification found;  // the handler has looked for its socket
  absl::Notification done;   // the handler has returned, or is about to
  int fd = -1;
  int peer_port = -1;
  bool closed_at_start = true;
  bool saw_hang_up = false;
};

// A handler that writes nothing: it finds its socket, then watches it for the
// client's hang-up for up to 10 s.
int WatchForHangUp(mg_connection* conn, void* cbdata) {
  auto* w = static_cast<HangUpWatch*>(cbdata);
  w->fd = CivetwebSocket(conn);
  if (w->fd >= 0) {
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    if (getpeername(w->fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) w->peer_port = ntohs(peer.sin_port);
    w->closed_at_start = PeerHasClosed(w->fd);
  }
  w->found.Notify();
  for (const absl::Time until = absl::Now() + absl::Seconds(10); w->fd >= 0 && absl::Now() < until;) {
    if (PeerHasClosed(w->fd)) {
      w->saw_hang_up = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  w->done.Notify();
  return 200;
}

// The local port of socket `fd`, -1 on error.
int LocalPort(int fd) {
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  return getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 ? ntohs(local.sin_port) : -1;
}

// CivetwebSocket finds the handler's own connection among several open ones,
// and PeerHasClosed sees its client hang up while nothing is written to it
// (how the OpenAI HTTP API cancels a non-streamed request whose client left).
TEST(CivetwebSocketTest, FindsTheConnectionAndSeesTheClientHangUp) {
  int port = 0;
  StatusOr<mg_context*> context = StartCivetweb("test server", "127.0.0.1", 0, 4, 10000, &port);
  ASSERT_TRUE(context.ok()) << context.status();
  HangUpWatch watch;
  mg_set_request_handler(*context, "/", &WatchForHangUp, &watch);
  const int decoy = Connect(port);  // another open connection to the same port (no request: it waits in a worker)
  ASSERT_GE(decoy, 0);
  const int fd = Connect(port);
  ASSERT_GE(fd, 0);
  const std::string request = "GET /watch HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  ASSERT_TRUE(watch.found.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_GE(watch.fd, 0) << "the connection's socket was not found";
  EXPECT_EQ(watch.peer_port, LocalPort(fd)) << "found another connection's socket";
  EXPECT_NE(watch.peer_port, LocalPort(decoy));
  EXPECT_FALSE(watch.closed_at_start);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(watch.done.HasBeenNotified()) << "a hang-up seen while the client is still there";
  close(fd);
  ASSERT_TRUE(watch.done.WaitForNotificationWithTimeout(absl::Seconds(15)));
  EXPECT_TRUE(watch.saw_hang_up) << "the client's hang-up was not seen in 10 s";
  close(decoy);
  mg_stop(*context);
}

TEST(CivetwebSocketTest, PeerHasClosedOnAPlainSocketPair) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  EXPECT_FALSE(PeerHasClosed(sv[0]));
  ASSERT_EQ(send(sv[1], "x", 1, 0), 1);
  EXPECT_FALSE(PeerHasClosed(sv[0])) << "unread data is not a hang-up";
  close(sv[1]);
  EXPECT_TRUE(PeerHasClosed(sv[0]));
  close(sv[0]);
}

}  // namespace
}  // namespace skillpack
