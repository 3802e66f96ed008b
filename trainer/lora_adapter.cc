#include "trainer/lora_adapter.h"

#include <set>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/safetensors.h"
#include "core/tensor_util.h"

namespace skillpack {
namespace {

constexpr char kPeftPrefix[] = "base_model.model.";
constexpr char kWeightSuffix[] = ".weight";

// "q_proj", ..., "down_proj": the module names PEFT's target_modules uses.
std::set<std::string> TargetModules() {
  std::set<std::string> out;
  for (const std::string& suffix : LoraTargetSuffixes()) {
    const absl::string_view module = absl::StripSuffix(suffix, kWeightSuffix);
    out.emplace(module.substr(module.rfind('.') + 1));
  }
  return out;
}

// "model.layers.0.self_attn.q_proj.weight.lora_A" <->
// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
std::string PeftName(absl::string_view param) {
  const size_t dot = param.rfind('.');
  const absl::string_view projection = param.substr(0, dot);  // "... .q_proj.weight"
  const absl::string_view which = param.substr(dot + 1);      // "lora_A"
  return absl::StrCat(kPeftPrefix, absl::StripSuffix(projection, kWeightSuffix), ".", which, kWeightSuffix);
}
// Empty when `peft` is not a LoRA A / B name.
std::string ParamName(absl::string_view peft) {
  if (!absl::ConsumePrefix(&peft, kPeftPrefix)) return "";
  for (const char* which : {"lora_A", "lora_B"}) {
    absl::string_view module = peft;
    if (absl::ConsumeSuffix(&module, absl::StrCat(".", which, kWeightSuffix)) && !module.empty()) {
      return absl::StrCat(module, kWeightSuffix, ".", which);
    }
  }
  return "";
}

Status Unsupported(const std::string& file, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", field, " ", why, " (this trainer continues plain LoRA)"));
}

}  // namespace

Status WriteLoraAdapter(const TrainableWeights& tw, const std::string& base_fingerprint, const std::string& dir) {
  const LoraConfig& lora = tw.lora();
  if (!lora.enabled()) return absl::FailedPreconditionError("WriteLoraAdapter: the weights are not a LoRA adapter");
  RETURN_IF_ERROR(MakeDirectories(dir));
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  if (!base_fingerprint.empty()) writer.SetMetadata(kLoraAdapterFingerprintKey, base_fingerprint);
  try {
    for (const auto& [name, p] : tw.parameters()) {
      const at::Tensor t = TensorForWrite(p.detach(), DType::kF32);
      RETURN_IF_ERROR(writer.Add(PeftName(name), DType::kF32, t.sizes().vec(), t.data_ptr(), t.nbytes()));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "writing the LoRA adapter");
  }
  RETURN_IF_ERROR(writer.Write(JoinPath(dir, kLoraAdapterWeightsFile)));
  const std::set<std::string> modules = TargetModules();
  Json config = {{"peft_type", "LORA"},
                 {"task_type", "CAUSAL_LM"},
                 {"r", lora.rank},
                 {"lora_alpha", lora.alpha},
                 {"target_modules", std::vector<std::string>(modules.begin(), modules.end())},
                 {"lora_dropout", 0.0},
                 {"bias", "none"},
                 {"fan_in_fan_out", false},
                 {"use_rslora", false},
                 {"use_dora", false},
                 {"inference_mode", true},
                 {"base_model_name_or_path", nullptr}};
  return WriteFileAtomically(JoinPath(dir, kLoraAdapterConfigFile), config.dump(2) + "\n");
}

StatusOr<LoraConfig> ReadLoraAdapterConfig(const std::string& dir) {
  const std::string file = JoinPath(dir, kLoraAdapterConfigFile);
  if (!PathExists(file)) return absl::NotFoundError(absl::StrCat("no LoRA adapter: ", file, " does not exist"));
  ASSIGN_OR_RETURN(Json j, ReadJsonFile(file));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  if (j.value("peft_type", std::string()) != "LORA") {
    return absl::InvalidArgumentError(absl::StrCat(file, ": peft_type must be \"LORA\", got ",
                                                   j.contains("peft_type") ? j["peft_type"].dump() : "none"));
  }
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1 || j["r"].get<int64_t>() > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": r must be an integer in [1, 4096], got ", j.contains("r") ? j["r"].dump() : "none"));
  }
  c.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number() || !(j["lora_alpha"].get<double>() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": lora_alpha must be a number > 0, got ",
                                                   j.contains("lora_alpha") ? j["lora_alpha"].dump() : "none"));
  }
  c.alpha = j["lora_alpha"].get<double>();
  const std::set<std::string> want = TargetModules();
  std::set<std::string> modules;
  if (j.contains("target_modules") && j["target_modules"].is_array()) {
    for (const Json& m : j["target_modules"]) {
      if (m.is_string()) modules.insert(m.get<std::string>());
    }
  }
  if (modules != want) {
    return Unsupported(file, "target_modules",
                       absl::StrCat("must be the seven projections [", absl::StrJoin(want, ", "), "], got ",
                                    j.contains("target_modules") ? j["target_modules"].dump() : "none"));
  }
  for (const char* flag : {"use_rslora", "use_dora", "fan_in_fan_out"}) {
    if (j.contains(flag) && !j[flag].is_null() && j[flag] != false) return Unsupported(file, flag, "is set");
  }
  if (j.contains("bias") && j["bias"] != "none") return Unsupported(file, "bias", "is not \"none\"");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(pattern) && !j[pattern].is_null() && !j[pattern].empty()) {
      return Unsupported(file, pattern, "is not empty");
    }
  }
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null()) {
    return Unsupported(file, "layers_to_transform", "is set");
  }
  return c;
}

