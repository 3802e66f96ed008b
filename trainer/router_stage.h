// The job pipeline's `router` stage: trains a router (router/router_train.h)
// on the job's BASE model from a labelled-prompts file and writes
// DIR/router.safetensors, with the base's fingerprint recorded in it.
//
//   "router": {"data": "labelled.jsonl", "layer": 0, "width": 128, "epochs": 200,
//              "lr": 3e-3, "weight_decay": 1e-2, "holdout": 0.2,
//              "min_holdout_accuracy": 0.0,
//              "layers": [0, 2], "pooling": ["mean", "max"], "dropout": 0.0,   (optional)
//              "ensemble": 5,                                                  (optional)
//              "augment": {"copies": 2, "word_dropout": 0.2, "filler": 0.1,
//                          "case_change": 0.3},                                (optional)
//              "holdout_by_group": false}
// `layers`/`pooling`: router.h's features (default: mean at `layer`);
// `augment`: router_train.h's RouterAugmentOptions; `ensemble`: its members
// (RouterTrainOptions::ensemble, default 1); `holdout_by_group`
// holds out whole groups (the data's optional "group" field).
// `data` is JSONL {"prompt": ..., "label": "<pack name>" | "none"} (required).
// A held-out accuracy below `min_holdout_accuracy` fails the job (and no router
// file is left), so a pipeline can refuse to publish a weak router.
#ifndef SKILLPACK_TRAINER_ROUTER_STAGE_H_
#define SKILLPACK_TRAINER_ROUTER_STAGE_H_

#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/model.h"
#include "core/status.h"
#include "core/tokenizer.h"
#include "router/router_train.h"
#include "trainer/spec_reader.h"

namespace skillpack {

// Reads the router's training options that `r`'s object has (layer, layers,
// pooling, width, epochs, lr, weight_decay, dropout, ensemble, augment), leaving the
// others as they are; INVALID_ARGUMENT naming the field. Shared by the
// router stage and the fidelity study.
Status ReadRouterOptions(FieldReader& r, RouterTrainOptions* o);
// A JSON list of integers each in [lo, hi]; INVALID_ARGUMENT naming `path`.
StatusOr<std::vector<int64_t>> ReadIntList(const Json& j, const std::string& path, int64_t lo, int64_t hi);
// ReadIntList, strictly ascending too ("<path> must be strictly ascending").
StatusOr<std::vector<int64_t>> ReadAscendingIntList(const Json& j, const std::string& path, int64_t lo, int64_t hi);

struct RouterStageSpec {
  std::string data;  // resolved path
  RouterTrainOptions train;
  double min_holdout_accuracy = 0.0;
};

// Parses the stage object at `path` ("job.stages.router"); relative paths
// resolve against `base_dir`. INVALID_ARGUMENT naming the field.
StatusOr<RouterStageSpec> ParseRouterStage(const Json& j, const std::string& path, const std::string& base_dir,
                                           uint64_t job_seed);

// Trains on `base` and writes out_dir/router.safetensors. Returns the stage's
// report: path, labels, layer, train / held-out accuracy, confusion table.
StatusOr<Json> RunRouterStage(const RouterStageSpec& spec, const Transformer& model, const ModelWeights& base,
                              const Tokenizer& tokenizer, const std::string& out_dir);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_ROUTER_STAGE_H_
