// Labelled prompts for training a router over the built-in tasks' packs (the
// `skillpack-trainer make-router-data` command; `make demo`'s router): each
// task's raw prompts, its paraphrases from the training templates
// (paraphrase.h) and, optionally, composed phrasings (phrasing_grammar.h),
// labelled with the task's name; general prompts from the training openers
// and topics (and composed general prompts, optionally in context frames),
// labelled "none". Every record
// has the group it was made from (the raw format, a template, a core, an
// opener and a topic), so a router's validation can hold out whole phrasings
// (router_train.h LabelledPrompt::group). Held-out phrasings (paraphrase.h's
// held-out splits) never appear.
#ifndef SKILLPACK_TRAINER_TASKS_ROUTER_DATA_H_
#define SKILLPACK_TRAINER_TASKS_ROUTER_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace skillpack {

struct RouterDataOptions {
  int64_t per_task = 200;  // of each kind (raw, templates, composed) per task
  int64_t general = 400;   // general prompts (at most NumGeneralPrompts(kTrain, true)), and as many composed
  bool composed = true;    // phrasing_grammar.h's composed phrasings too
  // With `composed`: `general` more composed general prompts over these topic
  // words (e.g. phrasing_grammar.h CorpusTopicWords of a text corpus), so the
  // none class meets many topics. None when empty.
  std::vector<std::string> topic_words;
  // With `composed`: `per_task` more phrasings per task told inside a
  // situation (phrasing_grammar.h's context frames and situated cores), and
  // `general` more general prompts in context frames over `topic_words` (the
  // training topics when empty).
  bool contexts = false;
  // With `composed`: `general` more composed general prompts over 1000 made-up
  // topic words (phrasing_grammar.h MadeUpTopicWords: invented words and
  // letter salads), so a strange word alone does not make a request a task's.
  bool made_up_topics = false;
  uint64_t seed = 0;
};

struct RouterDataRecord {
  std::string prompt;
  std::string label;  // a task name or "none"
  std::string group;  // "reverse:raw", "reverse:t4", "reverse:c12", "none:o3|none:t5", "none:c2|none:t5",
                      // "none:c2|none:w17" (a topic word), "none:c2|none:m40" (a made-up word)
};

// Records for `tasks` (each a built-in task with paraphrase templates; no
// task twice), tasks in the given order then the general prompts. Same
// arguments, same output. INVALID_ARGUMENT naming the task or the count that
// is wrong (per_task and general must be >= 1).
StatusOr<std::vector<RouterDataRecord>> MakeRouterData(const std::vector<std::string>& tasks,
                                                       const RouterDataOptions& options);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TASKS_ROUTER_DATA_H_
