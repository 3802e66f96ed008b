#include "trainer/tasks/task.h"

#include <set>

#include "absl/strings/str_join.h"
#include "core/fnv1a.h"
#include "trainer/tasks/builtin_tasks.h"

namespace skillpack {

const char* TaskSplitName(TaskSplit split) { return split == TaskSplit::kTrain ? "train" : "held_out"; }

StatusOr<TaskSplit> TaskSplitFromName(absl::string_view name) {
  if (name == "train") return TaskSplit::kTrain;
  if (name == "held_out") return TaskSplit::kHeldOut;
  return absl::InvalidArgumentError(absl::StrCat("unknown split '", name, "' (expected train or held_out)"));
}

TaskSplit SplitOfPrompt(absl::string_view prompt) {
  return Fnv1a64(prompt) % 10 == 0 ? TaskSplit::kHeldOut : TaskSplit::kTrain;
}

bool Task::Verify(absl::string_view prompt, absl::string_view response) const {
  StatusOr<std::string> want = Solve(prompt);
  return want.ok() && *want == response;
}

std::vector<std::string> TaskNames() { return BuiltinTaskNames(); }

StatusOr<std::unique_ptr<Task>> MakeTask(absl::string_view name) {
  std::unique_ptr<Task> task = MakeBuiltinTask(name);
  if (task == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown task '", name, "' (known: ", absl::StrJoin(TaskNames(), ", "), ")"));
  }
  return task;
}

namespace {

// Draws examples of `split` until `n` are collected; calls `emit` for each.
template <typename Emit>
Status DrawExamples(const Task& task, TaskSplit split, int64_t n, uint64_t seed, bool unique, Emit emit) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("example count must be >= 0, got ", n));
  std::mt19937_64 rng(seed);
  std::set<std::string> seen;
  int64_t got = 0, misses = 0;
  // A split that yields no new prompt in this many consecutive draws is treated
  // as exhausted (the built-in spaces are small enough to hit this only when n
  // really exceeds their size).
  const int64_t kMaxMisses = 200000;
  while (got < n) {
    TaskExample ex = task.Sample(rng);
    if (SplitOfPrompt(ex.prompt) != split || (unique && !seen.insert(ex.prompt).second)) {
      if (++misses > kMaxMisses) {
        return absl::ResourceExhaustedError(absl::StrCat("task ", task.name(), " has fewer than ", n, " distinct ",
                                                         TaskSplitName(split), " problems (found ", got, ")"));
      }
      continue;
    }
    misses = 0;
    emit(std::move(ex), rng);
    ++got;
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::vector<TaskExample>> GenerateTaskExamples(const Task& task, TaskSplit split, int64_t n, uint64_t seed,
                                                        bool unique) {
  std::vector<TaskExample> out;
  RETURN_IF_ERROR(DrawExamples(task, split, n, seed, unique,
                               [&](TaskExample ex, std::mt19937_64&) { out.push_back(std::move(ex)); }));
  return out;
}

StatusOr<std::vector<TaskExample>> GenerateTaskExamplesWithMistakes(const Task& task, TaskSplit split, int64_t n,
                                                                    uint64_t seed, double wrong_share) {
  if (!(wrong_share >= 0 && wrong_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("wrong_share must be in [0, 1], got ", wrong_share));
  }
  ASSIGN_OR_RETURN(std::vector<TaskExample> out, GenerateTaskExamples(task, split, n, seed, false));
  std::mt19937_64 rng(seed + 51);
  std::bernoulli_distribution wrong(wrong_share);
  for (TaskExample& e : out) {
    if (wrong(rng)) e.response = task.WrongResponse(e.prompt, rng);
  }
  return out;
}

StatusOr<std::vector<TaskPreference>> GenerateTaskPreferences(const Task& task, TaskSplit split, int64_t n,
                                                              uint64_t seed, bool unique) {
  std::vector<TaskPreference> out;
  RETURN_IF_ERROR(DrawExamples(task, split, n, seed, unique, [&](TaskExample ex, std::mt19937_64& rng) {
    std::string wrong = task.WrongResponse(ex.prompt, rng);
    out.push_back({std::move(ex.prompt), std::move(ex.response), std::move(wrong)});
  }));
  return out;
}

}  // namespace skillpack
