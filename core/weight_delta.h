// A weight set kept as the base plus corrections that are never materialised
// (factorized serving). For any tensor of the model, a list of terms:
//
//   low rank:  scale · us · vt     us [out, k], vt [k, in]   (2-D tensors only;
//              int8 codes: scale · us · diag(rank_scale) · vt)
//   sparse:    scale · S           S [out, in] as compressed sparse rows
//              (core/sparse_rows.h; 2-D tensors only: a pack's pruned
//              embed_tokens and lm_head)
//   quantised: scale · Q           Q [out, in] as a pack's group-quantised
//              codes (core/quant_rows.h; 2-D tensors only: a pack's
//              dense_quant modules)
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

#include "absl/container/flat_hash_map.h"

#include "core/model_config.h"
#include "core/quant_rows.h"
#include "core/sparse_rows.h"
#include "core/status.h"
#include "core/weights.h"

namespace skillpack {

// A low-rank term's factors as plain pointers and sizes: what the small-batch
// kernel reads (core/model.cc), so that a step over many pack sets does not
// walk each factor's tensor object, cold by the time a step comes back to it
// (a profile of a tiny 8-set step put a third of AddLowRankRows's own samples
// on two loads from those objects: bench/README.md).
struct FactorView {
  bool ready = false;                // the term is on the CPU in a layout the kernel reads
  at::ScalarType type = at::kFloat;  // of both factors: float32, float16 or int8
  int64_t rank = 0, in = 0, out = 0;
  const void* vt = nullptr;  // [rank, in] row-major, or [in, rank] when vt_transposed
  const void* us = nullptr;  // [out, rank] row-major, or [rank, out] when us_transposed
  bool vt_transposed = false;
  bool us_transposed = false;
  const float* rank_scale = nullptr;  // [rank], int8 factors only
};

struct DeltaTerm {
  // Exactly one form:
  // low rank: both set, both float32, float16 or int8; for the small-batch
  // kernel each contiguous or stored transposed (VtLayout, UsLayout below)
  at::Tensor us, vt;
  at::Tensor dense;  // or dense: float32, or float16 on a 2-D tensor (a host tier's pack, pack/decode.h)
  float scale = 1.0f;
  at::Tensor rank_scale{};  // int8 factors only: [k] float32
  SparseRows sparse{};      // or sparse rows (these last: the fields above keep their aggregate order)
  QuantRows quant{};        // or quantised codes
  // Set by WeightDelta::Create from the tensors above (whatever was here is
  // replaced); ready only for low-rank terms the kernel can read in place.
  FactorView view{};

  bool low_rank() const { return us.defined() || vt.defined(); }
  bool is_sparse() const { return sparse.defined(); }
  bool is_quant() const { return quant.defined(); }
  // us as `type` with rank_scale folded into its columns (the ATen paths).
  at::Tensor UsAs(at::ScalarType type) const;
};

// us [out, k] with the same values, stored as its transpose [k, out]
// row-major (us.t() contiguous): the layout whose rows the small-batch kernel
// adds into the outputs (core/model.cc, SmallGemmAccumulate). What the host
// tier keeps (pack/decode.h, SetFactorPrecision).
at::Tensor UsLayout(const at::Tensor& us);
// vt [k, in] with the same values, stored as its transpose [in, k] row-major
// (vt.t() contiguous): t = x · vtᵀ is then k-wide vectors of sums, one
// broadcast x value times a row of vtᵀ at a time (SmallGemmAccumulate's narrow
// kernel: 1.3-2x faster than SmallGemm's horizontal sum per output for a
// rank-16 int8 vt and 1-4 rows, bench/README.md). What the host tier keeps.
at::Tensor VtLayout(const at::Tensor& vt);

class WeightDelta {
 public:
  // Validates every entry against the tensors `config` defines
  // (ExpectedTensors): the name must be one of them (a tied config has no
  // "lm_head.weight": its embedding terms serve both uses), each term of one
  // form, low-rank terms only on 2-D tensors with us [out, k] and vt [k, in],
  // sparse and quantised ones only on 2-D tensors (CheckSparseRows,
  // CheckQuantRows), dense terms of the tensor's
  // shape, float32 tensors (or float16 factors, or int8 ones with a float32
  // rank_scale [k], or sparse rows' own types, or a float16 dense term on a
  // 2-D tensor) on one device, finite scales. Terms with scale 0 and
  // names without terms are dropped. INVALID_ARGUMENT naming the tensor.
  static StatusOr<std::shared_ptr<const WeightDelta>> Create(const ModelConfig& config,
                                                             std::map<std::string, std::vector<DeltaTerm>> terms);

  // The terms of `name`; nullptr when it has none (a hash lookup).
  const std::vector<DeltaTerm>* Find(const std::string& name) const;
  // The same for layer `layer`'s tensor `t`, by position, no name built or
  // hashed (a step looks up every layer tensor in every pack set of its
  // batch); nullptr outside the config's layers.
  const std::vector<DeltaTerm>* Find(int64_t layer, LayerTensor t) const;
  const std::map<std::string, std::vector<DeltaTerm>>& terms() const { return terms_; }
  // Bytes of the distinct tensors the terms reference (owned elsewhere too).
  int64_t bytes() const { return bytes_; }

  // Not copyable: index_ points into terms_.
  WeightDelta(const WeightDelta&) = delete;
  WeightDelta& operator=(const WeightDelta&) = delete;

 private:
  WeightDelta() = default;
  std::map<std::string, std::vector<DeltaTerm>> terms_;
  absl::flat_hash_map<std::string, const std::vector<DeltaTerm>*> index_;  // into terms_
  std::vector<const std::vector<DeltaTerm>*> layer_index_;                 // [layer · kLayerTensors + t]
  int64_t bytes_ = 0;
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_WEIGHT_DELTA_H_
