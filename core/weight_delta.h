// A weight set kept as the base plus corrections that are never materialised
// (factorized serving). For any tensor of the model, a list of terms:
//
//   low rank:  scale · us · vt     us [out, k], vt [k, in]   (2-D tensors only;
//              int8 codes: scale · us · diag(rank_scale) · vt)
//   dense:     scale · dense       the tensor's own shape
//
// Transformer::Step applies a delta per sequence (SeqStep::delta), so rows of
// one batch with different deltas share every base GEMM and add only their own
// corrections:  y = x Wᵀ + Σ scale · (x vtᵀ) usᵀ  for linear layers, the same
// sums on the rows an embedding lookup gathers, and per-row norm weights and
// biases. Exactly the maths of composing the terms into W (pack/composer.h's
// ComposeWeights), up to floating-point rounding.
//
// The terms reference tensors owned elsewhere (a decoded pack): a WeightDelta
// adds no copy of them. Immutable once built; safe to share between threads.
#ifndef SKILLPACK_CORE_WEIGHT_DELTA_H_
#define SKILLPACK_CORE_WEIGHT_DELTA_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model_config.h"
#include "core/status.h"

namespace skillpack {

struct DeltaTerm {
  // low rank: both set, both float32, float16 or int8; vt contiguous for the
  // small-batch kernel, us contiguous or stored transposed (UsLayout below)
  at::Tensor us, vt;
  at::Tensor dense;  // or dense, float32
  float scale = 1.0f;
  at::Tensor rank_scale{};  // int8 factors only: [k] float32

  bool low_rank() const { return !dense.defined(); }
  // us as `type` with rank_scale folded into its columns (the ATen paths).
  at::Tensor UsAs(at::ScalarType type) const;
};

// us [out, k] with the same values, stored as its transpose [k, out]
// row-major (us.t() contiguous): the layout whose rows the small-batch kernel
// adds into the outputs (core/model.cc, SmallGemmAccumulate). What the host
// tier keeps (pack/decode.h, SetFactorPrecision).
at::Tensor UsLayout(const at::Tensor& us);

class WeightDelta {
 public:
  // Validates every entry against the tensors `config` defines
  // (ExpectedTensors): the name must be one of them (a tied config has no
  // "lm_head.weight": its embedding terms serve both uses), low-rank terms only
  // on 2-D tensors with us [out, k] and vt [k, in], dense terms of the tensor's
  // shape, float32 tensors (or float16 factors, or int8 ones with a float32
  // rank_scale [k]) on one device, finite scales. Terms with scale 0 and
  // names without terms are dropped. INVALID_ARGUMENT naming the tensor.
  static StatusOr<std::shared_ptr<const WeightDelta>> Create(const ModelConfig& config,
                                                             std::map<std::string, std::vector<DeltaTerm>> terms);

  // The terms of `name`; nullptr when it has none.
  const std::vector<DeltaTerm>* Find(const std::string& name) const;
  const std::map<std::string, std::vector<DeltaTerm>>& terms() const { return terms_; }
  // Bytes of the distinct tensors the terms reference (owned elsewhere too).
  int64_t bytes() const { return bytes_; }

 private:
  WeightDelta() = default;
  std::map<std::string, std::vector<DeltaTerm>> terms_;
  int64_t bytes_ = 0;
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_WEIGHT_DELTA_H_
