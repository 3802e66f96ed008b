#include "trainer/job_service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "rpc/bearer_auth.h"
#include "rpc/grpc_status.h"
#include "trainer/job.h"

namespace skillpack {
namespace {

constexpr char kJobFile[] = "job.json";

void Warn(const std::string& line) { std::fprintf(stderr, "skillpack-trainer serve: %s\n", line.c_str()); }

// Seconds since the epoch as RFC 3339 UTC ("2024-05-01T12:00:00Z").
std::string Rfc3339(double unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm_utc;
  gmtime_r(&t, &tm_utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  return buf;
}

double UnixNow() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

}  // namespace

bool IsFinalJobState(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED || state == v1::INTERRUPTED;
}

StatusOr<std::unique_ptr<JobManager>> JobManager::Create(const Options& options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("--state-dir: required");
  std::unique_ptr<JobManager> m(new JobManager(options));
  RETURN_IF_ERROR(MakeDirectories(JoinPath(options.state_dir, "jobs")));
  RETURN_IF_ERROR(m->Load());
  m->worker_ = std::thread([p = m.get()] { p->WorkerLoop(); });
  return m;
}

JobManager::~JobManager() { Shutdown(); }

std::string JobManager::JobDir(const std::string& id) const {
  return JoinPath(JoinPath(options_.state_dir, "jobs"), id);
}

Status JobManager::Load() {
  namespace fs = std::filesystem;
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(JoinPath(options_.state_dir, "jobs"), ec)) {
    if (e.is_directory() && PathExists(JoinPath(e.path().string(), kJobFile))) {
      ids.push_back(e.path().filename().string());
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", options_.state_dir, "/jobs: ", ec.message()));
  std::sort(ids.begin(), ids.end());
  absl::MutexLock lock(&mu_);
  for (const std::string& id : ids) {
    const std::string path = JoinPath(JobDir(id), kJobFile);
    StatusOr<std::string> text = ReadFileToString(path);
    auto entry = std::make_unique<Entry>();
    if (!text.ok() || !google::protobuf::util::JsonStringToMessage(*text, &entry->job).ok() || entry->job.id() != id) {
      Warn(absl::StrCat("skipping unreadable job record ", path));
      continue;
    }
    if (entry->job.state() == v1::RUNNING) {
      entry->job.set_state(v1::INTERRUPTED);
      entry->job.set_finished_at(Rfc3339(UnixNow()));
      entry->job.set_error_code(static_cast<int>(absl::StatusCode::kAborted));
      entry->job.set_error("interrupted: the trainer service stopped while the job was running");
      entry->job.mutable_progress()->set_state(v1::INTERRUPTED);
      Persist(*entry);
    } else if (entry->job.state() == v1::QUEUED) {
      queue_.push_back(id);
    }
    int64_t seq = 0;
    if (std::sscanf(id.c_str(), "job-%ld", &seq) == 1) next_seq_ = std::max(next_seq_, seq + 1);
    jobs_[id] = std::move(entry);
  }
  return absl::OkStatus();
}

void JobManager::Persist(const Entry& entry) {
  v1::Job job = entry.job;
  job.clear_report_json();
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(job, &text, opts).ok()) {
    Warn(absl::StrCat("cannot serialise job ", job.id()));
    return;
  }
  const Status s = WriteFileAtomically(JoinPath(JobDir(job.id()), kJobFile), text);
  if (!s.ok()) Warn(absl::StrCat("writing the record of ", job.id(), ": ", s.ToString()));
}

void JobManager::Touch(Entry* entry) {
  ++entry->version;
  changed_.SignalAll();
}

v1::Job JobManager::Snapshot(const Entry& entry) const {
  v1::Job job = entry.job;
  v1::JobProgress* p = job.mutable_progress();
  p->set_job_id(job.id());
  p->set_state(job.state());
  if (job.state() == v1::RUNNING && entry.started_unix > 0) p->set_elapsed_seconds(UnixNow() - entry.started_unix);
  return job;
}

StatusOr<v1::Job> JobManager::CreateJob(const std::string& spec_json) {
  ASSIGN_OR_RETURN(Json j, ParseJson(spec_json, "spec_json"));
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(j, options_.work_dir));
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("the trainer service is shutting down");
  auto entry = std::make_unique<Entry>();
  const std::string id = absl::StrFormat("job-%06d", next_seq_++);
  v1::Job& job = entry->job;
  job.set_id(id);
  job.set_name(spec.name);
  job.set_state(v1::QUEUED);
  job.set_spec_json(spec_json);
  job.set_created_at(Rfc3339(UnixNow()));
  job.set_out_dir(JoinPath(JobDir(id), "out"));
  job.mutable_progress()->set_stage("queued");
  RETURN_IF_ERROR(MakeDirectories(JobDir(id)));
  Persist(*entry);
  Entry* e = entry.get();
  jobs_[id] = std::move(entry);
  queue_.push_back(id);
  Touch(e);
  return Snapshot(*e);
}

StatusOr<v1::Job> JobManager::GetJob(const std::string& id, bool with_report) const {
  v1::Job job;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job_id: no job '", id, "'"));
    job = Snapshot(*it->second);
  }
  if (with_report && !job.report_path().empty()) {
    StatusOr<std::string> report = ReadFileToString(job.report_path());
    if (report.ok()) job.set_report_json(*report);
  }
  return job;
}

