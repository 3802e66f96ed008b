// Two real skillpack-server processes on one pack directory (replicas on a
// shared volume): a pack uploaded, replaced or deleted through either one is
// served the same way by the other within a few rescan intervals.
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/sha256.h"
#include "core/tiny_model.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class SharedStoreE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("skillpack-shared-store-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(InitTinyModel(TinyOptions(2, 64, 1), Path("base")).ok());
    // Two versions of pack "p": deltas towards two different tuned models.
    for (int v : {1, 2}) {
      const std::string n = std::to_string(v);
      MakeTinyPack(Path("base"), TinyOptions(2, 64, v + 1), Path("tuned" + n), "p", Path("p-v" + n + ".skillpack"));
    }
    ASSERT_TRUE(WriteFileAtomically(Path("token"), std::string(kToken) + "\n").ok());
    for (int i = 0; i < 2; ++i) {
      servers_[i].Start({"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token"),
                         "--pack-rescan-seconds", "0.2"},
                        Path("server" + std::to_string(i) + ".log"));
    }
  }
  void TearDown() override {
    for (ServerProcess& s : servers_) s.Stop();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Greedy tokens with pack "p" (or none), or the call's status code.
  static grpc::Status Generate(const ServerProcess& s, bool with_pack, std::vector<int32_t>* ids) {
    v1::GenerateRequest r = Request("Shared store", Greedy(16));
    r.mutable_sampling()->set_ignore_eos(true);
    if (with_pack) {
      r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
      r.mutable_skills()->add_packs()->set_name("p");
    }
    auto stub = v1::Inference::NewStub(s.channel());
    grpc::ClientContext ctx;
    v1::GenerateResponse resp;
    grpc::Status st = stub->Generate(&ctx, r, &resp);
    if (ids) *ids = Ids(resp.token_ids());
    return st;
  }
  // The sha256 server `s` reports for pack "p" ("" when it has none).
  static std::string PackSha(const ServerProcess& s) {
    auto stub = v1::Admin::NewStub(s.channel());
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::GetPackRequest req;
    req.set_name("p");
    v1::GetPackResponse resp;
    return stub->GetPack(&ctx, req, &resp).ok() ? resp.pack().sha256() : "";
  }
  // Polls `done` for up to 20 s (times TimeoutScale()); returns the seconds
  // it took (-1: never).
  static double SecondsUntil(const std::function<bool()>& done) {
    const auto t0 = Clock::now();
    while (Clock::now() - t0 < Scaled(std::chrono::seconds(20))) {
      if (done()) return std::chrono::duration<double>(Clock::now() - t0).count();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  fs::path dir_;
  ServerProcess servers_[2];
};

TEST_F(SharedStoreE2eTest, UploadReplaceAndDeleteThroughOneReplicaReachTheOther) {
  ServerProcess& a = servers_[0];
  ServerProcess& b = servers_[1];
  const std::string sha1 = Sha256Hex(ReadFileToString(Path("p-v1.skillpack")).value());
  const std::string sha2 = Sha256Hex(ReadFileToString(Path("p-v2.skillpack")).value());
  std::vector<int32_t> base, on_a, on_b;
  ASSERT_TRUE(Generate(a, false, &base).ok());

  // Uploaded through A: B serves it, with the same outputs.
  ASSERT_TRUE(Upload(a.channel(), Path("p-v1.skillpack")).ok());
  const double added = SecondsUntil([&] { return PackSha(b) == sha1; });
  ASSERT_GE(added, 0) << "B never saw the pack uploaded through A";
  ASSERT_TRUE(Generate(a, true, &on_a).ok());
  ASSERT_TRUE(Generate(b, true, &on_b).ok());
  EXPECT_EQ(on_b, on_a);
  EXPECT_NE(on_a, base);
  const std::vector<int32_t> v1_tokens = on_a;

  // Replaced through A while B has v1 decoded: B serves v2.
  ASSERT_TRUE(Upload(a.channel(), Path("p-v2.skillpack"), "", nullptr, /*overwrite=*/true).ok());
  const double replaced = SecondsUntil([&] { return PackSha(b) == sha2; });
  ASSERT_GE(replaced, 0) << "B never saw the replacement";
  ASSERT_TRUE(Generate(a, true, &on_a).ok());
  ASSERT_TRUE(Generate(b, true, &on_b).ok());
  EXPECT_EQ(on_b, on_a);
  EXPECT_NE(on_b, v1_tokens) << "B still serves the replaced version";

  // Uploading the name again without overwrite, through B: refused.
  EXPECT_EQ(Upload(b.channel(), Path("p-v1.skillpack")).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  // Deleted through B: A stops serving it.
  ASSERT_TRUE(DeletePack(b.channel(), "p").ok());
  const double removed =
      SecondsUntil([&] { return Generate(a, true, nullptr).error_code() == grpc::StatusCode::NOT_FOUND; });
  ASSERT_GE(removed, 0) << "A still serves the deleted pack";
  EXPECT_EQ(PackSha(a), "");
  EXPECT_FALSE(fs::exists(Path("packs/p.skillpack")));
  std::printf("propagation with --pack-rescan-seconds 0.2: added %.2f s, replaced %.2f s, removed %.2f s\n", added,
              replaced, removed);
  RecordProperty("added_seconds", std::to_string(added));
  RecordProperty("replaced_seconds", std::to_string(replaced));
  RecordProperty("removed_seconds", std::to_string(removed));
}

}  // namespace
}  // namespace skillpack
