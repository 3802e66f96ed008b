// Small statistics the benchmarks report: their figures are medians over
// repeated, interleaved rounds, since this kind of shared VM moves ±40%
// between runs.
#ifndef SKILLPACK_BENCH_STATS_H_
#define SKILLPACK_BENCH_STATS_H_

#include <vector>

namespace skillpack {

// The median (the mean of the two middle values for an even count); 0 for none.
double Median(std::vector<double> v);

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_STATS_H_
