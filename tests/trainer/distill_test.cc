// The distill stage against in-process fake sources (skillpack.v1.Inference)
// and a fake reward service (skillpack.v1.Reward) on 127.0.0.1: sample
// selection, scorers, errors naming the source, cancellation, and spec
// validation. distill_e2e_test.cc runs it against real skillpack-server
// processes.
#include "trainer/distill.h"

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "skillpack/v1/inference.grpc.pb.h"
#include "skillpack/v1/trainer.grpc.pb.h"
#include "tests/trainer/trainer_binary.h"
#include "trainer/job.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

// Answers "reverse" prompts: kGood always right, kGreedyOnly right only at
// temperature 0, kBad always "zzz".
class FakeSource final : public v1::Inference::Service {
 public:
  enum Kind { kGood, kGreedyOnly, kBad };
  explicit FakeSource(Kind kind) : kind_(kind), task_(MakeTask("reverse").value()) {}

  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* req, v1::GenerateResponse* resp) override {
    ++calls;
    StatusOr<std::string> right = task_->Solve(req->prompt());
    if (!right.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a reverse prompt");
    const bool greedy = req->sampling().has_temperature() && req->sampling().temperature() == 0;
    const bool correct = kind_ == kGood || (kind_ == kGreedyOnly && greedy);
    resp->set_text(correct ? *right : "zzz");
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};

 private:
  Kind kind_;
  std::unique_ptr<Task> task_;
};

// Scores -1 for "zzz", 2 for anything else.
class FakeReward final : public v1::Reward::Service {
 public:
  grpc::Status Score(grpc::ServerContext*, const v1::ScoreRequest* req, v1::ScoreResponse* resp) override {
    ++calls;
    for (const std::string& r : req->responses()) resp->add_scores(r == "zzz" ? -1.0f : 2.0f);
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
};

// One in-process gRPC server on an ephemeral 127.0.0.1 port.
class Served {
 public:
  explicit Served(grpc::Service* service) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service);
    server_ = b.BuildAndStart();
  }
  ~Served() { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

class DistillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = ::testing::TempDir() + "/distill_test_" + std::to_string(::getpid());
    fs::remove_all(out_);
  }
  void TearDown() override { fs::remove_all(out_); }

  DistillStageSpec Spec(const std::vector<std::string>& sources) {
    DistillStageSpec s;
    for (const std::string& a : sources) s.sources.push_back({a, {}});
    s.task = "reverse";
    s.prompts = 40;
    s.samples = 2;
    s.temperatures = {0.0, 1.0};
    s.concurrency = 4;
    s.timeout_seconds = 10;
    return s;
  }
  std::string out_;
};

TEST_F(DistillTest, VerifierKeepsBestPassingSampleAndPairsBestWithWorst) {
  FakeSource bad(FakeSource::kBad), greedy(FakeSource::kGreedyOnly);
  Served a(&bad), b(&greedy);
  auto task = MakeTask("reverse").value();
  StatusOr<DistillResult> r = RunDistillStage(Spec({a.address(), b.address()}), 7, out_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(bad.calls.load(), 80);
  EXPECT_EQ(greedy.calls.load(), 80);
  ASSERT_EQ(r->sft.size(), 40u);
  ASSERT_EQ(r->pairs.size(), 40u);
  for (const SftRecord& s : r->sft) EXPECT_TRUE(task->Verify(s.prompt, s.response)) << s.prompt;
  for (const PreferenceRecord& p : r->pairs) {
    EXPECT_TRUE(task->Verify(p.prompt, p.chosen));
    EXPECT_EQ(p.rejected, "zzz");
  }
  EXPECT_EQ(r->report["sources"][0]["pass_rate"], 0.0);
  EXPECT_EQ(r->report["sources"][1]["pass_rate"], 0.5);
  EXPECT_EQ(r->report["scorer"], "verifier:reverse");
  // Files the sft / dpo stages read.
  auto tok = Tokenizer::FromJson(MakeByteLevelTokenizerJson(), "t", MakeByteLevelTokenizerConfigJson());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(ReadSftJsonl(r->sft_path, **tok)->size(), 40u);
  EXPECT_EQ(ReadPreferenceJsonl(r->pairs_path)->size(), 40u);
  EXPECT_TRUE(fs::exists(out_ + "/distill/samples.jsonl"));
}

TEST_F(DistillTest, NothingPassesNothingKept) {
  FakeSource bad(FakeSource::kBad);
  Served a(&bad);
  StatusOr<DistillResult> r = RunDistillStage(Spec({a.address()}), 7, out_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->sft.empty());
  EXPECT_TRUE(r->pairs.empty());  // best and worst score the same
}

TEST_F(DistillTest, RewardServiceScores) {
  FakeSource bad(FakeSource::kBad), good(FakeSource::kGood);
  FakeReward reward;
  Served a(&bad), b(&good), rw(&reward);
  DistillStageSpec spec = Spec({a.address(), b.address()});
  spec.reward = rw.address();
  StatusOr<DistillResult> r = RunDistillStage(spec, 7, out_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reward.calls.load(), 40);  // one call per prompt, all its samples
  ASSERT_EQ(r->sft.size(), 40u);
  ASSERT_EQ(r->pairs.size(), 40u);
  for (const PreferenceRecord& p : r->pairs) {
    EXPECT_NE(p.chosen, "zzz");
    EXPECT_EQ(p.rejected, "zzz");
  }
  EXPECT_EQ(r->report["scorer"], "reward:" + rw.address());
}

TEST_F(DistillTest, UnreachableSourceIsNamed) {
  const std::string dead = "127.0.0.1:" + std::to_string(testing_util::FreePort());
  StatusOr<DistillResult> r = RunDistillStage(Spec({dead}), 7, out_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find(dead), absl::string_view::npos) << r.status();
}

TEST_F(DistillTest, CancelledBeforeAnyRequest) {
  FakeSource good(FakeSource::kGood);
  Served a(&good);
  std::atomic<bool> cancel{true};
  DistillControl control;
  control.cancel = &cancel;
  StatusOr<DistillResult> r = RunDistillStage(Spec({a.address()}), 7, out_, control);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(good.calls.load(), 0);
}

// The message of a failed parse of `stages` (with task "reverse").
std::string JobError(const std::string& stages) {
  Json j = Json::parse(R"({"base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1}},
                           "task": {"name": "reverse"}, "stages": )" +
                       stages + "}");
  StatusOr<JobSpec> spec = ParseJobSpec(j, "/nonexistent-base");
  EXPECT_FALSE(spec.ok()) << stages;
  if (!spec.ok()) {
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
  }
  return std::string(spec.status().message());
}

