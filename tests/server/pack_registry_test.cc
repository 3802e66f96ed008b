// PackRegistry: every lifecycle change (upload, overwrite, delete, unload)
// racing a request's first decode, in every serving mode, leaves nothing of a
// removed version servable; and servers sharing one pack directory see each
// other's changes through rescans, never a partial file, never another
// server's upload in progress removed.
#include "server/pack_registry.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "server/pack_cache.h"
#include "server/pack_store.h"
#include "tests/server/fake_pack_runtime.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// One "server": its own store index, cache and registry on a (maybe shared) directory.
struct Server {
  Server(const std::string& dir, const PackRuntime* runtime, ServingMode mode = ServingMode::kFactorized) {
    store = PackStore::Open(dir, runtime, 1000).value();
    PackCacheOptions o;
    o.host_budget_bytes = 1000;
    o.fused_budget_bytes = 1000;
    o.mode = mode;
    cache = std::make_unique<PackCache>(nullptr, store.get(), runtime, o, nullptr);
    registry = std::make_unique<PackRegistry>(store.get(), cache.get(), nullptr, nullptr);
  }

  Status Put(const std::string& name, int64_t bytes, bool overwrite = false) {
    const std::string data = absl::StrCat(name, " ", bytes);
    ASSIGN_OR_RETURN(auto up, store->BeginUpload(name, Sha256Hex(data), static_cast<int64_t>(data.size()), overwrite));
    RETURN_IF_ERROR(up->Append(data));
    return registry->Commit(up.get()).status();
  }
  StatusOr<ServingWeights> Serve(const std::string& name) { return cache->Get({{name, 1.0f, {}}}, nullptr); }
  // Decoded size of the version the cache holds (0 = none).
  int64_t CachedBytes(const std::string& name) const { return cache->StateOf(name).host_bytes; }
  int CacheEntries() const {
    int n = 0;
    for (const CacheTierStats& t : cache->Stats()) n += t.entries;
    return n;
  }

  std::unique_ptr<PackStore> store;
  std::unique_ptr<PackCache> cache;
  std::unique_ptr<PackRegistry> registry;  // declared last: destroyed first
};

std::vector<std::string> Describe(const std::vector<PackChange>& changes) {
  std::vector<std::string> out;
  for (const PackChange& c : changes) out.push_back(absl::StrCat(PackChangeKindName(c.kind), " ", c.name));
  return out;
}

class PackRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pack-registry-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override {
    runtime_.on_decode = nullptr;
    fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
  FakeRuntime runtime_;
};

TEST_F(PackRegistryTest, LifecycleChangesRacingAFirstDecodeNeverServeARemovedVersion) {
  // 100 rounds of delete / overwrite / unload while a request is decoding the
  // pack for the first time, in each serving mode, with the change reaching
  // the cache before or after the decode finishes (random delay). Once the
  // change returns: after a delete nothing of the pack is cached and requests
  // get NOT_FOUND; after an overwrite requests get the new version; after an
  // unload nothing is cached. The racing request itself gets a whole version
  // (OK) or NOT_FOUND, never anything else.
  std::mt19937 rng(7);
  const ServingMode modes[] = {ServingMode::kMerged, ServingMode::kFactorized, ServingMode::kAuto};
  for (int round = 0; round < 100; ++round) {
    const int op = round % 3;  // 0 delete, 1 overwrite, 2 unload
    const ServingMode mode = modes[(round / 3) % 3];
    SCOPED_TRACE(absl::StrCat("round ", round, " op ", op, " mode ", ServingModeName(mode)));
    Server s(dir_.string(), &runtime_, mode);
    ASSERT_TRUE(s.Put("a", 10, /*overwrite=*/true).ok());
    absl::Notification decoding, release;
    std::atomic<bool> first{true};
    runtime_.on_decode = [&] {
      if (!first.exchange(false)) return;
      decoding.Notify();
      release.WaitForNotification();
    };
    Status request_status;
    std::thread request([&] { request_status = s.Serve("a").status(); });
    decoding.WaitForNotification();
    Status change;
    std::thread admin([&] {
      if (op == 0) change = s.registry->Delete("a");
      if (op == 1) change = s.Put("a", 20, /*overwrite=*/true);
      if (op == 2) change = s.registry->Unload("a");
    });
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
    release.Notify();
    request.join();
    admin.join();
    ASSERT_TRUE(change.ok()) << change;
    EXPECT_TRUE(request_status.ok() || request_status.code() == absl::StatusCode::kNotFound) << request_status;
    if (op == 0) {
      EXPECT_EQ(s.CacheEntries(), 0);
      EXPECT_EQ(s.Serve("a").status().code(), absl::StatusCode::kNotFound);
      EXPECT_EQ(s.CacheEntries(), 0);
    } else if (op == 1) {
      EXPECT_TRUE(request_status.ok()) << request_status;
      EXPECT_NE(s.CachedBytes("a"), 10) << "the replaced version is still cached";
      ASSERT_TRUE(s.Serve("a").ok());
      EXPECT_EQ(s.CachedBytes("a"), 20);
    } else {
      EXPECT_EQ(s.CacheEntries(), 0);
      const int decodes = runtime_.decodes;
      ASSERT_TRUE(s.Serve("a").ok());
      EXPECT_EQ(runtime_.decodes, decodes + 1);
      EXPECT_EQ(s.CachedBytes("a"), 10);
    }
    runtime_.on_decode = nullptr;
    s.cache->WaitForMerges();
    (void)s.registry->Delete("a");
  }
}

