// Data-parallel training through the real binary: two processes over c10d
// Gloo (127.0.0.1, an ephemeral port) end at the same weights as one process
// running the doubled batch, for full-tuning SFT and LoRA DPO.
#include <cstdio>
#include <filesystem>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/json_util.h"
#include "core/model.h"
#include "tests/trainer/trainer_binary.h"
#include "trainer/distributed.h"

namespace skillpack {
namespace {

std::string WriteJob(const std::string& dir, int64_t batch) {
  Json j = Json::parse(R"({
    "name": "dp", "seed": 5, "threads": 1,
    "base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "seed": 4}},
    "task": {"name": "sort", "held_out": 8, "train_examples": 512},
    "stages": {
      "sft": {"steps": 6, "lr": 3e-3, "warmup_steps": 1, "max_seq_len": 32},
      "dpo": {"steps": 4, "lr": 1e-3, "eval_pairs": 8, "max_seq_len": 32, "lora": {"rank": 2, "alpha": 4}}
    }
  })");
  j["stages"]["sft"]["batch_size"] = batch;
  j["stages"]["dpo"]["batch_size"] = batch;
  const std::string path = JoinPath(dir, "job_b" + std::to_string(batch) + ".json");
  EXPECT_TRUE(WriteFileAtomically(path, j.dump()).ok());
  return path;
}

TEST(DistributedTest, TwoRanksMatchOneProcessWithTheDoubledBatch) {
  const std::string root = ::testing::TempDir() + "/distributed_test";
  std::filesystem::remove_all(root);
  ASSERT_TRUE(MakeDirectories(root).ok());
  const std::string single = root + "/single", dp = root + "/dp";
  ASSERT_EQ(testing_util::RunTrainer({"run", WriteJob(root, 16), "--out", single, "--no-progress"}, single + ".log"), 0)
      << "see " << single << ".log";

  const int port = testing_util::FreePort();
  ASSERT_GT(port, 0);
  const std::string job8 = WriteJob(root, 8);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(
        testing_util::StartTrainer({"run", job8, "--out", dp, "--no-progress", "--rank", std::to_string(rank),
                                    "--world-size", "2", "--store-port", std::to_string(port), "--timeout", "60"},
                                   root + "/rank" + std::to_string(rank) + ".log"));
  }
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(testing_util::WaitExit(pids[rank]), 0) << "see " << root << "/rank" << rank << ".log";
  }

  auto a = LoadModel(single + "/model", at::kFloat);
  auto b = LoadModel(dp + "/model", at::kFloat);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto base = LoadModel(single + "/base", at::kFloat);
  double max_diff = 0, max_moved = 0;
  for (const auto& [name, t] : (*a)->weights->tensors()) {
    max_diff = std::max(max_diff, (t - *(*b)->weights->Find(name)).abs().max().item<double>());
    max_moved = std::max(max_moved, (t - *(*base)->weights->Find(name)).abs().max().item<double>());
  }
  std::printf("max |single - two ranks| = %g, max |tuned - base| = %g\n", max_diff, max_moved);
  EXPECT_GT(max_moved, 1e-3);  // training did something
  EXPECT_LT(max_diff, 5e-5);   // and the same thing, up to summation order
  auto ra = ReadJsonFile(single + "/report.json");
  auto rb = ReadJsonFile(dp + "/report.json");
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ((*rb)["world_size"], 2);
  EXPECT_NEAR((*ra)["stages"]["sft"]["last"]["metrics"]["loss"].get<double>(),
              (*rb)["stages"]["sft"]["last"]["metrics"]["loss"].get<double>(), 1e-5);
  EXPECT_NEAR((*ra)["stages"]["dpo"]["last"]["metrics"]["reward_margin"].get<double>(),
              (*rb)["stages"]["dpo"]["last"]["metrics"]["reward_margin"].get<double>(), 1e-5);
  std::filesystem::remove_all(root);
}

TEST(DistributedTest, ConfigErrorsAndAMissingPeerAreReported) {
  DistributedConfig c;
  c.world_size = 2;
  c.rank = 2;
  EXPECT_NE(ValidateDistributedConfig(c).message().find("rank"), std::string::npos);
  c.rank = 0;
  c.backend = "nccl";
  EXPECT_NE(ValidateDistributedConfig(c).message().find("backend"), std::string::npos);
  c.backend = "gloo";
  c.store_port = 70000;
  EXPECT_NE(ValidateDistributedConfig(c).message().find("store_port"), std::string::npos);
  // Rank 1 of 2 with nobody hosting the store gives up after the timeout.
  c.store_port = testing_util::FreePort();
  c.rank = 1;
  c.timeout_seconds = 1;
  auto comm = Communicator::Create(c);
  EXPECT_FALSE(comm.ok());
}

}  // namespace
}  // namespace skillpack
