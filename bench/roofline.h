// This machine's ceilings, measured in the benchmark's own run: the rate of
// fused multiply-adds with every operand in registers, and the rate of
// reading memory, each on `threads` threads at once. A kernel's time is
// bounded below by max(bytes / read rate, flops / FMA rate) (the roofline);
// model_bench sets every decode step against that bound.
#ifndef SKILLPACK_BENCH_ROOFLINE_H_
#define SKILLPACK_BENCH_ROOFLINE_H_

#include <cstddef>
#include <string>

namespace skillpack {

struct FmaPeak {
  std::string isa;         // "avx512", "avx2" or "scalar": the widest this CPU runs
  double flops_per_s = 0;  // 2 per lane per FMA
};
// Best of `reps` runs of ~0.2 s: `threads` threads, each with independent
// FMA chains enough to fill the pipelines (no memory operands).
FmaPeak MeasureFmaPeak(int threads, int reps);

// Bytes per second read by `threads` threads, each summing its own slice of
// one `bytes` buffer (every byte loaded once), best of `reps`.
double MeasureReadBandwidth(size_t bytes, int threads, int reps);

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_ROOFLINE_H_
