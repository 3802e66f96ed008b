// Direct Preference Optimisation (Rafailov et al. 2023): for a pair (prompt,
// chosen y+, rejected y-) and a frozen reference model (the stage's starting
// weights), the implicit reward of y is r(y) = beta * (log pi(y|x) - log ref(y|x))
// and the loss is -log sigmoid(r(y+) - r(y-)), averaged over pairs. With
// length normalisation the sequence log-probabilities are per-token means.
// With sft_weight w > 0 each pair's loss adds w times the chosen response's
// mean negative log-likelihood per token (RPO, Pang et al. 2024, "Iterative
// Reasoning Preference Optimization"; TRL's rpo_alpha): the preference term
// alone can lower the chosen answer's likelihood along with the rejected
// one's, which costs exact match under greedy decoding. With dpop_lambda
// lambda > 0 the margin inside the sigmoid loses lambda * max(0, -r(y+)) (DPOP,
// Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation
// with DPO-Positive"): a pair is penalised only while its chosen answer is
// less likely than under the reference, the failure DPO shows on pairs that
// differ in a few tokens.
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
  double sft_weight = 0.0;   // w of the chosen response's per-token NLL (0: plain DPO)
  double dpop_lambda = 0.0;  // DPOP's lambda (0: no penalty); r(y+) as the rewards read it
  // The preference term on each pair's first differing response token alone
  // (FirstDifference below) instead of the whole responses; the NLL term and
  // chosen_nll still read the whole chosen response.
  bool first_difference = false;
};

struct TokenizedPair {
  TokenizedSequence chosen;
  TokenizedSequence rejected;
};

// The pair cut at its first differing response token k (the shared prompt
// and response prefix before k become the prompt; each side keeps its own
// token k as its one response token). A pair whose responses are equal or
// one a prefix of the other, or whose prompts differ, is returned unchanged. The
// sequence-level log-ratio of a pair equals its tokens' sum from k on (the
// prefix cancels), so this keeps only the token greedy decoding got wrong.
TokenizedPair FirstDifference(const TokenizedPair& pair);

// Metrics reported per pair (means): loss (the whole objective),
// reward_margin = r(y+) - r(y-) (without DPOP's penalty), reward_accuracy = fraction with r(y+) > r(y-),
// chosen_reward, rejected_reward, chosen_nll (the chosen response's mean
// negative log-likelihood per token, whatever sft_weight). With
// first_difference the rewards are those of the first differing tokens.
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
  std::vector<TokenizedPair> focused_;  // FirstDifference of each pair, when config_.first_difference
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

// Both at once, from one forward pass: per-sequence sums [B] and the number
// of response tokens per sequence [B] (float, at least 1).
struct ResponseLogProbSums {
  at::Tensor sum, tokens;
  at::Tensor Mean() const { return sum.div(tokens); }
};
ResponseLogProbSums ResponseLogProbTotals(const Transformer& model, const ModelWeights& weights,
                                          const TokenBatch& batch);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_DPO_H_
