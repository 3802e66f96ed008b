// Training the router from labelled prompts: JSONL lines
// {"prompt": "...", "label": "<pack name>" | "none"} (or {"text": ...}).
#ifndef SKILLPACK_ROUTER_ROUTER_TRAIN_H_
#define SKILLPACK_ROUTER_ROUTER_TRAIN_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/tokenizer.h"
#include "router/router.h"

namespace skillpack {

struct LabelledPrompt {
  std::string prompt;
  std::string label;  // a pack name or "none"
  // Optional: the template (or other source) the prompt was made from. With
  // RouterTrainOptions::holdout_by_group and in SelectRouter, validation holds
  // out whole groups, so it measures phrasings the router never saw.
  // SelectRouter also reads several keys separated by '|' (e.g. a general
  // prompt's opener and topic, "none:o3|none:t5"): a prompt is validated only
  // in a fold that holds out all its keys, and trained on only in folds that
  // hold out none of them, so validation meets new combinations of parts it
  // has never seen any of (holdout_by_group takes the whole string as one group).
  std::string group;
};

// Reads a JSONL file (optional "group" field); INVALID_ARGUMENT naming the
// line for bad records.
StatusOr<std::vector<LabelledPrompt>> ReadLabelledPrompts(const std::string& path);

// Training-time variants of each prompt (the original is always kept): words
// dropped, neutral filler words inserted, letter case changed. A variant keeps
// its original's label and group.
struct RouterAugmentOptions {
  int64_t copies = 0;         // variants per prompt; 0 = no augmentation
  double word_dropout = 0.2;  // each word is dropped with this probability (one word always stays)
  double filler = 0.1;        // after each word, a filler word ("please", "now", ...) with this probability
  double case_change = 0.3;   // the variant is lower-cased, upper-cased or title-cased with this probability
};

// `copies` variants of every prompt of `data`, in order (all of prompt 0's,
// then prompt 1's, ...), without the originals. Same arguments, same output.
std::vector<LabelledPrompt> AugmentPrompts(const std::vector<LabelledPrompt>& data, const RouterAugmentOptions& o,
                                           uint64_t seed);

struct RouterTrainOptions {
  // 0 = mean-pooled embeddings: routing then costs <2% of time to first token
  // (bench/router_bench); each decoder layer adds ~1/num_layers of a prefill.
  int64_t layer = 0;
  // Features from several layers (strictly ascending; empty = {layer}; when
  // set, layer is ignored and the router's layer is layers.back()) and
  // poolings (empty = {mean}); router.h PromptFeatures.
  std::vector<int64_t> layers;
  std::vector<Pooling> pooling;
  int64_t width = 128;
  int64_t epochs = 200;  // full-batch AdamW steps over the training split
  double learning_rate = 3e-3;
  double weight_decay = 1e-2;
  double dropout = 0.0;  // on the MLP's hidden layer, while training
  // Members of a deep ensemble: this many MLPs trained on the same features
  // from different initialisations (member k from seed + k x a constant;
  // member 0 is the MLP ensemble = 1 trains), their logits averaged. The
  // average is folded into one MLP of width ensemble x width (fc1's rows
  // stacked, fc2's columns stacked and divided by the members), so the router
  // file and its scoring are unchanged (docs/router-format.md). In [1, 64].
  int64_t ensemble = 1;
  RouterAugmentOptions augment;
  double holdout_fraction = 0.2;
  // Hold out whole groups (LabelledPrompt::group; a holdout_fraction of each
  // label's groups, at least one when it has two or more) instead of prompts.
  bool holdout_by_group = false;
  uint64_t seed = 0;
  std::string base_fingerprint;
  // Optional module assignment stored in the router (policy.h RouterConfig);
  // when set it must give every label but "none" its modules.
  ModuleAssignment assignment;
};

struct RouterTrainResult {
  std::unique_ptr<Router> router;
  // With options.ensemble > 1, each member alone (members[0] is the router
  // ensemble = 1 would have trained); empty otherwise.
  std::vector<std::unique_ptr<Router>> members;
  double train_accuracy = 0;
  double holdout_accuracy = 0;
  int64_t train_examples = 0, holdout_examples = 0;
  // confusion[true label][predicted label] on the held-out split.
  std::map<std::string, std::map<std::string, int64_t>> confusion;
};

// Trains on a stratified split (per label, holdout_fraction of the examples are
// held out, chosen by a seeded shuffle).
StatusOr<RouterTrainResult> TrainRouter(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                        const std::vector<LabelledPrompt>& data, const RouterTrainOptions& options);

// A printable confusion table.
std::string ConfusionTable(const RouterTrainResult& r);

// Model selection by grouped cross-validation: for each candidate, `folds`
// trainings, each validating on a disjoint share of every label's group keys
// (LabelledPrompt::group, each key of it; a label with fewer than two keys is
// split prompt by prompt) and training on the rest (with the candidate's augmentation of
// its own training prompts only). Accuracy follows `policy` (a pack below the
// threshold counts as "none") and is balanced: the mean over labels of the
// share of their validation prompts routed right. Each candidate is scored
// after each of `epochs` (ascending; its options' epochs is ignored), which is
// early stopping chosen by validation. Data that is to stay unseen (a test
// set) must not be in `data`.
struct RouterCandidate {
  std::string name;
  RouterTrainOptions options;
  // Training-only prompts (e.g. corpus sentences as more "none" examples):
  // added, with the candidate's augmentation, to every fold's training set
  // and never validated, so candidates that differ in them are scored on the
  // same validation prompts. Their labels must be among `data`'s.
  std::vector<LabelledPrompt> extra;
};
struct RouterSelectOptions {
  int64_t folds = 3;
  std::vector<int64_t> epochs = {50, 100, 200, 400};
  RoutingPolicy policy;
  uint64_t seed = 0;
};
struct RouterCvScore {
  std::string candidate;
  int64_t epochs = 0;
  double balanced_accuracy = 0;  // mean over folds
  double worst_label = 0;        // the lowest label's accuracy, summed over folds
  int64_t validated = 0;         // prompts validated, summed over folds (each of data's at most once:
                                 // a prompt whose keys fall in different folds is never validated)
  std::map<std::string, double> per_label;
};
struct RouterSelection {
  std::vector<RouterCvScore> scores;  // every candidate x epochs
  size_t best = 0;                    // into scores: the highest balanced accuracy (first on ties)
  size_t best_candidate = 0;          // into the candidates: the one scores[best] belongs to
  RouterTrainOptions best_options;    // the best candidate's options with its epochs
};
// SelectRouter's folds: for every prompt of `data` (labels y, indices from
// MakeLabels' order), the folds its group keys (LabelledPrompt::group split
// at '|') are held out in, sorted, without repeats. Each label's keys are
// dealt round robin in a seeded order; a label with fewer than two keys deals
// its prompts one by one. Fold f validates the prompts whose list is {f} and
// trains on those whose list lacks f.
std::vector<std::vector<int64_t>> SelectionFolds(const std::vector<LabelledPrompt>& data, const std::vector<int64_t>& y,
                                                 int64_t folds, uint64_t seed);
StatusOr<RouterSelection> SelectRouter(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                       const std::vector<LabelledPrompt>& data,
                                       const std::vector<RouterCandidate>& candidates,
                                       const RouterSelectOptions& options);

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_ROUTER_TRAIN_H_
