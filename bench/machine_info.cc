#include "bench/machine_info.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include "core/file_util.h"
#include "core/malloc_policy.h"
#include "core/small_gemm.h"

namespace skillpack {

Json MachineInfo() {
  Json j;
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  // The first processor's name, family and model: VMs named "AMD EPYC" have
  // been Zen 4 (family 25) and Zen 5 (family 26), whose AVX-512 differ.
  while (std::getline(cpu, line) && !line.empty()) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon + 2 > line.size()) continue;
    const std::string value = line.substr(colon + 2);
    if (line.rfind("model name", 0) == 0) j["cpu"] = value;
    if (line.rfind("cpu family", 0) == 0) j["cpu_family"] = value;
    if (line.rfind("model\t", 0) == 0) j["cpu_model"] = value;
  }
  // The small-batch kernel and its walk this CPU gets (core/small_gemm.h).
  j["small_gemm_isa"] = SmallGemmIsaName(SmallGemmBestIsa());
  j["small_gemm_walk"] = SmallGemmWalkName(SmallGemmBestWalk());
  j["logical_cores"] = std::thread::hardware_concurrency();
  j["torch_threads"] = at::get_num_threads();
  // An environment variable's value, "" when unset.
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "");
  };
  // libgomp's wait policy changes throughput severalfold on a small machine
  // (bench/README.md, "Int8 factors"); the benchmarks set PASSIVE unless given one.
  j["omp_wait_policy"] = env("OMP_WAIT_POLICY");
  // And OpenBLAS's spinning after a GEMM (server_bench sets it as the server does; "" = OpenBLAS's default).
  j["openblas_thread_timeout"] = env("OPENBLAS_THREAD_TIMEOUT");
  // glibc's malloc thresholds move step times (core/malloc_policy.h): ours, or
  // glibc's defaults / the environment's (GLIBC_TUNABLES).
  j["malloc_thresholds"] = MallocThresholdsSetByUs()
                               ? std::to_string(kMallocMmapThreshold >> 20) + " MiB mmap / " +
                                     std::to_string(kMallocTrimThreshold >> 20) + " MiB trim (ours)"
                               : "glibc's or the environment's";
  j["glibc_tunables"] = env("GLIBC_TUNABLES");
  j["memory_bytes"] = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  struct utsname u;
  if (uname(&u) == 0) j["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  j["gpu"] = "none";
  // Other load skews timings: recorded so that a busy machine shows.
  std::ifstream load("/proc/loadavg");
  double l1 = 0;
  if (load >> l1) j["loadavg_1min_at_start"] = l1;
  return j;
}

std::string UtcTimestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

double MemcpyBandwidth(size_t bytes, int reps) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // A copy reads and writes `bytes` each.
    best = std::max(best, 2.0 * bytes / s);
    std::swap(a, b);
  }
  return best;
}

int WriteBenchResult(const Json& result, const std::string& name, const std::string& out_dir) {
  const std::string path = JoinPath(out_dir, name + "_" + result["timestamp"].get<std::string>() + ".json");
  if (!MakeDirectories(out_dir).ok() || !WriteFileAtomically(path, result.dump(2)).ok()) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return 1;
  }
  std::printf("%s\n", path.c_str());
  return 0;
}

}  // namespace skillpack
