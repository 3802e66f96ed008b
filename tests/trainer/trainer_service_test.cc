// The Trainer gRPC service: the real `skillpack-trainer serve` on 127.0.0.1
// (ephemeral port), driven through the generated stubs. A job is created and
// watched to SUCCEEDED; a long job is cancelled (CANCELLED within seconds, no
// .skillpack); the service is killed under a running job and restarted on the
// same state folder (earlier jobs listed with their results, the running one
// INTERRUPTED); bad specs are refused with INVALID_ARGUMENT naming the field;
// the admin token is enforced.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/json_util.h"
#include "skillpack/v1/trainer.grpc.pb.h"
#include "tests/e2e/proc_status.h"
#include "tests/trainer/trainer_binary.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A `skillpack-trainer serve` child process.
class TrainerProcess {
 public:
  ~TrainerProcess() { Kill(SIGKILL); }

  // Starts it and waits for "listening trainer=127.0.0.1:PORT" on its stdout.
  void Start(const std::string& state_dir, const std::string& log, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"serve", "--state-dir", state_dir, "--port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = testing_util::StartTrainer(args, log);
    ASSERT_GT(pid_, 0);
    const std::string prefix = "listening trainer=127.0.0.1:";
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    std::string text;
    while (Clock::now() < deadline) {
      text = ReadFileToString(log).value_or("");
      const size_t at = text.find(prefix);
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        port_ = std::stoi(text.substr(at + prefix.size()));
        channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
        stub_ = v1::Trainer::NewStub(channel_);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "trainer service did not start:\n" << text;
  }
  // Sends `sig` and reaps the process.
  void Kill(int sig) { Signal({sig}, std::chrono::milliseconds(0)); }
  // Sends each of `signals`, `gap` apart, then reaps the process; its exit
  // status (-1 when a signal killed it).
  int Signal(const std::vector<int>& signals, std::chrono::milliseconds gap) {
    if (pid_ <= 0) return -1;
    for (int sig : signals) {
      ::kill(pid_, sig);
      std::this_thread::sleep_for(gap);
    }
    const int status = testing_util::WaitExit(pid_);
    pid_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  v1::Trainer::Stub& stub() { return *stub_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Trainer::Stub> stub_;
};

// A tiny job: `steps` SFT steps on reverse and a compress stage.
std::string TinyJob(const std::string& name, int64_t steps) {
  Json j = Json::parse(R"({"seed": 1, "threads": 1,
    "base_model": {"tiny": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "seed": 1}},
    "task": {"name": "reverse", "held_out": 8, "train_examples": 500},
    "stages": {"sft": {"batch_size": 8, "lr": 3e-3, "max_seq_len": 24},
               "compress": {"config": {"alpha": 0.5}}}})");
  j["name"] = name;
  j["stages"]["sft"]["steps"] = steps;
  return j.dump();
}

grpc::Status Create(TrainerProcess& t, const std::string& spec, std::string* id) {
  grpc::ClientContext ctx;
  v1::CreateJobRequest req;
  req.set_spec_json(spec);
  v1::CreateJobResponse resp;
  grpc::Status s = t.stub().CreateJob(&ctx, req, &resp);
  if (s.ok()) {
    *id = resp.job_id();
    EXPECT_EQ(resp.job().id(), resp.job_id());
    EXPECT_TRUE(resp.job().state() == v1::QUEUED || resp.job().state() == v1::RUNNING);
  }
  return s;
}

v1::Job Get(TrainerProcess& t, const std::string& id) {
  grpc::ClientContext ctx;
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::GetJobResponse resp;
  grpc::Status s = t.stub().GetJob(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.job();
}

// Watches `id` until `until` says stop (or the stream ends); returns the messages.
std::vector<v1::JobProgress> Watch(TrainerProcess& t, const std::string& id,
                                   const std::function<bool(const v1::JobProgress&)>& until = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::WatchJobRequest req;
  req.set_job_id(id);
  req.set_min_interval_seconds(0.05);
  auto reader = t.stub().WatchJob(&ctx, req);
  std::vector<v1::JobProgress> got;
  v1::JobProgress p;
  while (reader->Read(&p)) {
    got.push_back(p);
    if (until && until(p)) {
      ctx.TryCancel();
      break;
    }
  }
  reader->Finish();
  return got;
}

bool HasSkillpackFile(const std::string& dir) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path().string().find(".skillpack") != std::string::npos) return true;
  }
  return false;
}

bool Running(const v1::JobProgress& p) { return p.stage() == "sft" && p.step() >= 1; }

