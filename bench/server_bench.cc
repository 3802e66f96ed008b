// The real gRPC server against the same engine called in process, at the same
// load. A tiny world is made on disk: a random base (`--layers`, `--hidden`)
// and `--packs` packs compressed from random tuned models with the CLI
// (`skillpack pack create`). Then `--clients` threads run a closed loop of
// `--requests` greedy requests (`--new-tokens` each, EOS ignored), either
//   in process: the server's own objects (Tokenizer, PackCache over the real
//     PackRuntime, Scheduler) called directly, with no RPC, or
//   gRPC: SkillpackServer on 127.0.0.1 with the same options, unary Generate
//     from the same number of client threads (in this process: the clients'
//     protobuf and HTTP/2 work shares the machine's cores with the server).
// Both for requests without packs and for requests spread over the packs (one
// pack each, round robin), each measured in `--rounds` rounds of one in-process
// and one gRPC loop, in alternating order (this VM's speed moves within
// seconds: one loop of 480 requests ran 2418 and 3640 tok/s in one run).
// Reports generated tokens/s and gRPC / in-process: each round's ratio, their
// median (the figure) and the ratio of the sums. Writes
// bench/results/server_<timestamp>.json.
//
// usage: server_bench [--packs N] [--clients N] [--requests N] [--new-tokens N]
//                     [--layers N] [--hidden N] [--serving-mode M] [--threads N] [--rounds N]
//                     [--out DIR]
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "bench/machine_info.h"
#include "bench/stats.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "server/pack_cache.h"
#include "server/pack_runtime.h"
#include "server/pack_store.h"
#include "server/scheduler.h"
#include "server/server.h"
#include "skillpack/v1/inference.grpc.pb.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  int packs = 8;
  int clients = 8;
  int requests = 64;
  int new_tokens = 32;
  int64_t layers = 4;
  int64_t hidden = 256;
  std::string serving_mode = "auto";
  int threads = 0;
  int rounds = 6;
};

// Request i's prompt and pack ("" = none).
std::string PromptOf(int i) { return absl::StrCat("Request ", i, ": summarise the skill packs served here."); }
std::string PackOf(int i, int packs) { return packs > 0 ? absl::StrCat("p", i % packs) : ""; }

// Runs `requests` requests on `clients` threads, each calling `one(i)` (which
// returns the tokens generated); returns generated tokens/s.
double ClosedLoop(int clients, int requests, const std::function<int64_t(int)>& one) {
  std::atomic<int> next{0};
  std::atomic<int64_t> tokens{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      for (int i = next++; i < requests; i = next++) tokens += one(i);
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(tokens.load()) / Seconds(t0);
}

// The engine and pack cache as the server builds them, without the server.
class InProcess {
 public:
  static std::unique_ptr<InProcess> Start(const std::string& model_dir, const std::string& packs_dir,
                                          const Options& o) {
    auto p = std::unique_ptr<InProcess>(new InProcess());
    p->model_ = LoadModel(model_dir, at::TensorOptions().dtype(at::kFloat)).value();
    p->tok_ = Tokenizer::FromModelDir(model_dir).value();
    p->runtime_ = NewPackRuntime(p->model_->weights).value();
    p->store_ = PackStore::Open(packs_dir, p->runtime_.get(), int64_t{1} << 30).value();
    PackCacheOptions co;
    co.mode = ParseServingMode(o.serving_mode).value();
    p->cache_ = std::make_unique<PackCache>(p->model_->weights, p->store_.get(), p->runtime_.get(), co, nullptr);
    const int32_t slots = 8;  // the server's default --max-running
    auto kv = KvCache::Create(p->model_->config, slots, 1024, p->model_->weights->embed_tokens().options()).value();
    SchedulerOptions so;
    so.max_running = slots;
    so.max_queued = 64;
    p->scheduler_ = Scheduler::Create(*p->model_->transformer, *p->tok_, std::move(kv),
                                      EosIds(p->model_->config, *p->tok_), so, nullptr);
    return p;
  }

  int64_t Generate(const std::string& prompt, const std::string& pack, int new_tokens) {
    GenerationRequest g;
    g.prompt_tokens = tok_->Encode(prompt, true, tok_->bos_id().has_value());
    g.params.max_new_tokens = new_tokens;
    g.params.temperature = 0;
    g.params.ignore_eos = true;
    std::vector<PackSelection> sel;
    if (!pack.empty()) sel.push_back({pack, 1.0f, {}});
    ServingWeights w = cache_->Get(sel, nullptr).value();
    g.weights = w.weights;
    g.delta = w.delta;
    auto state = scheduler_->Submit(std::move(g), absl::InfiniteFuture(), false).value();
    while (!state->Wait(absl::Seconds(1), nullptr)) {
    }
    return static_cast<int64_t>(state->output().tokens.size());
  }

 private:
  InProcess() = default;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<PackRuntime> runtime_;
  std::unique_ptr<PackStore> store_;
  std::unique_ptr<PackCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
};

int64_t GrpcGenerate(v1::Inference::Stub* stub, const std::string& prompt, const std::string& pack, int new_tokens) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_sampling()->set_max_new_tokens(new_tokens);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_ignore_eos(true);
  if (!pack.empty()) {
    r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    r.mutable_skills()->add_packs()->set_name(pack);
  } else {
    r.mutable_skills()->set_mode(v1::Skills::NONE);
  }
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  grpc::Status s = stub->Generate(&ctx, r, &resp);
  if (!s.ok()) {
    std::fprintf(stderr, "Generate failed: %s\n", s.error_message().c_str());
    std::exit(1);
  }
  return resp.token_ids_size();
}

