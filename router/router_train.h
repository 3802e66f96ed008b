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
};

// Reads a JSONL file; INVALID_ARGUMENT naming the line for bad records.
StatusOr<std::vector<LabelledPrompt>> ReadLabelledPrompts(const std::string& path);

struct RouterTrainOptions {
  // 0 = mean-pooled embeddings: routing then costs <2% of time to first token
  // (bench/router_bench); each decoder layer adds ~1/num_layers of a prefill.
  int64_t layer = 0;
  int64_t width = 128;
  int64_t epochs = 200;  // full-batch AdamW steps over the training split
  double learning_rate = 3e-3;
  double weight_decay = 1e-2;
  double holdout_fraction = 0.2;
  uint64_t seed = 0;
  std::string base_fingerprint;
  // Optional module assignment stored in the router (policy.h RouterConfig);
  // when set it must give every label but "none" its modules.
  ModuleAssignment assignment;
};

struct RouterTrainResult {
  std::unique_ptr<Router> router;
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

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_ROUTER_TRAIN_H_