std::vector<v1::Job> JobManager::ListJobs() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& [id, entry] : jobs_) out.push_back(Snapshot(*entry));
  return out;
}

StatusOr<v1::Job> JobManager::CancelJob(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job_id: no job '", id, "'"));
  Entry* e = it->second.get();
  if (e->job.state() == v1::QUEUED) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    e->job.set_state(v1::CANCELLED);
    e->job.set_finished_at(Rfc3339(UnixNow()));
    e->job.set_error_code(static_cast<int>(absl::StatusCode::kCancelled));
    e->job.set_error("cancelled before it started");
    Persist(*e);
    Touch(e);
  } else if (e->job.state() == v1::RUNNING) {
    e->cancel.store(true);
  }
  return Snapshot(*e);
}

StatusOr<v1::Job> JobManager::WaitJob(const std::string& id, uint64_t* version, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job_id: no job '", id, "'"));
  const Entry* e = it->second.get();  // entries are never removed
  const absl::Time deadline = absl::Now() + timeout;
  while (e->version <= *version && !stopping_) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  *version = e->version;
  return Snapshot(*e);
}

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    for (auto& [id, e] : jobs_) {
      if (e->job.state() == v1::RUNNING) e->cancel.store(true);
    }
    changed_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
}

void JobManager::WorkerLoop() {
  for (;;) {
    Entry* e = nullptr;
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) changed_.Wait(&mu_);
      if (stopping_) return;
      e = jobs_.at(queue_.front()).get();
      queue_.pop_front();
      e->job.set_state(v1::RUNNING);
      e->started_unix = UnixNow();
      e->job.set_started_at(Rfc3339(e->started_unix));
      e->job.mutable_progress()->set_stage("setup");
      Persist(*e);
      Touch(e);
    }
    RunOne(e);
  }
}

