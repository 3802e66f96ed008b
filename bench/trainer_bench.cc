// Training throughput of the trainer (full-parameter SFT: forward, backward,
// AdamW) in tokens/s for tiny-world model shapes, in one process and in two
// processes data-parallel over c10d Gloo on this machine (each rank runs the
// per-rank batch, so two ranks process twice the tokens per step).
//
//   build/bench/trainer_bench [--shapes tiny,small,medium] [--steps N] [--batch B]
//                             [--seq-len L] [--threads N] [--no-dp] [--out bench/results]
//
// Writes bench/results/trainer_<timestamp>.json with the machine description.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/str_split.h"
#include "bench/machine_info.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/malloc_policy.h"
#include "core/model.h"
#include "core/omp_wait_policy.h"
#include "core/tiny_model.h"
#include "trainer/distributed.h"
#include "trainer/sft.h"
#include "trainer/train_loop.h"
#include "trainer/trainable.h"

namespace skillpack {
namespace {

StatusOr<TinyModelOptions> Shape(const std::string& name) {
  TinyModelOptions o;
  o.seed = 1;
  if (name == "tiny") {  // trainer/examples/sft-tiny.json
    o.layers = 2, o.hidden = 128, o.heads = 4, o.kv_heads = 2;
  } else if (name == "small") {  // `skillpack model init-tiny` defaults
    o.layers = 4, o.hidden = 256, o.heads = 8, o.kv_heads = 4;
  } else if (name == "medium") {
    o.layers = 8, o.hidden = 512, o.heads = 8, o.kv_heads = 4;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown shape '", name, "' (tiny, small, medium)"));
  }
  return o;
}

struct Settings {
  int64_t steps = 20;
  int64_t batch = 32;
  int64_t seq_len = 64;
};

// Random sequences of seq_len tokens whose second half is the "response".
std::vector<TokenizedSequence> Sequences(int64_t n, int64_t seq_len, int64_t vocab) {
  std::mt19937_64 rng(7);
  std::vector<TokenizedSequence> out(static_cast<size_t>(n));
  for (TokenizedSequence& s : out) {
    for (int64_t t = 0; t < seq_len; ++t) s.tokens.push_back(static_cast<int32_t>(rng() % 256));
    s.prompt_len = seq_len / 2;
  }
  (void)vocab;
  return out;
}

// Trains `shape` for settings.steps (+2 warm-up steps, not timed) on `comm`.
StatusOr<Json> Measure(const std::string& shape, const Settings& settings, Communicator* comm) {
  ASSIGN_OR_RETURN(TinyModelOptions o, Shape(shape));
  const std::string dir = absl::StrCat("/tmp/trainer_bench_", shape, "_", getpid());
  RETURN_IF_ERROR(InitTinyModel(o, dir));
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> model, LoadModel(dir, at::kFloat));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableWeights> tw, TrainableWeights::Create(model->weights, {}, 0));
  SftObjective objective(*model->transformer,
                         Sequences(settings.batch * 8, settings.seq_len, model->config.vocab_size));
  LoopConfig loop;
  loop.batch_size = settings.batch;
  loop.optim.lr = 1e-3;
  loop.steps = 2;
  ASSIGN_OR_RETURN(LoopResult warm, RunTrainingLoop(*tw, objective, loop, comm));
  loop.steps = settings.steps;
  ASSIGN_OR_RETURN(LoopResult r, RunTrainingLoop(*tw, objective, loop, comm));
  Json j;
  j["shape"] = shape;
  j["parameters"] = model->config.NumParameters();
  j["layers"] = o.layers;
  j["hidden"] = o.hidden;
  j["world_size"] = comm ? comm->world_size() : 1;
  j["threads_per_process"] = at::get_num_threads();
  if (std::optional<int> blas = BlasThreads()) j["blas_threads_per_process"] = *blas;
  j["batch_per_rank"] = settings.batch;
  j["seq_len"] = settings.seq_len;
  j["steps"] = settings.steps;
  j["seconds"] = r.seconds;
  j["seconds_per_step"] = r.seconds / settings.steps;
  j["tokens"] = r.tokens;
  j["tokens_per_s"] = r.tokens_per_second();
  return j;
}

