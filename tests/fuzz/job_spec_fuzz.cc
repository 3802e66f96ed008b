// libFuzzer target: a trainer job spec (trainer/job.h), the JSON that
// `skillpack-trainer run JOB.json` and Trainer.SubmitJob accept. Relative
// paths resolve against a folder that does not exist, so nothing is read or
// written outside the input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/json_util.h"
#include "tests/fuzz/fuzz_util.h"
#include "trainer/job.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace skillpack;
  StatusOr<Json> json = ParseJson(absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz/job.json");
  if (!json.ok()) {
    fuzz::CheckRejection(json.status());
    return 0;
  }
  StatusOr<JobSpec> job = ParseJobSpec(*json, "/nonexistent-skillpack-fuzz");
  if (!job.ok()) {
    fuzz::CheckRejection(job.status());
    return 0;
  }
  FUZZ_CHECK(job->sft || job->dpo || job->distill || job->compress || job->router || job->publish);
  return 0;
}
