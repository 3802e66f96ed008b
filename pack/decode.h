// Decoding SkillPacks on the CPU: the reference that defines what a pack's
// modules mean (and later the oracle for the CUDA kernels).
//
//   lowrank:     ΔŴ = US · Vᵀ, where US = [deq(U_0) diag(σ_0) | deq(U_1) diag(σ_1) | ...]
//                ([out, rank], bands side by side in rank order) and
//                Vᵀ = [deq(Vᵀ_0); deq(Vᵀ_1); ...] ([rank, in]). Mathematically
//                Σ_b deq(U_b) diag(σ_b) deq(Vᵀ_b); computed as one fp32 matmul.
//   sparse:      zeros with values (fp16 -> fp32) scattered at the flat indices.
//   dense_quant: Dequantize(dense) (original column order).
//   dense:       full.
// deq() is quantize.h's Dequantize: w = (q - z) * s, act-order undone.
#ifndef SKILLPACK_PACK_DECODE_H_
#define SKILLPACK_PACK_DECODE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "core/quant_rows.h"
#include "core/sparse_rows.h"
#include "core/status.h"
#include "pack/codec/quantize.h"
#include "pack/factor_precision.h"
#include "pack/skillpack.h"

namespace skillpack {

// ΔŴ of one module as a new float32 tensor of m.shape on the pack's device.
// Validates the module first (INVALID_ARGUMENT naming it and the field).
StatusOr<at::Tensor> DecodeModuleDelta(const ModuleDelta& m);

// The dequantised low-rank factors of a lowrank module: us = US [out, rank]
// (σ folded in) and vt = Vᵀ [rank, in], float32, such that
// DecodeModuleDelta(m) == us.matmul(vt) bit for bit. INVALID_ARGUMENT for
// other ops or an invalid module.
struct LowRankFactors {
  at::Tensor us;
  at::Tensor vt;
};
StatusOr<LowRankFactors> DecodeLowRankFactors(const ModuleDelta& m);

// One decoded module. Exactly one form is set: `delta` (dense ΔŴ, float32
// [out, in] or the module's shape; a 2-D one may be float16 times
// factor_scale: StoreDeltaAsHalf), or the factors `us` [out, k] = U diag(σ)
// and `vt` [k, in] (float32, or both float16, or both int8 codes:
// FactorPrecision) with ΔŴ = factor_scale · us · diag(rank_scale) · vt
// (rank_scale only with int8 codes), or `sparse`: ΔŴ's nonzero entries as
// compressed sparse rows (core/sparse_rows.h; a pack's sparse module), or
// `quant`: ΔŴ as the pack's own group-quantised codes (core/quant_rows.h; a
// pack's dense_quant module).
struct DecodedModule {
  std::string name;
  at::Tensor delta;
  at::Tensor us;
  at::Tensor vt;
  // 1 for float32 factors (and a float32 delta). Float16 ones are stored
  // divided by a power of two each (exact), so that their largest entry is in
  // [0.5, 1]: a pack's small singular values would otherwise put U·diag(σ)
  // among float16's subnormals (below 6.1e-5), where its precision runs out,
  // and large ones past 65504. A float16 delta is stored the same way, its
  // power of two here too (the name is the factors' for history).
  float factor_scale = 1.0f;
  // Int8 factors only: [k] float32, each rank component's scale (the product
  // of its column's scale in us and its row's in vt); undefined otherwise.
  at::Tensor rank_scale{};
  // Or the sparse rows, or the quantised rows (these last: the fields above
  // keep their aggregate order).
  SparseRows sparse{};
  QuantRows quant{};

  bool factored() const { return us.defined(); }
  bool is_sparse() const { return sparse.defined(); }
  bool is_quant() const { return quant.defined(); }
  // ΔŴ as float32: factor_scale · `delta`, or factor_scale · (us · diag(rank_scale)).matmul(vt)
  // in float32 (equal to DecodeModuleDelta when the factors are float32), or
  // the sparse or quantised rows made dense (equal to DecodeModuleDelta).
  at::Tensor DenseDelta() const;
  int64_t bytes() const;
};

// A pack decoded once and kept in host memory for reuse (the server's host
// cache tier). Immutable once built; safe to share between threads.
struct DecodedPack {
  std::string name;
  std::string base_fingerprint;
  std::map<std::string, DecodedModule> modules;  // by module name

  // Bytes of all tensors held.
  int64_t bytes() const;
};

// Keeps a factored module's us and vt in `precision`: kFloat32 keeps their
// values; kFloat16 scales each by a power of two into float16's normal range
// (exact) and rounds it, folding the powers into factor_scale; kInt8 rounds
// us by column and vt by row to symmetric int8 codes, their scales (and
// factor_scale) multiplied into rank_scale, factor_scale 1. Every precision
// stores both factors transposed (core/weight_delta.h's UsLayout and
// VtLayout: what factorized serving reads fastest). What DecodePack does to each low-rank module;
// REQUIRES m->factored() with float32 factors.
void SetFactorPrecision(DecodedModule* m, FactorPrecision precision);

// A quantised matrix (a dense_quant module's) in the form factorized serving
// reads (core/quant_rows.h): the same values, its codes 1 byte each.
// REQUIRES: a valid matrix (ValidateSkillPack's checks).
QuantRows QuantRowsOf(const QuantizedMatrix& m);

// Keeps a module's 2-D float32 `delta` as float16: divided by the power of
// two at or above its largest magnitude (exact; folded into factor_scale),
// then rounded (2^-11 relative per entry down to 2^-14 of the largest: what
// --factor-precision float16 does to the factors; a dense module is float32
// in the pack, so this is its only rounding). Half the bytes, and what
// factorized serving streams through the small-batch kernel (core/model.cc).
// REQUIRES: m->delta is a 2-D float32 tensor and factor_scale is 1.
void StoreDeltaAsHalf(DecodedModule* m);

// Decodes every module. With keep_factors (the server's host tier), lowrank
// modules keep (us, vt) instead of the dense ΔŴ (smaller when rank <<
// min(out, in), and what factorized serving wants, composer.h), in `factors`
// precision, and 2-D sparse modules keep their entries as sparse rows
// (core/sparse_rows.h: 4 bytes per kept entry, where the dense matrix takes 4
// per entry, kept or not: a pruned lm_head at TinyLlama-1.1B's shapes is 262 MB
// dense), dense_quant modules keep their codes (QuantRowsOf: 1 byte an entry
// plus 8 per row and group, exact), and 2-D dense modules a dense ΔŴ as
// float16 (StoreDeltaAsHalf) unless `factors` is kFloat32. Other modules
// (1-D norms and biases), and every module without keep_factors, are dense
// float32. Validates the pack's modules
// (INVALID_ARGUMENT naming the module).
StatusOr<DecodedPack> DecodePack(const SkillPack& pack, bool keep_factors,
                                 FactorPrecision factors = FactorPrecision::kFloat32);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_DECODE_H_