TEST(DistillSpecTest, BadSpecsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"distill": {}})", "job.stages.distill.sources"},
      {R"({"distill": {"sources": []}})", "job.stages.distill.sources"},
      {R"({"distill": {"sources": ["nohost"]}})", "job.stages.distill.sources[0]"},
      {R"({"distill": {"sources": ["h:1", "h:99999"]}})", "job.stages.distill.sources[1]"},
      {R"({"distill": {"sources": [{"addr": "h:1"}]}})", "job.stages.distill.sources[0].address"},
      {R"({"distill": {"sources": ["h:1"], "samples": 0}})", "job.stages.distill.samples"},
      {R"({"distill": {"sources": ["h:1"], "temperature": -1}})", "job.stages.distill.temperature"},
      {R"({"distill": {"sources": ["h:1"], "temperature": [0, "hot"]}})", "job.stages.distill.temperature"},
      {R"({"distill": {"sources": ["h:1"], "task": "juggle"}})", "job.stages.distill.task"},
      {R"({"distill": {"sources": ["h:1"], "prompts_file": "missing.jsonl"}})", "job.stages.distill.prompts_file"},
      {R"({"distill": {"sources": ["h:1"], "reward": "x"}})", "job.stages.distill.reward"},
      {R"({"distill": {"sources": ["h:1"], "sample": 2}})", "job.stages.distill.sample"},
      {R"({"publish": {"server": "h:1"}})", "job.stages.publish.pack"},
      {R"({"publish": {}})", "job.stages.publish.server"},
      {R"({"compress": {}, "publish": {"server": "h:1", "admin_token_file": "nope"}})",
       "job.stages.publish.admin_token_file"},
      {R"({"compress": {}, "publish": {"server": "h:1", "pin": true}})", "job.stages.publish.pin"},
  };
  for (const auto& [stages, field] : cases) {
    const std::string msg = JobError(stages);
    EXPECT_NE(msg.find(field), std::string::npos) << stages << " -> " << msg;
  }
}

TEST(DistillSpecTest, ScorerRequiredWithoutTask) {
  Json j = Json::parse(R"({"base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1}},
                           "stages": {"distill": {"sources": ["h:1"]}, "sft": {"steps": 1}}})");
  StatusOr<JobSpec> spec = ParseJobSpec(j, "");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("job.stages.distill.task"), absl::string_view::npos) << spec.status();
}

TEST(DistillSpecTest, DistillFeedsSftWithoutTaskData) {
  // A distill stage with a prompts file and a reward service needs no task,
  // and the sft stage then needs no data file.
  const std::string prompts = ::testing::TempDir() + "/distill_spec_prompts.jsonl";
  ASSERT_TRUE(WriteFileAtomically(prompts, "{\"prompt\": \"rev abc=\"}\n").ok());
  Json j = Json::parse(R"({"base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1}},
                           "stages": {"distill": {"sources": ["127.0.0.1:5", {"address": "[::1]:6", "packs": ["p"]}],
                                                  "prompts_file": ")" +
                       prompts + R"(", "reward": "127.0.0.1:7", "temperature": [0, 0.5]},
                                      "sft": {"steps": 1}}})");
  StatusOr<JobSpec> spec = ParseJobSpec(j, "");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(spec->distill.has_value());
  EXPECT_EQ(spec->distill->sources.size(), 2u);
  EXPECT_EQ(spec->distill->sources[1].packs, std::vector<std::string>{"p"});
  EXPECT_EQ(spec->distill->temperatures, (std::vector<double>{0, 0.5}));
  fs::remove(prompts);
}

}  // namespace
}  // namespace skillpack
