// Synthetic tasks of the tiny world: seeded generators of short prompt /
// response strings (small enough for the byte-level tiny models) with exact
// verifiers, and a deterministic train / held-out split of every task's
// problem space, so held-out accuracy measures generalisation, not recall.
//
// Built-in tasks (prompt -> response):
//   add      "37+45="          -> "82"       operands in [0, 99]
//   reverse  "rev abcd="       -> "dcba"     3-6 letters from a-z
//   sort     "sort 5391="      -> "1359"     3-6 digits
//   kv       "a=3;b=5;c=1 b?"  -> "5"        3-4 distinct keys a-z, digit values
//   caesar   "rot3 abc="       -> "def"      shift 1-5, 3-6 letters from a-z
#ifndef SKILLPACK_TRAINER_TASKS_TASK_H_
#define SKILLPACK_TRAINER_TASKS_TASK_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

struct TaskExample {
  std::string prompt;
  std::string response;  // the one correct answer
};

enum class TaskSplit { kTrain, kHeldOut };
// "train" / "held_out".
const char* TaskSplitName(TaskSplit split);
StatusOr<TaskSplit> TaskSplitFromName(absl::string_view name);

// The split a prompt belongs to: held-out iff FNV-1a-64(prompt) % 10 == 0
// (about 10% of every task's problems). Independent of seeds, so the train and
// held-out sets of any two runs never share a prompt.
TaskSplit SplitOfPrompt(absl::string_view prompt);

// One task. Implementations are immutable; all methods are thread-safe.
class Task {
 public:
  virtual ~Task() = default;

  virtual const char* name() const = 0;
  // Draws one problem uniformly from the task's whole space (either split).
  virtual TaskExample Sample(std::mt19937_64& rng) const = 0;
  // The correct response to `prompt`; INVALID_ARGUMENT when `prompt` is not a
  // prompt of this task.
  virtual StatusOr<std::string> Solve(absl::string_view prompt) const = 0;
  // A plausible wrong response to `prompt` (for preference pairs): never equal
  // to Solve(prompt). REQUIRES: `prompt` is a prompt of this task.
  virtual std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const = 0;
  // Longest response in bytes (bounds generation during evaluation).
  virtual int32_t max_response_bytes() const = 0;

  // Exact verifier: true iff `response` is exactly Solve(prompt).
  bool Verify(absl::string_view prompt, absl::string_view response) const;
};

// The built-in task called `name` (see the table above). INVALID_ARGUMENT
// naming the unknown task and listing the known ones otherwise.
StatusOr<std::unique_ptr<Task>> MakeTask(absl::string_view name);
// Names of the built-in tasks.
std::vector<std::string> TaskNames();

// `n` examples of `split` drawn with a generator seeded by `seed`. With
// `unique`, no prompt repeats (RESOURCE_EXHAUSTED if the split has fewer than
// `n` problems, detected after many fruitless draws). Same arguments, same
// examples.
StatusOr<std::vector<TaskExample>> GenerateTaskExamples(const Task& task, TaskSplit split, int64_t n, uint64_t seed,
                                                        bool unique);

// GenerateTaskExamples's examples, each of which (independently, with
// probability `wrong_share`, from a generator seeded by `seed` + 51) answers
// with Task::WrongResponse instead: SFT data from a source that makes the
// task's natural mistake. INVALID_ARGUMENT unless 0 <= wrong_share <= 1.
StatusOr<std::vector<TaskExample>> GenerateTaskExamplesWithMistakes(const Task& task, TaskSplit split, int64_t n,
                                                                    uint64_t seed, double wrong_share);

// A preference pair for DPO: the correct response is chosen, a wrong one rejected.
struct TaskPreference {
  std::string prompt;
  std::string chosen;
  std::string rejected;
};
StatusOr<std::vector<TaskPreference>> GenerateTaskPreferences(const Task& task, TaskSplit split, int64_t n,
                                                              uint64_t seed, bool unique);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TASKS_TASK_H_
