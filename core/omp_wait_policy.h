// OpenMP's wait policy for our binaries. libgomp (libtorch's OpenMP runtime)
// reads OMP_WAIT_POLICY once, when it loads, and by default keeps its worker
// threads spinning between parallel regions. On a machine whose cores are
// shared (OpenBLAS's own pool runs prefill and training GEMMs beside it, and
// a server runs many small parallel regions per step) the spinning threads
// take the cores the work needs: measured 1.6 s vs 66 ms per step of the tiny
// SFT job on a busy 2-core machine, and 1.5-1.6x the serving throughput of the
// 1.1B-shaped engine under the passive policy (bench/README.md, "Int8 factors").
#ifndef SKILLPACK_CORE_OMP_WAIT_POLICY_H_
#define SKILLPACK_CORE_OMP_WAIT_POLICY_H_

namespace skillpack {

// Unless the environment already sets OMP_WAIT_POLICY (the caller's choice
// wins), sets it to PASSIVE and re-executes this program (/proc/self/exe) with
// the same argv, so that libgomp loads with it: same process id, same open
// files. Returns only when no re-execution happened (already set, or the exec
// failed: the program then carries on with the default policy). Call first
// thing in main(), before any thread starts.
void ReexecWithPassiveOmpWaitUnlessSet(char** argv);

// The same for the server, which also sets OPENBLAS_THREAD_TIMEOUT (unless
// set) to kServerOpenBlasThreadTimeout: OpenBLAS's pthread pool, which runs
// prefill's GEMMs, reads it when it loads, and by default its workers spin in
// sched_yield for 2^28 cycles (~0.1 s) after each GEMM, so with requests
// arriving every few steps one worker never sleeps. On 2 cores that worker had
// 48% of a server_bench run's CPU samples, two thirds of them in sched_yield,
// taken from the gRPC threads; at 2^4 cycles it sleeps right after its GEMM and
// a prefill wakes it (bench/README.md, "The gRPC server against in-process
// generation"). Re-executes once if it set either variable.
inline constexpr char kServerOpenBlasThreadTimeout[] = "4";
void ReexecWithPassiveServerWaitsUnlessSet(char** argv);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_OMP_WAIT_POLICY_H_
