// Job specs (validation) and a small end-to-end pipeline run in-process.
#include "trainer/job.h"

#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/model.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "trainer/lora_adapter.h"

namespace skillpack {
namespace {

Json TinyJob() {
  return Json::parse(R"({
    "name": "unit-job", "seed": 3, "threads": 1,
    "base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "seed": 2}},
    "task": {"name": "sort", "held_out": 16, "train_examples": 256},
    "stages": {
      "sft": {"steps": 4, "batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "max_seq_len": 32},
      "dpo": {"steps": 3, "batch_size": 8, "lr": 1e-3, "beta": 0.1, "eval_pairs": 16, "max_seq_len": 32,
              "lora": {"rank": 2, "alpha": 4}}
    }
  })");
}

Status Parse(const Json& j) { return ParseJobSpec(j, ::testing::TempDir()).status(); }

void ExpectInvalid(const Json& j, const std::string& field) {
  Status s = Parse(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(field), std::string::npos) << "want '" << field << "' in: " << s;
}

TEST(JobSpecTest, ParsesTheExampleJobs) {
  for (const char* name : {"sft-tiny.json", "pipeline-tiny.json"}) {
    auto job = LoadJobSpec(std::string(SKILLPACK_SOURCE_DIR) + "/trainer/examples/" + name);
    EXPECT_TRUE(job.ok()) << name << ": " << job.status();
  }
  auto job = ParseJobSpec(TinyJob(), ".");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->task, "sort");
  ASSERT_TRUE(job->sft && job->dpo);
  EXPECT_EQ(job->sft->loop.steps, 4);
  EXPECT_EQ(job->dpo->train.lora.rank, 2);
  EXPECT_DOUBLE_EQ(job->dpo->dpo.beta, 0.1);
  EXPECT_DOUBLE_EQ(job->dpo->dpo.sft_weight, 0.0);
  Json rpo = TinyJob();
  rpo["stages"]["dpo"]["sft_weight"] = 0.5;
  auto with_nll = ParseJobSpec(rpo, ".");
  ASSERT_TRUE(with_nll.ok()) << with_nll.status();
  EXPECT_DOUBLE_EQ(with_nll->dpo->dpo.sft_weight, 0.5);
  EXPECT_DOUBLE_EQ(with_nll->dpo->dpo.dpop_lambda, 0.0);
  rpo["stages"]["dpo"]["dpop_lambda"] = 50;
  auto dpop = ParseJobSpec(rpo, ".");
  ASSERT_TRUE(dpop.ok()) << dpop.status();
  EXPECT_DOUBLE_EQ(dpop->dpo->dpo.dpop_lambda, 50.0);
  EXPECT_DOUBLE_EQ(dpop->dpo->train.loop.max_epochs, 0.0);
  rpo["stages"]["dpo"]["max_epochs"] = 2;
  auto capped = ParseJobSpec(rpo, ".");
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_DOUBLE_EQ(capped->dpo->train.loop.max_epochs, 2.0);
}

TEST(JobSpecTest, BadSpecsNameTheField) {
  Json j = TinyJob();
  j["stages"]["finetune"] = Json::object();
  ExpectInvalid(j, "job.stages.finetune: unknown stage");

  j = TinyJob();
  j["stages"]["sft"]["lr"] = 5.0;
  ExpectInvalid(j, "job.stages.sft.lr");

  j = TinyJob();
  j["stages"]["sft"]["learning_rate"] = 1e-3;  // misspelt
  ExpectInvalid(j, "job.stages.sft.learning_rate: unknown field");

  j = TinyJob();
  j["stages"]["sft"]["data"] = "no-such-file.jsonl";
  ExpectInvalid(j, "job.stages.sft.data: file not found");

  j = TinyJob();
  j["stages"]["dpo"]["beta"] = -1;
  ExpectInvalid(j, "job.stages.dpo.beta");

  j = TinyJob();
  j["stages"]["dpo"]["sft_weight"] = -0.5;
  ExpectInvalid(j, "job.stages.dpo.sft_weight");

  j = TinyJob();
  j["stages"]["dpo"]["dpop_lambda"] = -1;
  ExpectInvalid(j, "job.stages.dpo.dpop_lambda");

  j = TinyJob();
  j["stages"]["dpo"]["max_epochs"] = -2;
  ExpectInvalid(j, "job.stages.dpo.max_epochs");

  j = TinyJob();
  j["stages"]["dpo"]["lora"]["rank"] = 0;
  ExpectInvalid(j, "job.stages.dpo.lora.rank");

  j = TinyJob();
  j["stages"]["sft"]["batch_size"] = "32";
  ExpectInvalid(j, "batch_size");

  j = TinyJob();
  j["task"]["name"] = "division";
  ExpectInvalid(j, "job.task.name");

  j = TinyJob();
  j["base_model"] = "/no/such/model";
  ExpectInvalid(j, "job.base_model");

  j = TinyJob();
  j["base_model"]["tiny"]["hidden"] = 30;  // head_dim 15: odd, no RoPE
  ExpectInvalid(j, "job.base_model.tiny");

  j = TinyJob();
  j.erase("task");
  ExpectInvalid(j, "job.stages.sft.data: required");

  j = TinyJob();
  j["stages"] = Json::object();
  ExpectInvalid(j, "job.stages");

  j = TinyJob();
  j["stages"]["compress"] = {{"config", {{"alpha", 7}}}};
  ExpectInvalid(j, "job.stages.compress.config");

  j = TinyJob();
  j["stages"]["compress"] = {{"calibration", {{"model", "final"}}}};
  ExpectInvalid(j, "job.stages.compress.calibration.model");
  j["stages"]["compress"] = {{"calibration", {{"samples", -1}}}};
  ExpectInvalid(j, "job.stages.compress.calibration.samples");
  j["stages"]["compress"] = {{"calibration", {{"sample", 3}}}};
  ExpectInvalid(j, "job.stages.compress.calibration.sample");

  j = TinyJob();
  j["stages"]["distill"] = Json::object();
  ExpectInvalid(j, "job.stages.distill.sources");

  j = TinyJob();
  j["stages"]["publish"] = {{"server", "127.0.0.1:1"}};
  ExpectInvalid(j, "job.stages.publish.pack");

  EXPECT_EQ(LoadJobSpec(::testing::TempDir() + "/none.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(JobSpecTest, CompressRefit) {
  Json j = TinyJob();
  j["stages"]["compress"] = {{"config", {{"target_ratio", 0.2}}}, {"refit", {{"steps", 7}, {"lr", 3e-4}}}};
  auto job = ParseJobSpec(j, ".");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->compress && job->compress->refit);
  EXPECT_EQ(job->compress->refit->loop.steps, 7);
  EXPECT_DOUBLE_EQ(job->compress->refit->loop.optim.lr, 3e-4);
  EXPECT_EQ(job->compress->refit->max_seq_len, 32);  // the sft stage's
  EXPECT_FALSE(job->compress->refit->lora.enabled());
  EXPECT_EQ(job->compress->refit->loop.optim.warmup_steps, 0);  // 7 steps: 7 / 15

  // An empty refit gets the measured settings, not the sft stage's loop defaults.
  j["stages"]["compress"]["refit"] = Json::object();
  auto defaults = ParseJobSpec(j, ".");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->compress->refit->loop.steps, 300);
  EXPECT_DOUBLE_EQ(defaults->compress->refit->loop.optim.lr, 3e-3);
  EXPECT_DOUBLE_EQ(defaults->compress->refit->loop.optim.min_lr_ratio, 0.1);
  EXPECT_EQ(defaults->compress->refit->loop.optim.warmup_steps, 20);
  EXPECT_DOUBLE_EQ(defaults->compress->refit_skip_below_kl, 0.02);
  j["stages"]["compress"]["refit"] = {{"steps", 900}, {"warmup_steps", 50}};
  auto given = ParseJobSpec(j, ".");
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->compress->refit->loop.optim.warmup_steps, 50);
  j["stages"]["compress"]["refit"] = {{"skip_below_kl", 0}};
  auto never = ParseJobSpec(j, ".");
  ASSERT_TRUE(never.ok()) << never.status();
  EXPECT_EQ(never->compress->refit_skip_below_kl, 0.0);
  j["stages"]["compress"]["refit"] = {{"skip_below_kl", -1}};
  ExpectInvalid(j, "job.stages.compress.refit.skip_below_kl");

