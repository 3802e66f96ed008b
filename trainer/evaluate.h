// Held-out evaluation by generation: greedy decoding of each prompt with the
// generation engine, then the task's exact verifier: exact-match accuracy.
#ifndef SKILLPACK_TRAINER_EVALUATE_H_
#define SKILLPACK_TRAINER_EVALUATE_H_

#include <memory>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "trainer/tasks/task.h"

namespace skillpack {

struct TaskEvalResult {
  int64_t total = 0;
  int64_t correct = 0;
  double accuracy = 0;  // correct / total
  double seconds = 0;
  // The first few (prompt, expected, generated) triples, for reports.
  std::vector<std::vector<std::string>> samples;
};
Json TaskEvalResultToJson(const TaskEvalResult& r);

struct TaskEvalOptions {
  int32_t max_batch = 64;    // sequences decoded together
  int32_t extra_tokens = 2;  // generation budget beyond the task's longest response
  int32_t num_samples = 5;   // samples kept in the result
};

// Greedily completes every example's prompt (plain text with BOS, as SFT
// trains it) and counts exact matches of the generated text (special tokens
// excluded) against task.Verify. INVALID_ARGUMENT for an empty example list.
StatusOr<TaskEvalResult> EvaluateTask(const Transformer& model, std::shared_ptr<const ModelWeights> weights,
                                      const Tokenizer& tokenizer, const Task& task,
                                      const std::vector<TaskExample>& examples, const TaskEvalOptions& options = {});

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_EVALUATE_H_
