// THE key trainer test: trainer/examples/sft-tiny.json, run by the real
// binary, takes a random tiny model from < 10% to >= 90% held-out exact match
// by SFT alone, well within 3 minutes on a shared 2-core CPU.
#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>

#include "core/json_util.h"
#include "tests/trainer/trainer_binary.h"

namespace skillpack {
namespace {

TEST(SftTinyTest, ExampleJobReachesNinetyPercentHeldOutExactMatch) {
  const std::string out = ::testing::TempDir() + "/sft_tiny_test_out";
  std::filesystem::remove_all(out);
  const auto start = std::chrono::steady_clock::now();
  const int rc = testing_util::RunTrainer({"run", std::string(SKILLPACK_SOURCE_DIR) + "/trainer/examples/sft-tiny.json",
                                           "--out", out, "--no-resume", "--no-progress"},
                                          out + ".log");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(rc, 0) << "see " << out << ".log";
  auto report = ReadJsonFile(out + "/report.json");
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& r = *report;
  const double before = r["eval"]["before"]["accuracy"].get<double>();
  const double after = r["eval"]["after"]["accuracy"].get<double>();
  std::printf("held-out exact match %.3f -> %.3f; sft %.1fs, total %.1fs (wall %.1fs); loss %.3f -> %.3f\n", before,
              after, r["timings"]["sft_seconds"].get<double>(), r["timings"]["total_seconds"].get<double>(), seconds,
              r["stages"]["sft"]["first"]["metrics"]["loss"].get<double>(),
              r["stages"]["sft"]["last"]["metrics"]["loss"].get<double>());
  EXPECT_LT(before, 0.10);
  EXPECT_GE(after, 0.90);
  EXPECT_EQ(r["eval"]["after"]["total"], 200);
  // The 3-minute goal is a speed goal: the time is printed above and kept in
  // report.json's timings, not asserted (a loaded CI machine must not fail a
  // correct run). Measured on the 2-core CI machine: 20-70 s.
  EXPECT_TRUE(std::filesystem::exists(out + "/model/model.safetensors"));
  std::filesystem::remove_all(out);
  std::filesystem::remove(out + ".log");
}

}  // namespace
}  // namespace skillpack
