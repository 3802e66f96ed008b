// Every GoogleTest executable links this file: it gives the process a
// directory of its own for ::testing::TempDir().
//
// ctest runs each test case of a binary as its own process, two or more at
// a time, so a fixed name under TempDir() ("/tmp/router_tiny", a promtool
// input file) was shared by concurrent processes: one test read another's
// file half-written. TempDir() reads TEST_TMPDIR, so setting it here, before
// main, moves every such name into a fresh mkdtemp directory under the one
// the environment gave (or /tmp). The directory is removed when the process
// that made it exits normally; a forked child (a death test) leaves it alone.

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

namespace {

class ProcessTempDir {
 public:
  ProcessTempDir() : owner_(::getpid()) {
    const char* base = std::getenv("TEST_TMPDIR");
    if (base == nullptr || base[0] == '\0') base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && base[0] != '\0' ? base : "/tmp") + "/skillpack_test_XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror(("skillpack tests: cannot make a temporary directory " + templ).c_str());
      std::abort();
    }
    dir_ = templ;
    ::setenv("TEST_TMPDIR", dir_.c_str(), /*overwrite=*/1);
  }
  ~ProcessTempDir() {
    if (::getpid() != owner_) return;
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  ProcessTempDir(const ProcessTempDir&) = delete;
  ProcessTempDir& operator=(const ProcessTempDir&) = delete;

 private:
  pid_t owner_;
  std::string dir_;
};

const ProcessTempDir process_temp_dir;

}  // namespace
