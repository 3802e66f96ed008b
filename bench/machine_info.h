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
// Writes `result` to out_dir/<name>_<result["timestamp"]>.json and prints the
// path; returns main()'s exit code (1 with a message when it cannot write).
int WriteBenchResult(const Json& result, const std::string& name, const std::string& out_dir);

}  // namespace skillpack

#endif  // SKILLPACK_BENCH_MACHINE_INFO_H_
