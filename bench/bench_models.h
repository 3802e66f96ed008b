// Model shapes the benchmarks share: a tiny Llama (~3M parameters) and
// TinyLlama-1.1B's shapes, with random weights (no download needed).
#ifndef SKILLPACK_BENCH_BENCH_MODELS_H_
#define SKILLPACK_BENCH_BENCH_MODELS_H_

#include <memory>
#include <string>

#include "core/model_config.h"
#include "core/weights.h"

namespace skillpack {

// "tiny" or "1.1b" (anything else is 1.1b).
ModelConfig BenchShape(const std::string& name);
// N(0, 0.02) weights, norms 1, seeded: the same bytes every run.
std::shared_ptr<const ModelWeights> RandomBenchWeights(const ModelConfig& c);
// Resident set size of this process, bytes.
int64_t ResidentBytes();

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_BENCH_MODELS_H_