// --dp-worker: one rank of the two-process measurement; writes its JSON to --result.
int Worker(const Args& args) {
  Settings s;
  DistributedConfig dc;
  dc.world_size = 2;
  dc.rank = static_cast<int>(*args.IntOr("rank", 0));
  dc.store_port = static_cast<int>(*args.IntOr("port", 0));
  s.steps = *args.IntOr("steps", 20);
  s.batch = *args.IntOr("batch", 32);
  s.seq_len = *args.IntOr("seq-len", 64);
  // As the trainer's ranks set theirs (trainer/job.cc): libtorch's and OpenBLAS's pools.
  SetIntraOpThreads(std::max<int64_t>(1, *args.IntOr("threads", 1)));
  auto comm = Communicator::Create(dc);
  if (!comm.ok()) {
    std::fprintf(stderr, "worker: %s\n", comm.status().ToString().c_str());
    return 1;
  }
  auto j = Measure(args.StringOr("shape", "tiny"), s, comm->get());
  if (!j.ok()) {
    std::fprintf(stderr, "worker: %s\n", j.status().ToString().c_str());
    return 1;
  }
  return WriteFileAtomically(args.StringOr("result", "/dev/null"), j->dump()).ok() ? 0 : 1;
}

int FreePort() {
  // Rank 0 binds the store; pick a port from a range unlikely to be in use.
  std::mt19937 rng(static_cast<uint32_t>(getpid()));
  return 20000 + static_cast<int>(rng() % 20000);
}

StatusOr<Json> MeasureTwoProcesses(const std::string& shape, const Settings& s, int threads_per_rank) {
  const int port = FreePort();
  std::vector<pid_t> pids;
  std::vector<std::string> results;
  for (int rank = 0; rank < 2; ++rank) {
    results.push_back(absl::StrCat("/tmp/trainer_bench_rank", rank, "_", getpid(), ".json"));
    std::vector<std::string> argv = {"/proc/self/exe", "--dp-worker",
                                     "--rank",         std::to_string(rank),
                                     "--port",         std::to_string(port),
                                     "--shape",        shape,
                                     "--steps",        std::to_string(s.steps),
                                     "--batch",        std::to_string(s.batch),
                                     "--seq-len",      std::to_string(s.seq_len),
                                     "--threads",      std::to_string(threads_per_rank),
                                     "--result",       results.back()};
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> cargv;
      for (std::string& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    ok = waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok;
  }
  if (!ok) return absl::InternalError("a data-parallel worker failed");
  ASSIGN_OR_RETURN(Json r0, ReadJsonFile(results[0]));
  for (const std::string& f : results) std::remove(f.c_str());
  return r0;  // tokens/s already counts both ranks' tokens
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {"dp-worker", "no-dp"});
  if (!args.ok()) {
    std::fprintf(stderr, "%s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  if (args->Bool("dp-worker")) return Worker(*args);
  Settings s;
  const std::string shapes = args->StringOr("shapes", "tiny,small,medium");
  s.steps = *args->IntOr("steps", 20);
  s.batch = *args->IntOr("batch", 32);
  s.seq_len = *args->IntOr("seq-len", 64);
  int64_t threads = *args->IntOr("threads", 0);
  const bool dp = !args->Bool("no-dp");
  const std::string out_dir = args->StringOr("out", "bench/results");
  if (Status st = args->CheckAllUsed(); !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 2;
  }
  threads = SetIntraOpThreads(threads);  // 0: this machine's physical cores (core/cpu_threads.h)
  Json result;
  result["benchmark"] = "trainer_bench";
  result["timestamp"] = UtcTimestamp();
  result["machine"] = MachineInfo();
  result["runs"] = Json::array();
  for (absl::string_view sv : absl::StrSplit(shapes, ',')) {
    const std::string shape(sv);
    auto one = Measure(shape, s, nullptr);
    if (!one.ok()) {
      std::fprintf(stderr, "%s\n", one.status().ToString().c_str());
      return 1;
    }
    std::fprintf(stderr, "[%s] 1 process x %lld threads: %.0f tokens/s (%.1f ms/step)\n", shape.c_str(),
                 static_cast<long long>(threads), (*one)["tokens_per_s"].get<double>(),
                 1e3 * (*one)["seconds_per_step"].get<double>());
    result["runs"].push_back(*one);
    if (dp) {
      const int per_rank = static_cast<int>(std::max<int64_t>(1, threads / 2));
      auto two = MeasureTwoProcesses(shape, s, per_rank);
      if (!two.ok()) {
        std::fprintf(stderr, "%s\n", two.status().ToString().c_str());
        return 1;
      }
      std::fprintf(stderr, "[%s] 2 processes (Gloo) x %d threads: %.0f tokens/s (%.1f ms/step)\n", shape.c_str(),
                   per_rank, (*two)["tokens_per_s"].get<double>(), 1e3 * (*two)["seconds_per_step"].get<double>());
      result["runs"].push_back(*two);
    }
  }
  return WriteBenchResult(result, "trainer", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // as skillpack-trainer does
  skillpack::SetMallocThresholdsUnlessSet();           // and this (core/malloc_policy.h)
  return skillpack::Main(argc, argv);
}