StatusOr<LoraAdapter> ReadLoraAdapter(const std::string& dir) {
  LoraAdapter a;
  ASSIGN_OR_RETURN(a.config, ReadLoraAdapterConfig(dir));
  const std::string file = JoinPath(dir, kLoraAdapterWeightsFile);
  if (!PathExists(file)) return absl::NotFoundError(absl::StrCat("no LoRA adapter weights: ", file, " does not exist"));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> st, SafetensorsFile::Open(file));
  auto fp = st->metadata().find(kLoraAdapterFingerprintKey);
  if (fp != st->metadata().end()) a.base_fingerprint = fp->second;
  for (const TensorView& v : st->tensors()) {
    const std::string name = ParamName(v.name);
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor ", v.name, " is not a LoRA matrix (base_model.model.<module>.lora_A|B.weight)"));
    }
    const bool is_float = v.dtype == DType::kF32 || v.dtype == DType::kF16 || v.dtype == DType::kBF16;
    if (!is_float || v.shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor ", v.name, " must be a 2-D float matrix, got ",
                                                     DTypeName(v.dtype), " ", ShapeString(v.shape)));
    }
    const bool is_a = absl::EndsWith(name, ".lora_A");
    if (v.shape[is_a ? 0 : 1] != a.config.rank) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor ", v.name, " is ", ShapeString(v.shape),
                                                     ", its rank side must be r = ", a.config.rank));
    }
    ASSIGN_OR_RETURN(at::Tensor t, TensorFromView(v, at::TensorOptions().dtype(at::kFloat)));
    a.tensors.emplace(name, std::move(t));
  }
  for (const auto& [name, t] : a.tensors) {
    const bool is_a = absl::EndsWith(name, ".lora_A");
    const std::string other = absl::StrCat(name.substr(0, name.size() - 1), is_a ? "B" : "A");
    if (a.tensors.count(other) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor ", PeftName(name), " has no ", PeftName(other)));
    }
  }
  if (a.tensors.empty()) return absl::InvalidArgumentError(absl::StrCat(file, ": no LoRA matrix"));
  return a;
}

}  // namespace skillpack
