// Helpers shared by the end-to-end suites that drive the real
// skillpack-server binary (server_test.cc, router_e2e_test.cc): starting and
// stopping a server child process, offline reference generation, request
// builders, pack upload, stats and the /metrics page. Every wait for the
// server is stretched by TimeoutScale() (shell.h) for sanitizer builds.
#ifndef SKILLPACK_TESTS_E2E_SERVER_HARNESS_H_
#define SKILLPACK_TESTS_E2E_SERVER_HARNESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/sha256.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "skillpack/v1/inference.grpc.pb.h"
#include "tests/e2e/shell.h"

namespace skillpack {

inline const std::string kServerBin = std::string(SKILLPACK_BINARY_DIR) + "/server/skillpack-server";
inline const std::string kCliBin = std::string(SKILLPACK_BINARY_DIR) + "/cli/skillpack";
inline constexpr char kToken[] = "e2e-secret-token";

// Runs a command through the shell; fails the test when it exits non-zero.
inline void RunCommand(const std::string& cmd) {
  int rc = std::system((cmd + " > /dev/null 2>&1").c_str());
  ASSERT_EQ(rc, 0) << cmd;
}

// The tiny models of the e2e suites: `layers` decoder layers of width
// `hidden` (hidden / 16 heads, half as many KV heads), weights from `seed`.
inline TinyModelOptions TinyOptions(int64_t layers, int64_t hidden, uint64_t seed, int64_t max_positions = 1024) {
  TinyModelOptions o;
  o.layers = layers;
  o.hidden = hidden;
  o.heads = std::max<int64_t>(1, hidden / 16);
  o.kv_heads = std::max<int64_t>(1, o.heads / 2);
  o.max_positions = max_positions;
  o.seed = seed;
  return o;
}

// Writes a tiny model with options `tuned` to `tuned_dir` and compresses its
// delta from the model in `base_dir` into pack `name` at `pack_path` with the
// CLI (`skillpack pack create`, default settings).
inline void MakeTinyPack(const std::string& base_dir, const TinyModelOptions& tuned, const std::string& tuned_dir,
                         const std::string& name, const std::string& pack_path) {
  ASSERT_TRUE(InitTinyModel(tuned, tuned_dir).ok());
  RunCommand(kCliBin + " pack create --base " + base_dir + " --tuned " + tuned_dir + " --name " + name + " -o " +
             pack_path);
}

// The routed tiny world of the suites that need AUTO traffic, in `dir`: a
// 2-layer, hidden-32 base (dir/base), packs "alpha" and "beta"
// (dir/packs/*.skillpack), a small router trained on labelled prompts
// (dir/router.safetensors; its accuracy does not matter, only that it
// decides) and the admin token file (dir/token).
inline void MakeRoutedTinyWorld(const std::string& dir) {
  const auto path = [&](const std::string& name) { return JoinPath(dir, name); };
  ASSERT_TRUE(InitTinyModel(TinyOptions(2, 32, 1), path("base")).ok());
  ASSERT_TRUE(MakeDirectories(path("packs")).ok());
  uint64_t seed = 2;
  for (const std::string pack : {"alpha", "beta"}) {
    MakeTinyPack(path("base"), TinyOptions(2, 32, seed++), path("tuned-" + pack), pack,
                 path("packs/" + pack + ".skillpack"));
  }
  std::string jsonl;
  for (int i = 0; i < 20; ++i) {
    jsonl += "{\"prompt\": \"" + std::to_string(i) + "+" + std::to_string(i) + "=\", \"label\": \"alpha\"}\n";
    jsonl += "{\"prompt\": \"reverse: abc" + std::to_string(i) + "\", \"label\": \"beta\"}\n";
    jsonl += "{\"prompt\": \"Tell me a story number " + std::to_string(i) + ".\", \"label\": \"none\"}\n";
  }
  ASSERT_TRUE(WriteFileAtomically(path("labelled.jsonl"), jsonl).ok());
  RunCommand(kCliBin + " router train --model " + path("base") + " --data " + path("labelled.jsonl") + " -o " +
             path("router.safetensors") + " --layer 1 --width 16 --epochs 20 --seed 3 --threads 1");
  ASSERT_TRUE(WriteFileAtomically(path("token"), std::string(kToken) + "\n").ok());
}

// A skillpack-server child process.
class ServerProcess {
 public:
  // Environment changes for the child: set to the value, or unset (nullopt).
  std::map<std::string, std::optional<std::string>> env;

