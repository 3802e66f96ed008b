// The job pipeline's compress stage: Δ = tuned − base through the SkillPack
// compressor (pack/compressor.h, calibrated when the caller passes input
// Hessians, see CompressStageSpec) and written as DIR/<name>.skillpack with a
// manifest naming the base model's fingerprint and the job's provenance.
#ifndef SKILLPACK_TRAINER_COMPRESS_STAGE_H_
#define SKILLPACK_TRAINER_COMPRESS_STAGE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/json_util.h"
#include "core/status.h"
#include "core/weights.h"
#include "pack/calibration.h"
#include "pack/skillpack.h"
#include "trainer/job.h"
#include "trainer/pack_refit.h"

namespace skillpack {

// Parses the stage's JSON object at `path` into *out. INVALID_ARGUMENT naming the field.
Status ParseCompressStage(const Json& j, const std::string& path, std::optional<CompressStageSpec>* out);

struct CompressStageResult {
  Json report;  // path, file and fp16-delta bytes, modules by operator
  // base + the pack as written (read back from disk, decoded and composed), for evaluation.
  std::shared_ptr<const ModelWeights> composed;
};

// Refits a compressed pack before it is written (the spec's refit: RefitPack
// in trainer/pack_refit.h, with the caller's data and training loop).
using PackRefitFn = std::function<StatusOr<RefitResult>(const SkillPack& pack)>;

// Compresses and writes the pack, then reads it back and composes it onto
// `base`. `calib` (nullable): Hessians for GPTQ and budget mode's error
// weights; null is round-to-nearest. `refit` runs between compressing and
// writing, and must be given exactly when spec.refit is set
// (FAILED_PRECONDITION otherwise); its report goes to the result's "refit".
StatusOr<CompressStageResult> RunCompressStage(const CompressStageSpec& spec, const ModelWeights& base,
                                               const ModelWeights& tuned, const JobSpec& job,
                                               const std::string& out_dir, const CalibrationStats* calib,
                                               const PackRefitFn& refit = nullptr);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_COMPRESS_STAGE_H_
