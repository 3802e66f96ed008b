// Model shapes the benchmarks share: a tiny Llama (~3M parameters) and
// TinyLlama-1.1B's shapes, with random weights (no download needed).
#ifndef SKILLPACK_BENCH_BENCH_MODELS_H_
#define SKILLPACK_BENCH_BENCH_MODELS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include <ATen/core/Tensor.h>

#include "core/model_config.h"
#include "core/weights.h"

namespace skillpack {

// "tiny" or "1.1b" (anything else is 1.1b).
ModelConfig BenchShape(const std::string& name);
// N(0, 0.02) weights, norms 1, seeded: the same bytes every run.
std::shared_ptr<const ModelWeights> RandomBenchWeights(const ModelConfig& c);
// The low-rank factors of a synthetic pack, the shape a compressed pack
// decodes to: for every 2-D weight of a decoder layer (attention and MLP),
// us [out, rank] then vt [rank, in], N(0, 0.01) float32, drawn in that order
// from a generator seeded with `seed`: the same values every run.
std::map<std::string, std::pair<at::Tensor, at::Tensor>> SyntheticFactors(const ModelWeights& base, int64_t rank,
                                                                          uint64_t seed);
// The synthetic packs' rank per shape: 16 for "tiny", 32 for TinyLlama-1.1B's.
int64_t SyntheticPackRank(const std::string& shape);
// Resident set size of this process, bytes.
int64_t ResidentBytes();

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_BENCH_MODELS_H_