TEST(TrainerServiceTest, WatchCancelRestart) {
  const std::string dir = ::testing::TempDir() + "/trainer_service_" + std::to_string(::getpid());
  fs::remove_all(dir);
  const std::string state = dir + "/state";
  TrainerProcess t;
  t.Start(state, dir + ".log1");
  if (HasFatalFailure()) return;

  // 1. create -> watch -> SUCCEEDED.
  std::string done_id;
  ASSERT_TRUE(Create(t, TinyJob("short", 40), &done_id).ok());
  std::vector<v1::JobProgress> msgs = Watch(t, done_id);
  ASSERT_GE(msgs.size(), 3u);
  EXPECT_EQ(msgs.back().state(), v1::SUCCEEDED);
  bool saw_sft = false;
  for (const v1::JobProgress& p : msgs) {
    EXPECT_EQ(p.job_id(), done_id);
    if (p.stage() == "sft" && p.step() > 0) {
      saw_sft = true;
      EXPECT_EQ(p.total_steps(), 40);
      EXPECT_GT(p.loss(), 0);
      EXPECT_GE(p.eta_seconds(), 0);
    }
  }
  EXPECT_TRUE(saw_sft);
  v1::Job done = Get(t, done_id);
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.name(), "short");
  EXPECT_FALSE(done.started_at().empty());
  EXPECT_FALSE(done.finished_at().empty());
  EXPECT_TRUE(fs::exists(done.report_path()));
  EXPECT_TRUE(fs::exists(done.pack_path())) << done.pack_path();
  auto report = ParseJson(done.report_json(), "report_json");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["status"], "ok");

  // 2. cancel a long job mid-training: CANCELLED within seconds, no pack.
  std::string cancel_id;
  ASSERT_TRUE(Create(t, TinyJob("long", 1000000), &cancel_id).ok());
  Watch(t, cancel_id, Running);
  const Clock::time_point asked = Clock::now();
  {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(cancel_id);
    v1::CancelJobResponse resp;
    ASSERT_TRUE(t.stub().CancelJob(&ctx, req, &resp).ok());
  }
  msgs = Watch(t, cancel_id);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().state(), v1::CANCELLED);
  EXPECT_LT(Since(asked), 5.0);
  v1::Job cancelled = Get(t, cancel_id);
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  EXPECT_EQ(cancelled.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(cancelled.pack_path().empty());
  EXPECT_FALSE(HasSkillpackFile(cancelled.out_dir()));

  // 3. a job running when the service dies; a queued one behind it.
  std::string killed_id, queued_id;
  ASSERT_TRUE(Create(t, TinyJob("killed", 1000000), &killed_id).ok());
  ASSERT_TRUE(Create(t, TinyJob("queued", 20), &queued_id).ok());
  Watch(t, killed_id, Running);
  t.Kill(SIGKILL);

  TrainerProcess t2;
  t2.Start(state, dir + ".log2");
  if (HasFatalFailure()) return;
  {
    grpc::ClientContext ctx;
    v1::ListJobsResponse list;
    ASSERT_TRUE(t2.stub().ListJobs(&ctx, v1::ListJobsRequest(), &list).ok());
    ASSERT_EQ(list.jobs_size(), 4);
    EXPECT_EQ(list.jobs(0).id(), done_id);
    EXPECT_EQ(list.jobs(0).state(), v1::SUCCEEDED);
    EXPECT_EQ(list.jobs(0).report_path(), done.report_path());
    EXPECT_EQ(list.jobs(0).pack_path(), done.pack_path());
    EXPECT_EQ(list.jobs(1).id(), cancel_id);
    EXPECT_EQ(list.jobs(1).state(), v1::CANCELLED);
    EXPECT_EQ(list.jobs(2).id(), killed_id);
    EXPECT_EQ(list.jobs(2).state(), v1::INTERRUPTED);
    EXPECT_NE(list.jobs(2).error().find("interrupted"), std::string::npos);
    EXPECT_EQ(list.jobs(3).id(), queued_id);
  }
  EXPECT_FALSE(Get(t2, done_id).report_json().empty());
  // The queued job runs after the restart; new ids continue the sequence.
  msgs = Watch(t2, queued_id);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().state(), v1::SUCCEEDED);
  std::string next_id;
  ASSERT_TRUE(Create(t2, TinyJob("after", 1000000), &next_id).ok());
  EXPECT_GT(next_id, queued_id);
  // SIGTERM under a running job: recorded INTERRUPTED, and the service exits.
  Watch(t2, next_id, Running);
  t2.Kill(SIGTERM);
  TrainerProcess t3;
  t3.Start(state, dir + ".log3");
  if (HasFatalFailure()) return;
  EXPECT_EQ(Get(t3, next_id).state(), v1::INTERRUPTED);
  if (!HasFailure()) {
    fs::remove_all(dir);
    for (const char* n : {".log1", ".log2", ".log3"}) fs::remove(dir + n);
  }
}

