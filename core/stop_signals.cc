#include "core/stop_signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

int g_signal_fd = -1;
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  // Nothing to do on failure: the pipe only fills if shutdown is stuck.
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &b, 1);
}

}  // namespace

Status InstallStopSignals() {
  if (g_signal_fd >= 0) return absl::FailedPreconditionError("stop signals: already installed");
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (const int rc = pthread_sigmask(SIG_BLOCK, &signals, nullptr); rc != 0) {
    return absl::InternalError(absl::StrCat("stop signals: pthread_sigmask: ", std::strerror(rc)));
  }
  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("stop signals: pipe: ", std::strerror(errno)));
  }
  const int fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return absl::InternalError(absl::StrCat("stop signals: signalfd: ", std::strerror(errno)));
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &sa, nullptr) != 0 || sigaction(SIGINT, &sa, nullptr) != 0) {
    return absl::InternalError(absl::StrCat("stop signals: sigaction: ", std::strerror(errno)));
  }
  g_signal_fd = fd;
  return absl::OkStatus();
}

int WaitForStopSignal() {
  pollfd fds[2] = {{g_signal_fd, POLLIN, 0}, {g_signal_pipe[0], POLLIN, 0}};
  while (true) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("stop signals: poll");
      return SIGTERM;  // cannot wait: stop, as for a signal
    }
    // Both are non-blocking: a signal the signalfd showed may meanwhile have
    // been taken by the handler on an older thread (then the pipe has it).
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      if (::read(g_signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        return static_cast<int>(info.ssi_signo);
      }
    }
    if (fds[1].revents & POLLIN) {
      unsigned char b = 0;
      if (::read(g_signal_pipe[0], &b, 1) == 1) return b;
    }
  }
}

}  // namespace skillpack
