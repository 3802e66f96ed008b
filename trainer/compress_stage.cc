#include "trainer/compress_stage.h"

#include <ctime>
#include <filesystem>
#include <map>

#include "core/file_util.h"
#include "pack/composer.h"
#include "pack/compressor.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "pack/skillpack.h"

namespace skillpack {

Status ParseCompressStage(const Json& j, const std::string& path, std::optional<CompressStageSpec>* out) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, " must be a JSON object"));
  CompressStageSpec spec;
  for (const auto& [key, value] : j.items()) {
    if (key == "name") {
      if (!value.is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ".name must be a string"));
      spec.pack_name = value.get<std::string>();
      Status ok = ValidatePackName(spec.pack_name);
      if (!ok.ok()) return Annotate(ok, absl::StrCat(path, ".name"));
    } else if (key == "config") {
      StatusOr<CompressionConfig> cfg = ParseCompressionConfig(value);
      if (!cfg.ok()) return Annotate(cfg.status(), absl::StrCat(path, ".config"));
      spec.config = value;
    } else if (key == "description") {
      if (!value.is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ".description must be a string"));
      spec.description = value.get<std::string>();
    } else if (key == "tags") {
      if (!value.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ".tags must be an array"));
      for (const Json& t : value) {
        if (!t.is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ".tags must hold strings"));
        spec.tags.push_back(t.get<std::string>());
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ".", key, ": unknown field"));
    }
  }
  *out = std::move(spec);
  return absl::OkStatus();
}

StatusOr<CompressStageResult> RunCompressStage(const CompressStageSpec& spec, const ModelWeights& base,
                                               const ModelWeights& tuned, const JobSpec& job,
                                               const std::string& out_dir) {
  ASSIGN_OR_RETURN(CompressionConfig cfg, ParseCompressionConfig(spec.config));
  ASSIGN_OR_RETURN(SkillPack pack, CompressDelta(base, tuned, cfg, /*calib=*/nullptr, nullptr));
  const std::string name = spec.pack_name.empty() ? job.name : spec.pack_name;
  RETURN_IF_ERROR(Annotate(ValidatePackName(name), "job.stages.compress.name (defaults to the job name)"));
  pack.manifest.name = name;
  ASSIGN_OR_RETURN(pack.manifest.base_fingerprint, BaseFingerprint(base));
  pack.manifest.description = spec.description;
  pack.manifest.tags = spec.tags;
  Json stages = Json::array();
  if (job.distill) {
    stages.push_back("distill");
    Json sources = Json::array();
    for (const DistillSource& src : job.distill->sources) sources.push_back(src.address);
    pack.manifest.provenance["sources"] = sources;
  }
  if (job.sft) stages.push_back("sft");
  if (job.dpo) stages.push_back("dpo");
  pack.manifest.provenance["job"] = job.name;
  pack.manifest.provenance["stages"] = stages;
  if (!job.task.empty()) pack.manifest.provenance["task"] = job.task;
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm_utc;
  gmtime_r(&now, &tm_utc);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  pack.manifest.created_at = when;
  const std::string path = JoinPath(out_dir, name + ".skillpack");
  RETURN_IF_ERROR(WriteSkillPack(pack, path));
  std::map<std::string, int64_t> ops;
  for (const ModuleDelta& m : pack.modules) ++ops[ModuleOpName(m.op)];
  CompressStageResult result;
  Json& report = result.report;
  report["path"] = path;
  report["estimated_bytes"] = EstimatePackBytes(pack);
  report["fp16_delta_bytes"] = Fp16DeltaBytes(tuned);
  report["modules"] = ops;
  report["calibration"] = "none (round-to-nearest)";
  // What a server would load: the file read back, decoded and composed.
  ASSIGN_OR_RETURN(SkillPack reread, ReadSkillPack(path));
  RETURN_IF_ERROR(Annotate(CheckPackFitsBase(reread, base, pack.manifest.base_fingerprint),
                           absl::StrCat("job.stages.compress: ", path)));
  ASSIGN_OR_RETURN(DecodedPack decoded, DecodePack(reread, /*keep_factors=*/false));
  PackSelection selection;
  selection.name = name;
  ASSIGN_OR_RETURN(result.composed, ComposeWeights(base, {selection}, {&decoded}));
  report["file_bytes"] = static_cast<int64_t>(std::filesystem::file_size(path));
  return result;
}

}  // namespace skillpack