TEST_F(PackRegistryTest, ServersSharingADirectorySeeEachOthersChangesOnRescan) {
  Server a(dir_.string(), &runtime_);
  Server b(dir_.string(), &runtime_);
  // Added on A: B knows it after one rescan and serves it.
  ASSERT_TRUE(a.Put("p", 10).ok());
  EXPECT_EQ(b.store->Get("p").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Describe(b.registry->Rescan()), ElementsAre("added p"));
  ASSERT_TRUE(b.Serve("p").ok());
  EXPECT_EQ(b.CachedBytes("p"), 10);
  EXPECT_EQ(b.store->Get("p")->sha256, a.store->Get("p")->sha256);
  // Replaced on A: B drops its cached version and serves the new one.
  ASSERT_TRUE(a.Put("p", 20, /*overwrite=*/true).ok());
  EXPECT_THAT(Describe(b.registry->Rescan()), ElementsAre("replaced p"));
  EXPECT_EQ(b.CacheEntries(), 0);
  ASSERT_TRUE(b.Serve("p").ok());
  EXPECT_EQ(b.CachedBytes("p"), 20);
  EXPECT_EQ(b.store->Get("p")->sha256, a.store->Get("p")->sha256);
  // A's own changes are not news to A.
  EXPECT_THAT(a.registry->Rescan(), IsEmpty());
  // A name A stored that B has not seen yet is still taken for B: no silent overwrite.
  ASSERT_TRUE(a.Put("q", 5).ok());
  EXPECT_EQ(b.Put("q", 6).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileToString(Path("q.skillpack")).value(), "q 5");
  // Deleted on A: B stops serving it.
  ASSERT_TRUE(a.registry->Delete("p").ok());
  EXPECT_THAT(Describe(b.registry->Rescan()), UnorderedElementsAre("removed p", "added q"));
  EXPECT_EQ(b.Serve("p").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b.CacheEntries(), 0);
  EXPECT_THAT(b.registry->Rescan(), IsEmpty());
  // Deleted through B while A serves it from its cache: A drops it on its rescan.
  ASSERT_TRUE(a.Serve("q").ok());
  ASSERT_TRUE(b.registry->Delete("q").ok());
  EXPECT_EQ(b.registry->Delete("q").code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Describe(a.registry->Rescan()), ElementsAre("removed q"));
  EXPECT_EQ(a.CacheEntries(), 0);
  // A pack B has not indexed yet can be deleted through B.
  ASSERT_TRUE(a.Put("r", 5).ok());
  EXPECT_TRUE(b.registry->Delete("r").ok());
  EXPECT_FALSE(fs::exists(Path("r.skillpack")));
  EXPECT_THAT(Describe(a.registry->Rescan()), ElementsAre("removed r"));
}

