// SIGTERM and SIGINT for the long-running binaries (skillpack-server,
// skillpack-trainer serve): taken by main, never by a handler on one of our
// threads, and never by their default, terminating action.
//
// InstallStopSignals blocks both in the calling thread, so every thread
// started afterwards (gRPC's, the engine's, the workers') inherits the mask,
// and WaitForStopSignal reads them from a signalfd. (Under ThreadSanitizer a
// handler runs only once its thread next enters the runtime, so a signal
// taken by a thread asleep on a futex, or by main inside read(), which the
// kernel then restarts, was held for as long as the process was idle.)
// Threads that exist before main, such as OpenBLAS's pool, keep their own
// mask, so the kernel may hand them a signal: for them a handler writes the
// signal number to a pipe, which WaitForStopSignal watches too. A signal
// that arrives during start-up waits for WaitForStopSignal; a second one
// during shutdown is harmless.
#ifndef SKILLPACK_CORE_STOP_SIGNALS_H_
#define SKILLPACK_CORE_STOP_SIGNALS_H_

#include "core/status.h"

namespace skillpack {

// Call in main before any thread of ours starts; once per process.
Status InstallStopSignals();

// Waits for the first SIGTERM or SIGINT since InstallStopSignals (at once if
// one came meanwhile); returns its number. Needs InstallStopSignals.
int WaitForStopSignal();

}  // namespace skillpack

#endif  // SKILLPACK_CORE_STOP_SIGNALS_H_
