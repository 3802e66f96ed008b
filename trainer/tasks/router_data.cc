#include "trainer/tasks/router_data.h"

#include <algorithm>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "trainer/tasks/paraphrase.h"
#include "trainer/tasks/phrasing_grammar.h"
#include "trainer/tasks/task.h"

namespace skillpack {

StatusOr<std::vector<RouterDataRecord>> MakeRouterData(const std::vector<std::string>& tasks,
                                                       const RouterDataOptions& o) {
  if (tasks.empty()) return absl::InvalidArgumentError("router data needs at least one task");
  if (o.per_task < 1) return absl::InvalidArgumentError(absl::StrCat("per_task must be >= 1, got ", o.per_task));
  if (o.general < 1) return absl::InvalidArgumentError(absl::StrCat("general must be >= 1, got ", o.general));
  std::set<std::string> seen;
  std::vector<RouterDataRecord> out;
  for (const std::string& name : tasks) {
    if (!seen.insert(name).second) return absl::InvalidArgumentError(absl::StrCat("task '", name, "' is listed twice"));
    ASSIGN_OR_RETURN(std::unique_ptr<Task> task, MakeTask(name));
    // Different seeds per kind and task: the raw prompts and the paraphrased
    // problems are not the same draws.
    const uint64_t seed = o.seed * 1000003 + seen.size() * 16;
    ASSIGN_OR_RETURN(std::vector<TaskExample> raw,
                     GenerateTaskExamples(*task, TaskSplit::kTrain, o.per_task, seed, false));
    for (TaskExample& e : raw) out.push_back({std::move(e.prompt), name, absl::StrCat(name, ":raw")});
    ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> para,
                     GenerateParaphrases(*task, TaskSplit::kTrain, TemplateSplit::kTrain, o.per_task, seed + 1));
    for (ParaphrasedExample& p : para) {
      out.push_back({std::move(p.text), name, absl::StrCat(name, ":t", p.template_index)});
    }
    if (o.composed) {
      ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> composed,
                       GenerateComposedParaphrases(*task, TaskSplit::kTrain, o.per_task, seed + 2));
      for (ParaphrasedExample& p : composed) {
        out.push_back({std::move(p.text), name, absl::StrCat(name, ":c", p.template_index)});
      }
    }
    if (o.composed && o.contexts) {
      // Core indices shared with the composed phrasings: one group per core.
      ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> contexts,
                       GenerateComposedParaphrases(*task, TaskSplit::kTrain, o.per_task, seed + 3, true));
      for (ParaphrasedExample& p : contexts) {
        out.push_back({std::move(p.text), name, absl::StrCat(name, ":c", p.template_index)});
      }
    }
  }
  const int64_t general = std::min(o.general, NumGeneralPrompts(TemplateSplit::kTrain, true));
  for (GeneralPrompt& g : GeneralPromptsWithParts(TemplateSplit::kTrain, general, o.seed * 1000003 + 3, true)) {
    out.push_back({std::move(g.text), "none", absl::StrCat("none:o", g.opener, "|none:t", g.topic)});
  }
  if (o.composed) {
    for (GeneralPrompt& g : ComposedGeneralPrompts(o.general, o.seed * 1000003 + 4)) {
      out.push_back({std::move(g.text), "none", absl::StrCat("none:c", g.opener, "|none:t", g.topic)});
    }
    if (!o.topic_words.empty()) {
      for (GeneralPrompt& g : ComposedGeneralPrompts(o.general, o.seed * 1000003 + 5, o.topic_words)) {
        out.push_back({std::move(g.text), "none", absl::StrCat("none:c", g.opener, "|none:w", g.topic)});
      }
    }
    if (o.made_up_topics) {
      const std::vector<std::string> made_up = MadeUpTopicWords(1000, o.seed * 1000003 + 8);
      for (GeneralPrompt& g : ComposedGeneralPrompts(o.general, o.seed * 1000003 + 9, made_up)) {
        out.push_back({std::move(g.text), "none", absl::StrCat("none:c", g.opener, "|none:m", g.topic)});
      }
    }
    if (o.contexts) {
      const bool words = !o.topic_words.empty();
      for (GeneralPrompt& g :
           ComposedGeneralPrompts(o.general, o.seed * 1000003 + 7,
                                  words ? o.topic_words : GeneralTopics(TemplateSplit::kTrain, true), true)) {
        out.push_back(
            {std::move(g.text), "none", absl::StrCat("none:c", g.opener, words ? "|none:w" : "|none:t", g.topic)});
      }
    }
  }
  return out;
}

}  // namespace skillpack
