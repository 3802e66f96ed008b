// Distillation end to end, against real skillpack-server processes on
// 127.0.0.1 (ephemeral ports):
//   source A : a tiny model the trainer's own SFT taught `reverse` (set up here)
//   source B : untrained, another shape (1 layer, hidden 32, vocab 300) and
//              another tokenizer (chatml family: no BOS, eos <|im_end|>)
//   server C : serves the target's base model; receives the published pack
// One `skillpack-trainer run` job: distill (A and B, verifier-scored) -> sft on
// the distilled set -> compress -> publish (upload + load) to C. Checks: the SFT
// set holds only verified answers, every DPO pair has a passing chosen and a
// failing rejected answer, the target's held-out accuracy rises, and C lists
// the pack, loaded.
#include <chrono>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/json_util.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "tests/e2e/server_harness.h"
#include "tests/trainer/trainer_binary.h"
#include "trainer/data.h"
#include "trainer/tasks/task.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

// Rewrites a tiny model folder's tokenizer config as the chatml family (no
// BOS; eos <|im_end|>) and its config / generation config to match.
void MakeChatml(const std::string& dir) {
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "tokenizer_config.json"),
                                  MakeByteLevelTokenizerConfigJson(ChatTemplateFamily::kChatml))
                  .ok());
  auto tok = Tokenizer::FromModelDir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_FALSE((*tok)->bos_id().has_value());
  ASSERT_FALSE((*tok)->eos_ids().empty());
  for (const char* file : {"config.json", "generation_config.json"}) {
    auto j = ReadJsonFile(JoinPath(dir, file));
    ASSERT_TRUE(j.ok()) << j.status();
    j->erase("bos_token_id");
    (*j)["eos_token_id"] = (*tok)->eos_ids();
    ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, file), j->dump(2)).ok());
  }
}

