// The job pipeline's `router` stage: trains a router (router/router_train.h)
// on the job's BASE model from a labelled-prompts file and writes
// DIR/router.safetensors, with the base's fingerprint recorded in it.
//
//   "router": {"data": "labelled.jsonl", "layer": 0, "width": 128, "epochs": 200,
//              "lr": 3e-3, "weight_decay": 1e-2, "holdout": 0.2,
//              "min_holdout_accuracy": 0.0}
// `data` is JSONL {"prompt": ..., "label": "<pack name>" | "none"} (required).
// A held-out accuracy below `min_holdout_accuracy` fails the job (and no router
// file is left), so a pipeline can refuse to publish a weak router.
#ifndef SKILLPACK_TRAINER_ROUTER_STAGE_H_
#define SKILLPACK_TRAINER_ROUTER_STAGE_H_

#include <string>

#include "core/json_util.h"
#include "core/model.h"
#include "core/status.h"
#include "core/tokenizer.h"
#include "router/router_train.h"

namespace skillpack {

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