  j["stages"]["compress"]["refit"] = {{"lora", {{"rank", 2}}}};
  ExpectInvalid(j, "job.stages.compress.refit.lora: not allowed");
  j["stages"]["compress"]["refit"] = {{"stepz", 3}};
  ExpectInvalid(j, "job.stages.compress.refit.stepz: unknown field");
  j["stages"]["compress"]["refit"] = {{"lr", 5.0}};
  ExpectInvalid(j, "job.stages.compress.refit.lr");
  j["stages"]["compress"]["refit"] = 5;
  ExpectInvalid(j, "job.stages.compress.refit must be a JSON object");
}

TEST(JobRunTest, SftThenLoraDpoThenCompressWritesModelReportAndPack) {
  at::set_num_threads(1);
  const std::string out = ::testing::TempDir() + "/job_test_out";
  std::filesystem::remove_all(out);
  Json j = TinyJob();
  j["stages"]["compress"] = {
      {"name", "sort-pack"}, {"tags", {"sort"}}, {"calibration", {{"samples", 8}, {"max_len", 24}}}};
  auto job = ParseJobSpec(j, ".");
  ASSERT_TRUE(job.ok()) << job.status();
  RunJobOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  auto report = RunJob(*job, opts);
  ASSERT_TRUE(report.ok()) << report.status();
  auto on_disk = ReadJsonFile(JoinPath(out, "report.json"));
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(*on_disk, *report);
  const Json& r = *report;
  EXPECT_EQ(r["status"], "ok");
  EXPECT_EQ(r["eval"]["before"]["total"], 16);
  EXPECT_TRUE(r["eval"]["after"]["accuracy"].is_number());
  EXPECT_EQ(r["stages"]["sft"]["final_step"], 4);
  EXPECT_EQ(r["stages"]["sft"]["log"].size(), 4u);
  EXPECT_TRUE(r["stages"]["sft"]["held_out_loss"]["after"].is_number());
  EXPECT_TRUE(r["stages"]["sft"]["held_out_accuracy"].is_number());
  EXPECT_EQ(r["stages"]["dpo"]["held_out_accuracy"], r["eval"]["after"]["accuracy"]);
  EXPECT_EQ(r["stages"]["dpo"]["lora_rank"], 2);
  EXPECT_TRUE(r["stages"]["dpo"]["held_out_after"]["reward_margin"].is_number());
  for (const char* t : {"setup_seconds", "sft_seconds", "dpo_seconds", "eval_before_seconds", "total_seconds"}) {
    EXPECT_TRUE(r["timings"][t].is_number()) << t;
  }
  // The tuned folder loads, and differs from the base.
  auto tuned = LoadModel(JoinPath(out, "model"), at::kFloat);
  auto base = LoadModel(JoinPath(out, "base"), at::kFloat);
  ASSERT_TRUE(tuned.ok() && base.ok());
  EXPECT_FALSE(at::equal(*(*tuned)->weights->Find("model.layers.0.mlp.up_proj.weight"),
                         *(*base)->weights->Find("model.layers.0.mlp.up_proj.weight")));
  EXPECT_TRUE(PathExists(JoinPath(out, "model/tokenizer.json")));
  // The pack.
  auto pack = ReadSkillPack(r["stages"]["compress"]["path"].get<std::string>());
  ASSERT_TRUE(pack.ok()) << pack.status();
  EXPECT_EQ(pack->manifest.name, "sort-pack");
  EXPECT_EQ(pack->manifest.provenance["task"], "sort");
  EXPECT_TRUE(r["stages"]["compress"]["held_out_accuracy"].is_number());
  EXPECT_EQ(r["eval"]["base_plus_pack"]["total"], 16);
  // Calibrated on the tuned model's activations over 8 training sequences.
  EXPECT_EQ(r["stages"]["compress"]["calibration"]["sequences"], 8) << r["stages"]["compress"].dump();
  EXPECT_EQ(r["stages"]["compress"]["calibration_model"], "tuned");
  EXPECT_EQ(pack->manifest.provenance["compression"]["calibration"]["sequences"], 8);

  // Running again resumes from the final checkpoints: no extra steps.
  auto again = RunJob(*job, opts);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)["stages"]["sft"]["resumed_from"], 4);
  std::filesystem::remove_all(out);
}