TEST_F(PackRegistryTest, RescanIndexesAFileOnlyOnceItIsWholeAndValid) {
  Server s(dir_.string(), &runtime_);
  // A partly written file (copied in by hand, not renamed into place) is not a pack yet.
  ASSERT_TRUE(WriteFileAtomically(Path("p.skillpack"), "p").ok());
  EXPECT_THAT(s.registry->Rescan(), IsEmpty());
  EXPECT_THAT(s.registry->Rescan(), IsEmpty());
  EXPECT_EQ(s.store->Get("p").status().code(), absl::StatusCode::kNotFound);
  // Once whole, it is.
  ASSERT_TRUE(WriteFileAtomically(Path("p.skillpack"), "p 7").ok());
  EXPECT_THAT(Describe(s.registry->Rescan()), ElementsAre("added p"));
  ASSERT_TRUE(s.Serve("p").ok());
  EXPECT_EQ(s.CachedBytes("p"), 7);
  // A file whose manifest names another pack is never indexed.
  ASSERT_TRUE(WriteFileAtomically(Path("q.skillpack"), "other 3").ok());
  EXPECT_THAT(s.registry->Rescan(), IsEmpty());
  // A pack replaced by something that no longer validates is dropped.
  ASSERT_TRUE(WriteFileAtomically(Path("p.skillpack"), "garbage").ok());
  EXPECT_THAT(Describe(s.registry->Rescan()), ElementsAre("removed p"));
  EXPECT_EQ(s.Serve("p").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.CacheEntries(), 0);
}

TEST_F(PackRegistryTest, OnlyUploadLeftoversNoProcessHoldsAreRemoved) {
  Server a(dir_.string(), &runtime_);
  // An upload in progress on A, idle for a minute.
  const std::string data = "u 4";
  auto up = a.store->BeginUpload("u", Sha256Hex(data), static_cast<int64_t>(data.size()), false).value();
  ASSERT_TRUE(up->Append(data).ok());
  std::vector<std::string> parts;
  for (const auto& e : fs::directory_iterator(dir_ / ".incoming")) parts.push_back(e.path().string());
  ASSERT_EQ(parts.size(), 1u);
  const time_t old = ::time(nullptr) - 60;
  const utimbuf times{old, old};
  ASSERT_EQ(::utime(parts[0].c_str(), &times), 0);
  // Leftovers of a writer that died: one old, one that may still be starting.
  const std::string orphan = Path(".incoming/upload-dead.part");
  const std::string young = Path(".incoming/upload-young.part");
  ASSERT_TRUE(WriteFileAtomically(orphan, "x").ok());
  ASSERT_TRUE(WriteFileAtomically(young, "x").ok());
  ASSERT_EQ(::utime(orphan.c_str(), &times), 0);
  // Another server starting on the directory, and rescanning it.
  Server b(dir_.string(), &runtime_);
  b.registry->Rescan();
  EXPECT_TRUE(fs::exists(parts[0])) << "removed an upload another server is writing";
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(young));
  // A's upload completes normally, and B sees the pack.
  ASSERT_TRUE(a.registry->Commit(up.get()).ok());
  EXPECT_THAT(Describe(b.registry->Rescan()), ElementsAre("added u"));
}

TEST_F(PackRegistryTest, BackgroundRescansPickUpChangesWithinTheInterval) {
  Server a(dir_.string(), &runtime_);
  Server b(dir_.string(), &runtime_);
  b.registry->StartRescans(absl::Milliseconds(10));
  ASSERT_TRUE(a.Put("p", 10).ok());
  auto wait_for = [&](auto pred) {
    for (int i = 0; i < 500 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return pred();
  };
  EXPECT_TRUE(wait_for([&] { return b.store->Get("p").ok(); }));
  ASSERT_TRUE(b.Serve("p").ok());
  ASSERT_TRUE(a.registry->Delete("p").ok());
  EXPECT_TRUE(wait_for([&] { return b.Serve("p").status().code() == absl::StatusCode::kNotFound; }));
  EXPECT_EQ(b.CacheEntries(), 0);
}

}  // namespace
}  // namespace skillpack