void Run(const std::string& cmd) {
  if (std::system((cmd + " > /dev/null 2>&1").c_str()) != 0) {
    std::fprintf(stderr, "failed: %s\n", cmd.c_str());
    std::exit(1);
  }
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {});
  if (!args.ok()) {
    std::fprintf(stderr, "%s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  Options o;
  o.packs = static_cast<int>(*args->IntOr("packs", o.packs));
  o.clients = static_cast<int>(*args->IntOr("clients", o.clients));
  o.requests = static_cast<int>(*args->IntOr("requests", o.requests));
  o.new_tokens = static_cast<int>(*args->IntOr("new-tokens", o.new_tokens));
  o.layers = *args->IntOr("layers", o.layers);
  o.hidden = *args->IntOr("hidden", o.hidden);
  o.serving_mode = args->StringOr("serving-mode", o.serving_mode);
  o.threads = static_cast<int>(*args->IntOr("threads", o.threads));
  o.rounds = static_cast<int>(*args->IntOr("rounds", o.rounds));
  const std::string out_dir = args->StringOr("out", "bench/results");
  if (Status s = args->CheckAllUsed(); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (o.packs < 0 || o.packs > 64 || o.clients < 1 || o.requests < 1 || o.new_tokens < 1 || o.rounds < 1 ||
      !ParseServingMode(o.serving_mode).ok()) {
    std::fprintf(stderr,
                 "bad option: --packs in [0, 64], --clients/--requests/--new-tokens/--rounds >= 1, --serving-mode\n");
    return 2;
  }
  SetIntraOpThreads(o.threads);

  const std::string dir = (fs::temp_directory_path() / ("skillpack-server-bench-" + std::to_string(::getpid())));
  fs::remove_all(dir);
  TinyModelOptions mo;
  mo.layers = o.layers;
  mo.hidden = o.hidden;
  mo.heads = std::max<int64_t>(1, o.hidden / 64);
  mo.kv_heads = std::max<int64_t>(1, mo.heads / 2);
  mo.seed = 1;
  if (Status s = InitTinyModel(mo, JoinPath(dir, "base")); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  const std::string cli = std::string(SKILLPACK_BINARY_DIR) + "/cli/skillpack";
  const std::string packs_dir = JoinPath(dir, "packs");
  fs::create_directories(packs_dir);
  for (int p = 0; p < o.packs; ++p) {
    mo.seed = static_cast<uint64_t>(100 + p);
    const std::string tuned = JoinPath(dir, "tuned");
    if (!InitTinyModel(mo, tuned).ok()) return 1;
    Run(absl::StrCat(cli, " pack create --base ", JoinPath(dir, "base"), " --tuned ", tuned, " --name p", p, " -o ",
                     JoinPath(packs_dir, absl::StrCat("p", p, ".skillpack"))));
  }
  std::fprintf(stderr, "tiny world: %lld layers, hidden %lld, %d packs in %s\n", static_cast<long long>(o.layers),
               static_cast<long long>(o.hidden), o.packs, dir.c_str());

  Json result;
  result["benchmark"] = "server_bench";
  result["timestamp"] = UtcTimestamp();
  result["machine"] = MachineInfo();
  result["options"] = {
      {"packs", o.packs},   {"clients", o.clients}, {"requests", o.requests},         {"new_tokens", o.new_tokens},
      {"layers", o.layers}, {"hidden", o.hidden},   {"serving_mode", o.serving_mode}, {"rounds", o.rounds}};

  auto in_process = InProcess::Start(JoinPath(dir, "base"), packs_dir, o);
  ServerOptions so;
  so.model_dir = JoinPath(dir, "base");
  so.packs_dir = packs_dir;
  so.grpc_address = "127.0.0.1";
  so.grpc_port = 0;
  so.metrics_port = -1;
  so.serving_mode = o.serving_mode;
  so.threads = o.threads;
  auto server = SkillpackServer::Start(so);
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()), grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);

  std::vector<int> pack_sets = {0};
  if (o.packs > 0) pack_sets.push_back(o.packs);
  for (int packs : pack_sets) {
    auto local = [&](int i) { return in_process->Generate(PromptOf(i), PackOf(i, packs), o.new_tokens); };
    auto remote = [&](int i) { return GrpcGenerate(stub.get(), PromptOf(i), PackOf(i, packs), o.new_tokens); };
    // Warm-up: every pack decoded on both sides; not timed.
    ClosedLoop(o.clients, std::max(packs, o.clients), local);
    ClosedLoop(o.clients, std::max(packs, o.clients), remote);
    Json run;
    run["pack_sets"] = packs;
    double sum_local = 0, sum_remote = 0;
    std::vector<double> ratios;
    for (int round = 0; round < o.rounds; ++round) {
      // In process first in even rounds, gRPC first in odd ones.
      double l = 0, r = 0;
      if (round % 2 == 0) {
        l = ClosedLoop(o.clients, o.requests, local);
        r = ClosedLoop(o.clients, o.requests, remote);
      } else {
        r = ClosedLoop(o.clients, o.requests, remote);
        l = ClosedLoop(o.clients, o.requests, local);
      }
      run["in_process_tokens_per_s"].push_back(l);
      run["grpc_tokens_per_s"].push_back(r);
      sum_local += l;
      sum_remote += r;
      ratios.push_back(r / l);
      std::fprintf(stderr, "[%d pack sets] round %d: in process %.1f tok/s, gRPC %.1f tok/s (%.3fx)\n", packs, round, l,
                   r, r / l);
    }
    run["grpc_vs_in_process_rounds"] = ratios;
    run["grpc_vs_in_process"] = Median(ratios);
    run["grpc_vs_in_process_of_sums"] = sum_remote / sum_local;
    std::fprintf(stderr, "[%d pack sets] gRPC / in process: median %.3f over %d rounds, of the sums %.3f\n", packs,
                 Median(ratios), o.rounds, sum_remote / sum_local);
    result["runs"].push_back(run);
  }
  (*server)->Shutdown(absl::Seconds(5));
  fs::remove_all(dir);
  return WriteBenchResult(result, "server", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ApplyServerProcessSettings(argv);  // as the server runs (server/server.h)
  return skillpack::Main(argc, argv);
}
