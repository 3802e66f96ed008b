// Test helpers that read another process's /proc status: its thread count
// and how it takes SIGTERM and SIGINT (core/stop_signals.h).
#ifndef SKILLPACK_TESTS_E2E_PROC_STATUS_H_
#define SKILLPACK_TESTS_E2E_PROC_STATUS_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace skillpack {
namespace testing_util {

// The value after `key` ("Threads:", "SigBlk:") in a /proc status file, or
// nullopt when the file or the field is missing.
inline std::optional<std::string> ProcStatusField(const std::filesystem::path& status, const std::string& key) {
  std::ifstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
  }
  return std::nullopt;
}

// The bits of SIGTERM and SIGINT in a /proc signal mask.
inline uint64_t StopSignalBits() { return (uint64_t{1} << (SIGTERM - 1)) | (uint64_t{1} << (SIGINT - 1)); }

// Whether the mask `key` ("SigBlk:", "SigCgt:") of /proc status file `status`
// has both SIGTERM and SIGINT; nullopt when it cannot be read.
inline std::optional<bool> HasStopSignals(const std::filesystem::path& status, const std::string& key) {
  const std::optional<std::string> mask = ProcStatusField(status, key);
  if (!mask) return std::nullopt;
  return (std::stoull(*mask, nullptr, 16) & StopSignalBits()) == StopSignalBits();
}

// The number of threads of process `pid` (/proc/PID/status), -1 if unknown.
inline int ThreadCount(pid_t pid) {
  const auto v = ProcStatusField("/proc/" + std::to_string(pid) + "/status", "Threads:");
  return v ? std::stoi(*v) : -1;
}

// Whether process `pid` has a handler for both SIGTERM and SIGINT (SigCgt),
// so that neither can take its default, terminating action on any thread.
inline bool CatchesStopSignals(pid_t pid) {
  return HasStopSignals("/proc/" + std::to_string(pid) + "/status", "SigCgt:").value_or(false);
}

// Each thread of process `pid`: its name (/proc/PID/task/TID/comm) and
// whether it blocks SIGTERM and SIGINT both (SigBlk), by thread id. A thread
// that exits while this reads is left out (not a failure of the mask).
inline std::map<pid_t, std::pair<std::string, bool>> ThreadSignalMasks(pid_t pid) {
  std::map<pid_t, std::pair<std::string, bool>> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const pid_t tid = static_cast<pid_t>(std::stoi(e.path().filename().string()));
    std::ifstream comm_file(e.path() / "comm");
    std::string comm;
    const std::optional<bool> blocks = HasStopSignals(e.path() / "status", "SigBlk:");
    if (!std::getline(comm_file, comm) || !blocks) continue;
    out[tid] = {comm, *blocks};
  }
  return out;
}

}  // namespace testing_util
}  // namespace skillpack

#endif  // SKILLPACK_TESTS_E2E_PROC_STATUS_H_
