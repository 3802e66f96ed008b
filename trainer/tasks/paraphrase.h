// Natural-language paraphrases of the synthetic tasks' prompts, and general
// (non-task) prompts, for training and measuring the router on phrasings it
// has not seen (bench/fidelity's Table 4).
//
// Every built-in task has a fixed, ordered list of templates over the fields
// of its canonical prompt ("rev abcd=" has the field {s} = "abcd"; "Reverse
// the string {s}" paraphrases it as "Reverse the string abcd"). Templates are
// split deterministically: of the first eight, every fourth (index % 4 == 3)
// is held out; those and the extra templates after them (index >=
// kFirstExtraTemplate, written without the held-out ones' wording) are for
// training, so a router evaluated on held-out templates meets phrasings
// absent from its training data. A paraphrase keeps its canonical prompt,
// whose answer the task's verifier checks as before.
//
// General prompts are composed from an opener and a topic; the held-out split
// uses openers AND topics that the training split never uses, so held-out
// general prompts share no template and no topic with the training ones.
//
// kFresh is a second held-out set (templates and general openers and topics),
// written after the router settings committed before it were chosen with the
// first held-out set's scores in view; no router trains on either. kFresh2,
// kFresh3, ..., kFresh12 are the third to the thirteenth, each written the same
// way after the one before it was scored and before any router was scored on
// it (paraphrase.cc's SeparateSets holds them).
#ifndef SKILLPACK_TRAINER_TASKS_PARAPHRASE_H_
#define SKILLPACK_TRAINER_TASKS_PARAPHRASE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "trainer/tasks/task.h"

namespace skillpack {

enum class TemplateSplit {
  kTrain,
  kHeldOut,
  kFresh,
  kFresh2,
  kFresh3,
  kFresh4,
  kFresh5,
  kFresh6,
  kFresh7,
  kFresh8,
  kFresh9,
  kFresh10,
  kFresh11,
  kFresh12
};
// Templates from this index on are training-only extras.
inline constexpr size_t kFirstExtraTemplate = 8;
const char* TemplateSplitName(TemplateSplit split);  // "train" / "held_out" / "fresh" / ... / "fresh12"
// Every held-out split, in order: no router trains on any of them.
inline constexpr TemplateSplit kHeldOutTemplateSplits[] = {
    TemplateSplit::kHeldOut, TemplateSplit::kFresh,  TemplateSplit::kFresh2,  TemplateSplit::kFresh3,
    TemplateSplit::kFresh4,  TemplateSplit::kFresh5, TemplateSplit::kFresh6,  TemplateSplit::kFresh7,
    TemplateSplit::kFresh8,  TemplateSplit::kFresh9, TemplateSplit::kFresh10, TemplateSplit::kFresh11,
    TemplateSplit::kFresh12};
// A phrasing as splits are compared: lower case, without trailing '.', '?',
// '!' or spaces ("Reverse {s}." and "reverse {s}" are the same phrasing).
std::string NormalizedPhrasing(absl::string_view text);

// All templates of task `task_name` in their fixed order (fields in braces:
// add {a} {b}; reverse, sort {s}; kv {pairs} {q} with pairs "a=3, b=5";
// caesar {n} {s}). INVALID_ARGUMENT for a task without templates.
StatusOr<std::vector<std::string>> ParaphraseTemplates(absl::string_view task_name);
// The templates of one split (index < 8 and index % 4 == 3: held out; the
// fresh sets' are not among ParaphraseTemplates(task_name)).
StatusOr<std::vector<std::string>> ParaphraseTemplates(absl::string_view task_name, TemplateSplit split);

// `canonical_prompt` (a prompt of `task`) written with `tmpl`. INVALID_ARGUMENT
// when the prompt is not one of the task's or the template names a field the
// task does not have.
StatusOr<std::string> Paraphrase(const Task& task, absl::string_view canonical_prompt, absl::string_view tmpl);

struct ParaphrasedExample {
  std::string text;        // the paraphrased prompt
  TaskExample canonical;   // the problem it states (prompt, correct response)
  int template_index = 0;  // into ParaphraseTemplates(task name); kFresh..kFresh12: into the split's list
};

// `n` paraphrases: problems drawn from the task's `problems` split (see
// task.h) with a generator seeded by `seed`, each written with a template of
// `templates` chosen by the same generator (without the extra training
// templates unless `extra_templates`). Same arguments, same output.
StatusOr<std::vector<ParaphrasedExample>> GenerateParaphrases(const Task& task, TaskSplit problems,
                                                              TemplateSplit templates, int64_t n, uint64_t seed,
                                                              bool extra_templates = true);

// The number of distinct general prompts of a split (with `extra`, the
// training split's extra openers and topics too; no effect on the held-out
// splits).
int64_t NumGeneralPrompts(TemplateSplit split, bool extra = false);
// `n` distinct general prompts of `split` in a seeded order (`n` is capped at
// NumGeneralPrompts(split, extra)). With `extra`, the training split has 16
// more openers and 32 more topics (24 x 44 prompts instead of 8 x 12), written
// without the held-out openers' and topics' words; without it, the prompts
// are those of before the extras existed. Same arguments, same output.
std::vector<std::string> GeneralPrompts(TemplateSplit split, int64_t n, uint64_t seed, bool extra = false);
// The same prompts with the indices of the opener and the topic each was
// made from (the router's validation holds out whole openers and topics).
struct GeneralPrompt {
  std::string text;
  int opener = 0;
  int topic = 0;
};
// The topics of a split's general prompts in GeneralPrompt::topic's order
// (with `extra`, the training split's extra topics after its own).
std::vector<std::string> GeneralTopics(TemplateSplit split, bool extra = false);
std::vector<GeneralPrompt> GeneralPromptsWithParts(TemplateSplit split, int64_t n, uint64_t seed, bool extra = false);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TASKS_PARAPHRASE_H_
