// Direct Preference Optimisation (Rafailov et al. 2023): for a pair (prompt,
// chosen y+, rejected y-) and a frozen reference model (the stage's starting
// weights), the implicit reward of y is r(y) = beta * (log pi(y|x) - log ref(y|x))
// and the loss is -log sigmoid(r(y+) - r(y-)), averaged over pairs. With
// length normalisation the sequence log-probabilities are per-token means.
#ifndef SKILLPACK_TRAINER_DPO_H_
#define SKILLPACK_TRAINER_DPO_H_

#include <memory>
#include <vector>

#include "core/model.h"
#include "trainer/data.h"
#include "trainer/train_loop.h"

namespace skillpack {

struct DpoConfig {
  double beta = 0.1;
  bool length_normalize = false;
};

struct TokenizedPair {
  TokenizedSequence chosen;
  TokenizedSequence rejected;
};

// Metrics reported per pair (means): loss, reward_margin = r(y+) - r(y-),
// reward_accuracy = fraction with r(y+) > r(y-), chosen_reward, rejected_reward.
class DpoObjective : public TrainingObjective {
 public:
  // `model` must outlive the objective; `reference` is never modified.
  DpoObjective(const Transformer& model, std::shared_ptr<const ModelWeights> reference,
               std::vector<TokenizedPair> pairs, DpoConfig config);

  int64_t num_examples() const override { return static_cast<int64_t>(pairs_.size()); }
  std::vector<std::string> MetricNames() const override;
  double Units(const std::vector<int64_t>& examples) const override { return static_cast<double>(examples.size()); }
  StatusOr<MicroBatchLoss> Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                double normaliser) override;

 private:
  const Transformer& model_;
  std::shared_ptr<const ModelWeights> reference_;
  std::vector<TokenizedPair> pairs_;
  DpoConfig config_;
  // Reference log-probabilities (chosen, rejected) per pair, computed once.
  std::vector<double> ref_chosen_, ref_rejected_;
  std::vector<bool> ref_known_;
};

struct PreferenceMetrics {
  int64_t pairs = 0;
  double loss = 0;             // mean DPO loss
  double reward_margin = 0;    // mean r(y+) - r(y-) (0 when policy == reference)
  double reward_accuracy = 0;  // fraction with r(y+) > r(y-)
  double logp_margin = 0;      // mean log pi(y+) - log pi(y-) (length-normalised if configured)
  double logp_accuracy = 0;    // fraction with log pi(y+) > log pi(y-)
};
Json PreferenceMetricsToJson(const PreferenceMetrics& m);

// Scores `pairs` under `policy` against `reference` (no grad).
StatusOr<PreferenceMetrics> EvaluatePreferences(const Transformer& model, const ModelWeights& policy,
                                                const ModelWeights& reference, const std::vector<TokenizedPair>& pairs,
                                                const DpoConfig& config, int64_t batch_size);

// Per-sequence log-probability of the target (response) tokens of `batch`
// [B] (mean per token when `mean`). Differentiable in `weights`.
at::Tensor ResponseLogProbs(const Transformer& model, const ModelWeights& weights, const TokenBatch& batch, bool mean);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_DPO_H_
