// glibc malloc's thresholds for our binaries (server, trainer, CLI). By
// default glibc serves a block of 128 KiB or more with its own mmap (raising
// that threshold only as such blocks are freed) and gives the free top of a
// heap back to the kernel once it passes twice the threshold. A decode or
// training step allocates and frees the same buffers every step (a GEMM's
// output, an MLP's products, activations and their gradients), so a step wrote
// to pages the kernel had just taken back and faulted them in again: 2.9-3.5 M
// page faults in a server_bench run (six rounds), most in sgemm_beta (a GEMM's
// first write to its output) and ATen's elementwise loops. With the thresholds
// below: 0.42 M, the gRPC server's tokens/s without packs 38% higher, a tiny
// SFT step 2.4-3x faster (bench/README.md, "Step buffers kept by malloc").
#ifndef SKILLPACK_CORE_MALLOC_POLICY_H_
#define SKILLPACK_CORE_MALLOC_POLICY_H_

#include <cstddef>
#include <functional>

namespace skillpack {

// Blocks below this come from malloc's heaps (reused step to step); larger
// ones (a 1.1B model's larger weights, fused weight sets) keep their own
// mapping, given back to the kernel when freed.
inline constexpr size_t kMallocMmapThreshold = size_t{32} << 20;
// A heap gives its free top back to the kernel only beyond this.
inline constexpr size_t kMallocTrimThreshold = size_t{64} << 20;

// Whether the environment `getenv` reads already sets one of the thresholds
// glibc lets a caller choose (GLIBC_TUNABLES naming glibc.malloc.mmap_threshold,
// trim_threshold, top_pad or mmap_max, or the MALLOC_*_ variables for them):
// then the caller's choice stands.
bool MallocThresholdsSetByEnvironment(const std::function<const char*(const char*)>& getenv);

// Unless the process environment sets them, sets malloc's mmap threshold to
// kMallocMmapThreshold and its trim threshold to kMallocTrimThreshold (which
// also stops glibc moving them). Returns whether it set them: false when the
// environment chose, or the C library is not glibc. Call early in main().
bool SetMallocThresholdsUnlessSet();

// Whether SetMallocThresholdsUnlessSet set them in this process (benchmarks
// record it beside the machine).
bool MallocThresholdsSetByUs();

}  // namespace skillpack

#endif  // SKILLPACK_CORE_MALLOC_POLICY_H_
