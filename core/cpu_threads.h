// How many threads libtorch's intra-op pool (and the small-batch kernel split
// across it, core/model.cc) runs. libtorch's own default is half the logical
// CPUs on x86, on the guess that every core has two hyperthreads: one thread on
// a 2-core machine without SMT, which left the server computing on one core of
// two. Here the default is the physical cores this process may run on.
#ifndef SKILLPACK_CORE_CPU_THREADS_H_
#define SKILLPACK_CORE_CPU_THREADS_H_

#include <cstdint>
#include <optional>
#include <string>

namespace skillpack {

// The physical cores (SMT siblings counted once, from sysfs topology) among the
// CPUs in this process's affinity mask, capped by a cgroup CPU quota (a
// container's --cpus), at least 1.
int CpuCoresAvailable();

// Sets libtorch's intra-op threads to `threads` when it is > 0, else to
// CpuCoresAvailable(), and OpenBLAS's threads to the same where libtorch's BLAS
// is OpenBLAS (Debian's libblas.so.3; the prefill GEMMs run on it): its pool is
// sized when it loads, from the CPUs it sees (a cgroup quota not counted), and
// at::set_num_threads does not reach it, so `--threads 1` still computed
// prefill on every core. Returns the number set.
int SetIntraOpThreads(int64_t threads);

// OpenBLAS's thread count where this process runs OpenBLAS, else nullopt.
std::optional<int> BlasThreads();

// A cgroup CPU quota in CPUs from cgroup v2's cpu.max ("max 100000" means none,
// "150000 100000" 1.5 CPUs); nullopt when there is none or the text is not one.
std::optional<double> ParseCgroupCpuMax(const std::string& text);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_CPU_THREADS_H_