// SFT -> DPO as two jobs that store one adapter: the SFT job writes its
// adapter (PEFT layout), a DPO job over the same base continues it against
// the SFT policy as reference, and an adapter is refused over another model.
TEST(JobRunTest, DpoJobContinuesTheSftJobsAdapter) {
  at::set_num_threads(1);
  const std::string out = ::testing::TempDir() + "/job_test_lora_continue";
  std::filesystem::remove_all(out);
  const std::string sft_out = JoinPath(out, "sft"), dpo_out = JoinPath(out, "dpo");
  Json sft = TinyJob();
  sft["stages"].erase("dpo");
  sft["stages"]["sft"]["lora"] = {{"rank", 2}, {"alpha", 4}};
  sft["stages"]["sft"]["lr"] = 1e-2;
  RunJobOptions opts;
  opts.progress = false;
  opts.out_dir = sft_out;
  auto sft_report = RunJob(*ParseJobSpec(sft, "."), opts);
  ASSERT_TRUE(sft_report.ok()) << sft_report.status();
  const std::string sft_adapter = JoinPath(sft_out, "adapter");
  EXPECT_EQ((*sft_report)["output_adapter"], sft_adapter);
  auto sft_a = ReadLoraAdapter(sft_adapter);
  ASSERT_TRUE(sft_a.ok()) << sft_a.status();
  auto base = LoadModel(JoinPath(sft_out, "base"), at::kFloat);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(sft_a->base_fingerprint, *BaseFingerprint(*(*base)->weights));

  Json dpo = TinyJob();
  dpo["base_model"] = JoinPath(sft_out, "base");
  dpo["stages"].erase("sft");
  dpo["stages"]["dpo"]["eval_pairs"] = 0;
  dpo["stages"]["dpo"]["lora"] = {{"init", sft_adapter}};
  auto dpo_job = ParseJobSpec(dpo, ".");
  ASSERT_TRUE(dpo_job.ok()) << dpo_job.status();
  EXPECT_EQ(dpo_job->dpo->train.lora.rank, 2);
  EXPECT_EQ(dpo_job->dpo->train.lora.alpha, 4.0);
  opts.out_dir = dpo_out;
  auto dpo_report = RunJob(*dpo_job, opts);
  ASSERT_TRUE(dpo_report.ok()) << dpo_report.status();
  // Step 1 scores the policy against itself: the reference is base + the SFT
  // adapter (against the bare base the SFT adapter's own margin would show).
  const Json& first = (*dpo_report)["stages"]["dpo"]["first"]["metrics"];
  EXPECT_NEAR(first["reward_margin"].get<double>(), 0.0, 1e-6) << first.dump();
  EXPECT_NEAR(first["chosen_reward"].get<double>(), 0.0, 1e-6) << first.dump();
  // One adapter, trained on from the SFT one, over the same base; the
  // exported model is base + (alpha / r) B A of it.
  auto dpo_a = ReadLoraAdapter(JoinPath(dpo_out, "adapter"));
  ASSERT_TRUE(dpo_a.ok()) << dpo_a.status();
  EXPECT_EQ(dpo_a->base_fingerprint, sft_a->base_fingerprint);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  const at::Tensor a = dpo_a->tensors.at(q + ".lora_A"), b = dpo_a->tensors.at(q + ".lora_B");
  EXPECT_FALSE(at::equal(b, sft_a->tensors.at(q + ".lora_B")));
  EXPECT_GT((b - sft_a->tensors.at(q + ".lora_B")).abs().max().item<double>(), 0.0);
  auto tuned = LoadModel(JoinPath(dpo_out, "model"), at::kFloat);
  ASSERT_TRUE(tuned.ok());
  const at::Tensor want = *(*base)->weights->Find(q) + 2.0 * at::matmul(b, a);
  EXPECT_LT((*(*tuned)->weights->Find(q) - want).abs().max().item<double>(), 1e-6);

  // Over the SFT job's tuned model the same adapter was not trained: refused.
  dpo["base_model"] = JoinPath(sft_out, "model");
  opts.out_dir = JoinPath(out, "other");
  auto other = RunJob(*ParseJobSpec(dpo, "."), opts);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_NE(other.status().message().find("job.stages.dpo.lora.init"), std::string::npos) << other.status();
  EXPECT_NE(other.status().message().find("was trained over the model " + sft_a->base_fingerprint), std::string::npos)
      << other.status();

  // An SFT stage continues an adapter too: it starts where the SFT job ended.
  Json more = sft;
  more["base_model"] = JoinPath(sft_out, "base");
  more["stages"]["sft"]["lora"] = {{"init", sft_adapter}};
  more["stages"]["sft"]["steps"] = 1;
  opts.out_dir = JoinPath(out, "more");
  auto more_report = RunJob(*ParseJobSpec(more, "."), opts);
  ASSERT_TRUE(more_report.ok()) << more_report.status();
  EXPECT_NEAR((*more_report)["stages"]["sft"]["held_out_loss"]["before"].get<double>(),
              (*sft_report)["stages"]["sft"]["held_out_loss"]["after"].get<double>(), 1e-5);

  // Rank or alpha beside init must be the adapter's; init must be an adapter.
  dpo["base_model"] = JoinPath(sft_out, "base");
  dpo["stages"]["dpo"]["lora"] = {{"init", sft_adapter}, {"rank", 4}};
  ExpectInvalid(dpo, "rank 4 / alpha 4 differ from the adapter's r 2 / lora_alpha 4");
  dpo["stages"]["dpo"]["lora"] = {{"init", JoinPath(sft_out, "model")}};
  ExpectInvalid(dpo, "job.stages.dpo.lora.init: no LoRA adapter");
  std::filesystem::remove_all(out);
}

