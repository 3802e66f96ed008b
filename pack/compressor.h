// The SkillPack compressor: turns a fine-tuning delta Δ = θ_tuned − θ_base into
// a SkillPack (pack/skillpack.h), module by module (DESIGN.md "Algorithms"):
//  - embed_tokens, lm_head: magnitude pruning, the round(α·numel) largest |Δ|
//    entries kept (exact zeros dropped), fp16 values.
//  - q/k/v/o_proj, gate/up/down_proj: truncated SVD Δ ≈ U Σ Vᵀ with the
//    smallest rank k keeping a fraction β(type) of ‖Δ‖²_F (capped by max_rank),
//    split by rank into bands of decreasing bits. Per band b, Vᵀ_b is quantised
//    with GPTQ on the module's input Hessian H_x, then U_b with GPTQ on the
//    Hessian of its own inputs Σ_b V̂ᵀ_b x, which is (Σ_b V̂ᵀ_b) H_x (Σ_b V̂ᵀ_b)ᵀ
//    (see calibration.h); σ stays fp32. Round-to-nearest without calibration.
//    When k > dense_rank_fraction·min(m, n), Δ is quantised densely instead
//    (dense_bits, GPTQ on H_x).
//  - everything else (norms, biases): dense fp32.
// Modules whose Δ is exactly zero are omitted. In budget mode
// (CompressionConfig::target_ratio / target_bytes) the operator and its
// parameters are chosen per module instead, to fit the file into the budget.
//
// Byte accounting (EstimatePackBytes) is a conservative estimate of the
// .skillpack file size: tensor data as the format stores it plus an allowance
// for the safetensors header and manifest per tensor and per module.
#ifndef SKILLPACK_PACK_COMPRESSOR_H_
#define SKILLPACK_PACK_COMPRESSOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/json_util.h"
#include "core/status.h"
#include "core/weights.h"
#include "pack/calibration.h"
#include "pack/skillpack.h"

