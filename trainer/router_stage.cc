#include "trainer/router_stage.h"

#include "absl/strings/str_join.h"
#include "core/file_util.h"
#include "pack/fingerprint.h"
#include "trainer/spec_reader.h"

namespace skillpack {

StatusOr<std::vector<int64_t>> ReadIntList(const Json& j, const std::string& path, int64_t lo, int64_t hi) {
  if (!j.is_array() || j.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " must be a non-empty list"));
  std::vector<int64_t> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer() || j[i].get<int64_t>() < lo || j[i].get<int64_t>() > hi) {
      return absl::InvalidArgumentError(absl::StrCat(path, "[", i, "] must be an integer in [", lo, ", ", hi, "]"));
    }
    out.push_back(j[i].get<int64_t>());
  }
  return out;
}

StatusOr<std::vector<int64_t>> ReadAscendingIntList(const Json& j, const std::string& path, int64_t lo, int64_t hi) {
  ASSIGN_OR_RETURN(std::vector<int64_t> out, ReadIntList(j, path, lo, hi));
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i] <= out[i - 1]) return absl::InvalidArgumentError(absl::StrCat(path, " must be strictly ascending"));
  }
  return out;
}

Status ReadRouterOptions(FieldReader& r, RouterTrainOptions* o) {
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("layer", &o->layer, 0, 1024));
  if (r.Has("layers")) {
    ASSIGN_OR_RETURN(o->layers, ReadAscendingIntList(r.Get("layers"), r.Path("layers"), 0, 1024));
  }
  if (r.Has("pooling")) {
    const Json& p = r.Get("pooling");
    if (!p.is_array() || p.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(r.Path("pooling"), " must be a non-empty list of names"));
    }
    std::vector<std::string> names;
    for (const Json& n : p) {
      if (!n.is_string()) return absl::InvalidArgumentError(absl::StrCat(r.Path("pooling"), " must list names"));
      names.push_back(n.get<std::string>());
    }
    StatusOr<std::vector<Pooling>> pooling = ParsePoolingList(absl::StrJoin(names, ","));
    if (!pooling.ok()) return Annotate(pooling.status(), r.Path("pooling"));
    o->pooling = *pooling;
  }
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("width", &o->width, 1, 65536));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("epochs", &o->epochs, 1, 1000000));
  RETURN_IF_ERROR(r.ReadInRange<double>("lr", &o->learning_rate, 1e-8, 1.0));
  RETURN_IF_ERROR(r.ReadInRange<double>("weight_decay", &o->weight_decay, 0.0, 10.0));
  RETURN_IF_ERROR(r.ReadInRange<double>("dropout", &o->dropout, 0.0, 0.9));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("ensemble", &o->ensemble, 1, 64));
  if (r.Has("augment")) {
    FieldReader a(r.Get("augment"), r.Path("augment"));
    RETURN_IF_ERROR(a.CheckObject());
    RETURN_IF_ERROR(a.ReadInRange<int64_t>("copies", &o->augment.copies, 0, 100));
    RETURN_IF_ERROR(a.ReadInRange<double>("word_dropout", &o->augment.word_dropout, 0.0, 0.9));
    RETURN_IF_ERROR(a.ReadInRange<double>("filler", &o->augment.filler, 0.0, 1.0));
    RETURN_IF_ERROR(a.ReadInRange<double>("case_change", &o->augment.case_change, 0.0, 1.0));
    RETURN_IF_ERROR(a.Finish());
  }
  return absl::OkStatus();
}

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
  RETURN_IF_ERROR(ReadRouterOptions(r, &spec.train));
  RETURN_IF_ERROR(r.ReadInRange<double>("holdout", &spec.train.holdout_fraction, 0.0, 0.9));
  RETURN_IF_ERROR(r.Read("holdout_by_group", &spec.train.holdout_by_group));
  RETURN_IF_ERROR(r.ReadInRange<double>("min_holdout_accuracy", &spec.min_holdout_accuracy, 0.0, 1.0));
  RETURN_IF_ERROR(r.Finish());
  return spec;
}

StatusOr<Json> RunRouterStage(const RouterStageSpec& spec, const Transformer& model, const ModelWeights& base,
                              const Tokenizer& tokenizer, const std::string& out_dir) {
  const int64_t deepest = spec.train.layers.empty() ? spec.train.layer : spec.train.layers.back();
  if (deepest > model.config().num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("job.stages.router.", spec.train.layers.empty() ? "layer" : "layers",
                                                   " must be in [0, ", model.config().num_hidden_layers, "], got ",
                                                   deepest));
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
                 {"layer", r.router->config().layer},
                 {"layers", r.router->config().layers},
                 {"train_accuracy", r.train_accuracy},
                 {"holdout_accuracy", r.holdout_accuracy},
                 {"train_examples", r.train_examples},
                 {"holdout_examples", r.holdout_examples},
                 {"confusion", r.confusion}};
  return report;
}

}  // namespace skillpack
