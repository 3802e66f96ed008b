#include "trainer/compress_stage.h"

#include <ctime>
#include <filesystem>
#include <map>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

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
    } else if (key == "calibration") {
      const std::string cp = absl::StrCat(path, ".calibration");
      if (!value.is_object()) return absl::InvalidArgumentError(absl::StrCat(cp, " must be an object"));
      for (const auto& [k, v] : value.items()) {
        if (k == "samples" || k == "max_len") {
          if (!v.is_number_integer() || v.get<int64_t>() < 0 || (k == "max_len" && v.get<int64_t>() == 0)) {
            return absl::InvalidArgumentError(
                absl::StrCat(cp, ".", k, k == "samples" ? " must be an integer >= 0" : " must be an integer >= 1"));
          }
          (k == "samples" ? spec.calib_samples : spec.calib_max_len) = v.get<int64_t>();
        } else if (k == "model") {
          if (!v.is_string() || (v != "tuned" && v != "base")) {
            return absl::InvalidArgumentError(absl::StrCat(cp, ".model must be \"tuned\" or \"base\""));
          }
          spec.calib_on_tuned = v == "tuned";
        } else {
          return absl::InvalidArgumentError(absl::StrCat(cp, ".", k, ": unknown field"));
        }
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
                                               const std::string& out_dir, const CalibrationStats* calib,
                                               const PackRefitFn& refit) {
  if (spec.refit.has_value() != static_cast<bool>(refit)) {
    return absl::FailedPreconditionError(spec.refit ? "job.stages.compress.refit: no refit runner given"
                                                    : "compress stage: a refit runner without a refit spec");
  }
  ASSIGN_OR_RETURN(CompressionConfig cfg, ParseCompressionConfig(spec.config));
  // A refit stores every matrix round-to-nearest, without a column
  // permutation: budget mode must not spend bytes on one.
  if (refit) cfg.act_order = false;
  const std::string name = spec.pack_name.empty() ? job.name : spec.pack_name;
  RETURN_IF_ERROR(Annotate(ValidatePackName(name), "job.stages.compress.name (defaults to the job name)"));
  // The whole manifest first: in budget mode the file is measured with it.
  PackManifest manifest;
  manifest.name = name;
  ASSIGN_OR_RETURN(manifest.base_fingerprint, BaseFingerprint(base));
  manifest.description = spec.description;
  manifest.tags = spec.tags;
  Json stages = Json::array();
  if (job.distill) {
    stages.push_back("distill");
    Json sources = Json::array();
    for (const DistillSource& src : job.distill->sources) sources.push_back(src.address);
    manifest.provenance["sources"] = sources;
  }
  if (job.sft) stages.push_back("sft");
  if (job.dpo) stages.push_back("dpo");
  manifest.provenance["job"] = job.name;
  manifest.provenance["stages"] = stages;
  if (!job.task.empty()) manifest.provenance["task"] = job.task;
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm_utc;
  gmtime_r(&now, &tm_utc);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  manifest.created_at = when;
  // Recorded before compressing, so that budget mode counts its bytes; "kept"
  // is set after the refit to "refitted" or "original", both 8 bytes.
  if (spec.refit) {
    manifest.provenance["refit"] = {
        {"steps", spec.refit->loop.steps}, {"objective", "kl_to_tuned"}, {"kept", "original"}};
  }
  ASSIGN_OR_RETURN(SkillPack pack, CompressDelta(base, tuned, cfg, calib, nullptr, manifest));
  CompressStageResult result;
  Json& report = result.report;
  if (refit) {
    // Same modules, ranks, bands and bits: the same file size to a few bytes.
    ASSIGN_OR_RETURN(RefitResult r, refit(pack));
    pack = std::move(r.pack);
    pack.manifest.provenance["refit"]["kept"] = r.refitted ? "refitted" : "original";
    report["refit"] = std::move(r.report);
  }
  const std::string path = JoinPath(out_dir, name + ".skillpack");
  RETURN_IF_ERROR(WriteSkillPack(pack, path));
  std::map<std::string, int64_t> ops;
  for (const ModuleDelta& m : pack.modules) ++ops[ModuleOpName(m.op)];
  report["path"] = path;
  report["estimated_bytes"] = EstimatePackBytes(pack);
  report["fp16_delta_bytes"] = Fp16DeltaBytes(tuned);
  report["modules"] = ops;
  report["calibration"] = pack.manifest.provenance["compression"]["calibration"];
  report["quantizer"] = calib != nullptr && !refit ? cfg.quantizer : "rtn";
  // What a server would load: the file read back, decoded and composed.
  ASSIGN_OR_RETURN(SkillPack reread, ReadSkillPack(path));
  RETURN_IF_ERROR(Annotate(CheckPackFitsBase(reread, base, pack.manifest.base_fingerprint),
                           absl::StrCat("job.stages.compress: ", path)));
  ASSIGN_OR_RETURN(DecodedPack decoded, DecodePack(reread, /*keep_factors=*/false));
  PackSelection selection;
  selection.name = name;
  ASSIGN_OR_RETURN(result.composed, ComposeWeights(base, {selection}, {&decoded}));
  report["file_bytes"] = static_cast<int64_t>(std::filesystem::file_size(path));
  report["file_ratio"] = report["file_bytes"].get<double>() / report["fp16_delta_bytes"].get<double>();
  // How far base + pack is from the tuned model: Σ‖Δ − ΔŴ‖² / Σ‖Δ‖² over every
  // tensor, and with calibration the same weighted by each projection's
  // input Hessian (the output error the calibration set sees).
  try {
    c10::InferenceMode guard;
    double err = 0, total = 0, out_err = 0, out_total = 0;
    for (const auto& [tname, w] : base.tensors()) {
      at::Tensor d = (tuned.Find(tname)->to(at::kDouble) - w.to(at::kDouble));
      auto it = decoded.modules.find(tname);
      at::Tensor e = it == decoded.modules.end() ? d : d - it->second.DenseDelta().to(at::kDouble).to(d.device());
      err += e.pow(2).sum().item<double>();
      total += d.pow(2).sum().item<double>();
      const at::Tensor* h = calib != nullptr ? calib->Find(tname) : nullptr;
      if (h != nullptr && d.dim() == 2) {
        const at::Tensor hd = h->to(at::kDouble).to(d.device());
        out_err += (at::matmul(e, hd) * e).sum().item<double>();
        out_total += (at::matmul(d, hd) * d).sum().item<double>();
      }
    }
    report["relative_error"] = total > 0 ? err / total : 0.0;
    if (out_total > 0) report["relative_output_error"] = out_err / out_total;
  } catch (const std::exception& e) {
    return StatusFromException(e, "measuring the pack's error");
  }
  return result;
}

}  // namespace skillpack