  // Starts the server and waits for its "listening" line.
  void Start(const std::vector<std::string>& extra, const std::string& log_path) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    std::vector<std::string> argv = {kServerBin, "--grpc-address",    "127.0.0.1", "--grpc-port",
                                     "0",        "--metrics-address", "127.0.0.1", "--threads",
                                     "1"};
    // Metrics off unless the test asks for them (see MetricsEndpoint).
    if (std::find(extra.begin(), extra.end(), "--metrics-port") == extra.end()) {
      argv.insert(argv.end(), {"--metrics-port", "-1"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    // The child's arguments and environment, built before the fork (the child
    // of a threaded process should not allocate).
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (env.count(entry.substr(0, entry.find('='))) == 0) env_strings.push_back(entry);
    }
    for (const auto& [name, value] : env) {
      if (value) env_strings.push_back(name + "=" + *value);
    }
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (log >= 0) ::dup2(log, 2);
      ::close(fds[0]);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_fd_ = fds[0];
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(120));
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[256];
      ssize_t n = ::read(out_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ASSERT_EQ(line.rfind("listening grpc=127.0.0.1:", 0), 0u) << "server did not start: " << line << "\n"
                                                              << ReadFileToString(log_path).value_or("");
    std::string rest = line.substr(std::string("listening grpc=127.0.0.1:").size());
    port_ = std::stoi(rest.substr(0, rest.find(' ')));
    const size_t m = line.find("metrics=127.0.0.1:");
    if (m != std::string::npos) metrics_port_ = std::stoi(line.substr(m + std::string("metrics=127.0.0.1:").size()));
    const size_t h = line.find("http=127.0.0.1:");
    if (h != std::string::npos) http_port_ = std::stoi(line.substr(h + std::string("http=127.0.0.1:").size()));
    channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
  }

  // SIGTERM; returns the exit status (-1 when it had to be killed after
  // `wait_seconds`, times TimeoutScale()).
  int Stop(int wait_seconds = 30) {
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(wait_seconds));
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ::close(out_fd_);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    ::close(out_fd_);
    return -1;
  }
  void Signal(int sig) { ::kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  ~ServerProcess() { Stop(5); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }  // -1 unless started with --http-port
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = -1;
  int http_port_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
};

// Offline reference: GenerateAll on a model folder.
struct Offline {
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<Tokenizer> tok;

