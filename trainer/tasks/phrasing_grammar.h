// Training phrasings composed from parts, for the router: many more ways of
// asking for each task (and for general things) than paraphrase.h's fixed
// training templates, so that a router meets fewer phrasings unlike anything
// it was trained on.
//
// A phrasing is a *core* (what is asked, in the words a user might use:
// "reverse {s}", "what is {s} backwards") wrapped in a *frame* (how requests
// are wrapped: "Can you {c}?", "{C}, please.", "Quick question: {q}?").
// Cores are imperative ("sort {s}") or questions ("what is {s} sorted"); each
// kind has its own frames, and every frame is shared by all tasks AND by the
// general prompts (cores over the training split's topics, label none), so a
// frame carries no task: the router has to read the core.
//
// The cores were written after paraphrase.h's held-out sets kHeldOut, kFresh
// and kFresh2 had been seen, so a router trained on them is measured on
// kFresh3 alone (written by someone else before any such router was scored).
// A composed template equal to a template of any held-out split (ignoring
// case and end punctuation: "Reverse {s}." and kFresh2's "reverse {s}") is
// left out, so a held-out template stays a phrasing no router trained on.
#ifndef SKILLPACK_TRAINER_TASKS_PHRASING_GRAMMAR_H_
#define SKILLPACK_TRAINER_TASKS_PHRASING_GRAMMAR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "trainer/tasks/paraphrase.h"
#include "trainer/tasks/task.h"

namespace skillpack {

// Every distinct composed template of `task_name` (each core in each frame
// of its kind; fields as in paraphrase.h), core by core. With `contexts`,
// instead each core, and each *situated* core (the task asked as a word
// problem or inside an errand: "I have {a} apples and my friend gives me {b}
// more, how many apples do I have"), in each *context frame* of its kind (a
// request told inside a situation: "For my homework I need to <c>. Can you
// help?"); the task's cores keep their indices, its situated cores follow.
// INVALID_ARGUMENT for a task without cores.
StatusOr<std::vector<std::string>> ComposedTemplates(absl::string_view task_name, bool contexts = false);
// The number of cores of `task_name` (with `contexts`: and of its situated
// cores; 0 for a task without cores).
int NumPhrasingCores(absl::string_view task_name, bool contexts = false);

// `n` composed paraphrases of problems from `problems`: each a uniformly drawn
// core in a uniformly drawn frame of its kind (`contexts`: a core or situated
// core in a context frame); template_index is the core's index (the router's
// validation holds out whole cores, whatever the frame). Same arguments, same
// output.
StatusOr<std::vector<ParaphrasedExample>> GenerateComposedParaphrases(const Task& task, TaskSplit problems, int64_t n,
                                                                      uint64_t seed, bool contexts = false);

// `n` general prompts (label none) composed the same way from general cores
// over the training split's topics with its extras (paraphrase.h
// GeneralTopics(kTrain, true)): opener is the core's index, topic the
// topic's. Never one of a held-out split's general prompts (their topics are
// not training topics). Same arguments, same output.
std::vector<GeneralPrompt> ComposedGeneralPrompts(int64_t n, uint64_t seed);
// The same over `topics` instead (topic: an index into it; none may be
// empty). Same arguments, same output; with GeneralTopics(kTrain, true), the
// prompts above. With `contexts`, the general cores and as many more kinds of
// request ("write a tweet about {t}", "how does {t} work") in the context
// frames: the general cores keep their opener indices, the others follow.
std::vector<GeneralPrompt> ComposedGeneralPrompts(int64_t n, uint64_t seed, const std::vector<std::string>& topics,
                                                  bool contexts = false);

// Topic words from a text corpus (`texts`, e.g. pretrain.h's documents), so
// that general prompts meet many more topics than the 44 written ones: words
// of 4 to 12 letters written in lower case at least 3 times in the corpus,
// less common function words, less every word of any task's templates and
// cores (a topic never names a task's operation) and of any held-out split's
// templates and general prompts, each also with and without a trailing "s" or
// "es" (a held-out general prompt's topic is never a training topic). `n` of
// them (all when there are fewer) in a seeded order. Same arguments, same
// output.
std::vector<std::string> CorpusTopicWords(const std::vector<std::string>& texts, int64_t n, uint64_t seed);

// `n` made-up topic words, so that general prompts also meet topics the base
// model has never read (a rare word reads to the router's surprisal features
// much as a task's random argument does): alternately a pronounceable word of
// 2 or 3 invented syllables ("brounstel", "quaimo") and a letter salad of 3 to
// 8 letters a-z, the shape of a string task's argument ("xqvtr"); at most 12
// letters, distinct, none a word CorpusTopicWords leaves out (no word of a
// task's phrasings or of a held-out split's). Same arguments, same output.
std::vector<std::string> MadeUpTopicWords(int64_t n, uint64_t seed);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TASKS_PHRASING_GRAMMAR_H_
