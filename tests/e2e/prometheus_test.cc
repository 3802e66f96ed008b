// The Grafana dashboard (deploy/grafana/skillpack.json) against a real
// Prometheus (Debian's `prometheus`) scraping the real skillpack-server every
// second while a little traffic runs: explicit packs, a pack set, the base
// model, AUTO through a trained router, streams, a request naming an unknown
// pack. Every panel's every expression must return at least one series with
// a number (not NaN), through Prometheus' HTTP API.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/tiny_model.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A TCP port free on 127.0.0.1 right now.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// GET http://127.0.0.1:port<path>; the body, "" on failure.
std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// Why `expr` shows no data in Prometheus at `port` ("" when it does).
std::string NoDataReason(int port, const std::string& expr) {
  const std::string body = HttpGet(port, "/api/v1/query?query=" + UrlEncode(expr));
  StatusOr<Json> j = ParseJson(body, "query answer");
  if (!j.ok()) return "no JSON answer: " + body;
  if (j->value("status", "") != "success") return "query failed: " + body;
  const Json& result = (*j)["data"]["result"];
  if (result.empty()) return "no series";
  for (const Json& series : result) {
    const std::string value = series["value"][1].get<std::string>();
    if (value != "NaN" && std::isfinite(std::stod(value))) return "";
  }
  return "only NaN values: " + body;
}

class PrometheusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("skillpack-prometheus-e2e-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    MakeRoutedTinyWorld(*dir_);
    server_ = new ServerProcess();
    server_->Start({"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token"), "--router",
                    Path("router.safetensors"), "--metrics-port", "0", "--max-running", "4", "--max-seq-len", "256"},
                   Path("server.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string Path(const std::string& name) { return JoinPath(*dir_, name); }

  static std::string* dir_;
  static ServerProcess* server_;
};
std::string* PrometheusTest::dir_ = nullptr;
ServerProcess* PrometheusTest::server_ = nullptr;

// A Prometheus child process scraping the server every second.
class PrometheusProcess {
 public:
  void Start(const std::string& dir, int target_port) {
    port_ = FreePort();
    const std::string config = JoinPath(dir, "prometheus.yml");
    ASSERT_TRUE(WriteFileAtomically(config, absl::StrCat("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                                         "scrape_configs:\n  - job_name: skillpack\n"
                                                         "    static_configs:\n      - targets: ['127.0.0.1:",
                                                         target_port, "']\n"))
                    .ok());
    std::vector<std::string> argv = {"/usr/bin/prometheus", "--config.file=" + config,
                                     "--storage.tsdb.path=" + JoinPath(dir, "tsdb"),
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"};
    const std::string log = JoinPath(dir, "prometheus.log");
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~PrometheusProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status;
    const auto deadline = std::chrono::steady_clock::now() + Scaled(seconds(5));
    while (::waitpid(pid_, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(25));
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

v1::GenerateRequest WithPacks(v1::GenerateRequest r, const std::vector<std::string>& packs) {
  r.mutable_skills()->set_mode(packs.empty() ? v1::Skills::NONE : v1::Skills::EXPLICIT);
  for (const std::string& p : packs) r.mutable_skills()->add_packs()->set_name(p);
  return r;
}

TEST_F(PrometheusTest, EveryDashboardPanelShowsData) {
  ASSERT_TRUE(fs::exists("/usr/bin/prometheus")) << "Debian package prometheus (scripts/install-deps.sh)";
  StatusOr<Json> dashboard = ReadJsonFile(JoinPath(SKILLPACK_SOURCE_DIR, "deploy/grafana/skillpack.json"));
  ASSERT_TRUE(dashboard.ok()) << dashboard.status();
  std::vector<std::pair<std::string, std::string>> exprs;  // panel title, expression
  for (const Json& panel : (*dashboard)["panels"]) {
    ASSERT_TRUE(panel.contains("targets")) << panel.dump();
    ASSERT_FALSE(panel["targets"].empty()) << panel["title"];
    for (const Json& target : panel["targets"]) {
      // Grafana's $__rate_interval, at least 4 scrape intervals: 1m here.
      exprs.emplace_back(panel["title"].get<std::string>(),
                         absl::StrReplaceAll(target["expr"].get<std::string>(), {{"$__rate_interval", "1m"}}));
    }
  }
  ASSERT_GE(exprs.size(), 12u);

  PrometheusProcess prometheus;
  prometheus.Start(*dir_, server_->metrics_port());
  // Traffic starts once Prometheus has scraped the idle server, so that each
  // counter's first increase falls between two scrapes.
  bool up = false;
  for (const auto until = std::chrono::steady_clock::now() + Scaled(seconds(30));
       !up && std::chrono::steady_clock::now() < until;) {
    up = NoDataReason(prometheus.port(), "up{job=\"skillpack\"} == 1").empty();
    if (!up) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(up) << ReadFileToString(Path("prometheus.log")).value_or("");
  std::this_thread::sleep_for(milliseconds(1500));

  auto stub = v1::Inference::NewStub(server_->channel());
  const auto traffic_end = std::chrono::steady_clock::now() + seconds(8);
  int round = 0;
  while (std::chrono::steady_clock::now() < traffic_end) {
    const std::string n = std::to_string(round++);
    for (const v1::GenerateRequest& req :
         {WithPacks(Request("alpha " + n, Greedy(6)), {"alpha"}), WithPacks(Request("beta " + n, Greedy(6)), {"beta"}),
          WithPacks(Request("both " + n, Greedy(6)), {"alpha", "beta"}), WithPacks(Request("base " + n, Greedy(6)), {}),
          Request(n + "+" + n + "=", Greedy(6)), Request("reverse: xyz" + n, Greedy(6))}) {
      MustGenerate(server_->channel(), req);
    }
    grpc::ClientContext sctx;
    auto reader = stub->GenerateStream(&sctx, Request("stream " + n, Greedy(12)));
    v1::GenerateStreamResponse chunk;
    while (reader->Read(&chunk)) {
    }
    EXPECT_TRUE(reader->Finish().ok());
    grpc::ClientContext bad;
    v1::GenerateResponse resp;
    EXPECT_FALSE(stub->Generate(&bad, WithPacks(Request("x", Greedy(2)), {"no-such-pack"}), &resp).ok());
  }

  // Every expression has data once Prometheus has scraped the end of it.
  std::vector<std::string> missing;
  for (const auto until = std::chrono::steady_clock::now() + Scaled(seconds(20));
       std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(seconds(1));
    missing.clear();
    for (const auto& [title, expr] : exprs) {
      const std::string why = NoDataReason(prometheus.port(), expr);
      if (!why.empty()) missing.push_back(absl::StrCat(title, ": ", expr, ": ", why));
    }
    if (missing.empty()) break;
  }
  for (const std::string& m : missing) ADD_FAILURE() << m;
  // Unknown-pack requests are not cache misses: the fused tier missed once
  // per composed set (alpha, beta, alpha+beta, and what AUTO chose), far
  // fewer than the unknown-pack requests.
  const std::string metrics = FetchMetrics(server_->metrics_port());
  const size_t at = metrics.find("skillpack_pack_cache_misses_total{tier=\"fused\"} ");
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_LE(std::stod(metrics.substr(at + std::string("skillpack_pack_cache_misses_total{tier=\"fused\"} ").size())),
            4.0);
  EXPECT_GT(round, 4);
}

// The page from start-up: the series dashboards need exist before any
// request, and Prometheus' own promtool accepts the page (lint included).
TEST_F(PrometheusTest, FreshServerPageHasEverySeriesAndPassesPromtool) {
  ServerProcess fresh;
  fresh.Start({"--model", Path("base"), "--packs", Path("packs"), "--metrics-port", "0"}, Path("fresh.log"));
  std::string page = FetchMetrics(fresh.metrics_port());
  const size_t body = page.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  page = page.substr(body + 4);
  for (const char* line :
       {"skillpack_pack_cache_evictions_total{tier=\"host\"} 0",
        "skillpack_pack_cache_evictions_total{tier=\"fused\"} 0", "skillpack_pack_cache_misses_total{tier=\"fused\"} 0",
        "skillpack_request_finished_total{reason=\"stop\"} 0", "skillpack_request_finished_total{reason=\"length\"} 0",
        "skillpack_kv_cache_usage_ratio 0", "skillpack_inter_token_latency_seconds_count 0",
        "skillpack_request_prompt_tokens_count 0", "skillpack_request_generation_tokens_count 0",
        "skillpack_build_info{version=\""}) {
    EXPECT_NE(page.find(line), std::string::npos) << line << "\n" << page;
  }
  ASSERT_TRUE(WriteFileAtomically(Path("fresh-metrics.txt"), page).ok());
  EXPECT_EQ(std::system(("promtool check metrics < " + Path("fresh-metrics.txt")).c_str()), 0) << page;
  // After a request: the KV gauge went up while it ran (now back to 0), the
  // per-token and length histograms and the finish reason counted it.
  SamplingParams five = Greedy(5);
  five.ignore_eos = true;
  MustGenerate(fresh.channel(), WithPacks(Request("hello", five), {"alpha"}));
  // The request is retired on the engine thread just after its response
  // goes out: wait for its finish to be counted.
  WaitForMetricAtLeast(fresh.metrics_port(), R"(skillpack_request_finished_total{reason="length"})", 1, seconds(5));
  page = FetchMetrics(fresh.metrics_port());
  for (const char* line :
       {"skillpack_request_finished_total{reason=\"length\"} 1", "skillpack_request_generation_tokens_count 1",
        "skillpack_pack_load_seconds_count{pack=\"alpha\"} 1",
        "skillpack_pack_compose_seconds_count{pack=\"alpha\"} 1"}) {
    EXPECT_NE(page.find(line), std::string::npos) << line << "\n" << page;
  }
  // 5 tokens: the clock starts with the tokens of the first engine step (the
  // prefill's token, and the first decode when the engine runs it in the same
  // step); each later token is one observation.
  const std::string itl_name = "skillpack_inter_token_latency_seconds_count ";
  const size_t itl = page.find(itl_name);
  ASSERT_NE(itl, std::string::npos);
  const int itl_count = std::stoi(page.substr(itl + itl_name.size()));
  EXPECT_GE(itl_count, 3);
  EXPECT_LE(itl_count, 4);
  page = page.substr(page.find("\r\n\r\n") + 4);
  ASSERT_TRUE(WriteFileAtomically(Path("fresh-metrics.txt"), page).ok());
  EXPECT_EQ(std::system(("promtool check metrics < " + Path("fresh-metrics.txt")).c_str()), 0) << page;
}

}  // namespace
}  // namespace skillpack
