// The fidelity study (issue 11): how much of full fine-tuning's gain a
// SkillPack keeps at a byte budget, against LoRA at equal bytes, weight
// merging, multi-task and sequential fine-tuning, and how well the router
// recognises tasks in phrasings it was not trained on. Every model is trained
// by the trainer's own job pipeline (RunJob, in-process), every pack by its
// compress stage, every accuracy is held-out exact match (evaluate.h).
//
// Tables (DIR/fidelity.json, DIR/fidelity.md, DIR/table1_<task>.svg):
//  1. Per task and regime (SFT; SFT->DPO when the spec has "dpo"): base,
//     full fine-tuning, packs at each ratio of the fp16 delta (file bytes,
//     budget mode), LoRA whose fp16 bytes match each ratio's byte target
//     (LoraRankForBytes), and each one's share of full FT's gain.
//  2. ("fusion") Every task's accuracy with routed packs (the router of
//     Table 4 picks a pack per prompt), each task's own pack, Task
//     Arithmetic / TIES / DARE merges of the same packs (pack/merge.h) and one
//     multi-task full fine-tune on all tasks' data.
//  3. ("continual") Task A then task B: sequential full FT, sequential LoRA,
//     packs (A's kept, B's added, routed): accuracy on A before / after B.
//  4. ("router") Routing accuracy of a router trained on raw task prompts,
//     paraphrases from the training templates and general prompts (or one
//     read from a file), on held-out problems, held-out paraphrase templates
//     and held-out general prompts (trainer/tasks/paraphrase.h; thirteen
//     held-out sets: kHeldOut, kFresh, kFresh2, kFresh3, kFresh4, kFresh5,
//     kFresh6, kFresh7, kFresh8, kFresh9, kFresh10, kFresh11, kFresh12),
//     with a confusion table (true label x routed label) per category.
//
// The spec (JSON; relative paths resolve against the spec file's folder):
//   {"name": "fidelity", "seed": 1, "threads": 2,
//    "base_model": "path/to/model" | {"tiny": {...as in job.h...}},
//    "tasks": ["add", "reverse", "sort", "kv"], "held_out": 200, "train_examples": 20000,
//    "ratios": [0.25, 0.125, 0.0625, 0.03125],
//    "sft": {...job.h's sft stage, without "data" and "lora"...},
//    "dpo": {...job.h's dpo stage, without "data" and "lora"...},          (optional)
//    "dpo_pairs": "verifier" | "on_policy", "dpo_prompts": 2000, "dpo_rounds": 1, "sft_wrong_share": 0,
//    "lora_alpha": 16, "lora_lr_scale": 1,   (LoRA runs: lr = the stage's lr x scale)
//    "lora_dpo_lr_scale": 1,                 (optional: LoRA's DPO rounds at dpo.lr x this
//                                              instead of lora_lr_scale; SFT unchanged)
//    "compress": {"config": {...CompressionConfig, no target...}, "calibration_samples": 64,
//                 "refit": {...job.h's compress refit, without "data"...}},  (refit: optional)
//    "router": {"examples_per_task": 200, "general": 96, "eval_per_task": 100,
//               "general_corpus": {"paths": [...], "sentences": 400 | [0, 50, 400]},
//               "layer": 0, "width": 128, "epochs": 200, "lr": 3e-3,
//               ...router_stage.h's ReadRouterOptions fields ("layers", "pooling",
//               "dropout", "augment", "weight_decay"), "extra_templates": true,
//               "extra_general": false, "composed": {"per_task": 0, "general": 0,
//                             "corpus_topics": {"paths": [...], "words": 2000, "prompts": 800},
//                             "contexts": {"per_task": 0, "general": 0}},
//               "select": {"folds": 3, "epochs": [50, 100, 200, 400],
//                          "general_groups": "opener_topic" | "opener",
//                          "raw_prompts": "training_only" | "validated",
//                          "candidates": [{"name": "...", ...router options...}]}}
//      | {"file": "router.safetensors", "eval_per_task": 100},   (a router scored as it is)
//                                                                        (optional: Table 4)
//    "fusion": {"ratio": 0.125, "lambda": 1.0, "ties_density": 0.2, "dare_drop": 0.5,
//               "multitask_steps": 0},                                   (optional: Table 2; needs router)
//    "continual": {"task_a": "reverse", "task_b": "sort", "ratio": 0.125}, (optional: Table 3; needs router)
//    "tables": [4]}   (optional: run only these tables; e.g. [4] trains and
//                      measures the router alone, without fine-tuning anything)
// Every field is checked before anything runs: INVALID_ARGUMENT naming it
// ("spec.fusion.ratio must be in ...").
//
// Intermediate models, packs and job reports live under DIR/runs and
// DIR/packs; a run whose report is already there is reused, so an
// interrupted study continues where it stopped.
#ifndef SKILLPACK_TRAINER_FIDELITY_H_
#define SKILLPACK_TRAINER_FIDELITY_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/status.h"
#include "core/tiny_model.h"
#include "core/weights.h"
#include "pack/factor_precision.h"
#include "router/router_train.h"
#include "trainer/job.h"