  static Offline Load(const std::string& dir) {
    Offline o;
    o.model = LoadModel(dir, at::TensorOptions().dtype(at::kFloat)).value();
    o.tok = Tokenizer::FromModelDir(dir).value();
    return o;
  }
  GenerationOutput Generate(const std::string& prompt, const SamplingParams& p) const {
    GenerationRequest r;
    r.prompt_tokens = tok->Encode(prompt, true, tok->bos_id().has_value());
    r.params = p;
    r.weights = model->weights;
    auto cache = KvCache::Create(model->config, 1, r.prompt_tokens.size() + p.max_new_tokens,
                                 model->weights->embed_tokens().options())
                     .value();
    auto out = GenerateAll(*model->transformer, *tok, *cache, EosIds(model->config, *tok), {r}).value();
    return out[0];
  }
};

inline SamplingParams Greedy(int n) {
  SamplingParams p;
  p.max_new_tokens = n;
  p.temperature = 0;
  return p;
}

inline v1::GenerateRequest Request(const std::string& prompt, const SamplingParams& p) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  auto* s = r.mutable_sampling();
  s->set_max_new_tokens(p.max_new_tokens);
  s->set_temperature(p.temperature);
  s->set_top_k(p.top_k);
  s->set_top_p(p.top_p);
  s->set_min_p(p.min_p);
  if (p.seed) s->set_seed(*p.seed);
  s->set_ignore_eos(p.ignore_eos);
  s->set_logprobs(p.logprobs);
  return r;
}

// Unary Generate on `ch`; fails the test (and returns an empty response) when
// the call is not OK.
inline v1::GenerateResponse MustGenerate(const std::shared_ptr<grpc::Channel>& ch, const v1::GenerateRequest& req) {
  auto stub = v1::Inference::NewStub(ch);
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  grpc::Status s = stub->Generate(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

inline std::vector<int32_t> Ids(const google::protobuf::RepeatedField<int32_t>& f) { return {f.begin(), f.end()}; }

inline void AddToken(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
}

// Uploads `path` (with `sha256`, the file's own when empty).
inline grpc::Status Upload(const std::shared_ptr<grpc::Channel>& ch, const std::string& path, std::string sha256 = "",
                           v1::UploadPackResponse* resp = nullptr, bool overwrite = false) {
  std::string bytes = ReadFileToString(path).value();
  if (sha256.empty()) sha256 = Sha256Hex(bytes);
  auto stub = v1::Admin::NewStub(ch);
  grpc::ClientContext ctx;
  AddToken(&ctx, kToken);
  v1::UploadPackResponse local;
  auto w = stub->UploadPack(&ctx, resp ? resp : &local);
  v1::UploadPackRequest m;
  m.mutable_header()->set_sha256(sha256);
  m.mutable_header()->set_total_size(bytes.size());
  m.mutable_header()->set_overwrite(overwrite);
  w->Write(m);
  for (size_t off = 0; off < bytes.size(); off += 10000) {
    m.Clear();
    m.set_chunk(bytes.substr(off, 10000));
    w->Write(m);
  }
  w->WritesDone();
  return w->Finish();
}

// Admin.DeletePack with the test token.
inline grpc::Status DeletePack(const std::shared_ptr<grpc::Channel>& ch, const std::string& name) {
  auto stub = v1::Admin::NewStub(ch);
  grpc::ClientContext ctx;
  AddToken(&ctx, kToken);
  v1::DeletePackRequest req;
  req.set_name(name);
  v1::DeletePackResponse resp;
  return stub->DeletePack(&ctx, req, &resp);
}

inline v1::GetStatsResponse Stats(const std::shared_ptr<grpc::Channel>& ch) {
  auto stub = v1::Admin::NewStub(ch);
  grpc::ClientContext ctx;
  AddToken(&ctx, kToken);
  v1::GetStatsResponse r;
  EXPECT_TRUE(stub->GetStats(&ctx, v1::GetStatsRequest(), &r).ok());
  return r;
}

// Waits until the server holds `n` requests (running + waiting), for up to
// `timeout_ms` times TimeoutScale().
inline bool WaitForLoad(const std::shared_ptr<grpc::Channel>& ch, int n, int timeout_ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + Scaled(std::chrono::milliseconds(timeout_ms));
  while (true) {
    auto s = Stats(ch);
    if (s.running_requests() + s.waiting_requests() == n) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// A raw HTTP/1.1 exchange on 127.0.0.1:port: sends `request`, reads until the
// server closes. "" when it cannot connect.
inline std::string RawHttp(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    size_t off = 0;
    while (off < request.size()) {
      const ssize_t n = ::write(fd, request.data() + off, request.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    // Until the server closes, or the whole body of a response that has a
    // Content-Length (the server waits for the client to close first when it
    // answered before reading a request body).
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
      out.append(buf, static_cast<size_t>(n));
      const size_t head = out.find("\r\n\r\n");
      const size_t cl = out.find("Content-Length: ");
      if (head != std::string::npos && cl != std::string::npos && cl < head &&
          out.size() >= head + 4 + std::stoul(out.substr(cl + 16))) {
        break;
      }
    }
  }
  ::close(fd);
  return out;
}

// GET http://127.0.0.1:port/metrics; "" on failure.
inline std::string FetchMetrics(int port) { return RawHttp(port, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"); }

// The value of metric line `name{labels}` on the /metrics page (0 if absent).
inline double MetricValue(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, series + " ")) return std::stod(std::string(line.substr(series.size() + 1)));
  }
  return 0;
}

// The value of `series` on the /metrics page at `metrics_port` once it is at
// least `at_least`, else its last value when `timeout` (scaled) has passed.
// For counters the server moves after the client has its answer (a
// cancellation seen later, a request retired on the engine thread); request
// counters are final by then and take one scrape.
inline double WaitForMetricAtLeast(int metrics_port, const std::string& series, double at_least,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  double v = MetricValue(FetchMetrics(metrics_port), series);
  for (const auto until = std::chrono::steady_clock::now() + Scaled(timeout);
       v < at_least && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    v = MetricValue(FetchMetrics(metrics_port), series);
  }
  return v;
}

}  // namespace skillpack

#endif  // SKILLPACK_TESTS_E2E_SERVER_HARNESS_H_
