// PackStore + PackCache with a fake PackRuntime: upload validation and
// atomicity, LRU eviction per tier, pinning, unload and canonical selections.
#include "server/pack_cache.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "server/pack_store.h"
#include "tests/server/fake_pack_runtime.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

namespace fs = std::filesystem;

class PackCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pack-cache-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    store_ = PackStore::Open(dir_.string(), &runtime_, 1000).value();
  }
  void TearDown() override { fs::remove_all(dir_); }

  Status Put(const std::string& name, int64_t bytes, std::string sha = "") {
    const std::string data = name + " " + std::to_string(bytes);
    if (sha.empty()) sha = Sha256Hex(data);
    ASSIGN_OR_RETURN(auto up, store_->BeginUpload(name, sha, static_cast<int64_t>(data.size()), false));
    RETURN_IF_ERROR(up->Append(data));
    return up->Commit().status();
  }

  std::unique_ptr<PackCache> Cache(int64_t host, int64_t fused, ServingMode mode = ServingMode::kMerged,
                                   MergePolicyOptions merge = {}) {
    PackCacheOptions o;
    o.host_budget_bytes = host;
    o.fused_budget_bytes = fused;
    o.mode = mode;
    o.merge = merge;
    return std::make_unique<PackCache>(nullptr, store_.get(), &runtime_, o, nullptr);
  }

  int RegularFiles() {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) n += e.is_regular_file();
    return n;
  }

  fs::path dir_;
  FakeRuntime runtime_;
  std::unique_ptr<PackStore> store_;
};

