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

}  // namespace skillpack

#endif  // SKILLPACK_CORE_OMP_WAIT_POLICY_H_