// A job that names no thread count computes on this machine's cores, not on
// libtorch's default (half the logical CPUs: one core of two without SMT).
TEST(JobRunTest, ThreadsDefaultToTheCoresAvailable) {
  at::set_num_threads(1);
  Json j = TinyJob();
  j.erase("threads");
  j["stages"].erase("dpo");
  j["stages"]["sft"]["steps"] = 1;
  auto job = ParseJobSpec(j, ".");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->threads, 0);
  RunJobOptions opts;
  opts.out_dir = ::testing::TempDir() + "/job_threads_out";
  opts.progress = false;
  auto report = RunJob(*job, opts);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["threads"], CpuCoresAvailable());
  EXPECT_EQ(at::get_num_threads(), CpuCoresAvailable());
}

// SFT, then a budget-mode pack refitted by distillation: the report says
// what the refit did, the manifest records it, the file holds the pack kept.
TEST(JobRunTest, CompressRefitDistillsThePackAndResumes) {
  at::set_num_threads(1);
  const std::string out = ::testing::TempDir() + "/job_refit_out";
  std::filesystem::remove_all(out);
  Json j = TinyJob();
  j["stages"].erase("dpo");
  j["stages"]["sft"]["steps"] = 20;
  j["stages"]["compress"] = {{"name", "sort-refit"},
                             {"config", {{"target_ratio", 0.15}}},
                             {"refit", {{"steps", 6}, {"batch_size", 8}, {"lr", 3e-3}, {"skip_below_kl", 0}}}};
  auto job = ParseJobSpec(j, ".");
  ASSERT_TRUE(job.ok()) << job.status();
  RunJobOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  auto report = RunJob(*job, opts);
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& c = (*report)["stages"]["compress"];
  ASSERT_TRUE(c.contains("refit")) << c.dump();
  EXPECT_EQ(c["refit"]["loop"]["final_step"], 6);
  EXPECT_EQ(c["refit"]["validation_sequences"], 25);  // a tenth of the 256 training examples
  const std::string kept = c["refit"]["kept"].get<std::string>();
  EXPECT_TRUE(kept == "refitted" || kept == "original") << kept;
  EXPECT_EQ(kept == "refitted", c["refit"]["kl_after"].get<double>() < c["refit"]["kl_before"].get<double>());
  EXPECT_EQ(c["quantizer"], "rtn");
  auto pack = ReadSkillPack(c["path"].get<std::string>());
  ASSERT_TRUE(pack.ok()) << pack.status();
  EXPECT_EQ(pack->manifest.provenance["refit"]["steps"], 6);
  EXPECT_EQ(pack->manifest.provenance["refit"]["objective"], "kl_to_tuned");
  EXPECT_EQ(pack->manifest.provenance["refit"]["kept"], kept);
  EXPECT_LE(c["file_bytes"].get<int64_t>(), c["fp16_delta_bytes"].get<int64_t>() * 0.15);
  EXPECT_TRUE(c["held_out_accuracy"].is_number());

  // Running again resumes the refit from its final checkpoint: no extra steps.
  auto again = RunJob(*job, opts);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)["stages"]["compress"]["refit"]["loop"]["resumed_from"], 6);
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace skillpack

