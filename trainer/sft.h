// Supervised fine-tuning: next-token cross-entropy on response tokens only
// (prompt tokens are context, not targets), averaged over the response tokens
// of the global batch.
#ifndef SKILLPACK_TRAINER_SFT_H_
#define SKILLPACK_TRAINER_SFT_H_

#include <vector>

#include "core/model.h"
#include "trainer/data.h"
#include "trainer/train_loop.h"

namespace skillpack {

class SftObjective : public TrainingObjective {
 public:
  // `model` must outlive the objective. REQUIRES: every sequence has >= 1 response token.
  SftObjective(const Transformer& model, std::vector<TokenizedSequence> sequences);

  int64_t num_examples() const override { return static_cast<int64_t>(seqs_.size()); }
  std::vector<std::string> MetricNames() const override { return {"loss"}; }
  double Units(const std::vector<int64_t>& examples) const override;
  StatusOr<MicroBatchLoss> Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                double normaliser) override;

 private:
  const Transformer& model_;
  std::vector<TokenizedSequence> seqs_;
};

// Mean response-token cross-entropy of `sequences` under `weights` (no grad),
// in batches of `batch_size`.
StatusOr<double> ResponseLoss(const Transformer& model, const ModelWeights& weights,
                              const std::vector<TokenizedSequence>& sequences, int64_t batch_size);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_SFT_H_
