#include "core/cpu_threads.h"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"

namespace skillpack {
namespace {

// The quota in CPUs, from cgroup v2 or v1; nullopt when unlimited or unreadable.
std::optional<double> CgroupCpuQuota() {
  if (auto v2 = ReadFileToString("/sys/fs/cgroup/cpu.max"); v2.ok()) return ParseCgroupCpuMax(*v2);
  auto quota = ReadFileToString("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  auto period = ReadFileToString("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (!quota.ok() || !period.ok()) return std::nullopt;
  return ParseCgroupCpuMax(absl::StrCat(absl::StripAsciiWhitespace(*quota), " ", *period));
}

}  // namespace

std::optional<double> ParseCgroupCpuMax(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  double quota = 0, period = 0;
  if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &quota) || !absl::SimpleAtod(parts[1], &period) || quota <= 0 ||
      period <= 0) {
    return std::nullopt;  // "max ...", v1's "-1 ..." and anything unreadable: no quota
  }
  return quota / period;
}

int CpuCoresAvailable() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int cores = 0;
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
    std::set<std::string> siblings;  // one entry per physical core
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &mask)) continue;
      ++cpus;
      auto list = ReadFileToString(absl::StrCat("/sys/devices/system/cpu/cpu", cpu, "/topology/thread_siblings_list"));
      siblings.insert(list.ok() ? std::string(absl::StripAsciiWhitespace(*list)) : absl::StrCat("cpu", cpu));
    }
    cores = std::min<int>(cpus, static_cast<int>(siblings.size()));
  }
  if (std::optional<double> quota = CgroupCpuQuota()) {
    cores = std::min(cores, static_cast<int>(std::ceil(*quota)));
  }
  return std::max(cores, 1);
}

int SetIntraOpThreads(int64_t threads) {
  const int n = threads > 0 ? static_cast<int>(std::min<int64_t>(threads, 1 << 16)) : CpuCoresAvailable();
  at::set_num_threads(n);
  // Looked up rather than linked: libtorch may run another BLAS.
  using SetBlas = void (*)(int);
  if (auto set_blas = reinterpret_cast<SetBlas>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(n);
  return n;
}

std::optional<int> BlasThreads() {
  using GetBlas = int (*)();
  auto get_blas = reinterpret_cast<GetBlas>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get_blas == nullptr) return std::nullopt;
  return get_blas();
}

}  // namespace skillpack
