// Refitting a compressed pack to the fine-tuned model it came from.
//
// Budget mode (pack/compressor.h) chooses each module's operator, rank, bands,
// bits and sparsity pattern, and fills them with the truncation of Δ: the
// largest singular directions, the largest entries. On small models those are
// not what the task needs (bench/README.md, "Pretraining 8× longer"): a LoRA
// trained at the same bytes keeps more of the gain. A refit keeps the pack's
// structure (so its file keeps its size and layout) and trains the numbers
// stored in it (low-rank factors and σ, sparse values, densely quantised
// deltas, dense tensors) by distillation from the tuned model: the KL
// divergence of base + pack's next-token distributions from the tuned
// model's, on the response tokens of the fine-tune's data. The forward pass
// rounds every stored number as the file will (factors and dense deltas
// through round-to-nearest at their band's bits and group size, sparse values
// to float16), with straight-through gradients, so the pack written after
// training is exactly the model that was trained.
#ifndef SKILLPACK_TRAINER_PACK_REFIT_H_
#define SKILLPACK_TRAINER_PACK_REFIT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/model.h"
#include "core/status.h"
#include "core/weights.h"
#include "pack/skillpack.h"
#include "trainer/data.h"
#include "trainer/train_loop.h"
#include "trainer/trainable.h"

namespace skillpack {

class PackRefitWeights : public TrainableWeights {
 public:
  // Trainable float32 copies of `pack`'s stored numbers, decoded (the pack
  // must fit `base`: same tensor names and shapes). Parameter names: for a
  // low-rank module "<name>.sigma" and "<name>.band<i>.u" / ".vt"; sparse
  // "<name>.values"; dense_quant "<name>.dense"; dense "<name>.full".
  // INVALID_ARGUMENT for a pack that does not validate or fit.
  static StatusOr<std::unique_ptr<PackRefitWeights>> Create(std::shared_ptr<const ModelWeights> base,
                                                            const SkillPack& pack);

  // base + the pack as it would be stored now (rounded; straight-through
  // gradients to the parameters).
  StatusOr<std::shared_ptr<const ModelWeights>> ForwardWeights() const override;
  StatusOr<std::shared_ptr<const ModelWeights>> Merged() const override;

  // The pack with its numbers replaced by the trained ones, rounded as the
  // forward pass rounds them: same manifest, modules, operators, ranks,
  // bands, bits and group sizes; factors and dense deltas round-to-nearest
  // (no column permutation), sparse values float16. Decoding it onto the base
  // gives Merged() to float rounding.
  StatusOr<SkillPack> ToPack() const;

 private:
  PackRefitWeights() = default;
  std::map<std::string, at::Tensor> Replacements(bool detached) const;

  SkillPack pack_;                             // the structure (and the manifest) to write back
  std::vector<size_t> first_param_;            // per module: index of its first parameter in params_
  std::map<std::string, at::Tensor> indices_;  // sparse modules' flat indices, on the base's device
};

// Distillation on response tokens: Σ_t KL(p_teacher(·|x_<t) ‖ p(·|x_<t)) over
// the response positions of each sequence, averaged over response tokens (the
// loop's units). The teacher's logits are computed without gradients. Reports
// "kl" (nats per response token).
class TeacherKlObjective : public TrainingObjective {
 public:
  // `model` must outlive the objective. REQUIRES: every sequence has >= 1 response token.
  TeacherKlObjective(const Transformer& model, std::shared_ptr<const ModelWeights> teacher,
                     std::vector<TokenizedSequence> sequences);

  int64_t num_examples() const override { return static_cast<int64_t>(seqs_.size()); }
  std::vector<std::string> MetricNames() const override { return {"kl"}; }
  double Units(const std::vector<int64_t>& examples) const override;
  StatusOr<MicroBatchLoss> Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                double normaliser) override;

 private:
  const Transformer& model_;
  std::shared_ptr<const ModelWeights> teacher_;
  std::vector<TokenizedSequence> seqs_;
};

// Mean KL(teacher ‖ weights) per response token over `sequences`, no grad,
// in batches of `batch_size`.
StatusOr<double> MeanTeacherKl(const Transformer& model, std::shared_ptr<const ModelWeights> teacher,
                               const ModelWeights& weights, const std::vector<TokenizedSequence>& sequences,
                               int64_t batch_size);

// Runs a training loop over `weights` and `objective` (the caller's loop
// settings, progress and checkpoints) and returns its report.
using RefitLoopFn = std::function<StatusOr<Json>(TrainableWeights& weights, TrainingObjective& objective)>;

struct RefitResult {
  SkillPack pack;  // the refitted pack, or the input one when the refit did not help
  bool refitted = false;
  // "loop", "validation_sequences", "kl_before", "kl_after", "kept" ("refitted" / "original"),
  // "skipped" (true when no loop ran).
  Json report;
};

// Refits `pack` (made from tuned − base) by distillation from `tuned` on
// `sequences`: the last tenth of them (at most 256, at least 1) is held out,
// the loop trains on the rest, and the refitted pack is kept only when its
// validation KL is below the input pack's (decoded exactly as a server
// would); otherwise the input pack is returned unchanged. A pack with no
// module, or whose validation KL is already at most `skip_below_kl` (nats
// per response token), is returned as it is without running the loop
// (report "skipped": true). INVALID_ARGUMENT for fewer than 2 sequences or a
// pack that does not fit the base.
StatusOr<RefitResult> RefitPack(const SkillPack& pack, std::shared_ptr<const ModelWeights> base,
                                std::shared_ptr<const ModelWeights> tuned, const Transformer& model,
                                std::vector<TokenizedSequence> sequences, const RefitLoopFn& run_loop,
                                double skip_below_kl = 0);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_PACK_REFIT_H_
