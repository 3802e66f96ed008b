#include "core/malloc_policy.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include <gtest/gtest.h>

namespace skillpack {
namespace {

// An environment of the given variables only.
std::function<const char*(const char*)> EnvOf(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(MallocPolicyTest, TheCallersThresholdsStand) {
  EXPECT_FALSE(MallocThresholdsSetByEnvironment(EnvOf({})));
  EXPECT_FALSE(MallocThresholdsSetByEnvironment(EnvOf({{"OMP_WAIT_POLICY", "PASSIVE"}})));
  // Other tunables, malloc's included, leave the thresholds to us.
  EXPECT_FALSE(MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F"}})));
  EXPECT_FALSE(
      MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.perturb=0"}})));
  EXPECT_FALSE(MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", "glibc.malloc.mmap_threshold_x=1"}})));
  EXPECT_FALSE(MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", ""}})));

  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}) {
    EXPECT_TRUE(MallocThresholdsSetByEnvironment(EnvOf({{name, "1048576"}}))) << name;
  }
  for (const char* tunable : {"glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold", "glibc.malloc.top_pad",
                              "glibc.malloc.mmap_max"}) {
    const std::string alone = std::string(tunable) + "=1048576";
    EXPECT_TRUE(MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", alone}}))) << alone;
    const std::string among = "glibc.malloc.arena_max=2:" + alone + ":glibc.cpu.x86_rep_movsb_threshold=2048";
    EXPECT_TRUE(MallocThresholdsSetByEnvironment(EnvOf({{"GLIBC_TUNABLES", among}}))) << among;
  }
}

// After the call an 8 MiB block (a 1.1B prefill's activations are of this
// size) comes from the heap, not its own mapping, and freeing it keeps the
// pages: glibc's defaults map it (128 KiB threshold in a fresh process) and
// unmap it when freed, so the next step faults it in again.
TEST(MallocPolicyTest, AStepSizedBlockIsKeptForTheNextStep) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan's allocator replaces glibc's";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
  GTEST_SKIP() << "the sanitizer's allocator replaces glibc's";
#endif
#endif
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr ||
      (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr)) {
    GTEST_SKIP() << "the environment chooses malloc's settings";
  }
  EXPECT_FALSE(MallocThresholdsSetByUs());
  ASSERT_TRUE(SetMallocThresholdsUnlessSet());
  EXPECT_TRUE(MallocThresholdsSetByUs());

  constexpr size_t kBlock = size_t{8} << 20;
  const struct mallinfo2 before = mallinfo2();
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const struct mallinfo2 held = mallinfo2();
  EXPECT_EQ(held.hblks, before.hblks) << "the block got its own mapping";
  EXPECT_EQ(held.hblkhd, before.hblkhd);
  EXPECT_GE(held.uordblks, before.uordblks + kBlock);
  std::free(block);
  const struct mallinfo2 freed = mallinfo2();
  EXPECT_GE(freed.arena, held.arena) << "the heap gave the block's pages back";
  EXPECT_GE(freed.fordblks, kBlock);
}

}  // namespace
}  // namespace skillpack
