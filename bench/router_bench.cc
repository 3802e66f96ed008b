// Router latency as a fraction of time to first token, for the tiny model and
// TinyLlama-1.1B shapes (random weights). Routing = the base model's first
// `layer` decoder layers over the prompt (mean-pooled) + the MLP + policy;
// TTFT = routing + the full prefill of the prompt (what a routed request pays
// before its first token, with the fused weight set already cached).
// Writes bench/results/router_<timestamp>.json.
//
// usage: router_bench [--shapes tiny,1.1b] [--prompt-lens 32,128,512] [--layers 0,1,2]
//                     [--reps N] [--threads N] [--out DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_models.h"
#include "bench/machine_info.h"
#include "bench/stats.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/model.h"
#include "core/omp_wait_policy.h"
#include "router/router.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int64_t> IntList(const std::string& s) {
  std::vector<int64_t> out;
  for (absl::string_view p : absl::StrSplit(s, ',')) {
    int64_t v;
    if (absl::SimpleAtoi(p, &v)) out.push_back(v);
  }
  return out;
}

// Median of `reps` timings of f().
template <typename F>
double MedianSeconds(int reps, F f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(Seconds(t0));
  }
  return Median(std::move(t));
}

Json RunShape(const std::string& name, const std::vector<int64_t>& lens, const std::vector<int64_t>& layers, int reps) {
  ModelConfig c = BenchShape(name);
  at::manual_seed(0);
  std::map<std::string, at::Tensor> t;
  for (const TensorSpec& s : ExpectedTensors(c)) {
    t[s.name] = s.name.find("norm") != std::string::npos ? at::ones(s.shape) : at::randn(s.shape) * 0.02;
  }
  auto w = *ModelWeights::Create(c, std::move(t));
  Transformer m(c);
  Json out;
  for (int64_t len : lens) {
    std::vector<int32_t> prompt(len);
    for (int64_t i = 0; i < len; ++i) prompt[i] = static_cast<int32_t>((i * 37 + 11) % c.vocab_size);
    auto cache = *KvCache::Create(c, 1, len + 1, at::kFloat);
    int32_t slot = *cache->Acquire();
    (void)m.Step(*w, *cache, {{slot, prompt}});  // warm-up
    double prefill = MedianSeconds(reps, [&] {
      cache->set_length(slot, 0);
      (void)*m.Step(*w, *cache, {{slot, prompt}});
    });
    for (int64_t layer : layers) {
      RouterConfig rc;
      rc.labels = {"none", "a", "b", "c", "d"};
      rc.layer = layer;
      rc.hidden_size = c.hidden_size;
      rc.width = 128;
      auto router =
          *Router::Create(rc, at::zeros({c.hidden_size}), at::ones({c.hidden_size}), at::randn({128, c.hidden_size}),
                          at::zeros({128}), at::randn({5, 128}), at::zeros({5}));
      RoutingPolicy policy;
      (void)router->Route(m, *w, prompt, policy);  // warm-up
      double route = MedianSeconds(reps, [&] { (void)*router->Route(m, *w, prompt, policy); });
      Json r = {{"prompt_len", len},
                {"layer", layer},
                {"route_seconds", route},
                {"prefill_seconds", prefill},
                {"ttft_seconds", route + prefill},
                {"route_fraction_of_ttft", route / (route + prefill)}};
      std::fprintf(stderr, "[%s] prompt %lld, layer %lld: route %.3f ms, prefill %.3f ms -> %.2f%% of TTFT\n",
                   name.c_str(), static_cast<long long>(len), static_cast<long long>(layer), route * 1e3, prefill * 1e3,
                   100 * route / (route + prefill));
      out["runs"].push_back(r);
    }
  }
  out["num_layers"] = c.num_hidden_layers;
  return out;
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {});
  if (!args.ok()) return 2;
  std::string shapes = args->StringOr("shapes", "tiny,1.1b");
  std::vector<int64_t> lens = IntList(args->StringOr("prompt-lens", "32,128,512"));
  std::vector<int64_t> layers = IntList(args->StringOr("layers", "0,1,2"));
  int reps = static_cast<int>(*args->IntOr("reps", 5));
  int64_t threads = *args->IntOr("threads", 0);
  std::string out_dir = args->StringOr("out", "bench/results");
  if (!args->CheckAllUsed().ok()) return 2;
  SetIntraOpThreads(threads);
  Json result = {{"benchmark", "router_bench"}, {"timestamp", UtcTimestamp()}, {"machine", MachineInfo()}};
  for (absl::string_view s : absl::StrSplit(shapes, ',')) {
    result["shapes"][std::string(s)] = RunShape(std::string(s), lens, layers, reps);
  }
  return WriteBenchResult(result, "router", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // core/omp_wait_policy.h
  return skillpack::Main(argc, argv);
}
