// Checks tests/tools/process_temp_dir.cc: TempDir() is a fresh directory of
// this process, not a name every concurrent test process shares.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ProcessTempDirTest, TempDirIsAFreshDirectoryOfThisProcess) {
  const std::string dir = ::testing::TempDir();
  const std::filesystem::path path(dir);
  EXPECT_THAT(path.parent_path().filename().string(), StartsWith("skillpack_test_")) << dir;
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "mkdtemp makes it private";
  ASSERT_NE(std::getenv("TEST_TMPDIR"), nullptr);
  EXPECT_THAT(dir, HasSubstr(std::getenv("TEST_TMPDIR")));
}

TEST(ProcessTempDirTest, AChildProcessOfTheSameBinaryRemovesItsDirectoryAtExit) {
  // The child runs this binary's listing only; its directory is a new one
  // inside ours (it inherits TEST_TMPDIR) and is gone when it exits.
  const std::string ours = ::testing::TempDir();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/proc/self/exe", "process_temp_dir_test", "--gtest_list_tests", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  int children = 0;
  for (const auto& entry : std::filesystem::directory_iterator(ours)) {
    if (entry.path().filename().string().rfind("skillpack_test_", 0) == 0) ++children;
  }
  EXPECT_EQ(children, 0) << "the child's directory under " << ours << " was not removed";
}

}  // namespace