void JobManager::RunOne(Entry* e) {
  std::string spec_json, out_dir;
  {
    absl::MutexLock lock(&mu_);
    spec_json = e->job.spec_json();
    out_dir = e->job.out_dir();
  }
  StatusOr<Json> report = absl::UnknownError("not run");
  StatusOr<Json> j = ParseJson(spec_json, "spec_json");
  StatusOr<JobSpec> spec = j.ok() ? ParseJobSpec(*j, options_.work_dir) : StatusOr<JobSpec>(j.status());
  if (!spec.ok()) {
    report = spec.status();
  } else {
    RunJobOptions opts;
    opts.out_dir = out_dir;
    opts.progress = false;
    opts.resume = false;
    opts.cancel = &e->cancel;
    opts.on_progress = [this, e](const JobProgressUpdate& u) {
      absl::MutexLock lock(&mu_);
      v1::JobProgress* p = e->job.mutable_progress();
      p->set_stage(u.stage);
      p->set_step(u.step);
      p->set_total_steps(u.total_steps);
      p->set_loss(u.loss);
      p->set_eta_seconds(u.eta_seconds);
      Touch(e);
    };
    try {
      report = RunJob(*spec, opts);
    } catch (const std::exception& ex) {  // RunJob returns Status; this is a last guard
      report = StatusFromException(ex, "job");
    }
  }
  absl::MutexLock lock(&mu_);
  v1::Job& job = e->job;
  const double now = UnixNow();
  job.set_finished_at(Rfc3339(now));
  job.mutable_progress()->set_elapsed_seconds(now - e->started_unix);
  job.mutable_progress()->set_eta_seconds(0);
  if (report.ok()) {
    job.set_state(v1::SUCCEEDED);
    job.mutable_progress()->set_stage("done");
    job.set_report_path(JoinPath(out_dir, "report.json"));
    const Json& stages = (*report)["stages"];
    if (stages.is_object() && stages.contains("compress") && stages["compress"].contains("path")) {
      job.set_pack_path(stages["compress"]["path"].get<std::string>());
    }
  } else {
    const Status& s = report.status();
    if (e->cancel.load() && stopping_) {
      job.set_state(v1::INTERRUPTED);
      job.set_error_code(static_cast<int>(absl::StatusCode::kAborted));
      job.set_error("interrupted: the trainer service stopped while the job was running");
    } else {
      job.set_state(e->cancel.load() && s.code() == absl::StatusCode::kCancelled ? v1::CANCELLED : v1::FAILED);
      job.set_error_code(static_cast<int>(s.code()));
      job.set_error(std::string(s.message()));
    }
  }
  job.mutable_progress()->set_state(job.state());
  Persist(*e);
  Touch(e);
}

// ---------------------------------------------------------------------------

Status TrainerService::Authorize(const grpc::ServerContext& context) const {
  if (admin_token_.empty()) return absl::OkStatus();
  return CheckBearerToken(context.client_metadata(), admin_token_);
}

grpc::Status TrainerService::CreateJob(grpc::ServerContext* context, const v1::CreateJobRequest* request,
                                       v1::CreateJobResponse* response) {
  if (Status s = Authorize(*context); !s.ok()) return ToGrpcStatus(s);
  if (request->spec_json().empty()) return ToGrpcStatus(absl::InvalidArgumentError("spec_json: required"));
  StatusOr<v1::Job> job = manager_->CreateJob(request->spec_json());
  if (!job.ok()) return ToGrpcStatus(job.status());
  response->set_job_id(job->id());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainerService::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                    v1::GetJobResponse* response) {
  if (Status s = Authorize(*context); !s.ok()) return ToGrpcStatus(s);
  StatusOr<v1::Job> job = manager_->GetJob(request->job_id(), /*with_report=*/true);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainerService::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest*,
                                      v1::ListJobsResponse* response) {
  if (Status s = Authorize(*context); !s.ok()) return ToGrpcStatus(s);
  for (v1::Job& job : manager_->ListJobs()) *response->add_jobs() = std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainerService::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobProgress>* writer) {
  if (Status s = Authorize(*context); !s.ok()) return ToGrpcStatus(s);
  double interval = 0.2;
  if (request->min_interval_seconds() != 0) {
    interval = request->min_interval_seconds();
    if (!(interval >= 0 && interval <= 60)) {
      return ToGrpcStatus(absl::InvalidArgumentError("min_interval_seconds must be in [0, 60]"));
    }
  }
  uint64_t version = 0;
  uint64_t sent = 0;
  for (;;) {
    StatusOr<v1::Job> job = manager_->WaitJob(request->job_id(), &version, absl::Seconds(1));
    if (!job.ok()) return ToGrpcStatus(job.status());
    if (version != sent) {
      if (!writer->Write(job->progress())) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      sent = version;
    }
    if (IsFinalJobState(job->state())) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
    if (interval > 0) absl::SleepFor(absl::Seconds(interval));
  }
}

grpc::Status TrainerService::CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                                       v1::CancelJobResponse* response) {
  if (Status s = Authorize(*context); !s.ok()) return ToGrpcStatus(s);
  StatusOr<v1::Job> job = manager_->CancelJob(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

}  // namespace skillpack