namespace skillpack {

struct FidelityRouterSpec {
  // "file": a router file (`skillpack router train`'s output, e.g. the one
  // `make demo` trains) scored as it is instead of one trained here: Table 4
  // evaluates it on the same categories, and Tables 2 and 3 route with it. It
  // must fit the base (router.h CheckFits) and have every spec task as a
  // label; only "eval_per_task" and "extra_templates" go with it. Empty: the
  // router is trained here from the fields below.
  std::string file;
  int64_t examples_per_task = 200;  // raw prompts AND train-template paraphrases per task
  int64_t general = 96;             // general training prompts (label none)
  // "general_corpus": {"paths": [...], "sentences": N or [N1, N2, ...]}: N
  // more none examples, sentences of a text corpus (pretrain.h
  // CorpusSentences; e.g. the fortunes files the tiny base was pretrained
  // on), so that "none" is learnt from general text and not only from the
  // general prompts' few openers and topics. In model selection they are
  // training-only (RouterCandidate::extra): every fold trains on them, none
  // is validated. Several amounts (ascending; 0 = no corpus; each a prefix
  // of the largest draw) need "select", which then chooses the amount with
  // the candidate and epochs, all scored on the same validation prompts.
  std::vector<std::string> general_corpus;
  std::vector<int64_t> general_corpus_sentences;
  int64_t eval_per_task = 100;  // per task and evaluation category
  bool extra_templates = true;  // paraphrase.h's training-only extra templates
  // "composed": {"per_task": N, "general": M}: N more training paraphrases per
  // task and M more general prompts, composed from cores and frames
  // (phrasing_grammar.h); validation groups them by core. 0 and 0 (the
  // default): none, as the specs committed before it.
  int64_t composed_per_task = 0, composed_general = 0;
  // "composed": {..., "corpus_topics": {"paths": [...], "words": W,
  // "prompts": P}}: P more general prompts composed the same way over W topic
  // words of a text corpus (phrasing_grammar.h CorpusTopicWords: never a word
  // of a task's phrasings or of a held-out split's), so the none class meets
  // many topics; validation groups them by core and word. None by default.
  std::vector<std::string> composed_topic_corpus;
  int64_t composed_topic_words = 0, composed_corpus_general = 0;
  // "composed": {..., "contexts": {"per_task": N, "general": M}}: N more
  // training paraphrases per task and M more general prompts told inside a
  // situation (phrasing_grammar.h ComposedTemplates(task, true): context
  // frames, situated cores, more kinds of general request), the general ones
  // over the corpus topic words where "corpus_topics" is given, else over the
  // training topics; validation groups them with the composed ones by core.
  // None by default.
  int64_t context_per_task = 0, context_general = 0;
  // "composed": {..., "made_up_topics": {"words": W, "prompts": P}}: P more
  // general prompts composed over W made-up words (phrasing_grammar.h
  // MadeUpTopicWords: invented words and letter salads, never a word of a
  // task's phrasings or of a held-out split's), so that a strange word alone
  // does not make a request a task's; validation groups them by core and
  // word. None by default.
  int64_t made_up_topic_words = 0, made_up_general = 0;
  // paraphrase.h's training-only extra general openers and topics ("general"
  // then draws from 24 x 44 prompts instead of 8 x 12); off by default so the
  // specs committed before it draw the prompts they drew.
  bool extra_general = false;
  RouterTrainOptions train;
  // "ensemble": N (router level only): the final router is a deep ensemble of
  // N MLPs (router_train.h RouterTrainOptions::ensemble) with the chosen
  // options; candidates are validated as one MLP each (a candidate may not
  // set it). With N > 1 Table 4 also scores member 0 alone, the router N = 1
  // trains, on every category ("first_member"). 1 by default.
  int64_t ensemble = 1;
  // Optional model selection (router_train.h SelectRouter) on the training
  // prompts alone, grouped by template / general opener and topic; the best
  // candidate (with its epochs) is then trained on all training prompts.
  std::optional<RouterSelectOptions> select;
  // select.general_groups: "opener_topic" (default) validates each general
  // prompt only in a fold that holds out both its opener and its topic, as
  // the held-out general prompts are new in both; "opener" holds out openers
  // alone (topics seen in training), as the specs committed before it, which now say so.
  bool general_groups_by_topic = true;
  // select.raw_prompts: "training_only" (default) keeps the raw task prompts
  // ("rev abcd=") in every fold's training set and validates none of them
  // (RouterCandidate::extra), as Table 4 meets no unseen raw format; "validated"
  // deals each task's raw prompts to a fold as one more group, as the specs
  // committed before it did, which now say so.
  bool raw_prompts_validated = false;
  std::vector<RouterCandidate> candidates;
};

struct FidelityFusionSpec {
  double ratio = 0.125;         // the packs' byte ratio
  double lambda = 1.0;          // TA, TIES and DARE scale
  double ties_density = 0.2;    // TIES: fraction of entries kept
  double dare_drop = 0.5;       // DARE: drop probability
  int64_t multitask_steps = 0;  // 0: sft.steps x number of tasks
};

struct FidelityContinualSpec {
  std::string task_a, task_b;
  double ratio = 0.125;  // packs' byte ratio and the LoRA byte target
};

struct FidelitySpec {
  Json source;  // the spec as given, for the report
  std::string name = "fidelity";
  uint64_t seed = 1;
  int threads = 0;
  std::string base_model_dir;                 // set unless tiny_base
  std::optional<TinyModelOptions> tiny_base;  // made in DIR/base
  std::vector<std::string> tasks;
  int64_t held_out = 200;
  int64_t train_examples = 20000;
  std::vector<double> ratios = {0.25, 0.125, 0.0625, 0.03125};
  std::optional<TrainStageSpec> sft;  // Tables 1-3 need it; a Table-4-only spec may leave it out
  std::optional<DpoStageSpec> dpo;
  double lora_alpha = 16.0;
  double lora_lr_scale = 1.0;  // LoRA's learning rate / full fine-tuning's (sft, and dpo unless below)
  // LoRA's DPO rate / full fine-tuning's DPO rate, when set: the LoRA baseline's
  // DPO step tuned apart from its SFT step (run names carry it).
  std::optional<double> lora_dpo_lr_scale;
  // The scale LoRA's DPO rounds train at: lora_dpo_lr_scale, else lora_lr_scale.
  double LoraDpoLrScale() const { return lora_dpo_lr_scale.value_or(lora_lr_scale); }
  // DPO pairs: "verifier" (the task's offline pairs, Task::WrongResponse
  // rejected) or "on_policy" (the SFT model's own wrong greedy answers to
  // dpo_prompts training prompts, rejected against the correct answer; a
  // model that answers them all right gets no DPO round: its SFT->DPO cell
  // is the model as it is, and Table 1 says so).
  std::string dpo_pairs = "verifier";
  int64_t dpo_prompts = 2000;
  // DPO rounds (Iterative RPO, Pang et al. 2024): round r starts from round
  // r - 1's model, which is also its reference, with its pairs made again
  // from that model ("on_policy"; "verifier" pairs are the same each round);
  // the sft_dpo regime is the last round's model. LoRA runs go on training
  // the SFT adapter in every round (one adapter's bytes).
  int64_t dpo_rounds = 1;
  // SFT data from two sources, one of them weak: this share of Table 1's SFT
  // examples (full FT and LoRA) carries Task::WrongResponse, the task's
  // natural mistake (reverse, sort: the input copied), in place of the
  // answer. The DPO stage's verifier pairs (right answer chosen, the mistake
  // rejected) then tell which source is right. 0: every answer right.
  double sft_wrong_share = 0;
  Json compress_config = Json::object();
  int64_t calibration_samples = 64;
  // "compress": {"refit": {...job.h's refit fields, without "data"...}}: every
  // pack refitted by distillation from its fine-tune (trainer/pack_refit.h)
  // on the task's training examples.
  std::optional<TrainStageSpec> refit;
  double refit_skip_below_kl = 0.02;  // job.h CompressStageSpec::refit_skip_below_kl
  // "compress": {"served_factor_precisions": ["float16", "int8"]}: Table 1's
  // packs also evaluated as the server holds them at each precision
  // (pack/factor_precision.h): decoded with factors in that precision and
  // composed from them, which is what factorized serving computes.
  std::vector<FactorPrecision> served_factor_precisions;
  // The tables to run ("tables": [1, 2, 3, 4]); default: 1 and each of 2-4
  // whose section the spec has. Tables 2 and 3 need 1; 2, 3 and 4 need router.
  std::set<int> tables;
  std::optional<FidelityRouterSpec> router;
  std::optional<FidelityFusionSpec> fusion;
  std::optional<FidelityContinualSpec> continual;
};

StatusOr<FidelitySpec> ParseFidelitySpec(const Json& j, const std::string& base_dir);
StatusOr<FidelitySpec> LoadFidelitySpec(const std::string& path);

// fp16 bytes of one rank of LoRA adapters on `base`: 2 bytes x Σ (in + out)
// over the adapted projections (trainable.h's LoraTargetSuffixes) of every layer.
int64_t LoraBytesPerRank(const ModelWeights& base);
// The rank whose fp16 adapter bytes (rank x bytes_per_rank) are nearest to
// `target_bytes`, at least 1. REQUIRES: bytes_per_rank > 0.
int64_t LoraRankForBytes(int64_t target_bytes, int64_t bytes_per_rank);

struct FidelityOptions {
  std::string out_dir;
  Json machine;          // bench/machine_info.h's description, stored as is
  bool progress = true;  // one line per step on stderr
};

// One evaluation prompt of Table 4: its category (e.g. "paraphrases_held_out_templates"),
// the label it should be routed to (a task or "none") and the prompt.
struct RoutingCase {
  std::string category, label, prompt;
};

// Table 4's scores of `routed` (the router's label for each case, in order):
//   {"categories": {category: {"accuracy", "n", "per_label": {label: accuracy},
//                              "confusion": {true label: {routed label: count}}}},
//    "misrouted_examples": [each category's first `max_examples` misroutes, in the
//                           cases' order: category, prompt, expected, routed]}.
// INVALID_ARGUMENT when the sizes differ or a case has an empty category or label.
StatusOr<Json> ScoreRouting(const std::vector<RoutingCase>& cases, const std::vector<std::string>& routed,
                            int64_t max_examples);

// The Markdown confusion tables of ScoreRouting's "categories": per category,
// a row per true label and a column per label seen (true or routed), counts.
std::string RoutingConfusionMarkdown(const Json& categories);

// Runs the study; writes and returns DIR/fidelity.json's content.
StatusOr<Json> RunFidelityStudy(const FidelitySpec& spec, const FidelityOptions& options);

// The Markdown report of a fidelity.json.
std::string FidelityMarkdown(const Json& result);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_FIDELITY_H_