// SIGTERM and SIGINT stop the service cleanly however many come and
// whichever thread the kernel hands them to: main and the threads it starts
// block them, and a handler passes one taken by a thread from before main
// (OpenBLAS's) on to main, so none takes its default, terminating action.
TEST(TrainerServiceTest, ABurstOfSignalsStopsItCleanly) {
  const std::string dir = ::testing::TempDir() + "/trainer_service_signals";
  fs::create_directories(dir);
  TrainerProcess t;
  t.Start(dir + "/state", dir + "/log");
  if (HasFatalFailure()) return;
  EXPECT_TRUE(testing_util::CatchesStopSignals(t.pid()));
  const auto masks = testing_util::ThreadSignalMasks(t.pid());
  ASSERT_TRUE(masks.count(t.pid()));
  EXPECT_TRUE(masks.at(t.pid()).second) << "the main thread takes SIGTERM or SIGINT through a handler";
  std::string id;
  ASSERT_TRUE(Create(t, TinyJob("burst", 1000000), &id).ok());
  Watch(t, id, Running);
  // Four signals while it stops the running job and its gRPC server.
  EXPECT_EQ(t.Signal({SIGTERM, SIGTERM, SIGINT, SIGTERM}, std::chrono::milliseconds(5)), 0)
      << ReadFileToString(dir + "/log").value_or("");
  TrainerProcess again;
  again.Start(dir + "/state", dir + "/log2");
  if (HasFatalFailure()) return;
  EXPECT_EQ(Get(again, id).state(), v1::INTERRUPTED);
}

TEST(TrainerServiceTest, BadSpecsAndAuth) {
  const std::string dir = ::testing::TempDir() + "/trainer_service_bad_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  ASSERT_TRUE(WriteFileAtomically(dir + "/token", "svc-token\n").ok());
  TrainerProcess t;
  t.Start(dir + "/state", dir + "/log", {"--admin-token-file", dir + "/token"});
  if (HasFatalFailure()) return;

  auto create = [&](const std::string& spec, bool with_token) {
    grpc::ClientContext ctx;
    if (with_token) ctx.AddMetadata("authorization", "Bearer svc-token");
    v1::CreateJobRequest req;
    req.set_spec_json(spec);
    v1::CreateJobResponse resp;
    return t.stub().CreateJob(&ctx, req, &resp);
  };
  EXPECT_EQ(create(TinyJob("x", 1), false).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  Json base = Json::parse(TinyJob("bad", 10));
  struct Case {
    std::function<void(Json&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](Json& j) { j["stages"]["sft"]["lr"] = 5; }, "job.stages.sft.lr"},
      {[](Json& j) { j["stages"]["finetune"] = Json::object(); }, "job.stages.finetune"},
      {[](Json& j) { j["stages"]["sft"]["data"] = "/nonexistent/train.jsonl"; }, "job.stages.sft.data"},
      {[](Json& j) { j["base_model"] = "/nonexistent/model"; }, "job.base_model"},
      {[](Json& j) { j["stages"]["sft"]["steps"] = 0; }, "job.stages.sft.steps"},
      {[](Json& j) {
         j["stages"]["distill"] = {{"sources", {"localhost"}}};
       },
       "job.stages.distill.sources[0]"},
      {[](Json& j) { j["task"]["name"] = "juggle"; }, "job.task.name"},
  };
  for (const Case& c : cases) {
    Json j = base;
    c.edit(j);
    grpc::Status s = create(j.dump(), true);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << c.field << ": " << s.error_message();
  }
  grpc::Status s = create("{not json", true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("spec_json"), std::string::npos) << s.error_message();

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer svc-token");
  v1::ListJobsResponse list;
  ASSERT_TRUE(t.stub().ListJobs(&ctx, v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);  // nothing was queued
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer svc-token");
  v1::GetJobRequest get;
  get.set_job_id("job-999999");
  v1::GetJobResponse got;
  EXPECT_EQ(t.stub().GetJob(&ctx2, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  t.Kill(SIGTERM);
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace skillpack
