// Compression speed at Llama-3-8B MLP shapes: one 14336x4096 (up_proj) and one
// 4096x14336 (down_proj) delta, each a decaying-spectrum low-rank part plus
// noise, compressed by CompressModule with round-to-nearest and (up_proj) with
// GPTQ on a calibration Hessian. Reports seconds, chosen rank, bytes and the
// relative Frobenius error of the decoded delta. Writes
// bench/results/pack_<timestamp>.json.
//
// usage: pack_bench [--threads N] [--out DIR]
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "bench/machine_info.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/malloc_policy.h"
#include "core/omp_wait_policy.h"
#include "pack/compressor.h"
#include "pack/decode.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

at::Tensor SyntheticDelta(int64_t m, int64_t n, int64_t rank) {
  at::manual_seed(1);
  at::Tensor u = at::randn({m, rank}), v = at::randn({n, rank});
  at::Tensor s = at::exp(-at::arange(rank, at::kFloat) / 16.0);
  at::Tensor low = at::matmul(u * s, v.t()) / std::sqrt(static_cast<double>(n));
  return low + 1e-3 * at::randn({m, n});
}

Json Run(const std::string& name, const at::Tensor& delta, const at::Tensor* hessian) {
  CompressionConfig cfg;
  auto t0 = Clock::now();
  auto c = CompressModule(name, delta, cfg, hessian);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!c.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(c.status().message()).c_str());
    std::exit(1);
  }
  at::Tensor decoded = *DecodeModuleDelta(c->delta);
  double err = ((decoded - delta).norm() / delta.norm()).item<double>();
  int64_t bytes = EstimateModuleBytes(c->delta);
  Json r = {{"module", name},     {"shape", delta.sizes().vec()},          {"calibration", hessian ? "gptq" : "rtn"},
            {"seconds", seconds}, {"op", ModuleOpName(c->delta.op)},       {"rank", c->delta.rank()},
            {"bytes", bytes},     {"fp16_delta_bytes", delta.numel() * 2}, {"relative_error", err}};
  std::fprintf(stderr, "%-40s %-5s %7.2f s  %s rank %lld  %.2f MB (%.1fx smaller than fp16)  rel err %.4f\n",
               name.c_str(), hessian ? "gptq" : "rtn", seconds, ModuleOpName(c->delta.op),
               static_cast<long long>(c->delta.rank()), bytes / 1e6, delta.numel() * 2.0 / bytes, err);
  return r;
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {});
  if (!args.ok()) return 2;
  int64_t threads = *args->IntOr("threads", 0);
  std::string out_dir = args->StringOr("out", "bench/results");
  if (!args->CheckAllUsed().ok()) return 2;
  SetIntraOpThreads(threads);
  Json result = {{"benchmark", "pack_bench"}, {"timestamp", UtcTimestamp()}, {"machine", MachineInfo()}};
  at::Tensor up = SyntheticDelta(14336, 4096, 256);
  at::Tensor down = SyntheticDelta(4096, 14336, 256);
  // Calibration inputs with correlated channels, 2048 tokens.
  at::Tensor x = at::matmul(at::randn({2048, 512}), at::randn({512, 4096})) + 0.1 * at::randn({2048, 4096});
  at::Tensor h = 2 * at::matmul(x.t(), x) / x.size(0);
  result["runs"].push_back(Run("model.layers.0.mlp.up_proj.weight", up, nullptr));
  result["runs"].push_back(Run("model.layers.0.mlp.up_proj.weight", up, &h));
  result["runs"].push_back(Run("model.layers.0.mlp.down_proj.weight", down, nullptr));
  return WriteBenchResult(result, "pack", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // core/omp_wait_policy.h
  skillpack::SetMallocThresholdsUnlessSet();           // as the CLI does (core/malloc_policy.h)
  return skillpack::Main(argc, argv);
}
