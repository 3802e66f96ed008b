#include "server/call_workers.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace skillpack {
namespace {

TEST(CallWorkersTest, RunsEachFunctionOnAThreadOfItsOwn) {
  absl::Notification release;
  std::atomic<int> started{0};
  std::vector<std::thread::id> ids(3);
  {
    CallWorkers workers(3);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(workers.TryRun([&, i] {
        ids[i] = std::this_thread::get_id();
        ++started;
        release.WaitForNotification();  // all three block at once
      }));
    }
    while (started < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(workers.running(), 3);
    release.Notify();
  }
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], std::this_thread::get_id());
}

TEST(CallWorkersTest, RefusesBeyondTheLimitAndAcceptsAgainOnceOneEnds) {
  // Declared before the workers, whose destructor waits for the functions:
  // the second one may still be inside release_second.WaitForNotification()
  // (re-locking its Mutex) when the test body ends (make tsan found the
  // Notification destroyed under it when it was declared after).
  absl::Notification release_first, release_second, third;
  bool ran = false;
  CallWorkers workers(2);
  ASSERT_TRUE(workers.TryRun([&] { release_first.WaitForNotification(); }));
  ASSERT_TRUE(workers.TryRun([&] { release_second.WaitForNotification(); }));
  EXPECT_FALSE(workers.TryRun([&] { ran = true; }));
  release_first.Notify();
  while (workers.running() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(workers.TryRun([&] { third.Notify(); }));
  third.WaitForNotification();
  release_second.Notify();
  EXPECT_FALSE(ran);
}

// What the function holds is released before the destructor returns: a
// call object captured by the function may use the service that owns the
// workers until then.
TEST(CallWorkersTest, DestructorWaitsForFunctionsAndWhatTheyHold) {
  auto held = std::make_shared<int>(7);
  std::weak_ptr<int> watch = held;
  std::atomic<bool> finished{false};
  {
    CallWorkers workers(1);
    ASSERT_TRUE(workers.TryRun([held = std::move(held), &finished] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      finished = true;
    }));
  }
  EXPECT_TRUE(finished);
  EXPECT_TRUE(watch.expired());
}

TEST(CallWorkersTest, ALimitBelowOneMeansOne) {
  absl::Notification done;  // outlives the workers, as above
  CallWorkers workers(0);
  EXPECT_EQ(workers.max_running(), 1);
  EXPECT_TRUE(workers.TryRun([&] { done.Notify(); }));
  done.WaitForNotification();
}

}  // namespace
}  // namespace skillpack
