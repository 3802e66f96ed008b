// `skillpack router train|inspect`: training a router offline from labelled
// prompts with the base model's features (router/router_train.h), and looking
// inside a router file (docs/router-format.md).
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/cli.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/json_util.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "pack/assignment.h"
#include "pack/fingerprint.h"
#include "router/router.h"
#include "router/router_train.h"

namespace skillpack {
namespace {

constexpr char kRouterUsage[] =
    "usage: skillpack router <subcommand> [flags]\n"
    "  train --model DIR --data LABELLED.jsonl -o ROUTER.safetensors\n"
    "        [--layer N --width N --epochs N --lr X --seed N --holdout F --threads N]\n"
    "        [--layers N,N... --pooling mean,max,last,surprisal,surprisal_profile,\n"
    "        lexicon,lexicon_max\n"
    "        --dropout F --augment N --ensemble N]\n"
    "        [--assign PACK=PATTERN[,PATTERN...] ... | --assignment FILE.json]\n"
    "      train a router on {\"prompt\": ..., \"label\": PACK|\"none\"} lines; prints the\n"
    "      held-out accuracy and confusion table\n"
    "  inspect ROUTER.safetensors\n"
    "      labels, layer, sizes and base fingerprint\n";

Status NoPositional(const Args& a) {
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  return absl::OkStatus();
}

Status Train(const Args& a) {
  ASSIGN_OR_RETURN(std::string model_dir, a.String("model"));
  ASSIGN_OR_RETURN(std::string data_path, a.String("data"));
  ASSIGN_OR_RETURN(std::string out, a.String("out"));
  RouterTrainOptions o;
  ASSIGN_OR_RETURN(o.layer, a.IntOr("layer", o.layer));
  const std::string layers_flag = a.StringOr("layers", "");
  const std::string pooling_flag = a.StringOr("pooling", "");
  ASSIGN_OR_RETURN(o.dropout, a.DoubleOr("dropout", o.dropout));
  ASSIGN_OR_RETURN(o.augment.copies, a.IntOr("augment", o.augment.copies));
  ASSIGN_OR_RETURN(o.ensemble, a.IntOr("ensemble", o.ensemble));
  ASSIGN_OR_RETURN(o.width, a.IntOr("width", o.width));
  ASSIGN_OR_RETURN(o.epochs, a.IntOr("epochs", o.epochs));
  ASSIGN_OR_RETURN(o.learning_rate, a.DoubleOr("lr", o.learning_rate));
  ASSIGN_OR_RETURN(o.holdout_fraction, a.DoubleOr("holdout", o.holdout_fraction));
  ASSIGN_OR_RETURN(int64_t seed, a.IntOr("seed", 0));
  ASSIGN_OR_RETURN(int64_t threads, a.IntOr("threads", 0));
  const std::vector<std::string> assign_flags = a.Strings("assign");
  const std::string assignment_path = a.StringOr("assignment", "");
  RETURN_IF_ERROR(a.CheckAllUsed());
  RETURN_IF_ERROR(NoPositional(a));
  if (seed < 0) return absl::InvalidArgumentError("--seed must be >= 0");
  if (threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  if (o.width < 1 || o.width > 65536) return absl::InvalidArgumentError("--width must be in [1, 65536]");
  if (o.epochs < 1 || o.epochs > 1000000) return absl::InvalidArgumentError("--epochs must be in [1, 1000000]");
  if (!(o.holdout_fraction >= 0 && o.holdout_fraction < 1)) {
    return absl::InvalidArgumentError("--holdout must be in [0, 1)");
  }
  if (!(o.learning_rate > 0)) return absl::InvalidArgumentError("--lr must be positive");
  if (!(o.dropout >= 0 && o.dropout < 1)) return absl::InvalidArgumentError("--dropout must be in [0, 1)");
  if (o.augment.copies < 0 || o.augment.copies > 100)
    return absl::InvalidArgumentError("--augment must be in [0, 100]");
  if (o.ensemble < 1 || o.ensemble > 64) return absl::InvalidArgumentError("--ensemble must be in [1, 64]");
  if (!layers_flag.empty()) {
    for (absl::string_view part : absl::StrSplit(layers_flag, ',')) {
      int64_t l = 0;
      if (!absl::SimpleAtoi(part, &l) || l < 0 || (!o.layers.empty() && l <= o.layers.back())) {
        return absl::InvalidArgumentError(
            absl::StrCat("--layers must be strictly ascending layer numbers (e.g. 0,2), got '", layers_flag, "'"));
      }
      o.layers.push_back(l);
    }
    o.layer = o.layers.back();
  }
  if (!pooling_flag.empty()) {
    StatusOr<std::vector<Pooling>> pooling = ParsePoolingList(pooling_flag);
    if (!pooling.ok()) return Annotate(pooling.status(), "--pooling");
    o.pooling = *pooling;
  }
  o.seed = static_cast<uint64_t>(seed);
  if (!assign_flags.empty() && !assignment_path.empty()) {
    return absl::InvalidArgumentError("give --assign or --assignment, not both");
  }
  if (!assignment_path.empty()) {
    ASSIGN_OR_RETURN(Json j, ReadJsonFile(assignment_path));
    ASSIGN_OR_RETURN(o.assignment, ParseModuleAssignment(j, assignment_path));
  } else if (!assign_flags.empty()) {
    ASSIGN_OR_RETURN(o.assignment, ParseAssignmentFlags(assign_flags));
  }
  SetIntraOpThreads(threads);

  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::vector<LabelledPrompt> data, ReadLabelledPrompts(data_path));
  ASSIGN_OR_RETURN(auto model, LoadModel(model_dir, at::TensorOptions().dtype(at::kFloat)));
  ASSIGN_OR_RETURN(auto tok, Tokenizer::FromModelDir(model_dir));
  if (o.layer < 0 || o.layer > model->config.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layer must be in [0, ", model->config.num_hidden_layers, "], got ", o.layer));
  }
  ASSIGN_OR_RETURN(o.base_fingerprint, BaseFingerprint(*model->weights));
  if (!o.assignment.empty()) {
    std::vector<std::string> names;
    for (const auto& [name, t] : model->weights->tensors()) names.push_back(name);
    RETURN_IF_ERROR(CheckAssignmentExclusive(o.assignment, names));
  }
  ASSIGN_OR_RETURN(RouterTrainResult r, TrainRouter(*model->transformer, *model->weights, *tok, data, o));
  RETURN_IF_ERROR(r.router->Save(out));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const RouterConfig& c = r.router->config();
  std::printf("labels: %s\n", absl::StrJoin(c.labels, ", ").c_str());
  std::printf("train accuracy %.4f (%lld examples)\n", r.train_accuracy, static_cast<long long>(r.train_examples));
  if (r.holdout_examples > 0) {
    std::printf("held-out accuracy %.4f (%lld examples)\n", r.holdout_accuracy,
                static_cast<long long>(r.holdout_examples));
    std::printf("%s", ConfusionTable(r).c_str());
  } else {
    std::printf("held-out accuracy: no held-out split (--holdout 0)\n");
  }
  if (o.ensemble > 1) {
    std::printf("ensemble of %lld members, their logits averaged in one MLP of width %lld\n",
                static_cast<long long>(o.ensemble), static_cast<long long>(c.width));
  }
  std::fprintf(stderr, "wrote %s (layer %lld, width %lld, base %s) in %.2f s\n", out.c_str(),
               static_cast<long long>(c.layer), static_cast<long long>(c.width), c.base_fingerprint.c_str(), secs);
  return absl::OkStatus();
}

Status Inspect(const Args& a) {
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (a.positional().size() != 1) return absl::InvalidArgumentError("inspect: give one router file");
  ASSIGN_OR_RETURN(std::unique_ptr<Router> r, Router::Load(a.positional()[0]));
  const RouterConfig& c = r->config();
  std::printf("labels %s\nlayer %lld\nhidden_size %lld\nwidth %lld\nbase %s\n", absl::StrJoin(c.labels, ", ").c_str(),
              static_cast<long long>(c.layer), static_cast<long long>(c.hidden_size), static_cast<long long>(c.width),
              c.base_fingerprint.empty() ? "(not recorded)" : c.base_fingerprint.c_str());
  std::vector<std::string> pooling;
  for (Pooling p : c.pooling) pooling.push_back(PoolingName(p));
  std::printf("features layers %s, pooling %s (%lld values)\n", absl::StrJoin(c.layers, ",").c_str(),
              absl::StrJoin(pooling, ",").c_str(), static_cast<long long>(c.FeatureSize()));
  if (!c.lexicon.empty()) std::printf("lexicon %s\n", c.lexicon.c_str());
  for (const auto& [pack, filter] : c.assignment.filters) {
    std::printf("assignment %s: %s\n", pack.c_str(), absl::StrJoin(filter, ",").c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int RunRouterCommand(const std::vector<std::string>& argv) {
  return RunCliSubcommand("router", argv, {{"train", Train, {}}, {"inspect", Inspect, {}}}, kRouterUsage);
}

}  // namespace skillpack
