#include "trainer/router_stage.h"

#include "core/file_util.h"
#include "pack/fingerprint.h"
#include "trainer/spec_reader.h"

namespace skillpack {

StatusOr<RouterStageSpec> ParseRouterStage(const Json& j, const std::string& path, const std::string& base_dir,
                                           uint64_t job_seed) {
  RouterStageSpec spec;
  spec.train.seed = job_seed;
  FieldReader r(j, path);
  RETURN_IF_ERROR(r.CheckObject());
  if (!r.Has("data")) return absl::InvalidArgumentError(absl::StrCat(path, ".data: missing (labelled prompts JSONL)"));
  RETURN_IF_ERROR(r.Read("data", &spec.data));
  spec.data = ResolveSpecPath(base_dir, spec.data);
  if (!PathExists(spec.data)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".data: no such file: ", spec.data));
  }
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("layer", &spec.train.layer, 0, 1024));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("width", &spec.train.width, 1, 65536));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("epochs", &spec.train.epochs, 1, 1000000));
  RETURN_IF_ERROR(r.ReadInRange<double>("lr", &spec.train.learning_rate, 1e-8, 1.0));
  RETURN_IF_ERROR(r.ReadInRange<double>("weight_decay", &spec.train.weight_decay, 0.0, 10.0));
  RETURN_IF_ERROR(r.ReadInRange<double>("holdout", &spec.train.holdout_fraction, 0.0, 0.9));
  RETURN_IF_ERROR(r.ReadInRange<double>("min_holdout_accuracy", &spec.min_holdout_accuracy, 0.0, 1.0));
  RETURN_IF_ERROR(r.Finish());
  return spec;
}

StatusOr<Json> RunRouterStage(const RouterStageSpec& spec, const Transformer& model, const ModelWeights& base,
                              const Tokenizer& tokenizer, const std::string& out_dir) {
  if (spec.train.layer > model.config().num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("job.stages.router.layer must be in [0, ",
                                                   model.config().num_hidden_layers, "], got ", spec.train.layer));
  }
  ASSIGN_OR_RETURN(std::vector<LabelledPrompt> data, ReadLabelledPrompts(spec.data));
  RouterTrainOptions o = spec.train;
  ASSIGN_OR_RETURN(o.base_fingerprint, BaseFingerprint(base));
  ASSIGN_OR_RETURN(RouterTrainResult r, TrainRouter(model, base, tokenizer, data, o));
  if (r.holdout_accuracy < spec.min_holdout_accuracy) {
    return absl::FailedPreconditionError(absl::StrCat("job.stages.router: held-out accuracy ", r.holdout_accuracy,
                                                      " is below min_holdout_accuracy ", spec.min_holdout_accuracy));
  }
  const std::string path = JoinPath(out_dir, "router.safetensors");
  RETURN_IF_ERROR(r.router->Save(path));
  Json report = {{"path", path},
                 {"labels", r.router->config().labels},
                 {"layer", o.layer},
                 {"train_accuracy", r.train_accuracy},
                 {"holdout_accuracy", r.holdout_accuracy},
                 {"train_examples", r.train_examples},
                 {"holdout_examples", r.holdout_examples},
                 {"confusion", r.confusion}};
  return report;
}

}  // namespace skillpack