TEST_F(PackCacheTest, UploadIsCheckedBeforeItBecomesVisible) {
  EXPECT_EQ(Put("a", 10, std::string(64, '0')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegularFiles(), 0);
  EXPECT_EQ(store_->BeginUpload("a", std::string(64, '0'), 5000, false).status().code(),
            absl::StatusCode::kInvalidArgument);  // over --max-pack-bytes
  EXPECT_EQ(store_->BeginUpload("Bad!", std::string(64, '0'), 5, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Put("a", 10).ok());
  EXPECT_EQ(Put("a", 10).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(RegularFiles(), 1);
  EXPECT_TRUE(fs::exists(dir_ / "a.skillpack"));
  // Reopening indexes what is there.
  auto again = PackStore::Open(dir_.string(), &runtime_, 1000).value();
  ASSERT_EQ(again->List().size(), 1u);
  EXPECT_EQ(again->List()[0].summary.name, "a");
  EXPECT_TRUE(store_->Delete("a").ok());
  EXPECT_EQ(store_->Delete("a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RegularFiles(), 0);
}

TEST_F(PackCacheTest, DeleteRacingAFirstDecodeLeavesNothingServable) {
  // DeletePack removes the file from the store, then unloads the cache. A
  // request already decoding that pack must not put it back afterwards: once
  // Unload returns, the pack is neither cached nor servable.
  // In every serving mode: a fused set (merged) or a delta (factorized, auto)
  // is what the request builds.
  for (int round = 0; round < 12; ++round) {
    const ServingMode mode =
        std::vector<ServingMode>{ServingMode::kMerged, ServingMode::kFactorized, ServingMode::kAuto}[round % 3];
    SCOPED_TRACE(absl::StrCat("round ", round, " mode ", ServingModeName(mode)));
    ASSERT_TRUE(Put("a", 10).ok());
    auto cache = Cache(1000, 1000, mode);
    absl::Notification decoding, release;
    runtime_.on_decode = [&] {
      decoding.Notify();
      release.WaitForNotification();
    };
    std::thread request([&] { EXPECT_TRUE(cache->Get({{"a", 1.0f, {}}}, nullptr).ok()); });
    decoding.WaitForNotification();
    ASSERT_TRUE(store_->Delete("a").ok());
    std::atomic<bool> unloaded{false};
    std::thread admin([&] {
      cache->Unload("a");
      unloaded = true;
    });
    // Give Unload time to run; it must wait for the build in flight.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(unloaded.load()) << "Unload returned while a build of the pack was in flight";
    release.Notify();
    request.join();
    admin.join();
    runtime_.on_decode = nullptr;
    EXPECT_FALSE(cache->StateOf("a").loaded);
    for (const CacheTierStats& t : cache->Stats()) EXPECT_EQ(t.entries, 0) << t.tier << " entry of the deleted pack";
    EXPECT_EQ(cache->Get({{"a", 1.0f, {}}}, nullptr).status().code(), absl::StatusCode::kNotFound);
  }
}

TEST_F(PackCacheTest, FusedSetsAreCachedByCanonicalSelection) {
  ASSERT_TRUE(Put("a", 10).ok());
  ASSERT_TRUE(Put("b", 20).ok());
  auto cache = Cache(1000, 1000);
  auto w1 = cache->GetWeights({{"a", 1.0f, {}}, {"b", 0.5f, {"mlp"}}}, nullptr).value();
  auto w2 = cache->GetWeights({{"b", 0.5f, {"mlp"}}, {"a", 1.0f, {}}}, nullptr).value();
  EXPECT_EQ(w1, w2);
  EXPECT_EQ(runtime_.composes, 1);
  auto w3 = cache->GetWeights({{"a", 1.0f, {}}, {"b", 0.25f, {"mlp"}}}, nullptr).value();
  EXPECT_NE(w1, w3);
  EXPECT_EQ(runtime_.decodes, 2);  // packs decoded once each
  EXPECT_EQ(cache->GetWeights({{"missing", 1.0f, {}}}, nullptr).status().code(), absl::StatusCode::kNotFound);
  auto stats = cache->Stats();
  EXPECT_EQ(stats[1].tier, "fused");
  EXPECT_EQ(stats[1].hits, 1);
  EXPECT_EQ(stats[1].misses, 2);  // a request naming an unknown pack is no miss
  EXPECT_EQ(stats[0].misses, 2);  // a and b decoded
}

TEST_F(PackCacheTest, LruEvictionRespectsBudgetsAndPins) {
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(Put(n, 40).ok());
  auto cache = Cache(/*host=*/100, /*fused=*/100);
  ASSERT_TRUE(cache->Load("a", /*pin=*/true, nullptr).ok());
  ASSERT_TRUE(cache->Load("b", false, nullptr).ok());
  ASSERT_TRUE(cache->Load("c", false, nullptr).ok());  // 120 > 100: b (LRU, unpinned) goes
  EXPECT_TRUE(cache->StateOf("a").loaded);
  EXPECT_TRUE(cache->StateOf("a").pinned);
  EXPECT_FALSE(cache->StateOf("b").loaded);
  EXPECT_TRUE(cache->StateOf("c").loaded);
  EXPECT_EQ(cache->Stats()[0].evictions, 1);
  // Pinning c too would put 80 bytes pinned: fine; a third pin would not fit.
  ASSERT_TRUE(cache->Load("c", true, nullptr).ok());
  EXPECT_EQ(cache->Load("b", true, nullptr).code(), absl::StatusCode::kResourceExhausted);
  // Fused tier: 40-byte sets, budget 100: the third evicts the first.
  ASSERT_TRUE(cache->GetWeights({{"a", 1.0f, {}}}, nullptr).ok());
  ASSERT_TRUE(cache->GetWeights({{"c", 1.0f, {}}}, nullptr).ok());
  ASSERT_TRUE(cache->GetWeights({{"a", 2.0f, {}}}, nullptr).ok());
  EXPECT_EQ(cache->Stats()[1].evictions, 1);
  EXPECT_EQ(cache->Stats()[1].entries, 2);
  // Unload drops the host entry and every fused set using the pack.
  EXPECT_TRUE(cache->Unload("a"));
  EXPECT_FALSE(cache->StateOf("a").loaded);
  EXPECT_EQ(cache->Stats()[1].entries, 1);  // only the c set is left
}

// Factorized mode: the base (here null) plus one delta per canonical
// selection, built from the host tier and dropped with any of its packs.
TEST_F(PackCacheTest, FactorizedModeServesDeltasOnTheBase) {
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(Put(n, 40).ok());
  auto cache = Cache(/*host=*/100, /*fused=*/1000, ServingMode::kFactorized);
  auto none = cache->Get({}, nullptr).value();
  EXPECT_EQ(none.weights, nullptr);
  EXPECT_EQ(none.delta, nullptr);
  auto ab = cache->Get({{"a", 1.0f, {}}, {"b", 0.5f, {"mlp"}}}, nullptr).value();
  EXPECT_EQ(ab.weights, nullptr);  // the base
  ASSERT_NE(ab.delta, nullptr);
  auto ba = cache->Get({{"b", 0.5f, {"mlp"}}, {"a", 1.0f, {}}}, nullptr).value();
  EXPECT_EQ(ab.delta, ba.delta);  // one delta per canonical selection
  EXPECT_EQ(runtime_.factorizes, 1);
  EXPECT_EQ(runtime_.composes, 0);  // nothing fused
  auto a2 = cache->Get({{"a", 2.0f, {}}}, nullptr).value();
  EXPECT_NE(a2.delta, ab.delta);
  EXPECT_EQ(cache->Get({{"missing", 1.0f, {}}}, nullptr).status().code(), absl::StatusCode::kNotFound);
  auto stats = cache->Stats();
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[2].tier, "factorized");
  EXPECT_EQ(stats[2].entries, 2);
  EXPECT_EQ(stats[2].hits, 1);
  EXPECT_EQ(stats[2].bytes, 0);
  // Decoding c (40 bytes over the 100-byte host budget) evicts b, the least
  // recently used pack, and with it the {a, b} delta that references b.
  ASSERT_TRUE(cache->Get({{"c", 1.0f, {}}}, nullptr).ok());
  EXPECT_FALSE(cache->StateOf("b").loaded);
  EXPECT_EQ(cache->Stats()[2].entries, 2);  // {a*2} and {c}
  auto ab_again = cache->Get({{"a", 1.0f, {}}, {"b", 0.5f, {"mlp"}}}, nullptr).value();
  EXPECT_NE(ab_again.delta, ab.delta);  // rebuilt
  // Unload drops every delta using the pack.
  EXPECT_TRUE(cache->Unload("a"));
  // {a*2} and {a, b} go with a; {c} went when decoding b again evicted c.
  EXPECT_EQ(cache->Stats()[2].entries, 0);
}

// A request for a warm pack set never waits for another set being built: in
// every mode, while a cold pack is being decoded (and the build lock held),
// the warm set is served from its tier.
TEST_F(PackCacheTest, AColdBuildNeverHoldsUpAWarmSet) {
  for (const char* n : {"a", "b"}) ASSERT_TRUE(Put(n, 10).ok());
  for (ServingMode mode : {ServingMode::kMerged, ServingMode::kFactorized, ServingMode::kAuto}) {
    SCOPED_TRACE(ServingModeName(mode));
    auto cache = Cache(1000, 1000, mode);
    ASSERT_TRUE(cache->Get({{"a", 1.0f, {}}}, nullptr).ok());  // warm
    absl::Notification decoding, release;
    runtime_.on_decode = [&] {
      decoding.Notify();
      release.WaitForNotification();
    };
    std::thread cold([&] { EXPECT_TRUE(cache->Get({{"b", 1.0f, {}}}, nullptr).ok()); });
    decoding.WaitForNotification();
    absl::Notification served;
    std::thread warm([&] {
      EXPECT_TRUE(cache->Get({{"a", 1.0f, {}}}, nullptr).ok());
      served.Notify();
    });
    EXPECT_TRUE(served.WaitForNotificationWithTimeout(absl::Seconds(10))) << "the warm set waited for the cold build";
    release.Notify();
    cold.join();
    warm.join();
    runtime_.on_decode = nullptr;
    cache->WaitForMerges();
  }
}

// Auto mode: factorized until a set holds merge_share of recent requests,
// then composed in the background and served merged; unmerged once others
// take over the traffic.
TEST_F(PackCacheTest, AutoModeMergesHotSetsAndUnmergesCoolOnes) {
  for (const char* n : {"a", "b"}) ASSERT_TRUE(Put(n, 10).ok());
  MergePolicyOptions m;
  m.merge_share = 0.8;
  m.unmerge_share = 0.4;
  m.window = 10;
  m.min_credit = 3;
  auto cache = Cache(1000, 1000, ServingMode::kAuto, m);
  const std::vector<PackSelection> a = {{"a", 1.0f, {}}}, b = {{"b", 1.0f, {}}};
  // Alternating a and b: neither reaches 80%, both stay factorized.
  for (int i = 0; i < 20; ++i) {
    auto w = cache->Get(i % 2 ? a : b, nullptr).value();
    EXPECT_NE(w.delta, nullptr);
  }
  cache->WaitForMerges();
  EXPECT_EQ(runtime_.composes, 0);
  // Only a from now on: once its share passes 0.8 it is merged in the background.
  int factorized_before_merge = 0;
  for (int i = 0; i < 30; ++i) {
    auto w = cache->Get(a, nullptr).value();
    if (w.delta != nullptr) {
      ++factorized_before_merge;
    } else {
      break;
    }
    cache->WaitForMerges();
  }
  EXPECT_EQ(factorized_before_merge, 8);  // share 0.811 at the 8th request (decay 0.9)
  EXPECT_EQ(runtime_.composes, 1);
  auto merged = cache->Get(a, nullptr).value();
  EXPECT_EQ(merged.delta, nullptr);
  EXPECT_NE(merged.weights, nullptr);  // the fused set, not the base
  // Traffic moves to b (share 0.768 after 12: not yet hot); a falls to 0.31,
  // under unmerge_share, and its fused copy is released.
  for (int i = 0; i < 12; ++i) EXPECT_NE(cache->Get(b, nullptr).value().delta, nullptr);
  cache->WaitForMerges();
  EXPECT_EQ(cache->Stats()[1].entries, 1);
  auto after = cache->Get(a, nullptr).value();
  EXPECT_NE(after.delta, nullptr);
  EXPECT_EQ(cache->Stats()[1].entries, 0);
}

TEST(MergePolicyTest, SharesDecayAndMergingHasHysteresis) {
  MergePolicyOptions o;
  o.merge_share = 0.75;
  o.unmerge_share = 0.5;
  o.window = 4;
  o.min_credit = 2;
  ASSERT_TRUE(ValidateMergePolicyOptions(o).ok());
  MergePolicy p(o);              // decay 0.75 per request
  EXPECT_FALSE(p.Observe("a"));  // share 1, credit 1 < min_credit
  EXPECT_FALSE(p.Observe("a"));  // credit 1.75
  EXPECT_TRUE(p.Observe("a"));   // credit 2.3125: merged
  EXPECT_FALSE(p.Observe("b"));  // share 0.366
  EXPECT_TRUE(p.Observe("a"));   // share 0.754
  EXPECT_FALSE(p.Observe("b"));
  EXPECT_FALSE(p.Observe("b"));
  EXPECT_FALSE(p.Observe("b"));  // share 0.730 < 0.75: not merged yet
  EXPECT_NEAR(p.Share("b"), 0.730, 1e-3);
  EXPECT_TRUE(p.merged("a"));    // a is only re-judged at its next request
  EXPECT_FALSE(p.Observe("a"));  // share 0.467 < unmerge_share
  EXPECT_FALSE(p.merged("a"));
  EXPECT_FALSE(p.Observe("b"));  // share 0.657
  EXPECT_FALSE(p.Observe("b"));  // share 0.746
  EXPECT_TRUE(p.Observe("b"));   // share 0.812
  p.Forget("b");
  EXPECT_FALSE(p.merged("b"));
  EXPECT_EQ(p.Share("b"), 0.0);
}

TEST(MergePolicyTest, RefusesBadOptions) {
  MergePolicyOptions o;
  o.merge_share = 1.5;
  EXPECT_THAT(ValidateMergePolicyOptions(o).message(), HasSubstr("merge_share"));
  o = {};
  o.unmerge_share = 0.95;
  EXPECT_THAT(ValidateMergePolicyOptions(o).message(), HasSubstr("unmerge_share"));
  o = {};
  o.window = 0.5;
  EXPECT_THAT(ValidateMergePolicyOptions(o).message(), HasSubstr("window"));
}

}  // namespace
}  // namespace skillpack