namespace skillpack {

struct CompressionConfig {
  // Defaults measured on the tiny world (trainer/examples, sort task, SFT 0.895
  // held-out exact match): alpha 0.1 / beta 0.5 left base + pack at 0.0, alpha
  // 0.5 / beta 0.9 kept 0.785 at a quarter of the fp16 delta's bytes.
  // embed_tokens / lm_head: fraction of entries kept (largest |Δ|), in (0, 1].
  double alpha = 0.5;
  // Energy threshold per projection type, in (0, 1].
  std::map<std::string, double> beta = {{"q_proj", 0.9},    {"k_proj", 0.9},  {"v_proj", 0.9},   {"o_proj", 0.9},
                                        {"gate_proj", 0.9}, {"up_proj", 0.9}, {"down_proj", 0.9}};
  // Bands by rank: (cumulative fraction of the module's rank, bits). Fractions
  // strictly increasing in (0, 1], the last exactly 1; bits in {2, 3, 4, 8}.
  // The top 10% of singular directions carry most of the energy and get 8 bits,
  // the next 20% 4 bits, the tail 3 bits (2-bit factors lose about half of a
  // band's energy to rounding, which rarely pays off).
  std::vector<std::pair<double, int>> bands = {{0.1, 8}, {0.3, 4}, {1.0, 3}};
  // A band narrower than this many singular directions is merged into its
  // neighbour with more bits (each band costs a scale and zero per row of U).
  int64_t min_band_width = 8;
  int64_t group_size = 128;
  bool act_order = true;  // used where the stored permutation is worth its bytes
  float damp_percent = 0.01f;
  // When the rank exceeds this fraction of min(m, n), Δ is quantised densely
  // at dense_bits instead. In (0, 1].
  double dense_rank_fraction = 0.5;
  int dense_bits = 4;
  int64_t max_rank = -1;  // cap on every low-rank module's rank; -1: none
  // With calibration: "gptq" quantises on the module's input Hessians, "rtn"
  // rounds to nearest anyway (the Hessians then only weigh budget mode's
  // errors). Without calibration it is always round-to-nearest.
  std::string quantizer = "gptq";
  // With calibration, budget mode's low-rank candidates at each rank and band
  // layout are the better, by the measured error below, of the plain
  // truncated SVD and the activation-aware one (WhitenedTruncatedSvd in
  // pack/codec/lowrank.h, which minimises that error before rounding). The
  // file format is the same either way. Off by default: it lowers the
  // measured error, but on the tiny world's tasks it left held-out accuracy
  // where plain SVD had it and compression took longer (bench/README.md).
  bool whiten = false;
  // Budget mode (at most one of the two): .skillpack FILE bytes / fp16 delta
  // bytes (Fp16DeltaBytes), or file bytes. Each module's operator and
  // parameters are chosen by greedy marginal-gain allocation (allocate.h)
  // over candidate settings whose output error is measured (below); alpha
  // and beta are then unused. Candidates: low-rank modules any rank up to
  // dense_rank_fraction·min(m, n) (and max_rank) with uniform 8/4/3/2-bit or
  // mixed band layouts, dense quantisation at 8/4/3/2 bits, or nothing;
  // embed_tokens / lm_head the k largest entries stored sparse, dense
  // quantisation at 8/4 bits where that is cheaper, or nothing; other tensors
  // are stored whole. Error of a candidate: ‖Δ − Δ̂‖ with factors round-tripped
  // through round-to-nearest, weighted by the module's input Hessian (scaled
  // to mean diagonal 1) when calibration is given: tr((Δ − Δ̂) H (Δ − Δ̂)ᵀ).
  // The header and manifest are counted: the pack is serialised and the
  // allocation's budget corrected until the file is within [98%, 100%] of
  // the target (or the largest file found under it).
  std::optional<double> target_ratio;
  std::optional<int64_t> target_bytes;
};

// Reads a CompressionConfig from JSON (the --config FILE of `skillpack pack
// create`): any subset of the fields above, by the same names; "beta" may be a
// number (every type) or an object by type; "bands" is [[fraction, bits], ...].
// INVALID_ARGUMENT naming the key for unknown keys, wrong types and values out
// of range.
StatusOr<CompressionConfig> ParseCompressionConfig(const Json& j);
// The config as JSON (ParseCompressionConfig reads it back); goes into the
// pack's provenance.
Json CompressionConfigToJson(const CompressionConfig& cfg);
// Range checks of ParseCompressionConfig, for configs built in code.
Status ValidateCompressionConfig(const CompressionConfig& cfg);

// Reported after each module is done.
struct CompressProgress {
  std::string module;  // tensor name
  int64_t index = 0;   // 1-based
  int64_t total = 0;
  std::string op;      // ModuleOpName, or "zero" for an omitted module
  int64_t rank = 0;    // kLowRank only
  int64_t bytes = 0;   // estimated bytes of the module in the pack
  double seconds = 0;  // time spent on the module
};

// One module's compression result.
struct CompressedModule {
  bool omitted = false;  // Δ is exactly zero: nothing to store
  ModuleDelta delta;     // valid when !omitted
};
// Compresses one module's delta (floating, the tensor's shape, any device) by
// the operator its name selects, with cfg's α / β (budget fields ignored).
// `input_hessian` (H_x of the module's inputs, float [in, in]) may be null:
// round-to-nearest then (also when it is all zero, i.e. the input is dead).
// INVALID_ARGUMENT for non-finite entries or a Hessian of the wrong shape.
StatusOr<CompressedModule> CompressModule(const std::string& name, const at::Tensor& delta,
                                          const CompressionConfig& cfg, const at::Tensor* input_hessian);

// Compresses tuned − base. Both must hold the same tensor names and shapes
// (INVALID_ARGUMENT naming the first missing, extra or differently shaped
// tensor). `calib` (nullable) holds the base model's input Hessians; modules
// without one use round-to-nearest. `progress` (may be empty) is called after
// each tensor. The manifest's provenance["compression"] records the config,
// and in budget mode "budget": target, planned bytes, attempts, the error measure,
// the planned relative error and modules by operator;
// name, fingerprint and the rest of the manifest are the caller's: in budget
// mode the file is measured with a placeholder manifest of typical size, so
// prefer the overload below, which measures it with the real one.
// RESOURCE_EXHAUSTED when a budget target cannot be met even by the smallest
// pack (the message gives that size).
StatusOr<SkillPack> CompressDelta(const ModelWeights& base, const ModelWeights& tuned, const CompressionConfig& cfg,
                                  const CalibrationStats* calib,
                                  const std::function<void(const CompressProgress&)>& progress);

// Same, returning the pack with `manifest` (its provenance gains
// "compression"); in budget mode the target then holds for
// SerializeSkillPack(pack) exactly as returned. Callers must not add to the
// manifest afterwards.
StatusOr<SkillPack> CompressDelta(const ModelWeights& base, const ModelWeights& tuned, const CompressionConfig& cfg,
                                  const CalibrationStats* calib,
                                  const std::function<void(const CompressProgress&)>& progress,
                                  const PackManifest& manifest);

// Estimated bytes of one module / a whole pack in a .skillpack file (see top).
int64_t EstimateModuleBytes(const ModuleDelta& m);
int64_t EstimatePackBytes(const SkillPack& pack);

// Bytes of the delta stored densely in fp16: 2 · Σ numel over every tensor of
// `w` (the denominator of the compression ratio).
int64_t Fp16DeltaBytes(const ModelWeights& w);

// The projection type of a module name ("q_proj", ..., "down_proj"), or "" if
// the name is not one of the seven projections' weights.
std::string ProjectionType(absl::string_view name);
// True for "model.embed_tokens.weight" and "lm_head.weight".
bool IsEmbeddingModule(absl::string_view name);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_COMPRESSOR_H_