namespace skillpack {
namespace {

// The router stage: labelled prompts of two task families plus general text,
// trained on the job's base; the router file it writes loads and records the
// base's fingerprint.
TEST(JobRunTest, RouterStageTrainsAndWritesARouter) {
  const std::string dir = ::testing::TempDir() + "/router_stage_test";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(MakeDirectories(dir).ok());
  std::string jsonl;
  for (int i = 0; i < 60; ++i) {
    jsonl += absl::StrCat(R"({"prompt":"sort )", 1000 + i * 37, R"(=","label":"sorter"})", "\n");
    jsonl += absl::StrCat(R"({"prompt":"rev word)", std::string(1, static_cast<char>('a' + i % 26)),
                          R"(=","label":"reverser"})", "\n");
    jsonl += absl::StrCat(R"({"prompt":"Please tell me a story number )", i, R"(.","label":"none"})", "\n");
  }
  ASSERT_TRUE(WriteFileAtomically(dir + "/labelled.jsonl", jsonl).ok());
  Json j = Json::parse(R"({
    "name": "router-job", "seed": 1, "threads": 1,
    "base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "seed": 2}},
    "stages": {"router": {"data": "labelled.jsonl", "epochs": 150, "width": 32, "min_holdout_accuracy": 0.9}}
  })");
  auto job = ParseJobSpec(j, dir);
  ASSERT_TRUE(job.ok()) << job.status();
  RunJobOptions opts;
  opts.out_dir = dir + "/out";
  opts.progress = false;
  auto report = RunJob(*job, opts);
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& r = (*report)["stages"]["router"];
  EXPECT_GE(r["holdout_accuracy"].get<double>(), 0.9);
  EXPECT_EQ(r["labels"], Json::parse(R"(["none", "reverser", "sorter"])"));
  auto router = Router::Load(opts.out_dir + "/router.safetensors");
  ASSERT_TRUE(router.ok()) << router.status();
  EXPECT_EQ((*router)->config().layer, 0);
  EXPECT_EQ((*router)->config().base_fingerprint.rfind("sha256:", 0), 0u);

  // Bad router stages name the field.
  Json bad = j;
  bad["stages"]["router"].erase("data");
  EXPECT_EQ(ParseJobSpec(bad, dir).status().message(), "job.stages.router.data: missing (labelled prompts JSONL)");
  bad = j;
  bad["stages"]["router"]["holdout"] = 2;
  EXPECT_EQ(ParseJobSpec(bad, dir).status().message(), "job.stages.router.holdout must be in [0, 0.9], got 2");
  bad = j;
  bad["stages"]["router"]["data"] = "missing.jsonl";
  EXPECT_NE(ParseJobSpec(bad, dir).status().message().find("no such file"), absl::string_view::npos);
  // A router that cannot reach the required accuracy fails the job and writes no file.
  j["stages"]["router"]["min_holdout_accuracy"] = 1.0;
  j["stages"]["router"]["epochs"] = 1;
  RunJobOptions opts2 = opts;
  opts2.out_dir = dir + "/out2";
  auto weak = RunJob(*ParseJobSpec(j, dir), opts2);
  EXPECT_EQ(weak.status().code(), absl::StatusCode::kFailedPrecondition) << weak.status();
  EXPECT_FALSE(PathExists(opts2.out_dir + "/router.safetensors"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace skillpack

namespace skillpack {
namespace {

// A corpus folder of English-like lines for the pretrain stage.
std::string WriteCorpus(const std::string& dir) {
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(MakeDirectories(dir + "/texts").ok());
  const char* lines[] = {"The quick brown fox jumps over the lazy dog.", "A bird in the hand is worth two in the bush.",
                         "Early to bed and early to rise.", "The sea was calm and the sky was blue."};
  std::string text;
  for (int i = 0; i < 120; ++i) text += absl::StrCat(lines[i % 4], i % 3 == 0 ? "\n" : " ");
  EXPECT_TRUE(WriteFileAtomically(dir + "/texts/a.txt", text).ok());
  EXPECT_TRUE(WriteFileAtomically(dir + "/texts/b.txt", text.substr(500)).ok());
  return dir + "/texts";
}

Json PretrainJob(const std::string& corpus) {
  Json j = TinyJob();
  j["stages"] = Json::parse(R"({
    "pretrain": {"held_out_fraction": 0.1, "mixture": {"tasks": ["sort"], "fraction": 0.1},
                 "steps": 30, "batch_size": 16, "lr": 1e-2, "warmup_steps": 3, "max_seq_len": 48},
    "sft": {"steps": 2, "batch_size": 8, "lr": 3e-3, "max_seq_len": 32}
  })");
  j["stages"]["pretrain"]["corpus"] = {corpus};
  return j;
}

TEST(JobSpecTest, BadPretrainSpecsNameTheField) {
  const std::string corpus = WriteCorpus(::testing::TempDir() + "/pretrain_spec_test");
  auto job = ParseJobSpec(PretrainJob(corpus), ".");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->pretrain.has_value());
  EXPECT_EQ(job->pretrain->corpus, std::vector<std::string>{corpus});
  EXPECT_EQ(job->pretrain->mixture_tasks, std::vector<std::string>{"sort"});
  EXPECT_DOUBLE_EQ(job->pretrain->mixture_fraction, 0.1);
  EXPECT_EQ(job->pretrain->train.loop.steps, 30);
  EXPECT_EQ(job->pretrain->train.max_seq_len, 48);

  Json j = PretrainJob(corpus);
  j["stages"]["pretrain"].erase("corpus");
  ExpectInvalid(j, "job.stages.pretrain.corpus: missing");
  j["stages"]["pretrain"]["corpus"] = Json::array();
  ExpectInvalid(j, "job.stages.pretrain.corpus must be a non-empty list");
  j["stages"]["pretrain"]["corpus"] = {corpus, "/no/such/text"};
  ExpectInvalid(j, "job.stages.pretrain.corpus[1]: not found");
  j["stages"]["pretrain"]["corpus"] = {corpus, 7};
  ExpectInvalid(j, "job.stages.pretrain.corpus[1] must be");

  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["held_out_fraction"] = 0.9;
  ExpectInvalid(j, "job.stages.pretrain.held_out_fraction");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["mixture"]["fraction"] = 1.5;
  ExpectInvalid(j, "job.stages.pretrain.mixture.fraction");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["mixture"]["tasks"] = {"sort", "division"};
  ExpectInvalid(j, "job.stages.pretrain.mixture.tasks[1]");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["mixture"]["tasks"] = Json::array();
  ExpectInvalid(j, "job.stages.pretrain.mixture.tasks: required");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["mixture"]["share"] = 0.1;
  ExpectInvalid(j, "job.stages.pretrain.mixture.share: unknown field");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["data"] = "train.jsonl";
  ExpectInvalid(j, "job.stages.pretrain.data: not a pretrain field");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["lora"] = {{"rank", 4}};
  ExpectInvalid(j, "job.stages.pretrain.lora: not a pretrain field");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["lr"] = -1;
  ExpectInvalid(j, "job.stages.pretrain.lr");
  j = PretrainJob(corpus);
  j["stages"]["pretrain"]["max_seq_len"] = 2;
  ExpectInvalid(j, "job.stages.pretrain.max_seq_len");
}

// Pretrain then SFT in one job: the held-out text loss falls, the task eval
// runs after pretraining, and a corpus file that is not UTF-8 fails the job
// naming the file.
TEST(JobRunTest, PretrainLowersHeldOutTextLossThenSftStartsFromIt) {
  at::set_num_threads(1);
  const std::string dir = ::testing::TempDir() + "/pretrain_job_test";
  const std::string corpus = WriteCorpus(dir);
  auto job = ParseJobSpec(PretrainJob(corpus), ".");
  ASSERT_TRUE(job.ok()) << job.status();
  RunJobOptions opts;
  opts.out_dir = dir + "/out";
  opts.progress = false;
  auto report = RunJob(*job, opts);
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& p = (*report)["stages"]["pretrain"];
  EXPECT_EQ(p["corpus"]["files"], 2);
  EXPECT_EQ(p["final_step"], 30);
  EXPECT_GT(p["mixture"]["examples"].get<int64_t>(), 0);
  EXPECT_GT(p["held_out_windows"].get<int64_t>(), 0);
  const double before = p["held_out_before"]["loss"].get<double>();
  const double after = p["held_out_after"]["loss"].get<double>();
  EXPECT_GT(before, 5.0);
  EXPECT_LT(after, 0.6 * before) << p.dump();
  EXPECT_NEAR(p["held_out_after"]["perplexity"].get<double>(), std::exp(after), 1e-6 * std::exp(after));
  EXPECT_TRUE((*report)["eval"]["after_pretrain"]["accuracy"].is_number());
  EXPECT_TRUE((*report)["timings"]["pretrain_seconds"].is_number());
  EXPECT_EQ((*report)["stages"]["sft"]["final_step"], 2);

  ASSERT_TRUE(WriteFileAtomically(corpus + "/c.txt", "caf\xE9\n").ok());  // Latin-1
  opts.out_dir = dir + "/out2";
  Status s = RunJob(*job, opts).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("job.stages.pretrain.corpus"), std::string::npos) << s;
  EXPECT_NE(s.message().find(corpus + "/c.txt"), std::string::npos) << s;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace skillpack
