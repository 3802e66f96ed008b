// The trainer service behind `skillpack-trainer serve`: JobManager queues
// validated job specs and runs them one at a time on a worker thread
// (RunJob, in this process), keeps every job's record under
// STATE_DIR/jobs/<id>/ (job.json: spec, state, timestamps, error, result paths;
// out/: the job's output folder), and TrainerService exposes it as the
// skillpack.v1.Trainer gRPC API.
//
// Durability: job.json is rewritten atomically at every state change, so a
// restarted service lists earlier jobs and their results. A job found RUNNING
// at start-up (the service died or stopped under it) becomes INTERRUPTED;
// QUEUED jobs are queued again in their original order.
#ifndef SKILLPACK_TRAINER_JOB_SERVICE_H_
#define SKILLPACK_TRAINER_JOB_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/status.h"
#include "skillpack/v1/trainer.grpc.pb.h"

namespace skillpack {

// True for SUCCEEDED, FAILED, CANCELLED and INTERRUPTED.
bool IsFinalJobState(v1::JobState state);

class JobManager {
 public:
  struct Options {
    std::string state_dir;  // created if missing
    std::string work_dir;   // resolves relative paths in job specs
  };

  // Loads earlier jobs from options.state_dir and starts the worker.
  static StatusOr<std::unique_ptr<JobManager>> Create(const Options& options);
  ~JobManager();  // Shutdown()

  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Validates `spec_json` (ParseJobSpec: INVALID_ARGUMENT naming the field)
  // and queues it. FAILED_PRECONDITION once shutting down.
  StatusOr<v1::Job> CreateJob(const std::string& spec_json);
  // NOT_FOUND for an unknown id. With `with_report`, a SUCCEEDED job's
  // report.json text is included.
  StatusOr<v1::Job> GetJob(const std::string& id, bool with_report) const;
  std::vector<v1::Job> ListJobs() const;  // oldest first
  // QUEUED: CANCELLED at once. RUNNING: asks the worker to stop (it stops
  // within a training step and becomes CANCELLED). Final: unchanged.
  StatusOr<v1::Job> CancelJob(const std::string& id);
  // Returns the job once its version (bumped at every change) exceeds
  // *version, or after `timeout`; *version is set to the version returned.
  StatusOr<v1::Job> WaitJob(const std::string& id, uint64_t* version, absl::Duration timeout) const;

  // Stops the worker: a running job is cancelled and recorded INTERRUPTED;
  // queued jobs stay QUEUED on disk for the next start. Idempotent.
  void Shutdown();

 private:
  struct Entry {
    v1::Job job;
    uint64_t version = 1;
    std::atomic<bool> cancel{false};
    double started_unix = 0;  // for elapsed_seconds
  };

  explicit JobManager(Options options) : options_(std::move(options)) {}
  Status Load();
  void WorkerLoop();
  void RunOne(Entry* entry);
  // Writes entry->job (without report_json) to its job.json. Errors are logged.
  void Persist(const Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Job Snapshot(const Entry& entry) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string JobDir(const std::string& id) const;

  const Options options_;
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;  // signalled on every job change and on shutdown
  std::map<std::string, std::unique_ptr<Entry>> jobs_ ABSL_GUARDED_BY(mu_);  // by id = creation order
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

// skillpack.v1.Trainer over a JobManager. With a non-empty `admin_token`,
// every call must carry "authorization: Bearer <token>" (UNAUTHENTICATED
// otherwise).
class TrainerService final : public v1::Trainer::Service {
 public:
  TrainerService(JobManager* manager, std::string admin_token)
      : manager_(manager), admin_token_(std::move(admin_token)) {}

  grpc::Status CreateJob(grpc::ServerContext* context, const v1::CreateJobRequest* request,
                         v1::CreateJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::GetJobResponse* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobProgress>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override;

 private:
  Status Authorize(const grpc::ServerContext& context) const;

  JobManager* const manager_;
  const std::string admin_token_;
};

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_JOB_SERVICE_H_