TEST(DistillE2eTest, DistillSftCompressPublishAgainstRealServers) {
  const auto start = std::chrono::steady_clock::now();
  const std::string dir = ::testing::TempDir() + "/distill_e2e_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto path = [&](const std::string& name) { return JoinPath(dir, name); };

  // Source A: the trainer's own SFT on `reverse` (~10 s).
  const std::string src_job = R"({"name": "source-a", "seed": 1, "threads": 1,
    "base_model": {"tiny": {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "seed": 5}},
    "task": {"name": "reverse", "held_out": 50, "train_examples": 5000},
    "stages": {"sft": {"steps": 250, "batch_size": 32, "lr": 3e-3, "warmup_steps": 20, "max_seq_len": 24}}})";
  ASSERT_TRUE(WriteFileAtomically(path("source-a.json"), src_job).ok());
  ASSERT_EQ(testing_util::RunTrainer({"run", path("source-a.json"), "--out", path("source-a"), "--no-progress"},
                                     path("source-a.log")),
            0)
      << ReadFileToString(path("source-a.log")).value_or("");

  // Source B: untrained, another shape and tokenizer family.
  TinyModelOptions b;
  b.layers = 1;
  b.hidden = 32;
  b.heads = 2;
  b.kv_heads = 1;
  b.vocab = 300;
  b.seed = 11;
  ASSERT_TRUE(InitTinyModel(b, path("source-b")).ok());
  MakeChatml(path("source-b"));

  // The target's base (a folder, so that server C serves the same weights).
  TinyModelOptions t;
  t.layers = 2;
  t.hidden = 64;
  t.heads = 4;
  t.kv_heads = 2;
  t.seed = 9;
  ASSERT_TRUE(InitTinyModel(t, path("target-base")).ok());
  ASSERT_TRUE(WriteFileAtomically(path("token"), "distill-e2e-token\n").ok());

  ServerProcess a, bsrv, c;
  a.Start({"--model", path("source-a/model"), "--packs", path("packs-a")}, path("server-a.log"));
  bsrv.Start({"--model", path("source-b"), "--packs", path("packs-b")}, path("server-b.log"));
  c.Start({"--model", path("target-base"), "--packs", path("packs-c"), "--admin-token-file", path("token")},
          path("server-c.log"));
  if (HasFatalFailure()) return;

  Json job = Json::parse(R"({"name": "distilled", "seed": 3, "threads": 1,
    "base_model": "target-base",
    "task": {"name": "reverse", "held_out": 100},
    "stages": {
      "distill": {"samples": 2, "prompts": 800, "temperature": [0, 1.0], "concurrency": 8},
      "sft": {"steps": 300, "batch_size": 32, "lr": 3e-3, "warmup_steps": 20, "max_seq_len": 24},
      "compress": {"name": "reverse-distilled", "description": "reverse, distilled", "config": {"alpha": 0.5}},
      "publish": {"admin_token_file": "token", "load": true}}})");
  job["stages"]["distill"]["sources"] = {a.address(), bsrv.address()};
  job["stages"]["publish"]["server"] = c.address();
  ASSERT_TRUE(WriteFileAtomically(path("job.json"), job.dump(2)).ok());
  ASSERT_EQ(testing_util::RunTrainer({"run", path("job.json"), "--out", path("out"), "--no-progress"}, path("job.log")),
            0)
      << ReadFileToString(path("job.log")).value_or("");

  auto report = ReadJsonFile(path("out/report.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& d = (*report)["stages"]["distill"];
  std::printf("distill: %s\n", d.dump().c_str());
  ASSERT_EQ(d["sources"].size(), 2u);
  EXPECT_EQ(d["sources"][0]["address"], a.address());
  EXPECT_GT(d["sources"][0]["pass_rate"].get<double>(), 0.3);
  EXPECT_EQ(d["sources"][1]["samples"], 1600);  // B answered every request
  EXPECT_LT(d["sources"][1]["pass_rate"].get<double>(), 0.05);

  // The SFT set: only verified answers; the pairs: passing chosen, failing rejected.
  auto task = MakeTask("reverse").value();
  auto tok = Tokenizer::FromModelDir(path("target-base")).value();
  auto sft = ReadSftJsonl(path("out/distill/sft.jsonl"), *tok);
  ASSERT_TRUE(sft.ok()) << sft.status();
  EXPECT_GT(sft->size(), 300u);
  for (const SftRecord& r : *sft) EXPECT_TRUE(task->Verify(r.prompt, r.response)) << r.prompt << " " << r.response;
  auto pairs = ReadPreferenceJsonl(path("out/distill/pairs.jsonl"));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_GT(pairs->size(), 300u);  // B (almost) never passes, so most prompts make a pair
  for (const PreferenceRecord& p : *pairs) {
    EXPECT_TRUE(task->Verify(p.prompt, p.chosen)) << p.prompt;
    EXPECT_FALSE(task->Verify(p.prompt, p.rejected)) << p.prompt;
  }

  // Distill -> SFT lifts the target's held-out exact match.
  const double before = (*report)["eval"]["before"]["accuracy"].get<double>();
  const double after = (*report)["stages"]["sft"]["held_out_accuracy"].get<double>();
  std::printf("target held-out exact match %.3f -> %.3f\n", before, after);
  EXPECT_GT(after, before + 0.1);

  // The pack went to C and is loaded there.
  EXPECT_FALSE(fs::exists(path("packs-a/reverse-distilled.skillpack")));
  auto stub = v1::Admin::NewStub(c.channel());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer distill-e2e-token");
  v1::ListPacksResponse list;
  ASSERT_TRUE(stub->ListPacks(&ctx, v1::ListPacksRequest(), &list).ok());
  ASSERT_EQ(list.packs_size(), 1);
  EXPECT_EQ(list.packs(0).name(), "reverse-distilled");
  EXPECT_TRUE(list.packs(0).loaded());
  EXPECT_EQ(list.packs(0).sha256(), Sha256Hex(ReadFileToString(path("out/reverse-distilled.skillpack")).value()));
  EXPECT_EQ((*report)["stages"]["publish"]["server"], c.address());

  // Its time is printed, not asserted: speed is measured by benchmarks, and
  // on a loaded machine this run varies 3x.
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("distill e2e: %.1f s\n", seconds);
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace skillpack
