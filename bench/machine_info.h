// Describes the machine a benchmark ran on (CPU model, cores, memory, kernel),
// for the raw results committed under bench/results/.
#ifndef SKILLPACK_BENCH_MACHINE_INFO_H_
#define SKILLPACK_BENCH_MACHINE_INFO_H_

#include <string>

#include "core/json_util.h"

namespace skillpack {

Json MachineInfo();
// "YYYY-MM-DDTHH:MM:SSZ" now, UTC.
std::string UtcTimestamp();
// Measured memcpy bandwidth in bytes/s over a buffer of `bytes` (best of `reps`).
double MemcpyBandwidth(size_t bytes, int reps);

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_MACHINE_INFO_H_
