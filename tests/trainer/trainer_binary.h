// Test helpers that start the real skillpack-trainer binary.
#ifndef SKILLPACK_TESTS_TRAINER_TRAINER_BINARY_H_
#define SKILLPACK_TESTS_TRAINER_TRAINER_BINARY_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace skillpack {
namespace testing_util {

inline std::string TrainerBinary() { return std::string(SKILLPACK_BINARY_DIR) + "/trainer/skillpack-trainer"; }

// Starts the trainer with `args`; stdout/stderr go to `log_path`. Returns the pid.
inline pid_t StartTrainer(const std::vector<std::string>& args, const std::string& log_path) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* log = std::fopen(log_path.c_str(), "w");
    if (log != nullptr) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    std::vector<std::string> all = {TrainerBinary()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid`; its exit status (-1 if it did not exit normally).
inline int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

inline int RunTrainer(const std::vector<std::string>& args, const std::string& log_path) {
  return WaitExit(StartTrainer(args, log_path));
}

// A TCP port that was free a moment ago (bound to port 0, then released).
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace testing_util
}  // namespace skillpack

#endif  // SKILLPACK_TESTS_TRAINER_TRAINER_BINARY_H_
