// `skillpack pack create|inspect|verify|apply`: making SkillPacks from a base
// and a fine-tuned model folder, looking inside them, checking them against a
// base, and writing merged model folders.
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "pack/assignment.h"
#include "pack/calibration.h"
#include "pack/composer.h"
#include "pack/compressor.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "pack/merge.h"
#include "pack/spectrum.h"

namespace skillpack {
namespace {

constexpr char kPackUsage[] =
    "usage: skillpack pack <subcommand> [flags]\n"
    "  create --base DIR --tuned DIR --name NAME -o FILE.skillpack\n"
    "         [--calib FILE --calib-samples N --calib-len L --calib-on tuned|base]\n"
    "         [--config FILE.json | --target-ratio R | --target-bytes N]\n"
    "         [--description TEXT --tag TAG ... --version V --threads N]\n"
    "  inspect FILE.skillpack [--json]\n"
    "  verify FILE.skillpack --base DIR\n"
    "  apply --base DIR --pack FILE [--pack FILE ...] [--weight W ...]\n"
    "        [--assign PACK=PATTERN[,PATTERN...] ... | --assignment FILE.json]\n"
    "        [--dtype float32|float16|bfloat16] -o DIR\n"
    "  merge --base DIR --pack FILE --pack FILE [--pack FILE ...] --method ta|ties|dare\n"
    "        [--lambda L] [--density D (ties)] [--drop P --seed S (dare)]\n"
    "        [--dtype float32|float16|bfloat16] -o DIR\n";

// Files copied from the base folder next to a merged model's weights.
const char* const kModelSideFiles[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                       "generation_config.json"};

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

at::TensorOptions Fp32() { return at::TensorOptions().dtype(at::kFloat); }

Status SetThreads(const Args& a) {
  ASSIGN_OR_RETURN(int64_t threads, a.IntOr("threads", 0));
  if (threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  SetIntraOpThreads(threads);
  return absl::OkStatus();
}

StatusOr<CompressionConfig> ConfigFromArgs(const Args& a) {
  const int given = a.Has("config") + a.Has("target-ratio") + a.Has("target-bytes");
  if (given > 1) {
    return absl::InvalidArgumentError("give at most one of --config, --target-ratio and --target-bytes");
  }
  CompressionConfig cfg;
  if (a.Has("config")) {
    ASSIGN_OR_RETURN(std::string path, a.String("config"));
    ASSIGN_OR_RETURN(Json j, ReadJsonFile(path));
    StatusOr<CompressionConfig> parsed = ParseCompressionConfig(j);
    if (!parsed.ok()) return Annotate(parsed.status(), path);
    cfg = *parsed;
  }
  if (a.Has("target-ratio")) {
    ASSIGN_OR_RETURN(double r, a.DoubleOr("target-ratio", 0));
    cfg.target_ratio = r;
  }
  if (a.Has("target-bytes")) {
    ASSIGN_OR_RETURN(int64_t b, a.IntOr("target-bytes", 0));
    cfg.target_bytes = b;
  }
  Status s = ValidateCompressionConfig(cfg);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("compression settings: ", s.message()));
  return cfg;
}

Status Create(const Args& a) {
  ASSIGN_OR_RETURN(std::string base_dir, a.String("base"));
  ASSIGN_OR_RETURN(std::string tuned_dir, a.String("tuned"));
  ASSIGN_OR_RETURN(std::string name, a.String("name"));
  ASSIGN_OR_RETURN(std::string out, a.String("out"));
  const std::string calib_path = a.StringOr("calib", "");
  ASSIGN_OR_RETURN(int64_t calib_samples, a.IntOr("calib-samples", 128));
  ASSIGN_OR_RETURN(int64_t calib_len, a.IntOr("calib-len", 512));
  const std::string calib_on = a.StringOr("calib-on", "tuned");
  ASSIGN_OR_RETURN(CompressionConfig cfg, ConfigFromArgs(a));
  PackManifest manifest;
  manifest.name = name;
  manifest.description = a.StringOr("description", "");
  manifest.version = a.StringOr("version", "1");
  manifest.tags = a.Strings("tag");
  RETURN_IF_ERROR(SetThreads(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  RETURN_IF_ERROR(ValidatePackName(name));
  if (calib_path.empty() && (a.Has("calib-samples") || a.Has("calib-len") || a.Has("calib-on"))) {
    return absl::InvalidArgumentError("--calib-samples / --calib-len / --calib-on need --calib");
  }
  if (calib_on != "tuned" && calib_on != "base") {
    return absl::InvalidArgumentError(absl::StrCat("--calib-on must be tuned or base, got '", calib_on, "'"));
  }

  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto base, LoadModel(base_dir, Fp32()));
  ASSIGN_OR_RETURN(auto tuned, LoadModel(tuned_dir, Fp32()));
  ASSIGN_OR_RETURN(manifest.base_fingerprint, BaseFingerprint(*base->weights));
  std::fprintf(stderr, "loaded base %s and tuned %s in %.2f s\n", base_dir.c_str(), tuned_dir.c_str(),
               SecondsSince(t0));

  std::unique_ptr<CalibrationStats> calib;
  if (!calib_path.empty()) {
    const auto tc = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(auto tok, Tokenizer::FromModelDir(base_dir));
    ASSIGN_OR_RETURN(auto seqs, LoadCalibrationSequences(calib_path, *tok, calib_samples, calib_len));
    CaptureOptions copt;
    const int64_t layers = base->config.num_hidden_layers;
    copt.on_layer_done = [&](int64_t l, const at::Tensor&) {
      std::fprintf(stderr, "calibration: layer %" PRId64 "/%" PRId64 " (%.1f s)\n", l + 1, layers, SecondsSince(tc));
    };
    // On the tuned model's activations by default, as GraftLLM's reference does.
    const ModelWeights& calib_model = calib_on == "tuned" ? *tuned->weights : *base->weights;
    ASSIGN_OR_RETURN(CalibrationStats stats, CaptureCalibration(calib_model, seqs, copt));
    calib = std::make_unique<CalibrationStats>(std::move(stats));
    std::fprintf(stderr, "calibration: %" PRId64 " sequences, %" PRId64 " tokens on the %s model in %.2f s\n",
                 calib->num_sequences, calib->num_tokens, calib_on.c_str(), SecondsSince(tc));
  }

  const auto tz = std::chrono::steady_clock::now();
  auto progress = [](const CompressProgress& p) {
    std::string detail = p.op;
    if (p.op == "lowrank") detail = absl::StrCat(p.op, " rank ", p.rank);
    std::fprintf(stderr, "[%" PRId64 "/%" PRId64 "] %s: %s, %" PRId64 " bytes, %.2f s\n", p.index, p.total,
                 p.module.c_str(), detail.c_str(), p.bytes, p.seconds);
  };
  // The whole manifest before compressing: in budget mode the file is
  // measured with it.
  manifest.provenance["base_model"] = base_dir;
  manifest.provenance["tuned_model"] = tuned_dir;
  if (!calib_path.empty()) {
    manifest.provenance["calibration_file"] = calib_path;
    manifest.provenance["calibration_model"] = calib_on;
  }
  manifest.created_at = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  ASSIGN_OR_RETURN(SkillPack pack,
                   CompressDelta(*base->weights, *tuned->weights, cfg, calib.get(), progress, manifest));
  const double compress_s = SecondsSince(tz);

  ASSIGN_OR_RETURN(std::string bytes, SerializeSkillPack(pack));
  const int64_t fp16 = Fp16DeltaBytes(*base->weights);
  const int64_t size = static_cast<int64_t>(bytes.size());
  const double ratio = static_cast<double>(size) / static_cast<double>(fp16);
  if (cfg.target_ratio || cfg.target_bytes) {
    const int64_t target = cfg.target_bytes ? *cfg.target_bytes : static_cast<int64_t>(*cfg.target_ratio * fp16);
    if (size > target) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the pack is ", size, " bytes, over the target of ", target, " bytes; nothing written"));
    }
  }
  RETURN_IF_ERROR(WriteFileAtomically(out, bytes));
  std::string budget_note;
  if (cfg.target_ratio || cfg.target_bytes) {
    const int64_t target = cfg.target_bytes ? *cfg.target_bytes : static_cast<int64_t>(*cfg.target_ratio * fp16);
    budget_note = absl::StrFormat(", %.1f%% of the %" PRId64 "-byte budget", 100.0 * size / target, target);
  }
  std::printf("wrote %s: %zu modules, %" PRId64 " file bytes, ratio %.4f of the fp16 delta (%" PRId64
              " bytes)%s; compression %.2f s, total %.2f s\n",
              out.c_str(), pack.modules.size(), size, ratio, fp16, budget_note.c_str(), compress_s, SecondsSince(t0));
  return absl::OkStatus();
}

StatusOr<int64_t> FileSize(const std::string& path) {
  std::error_code ec;
  const uintmax_t n = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": ", ec.message()));
  return static_cast<int64_t>(n);
}

// Adds the file's own figures to DescribePack's summary: "file_bytes",
// "header_bytes" (file minus tensor data), and where the pack records the
// fp16 size of its model's whole delta (provenance.compression.fp16_delta_bytes,
// written by the compressor) "model_fp16_delta_bytes", "file_ratio" (file /
// that, the quantity --target-ratio sets) and "file_compression" (its inverse).
void AddFileFigures(const SkillPack& pack, int64_t file_bytes, Json* d) {
  (*d)["file_bytes"] = file_bytes;
  (*d)["header_bytes"] = file_bytes - d->value("stored_bytes", int64_t{0});
  const Json& prov = pack.manifest.provenance;
  if (prov.is_object() && prov.contains("compression") && prov["compression"].is_object() &&
      prov["compression"].contains("fp16_delta_bytes") && prov["compression"]["fp16_delta_bytes"].is_number_integer()) {
    const int64_t fp16 = prov["compression"]["fp16_delta_bytes"].get<int64_t>();
    if (fp16 > 0 && file_bytes > 0) {
      (*d)["model_fp16_delta_bytes"] = fp16;
      (*d)["file_ratio"] = static_cast<double>(file_bytes) / static_cast<double>(fp16);
      (*d)["file_compression"] = static_cast<double>(fp16) / static_cast<double>(file_bytes);
    }
  }
}

std::string BitsOf(const Json& m) {
  if (m.contains("bands")) {
    std::vector<std::string> parts;
    for (const Json& b : m["bands"]) {
      parts.push_back(absl::StrCat(b.value("width", int64_t{0}), "@", b.value("bits", 0)));
    }
    return absl::StrJoin(parts, ",");
  }
  if (m.contains("quant")) return absl::StrCat(m["quant"].value("bits", 0), "-bit");
  if (m.contains("nnz")) return absl::StrFormat("density %.4f", m.value("density", 0.0));
  return "fp32";
}

Status Inspect(const Args& a) {
  const bool as_json = a.Bool("json");
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (a.positional().size() != 1) {
    return absl::InvalidArgumentError("pack inspect takes exactly one pack file");
  }
  const std::string& path = a.positional()[0];
  ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
  ASSIGN_OR_RETURN(int64_t file_bytes, FileSize(path));
  Json d = DescribePack(pack);
  AddFileFigures(pack, file_bytes, &d);
  if (as_json) {
    std::printf("%s\n", d.dump(2).c_str());
    return absl::OkStatus();
  }
  const PackManifest& mf = pack.manifest;
  std::printf("pack %s version %s (format %d)\n", mf.name.c_str(), mf.version.c_str(), mf.format_version);
  std::printf("base %s\n", mf.base_fingerprint.c_str());
  if (!mf.description.empty()) std::printf("description: %s\n", mf.description.c_str());
  if (!mf.tags.empty()) std::printf("tags: %s\n", absl::StrJoin(mf.tags, ", ").c_str());
  if (!mf.created_at.empty()) std::printf("created %s\n", mf.created_at.c_str());
  std::printf("%zu modules\n", pack.modules.size());
  const int64_t model_fp16 = d.value("model_fp16_delta_bytes", int64_t{0});
  if (model_fp16 > 0) {
    std::printf("file: %" PRId64 " bytes = %.4f of the fp16 delta (%" PRId64
                " bytes, the whole model), %.2fx smaller\n",
                file_bytes, d.value("file_ratio", 0.0), model_fp16, d.value("file_compression", 0.0));
  } else {
    std::printf("file: %" PRId64 " bytes (the pack does not record its model's fp16 delta size)\n", file_bytes);
  }
  std::printf("tensor data: %" PRId64 " bytes (+ %" PRId64
              " bytes header and manifest); the stored modules' fp16 delta"
              " %" PRId64 " bytes, %.2fx their data bytes\n",
              d.value("stored_bytes", int64_t{0}), d.value("header_bytes", int64_t{0}),
              d.value("fp16_delta_bytes", int64_t{0}), d.value("compression_ratio", 0.0));
  std::printf("%-48s %-12s %6s %-24s %12s\n", "module", "op", "rank", "bits", "bytes");
  for (const Json& m : d["modules"]) {
    std::printf("%-48s %-12s %6" PRId64 " %-24s %12" PRId64 "\n", m.value("name", "").c_str(),
                m.value("op", "").c_str(), m.value("rank", int64_t{0}), BitsOf(m).c_str(),
                m.value("stored_bytes", int64_t{0}));
  }
  return absl::OkStatus();
}

Status Verify(const Args& a) {
  ASSIGN_OR_RETURN(std::string base_dir, a.String("base"));
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (a.positional().size() != 1) {
    return absl::InvalidArgumentError("pack verify takes exactly one pack file");
  }
  const std::string& path = a.positional()[0];
  ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
  ASSIGN_OR_RETURN(auto base, LoadModel(base_dir, Fp32()));
  ASSIGN_OR_RETURN(std::string fp, BaseFingerprint(*base->weights));
  RETURN_IF_ERROR(CheckPackFitsBase(pack, *base->weights, fp));
  std::printf("ok: %s (pack %s, %zu modules) is well-formed and fits %s (%s)\n", path.c_str(),
              pack.manifest.name.c_str(), pack.modules.size(), base_dir.c_str(), fp.c_str());
  return absl::OkStatus();
}

// Writes `weights` as a model folder `out` with the base folder's side files.
Status WriteModelFolder(const std::string& base_dir, const ModelWeights& weights, const std::string& out,
                        const std::string& dtype) {
  RETURN_IF_ERROR(MakeDirectories(out));
  RETURN_IF_ERROR(weights.Save(out, dtype));
  for (const char* f : kModelSideFiles) {
    const std::string src = JoinPath(base_dir, f);
    if (!PathExists(src)) continue;
    ASSIGN_OR_RETURN(std::string contents, ReadFileToString(src));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(out, f), contents));
  }
  return absl::OkStatus();
}

Status CheckOutputDirs(const std::string& base_dir, const std::string& out, const std::string& dtype) {
  if (dtype != "float32" && dtype != "float16" && dtype != "bfloat16") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, float16 or bfloat16, got '", dtype, "'"));
  }
  char base_real[PATH_MAX], out_real[PATH_MAX];
  if (realpath(base_dir.c_str(), base_real) != nullptr && realpath(out.c_str(), out_real) != nullptr &&
      std::string(base_real) == std::string(out_real)) {
    return absl::InvalidArgumentError("-o must not be the base model's folder");
  }
  return absl::OkStatus();
}

// Reads, checks against the base and decodes each pack file.
StatusOr<std::vector<DecodedPack>> LoadPacksFor(const ModelWeights& base, const std::string& fp,
                                                const std::vector<std::string>& paths) {
  std::vector<DecodedPack> decoded;
  decoded.reserve(paths.size());
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
    Status fits = CheckPackFitsBase(pack, base, fp);
    if (!fits.ok()) return Annotate(fits, path);
    ASSIGN_OR_RETURN(DecodedPack d, DecodePack(pack, /*keep_factors=*/false));
    decoded.push_back(std::move(d));
  }
  return decoded;
}

Status Merge(const Args& a) {
  ASSIGN_OR_RETURN(std::string base_dir, a.String("base"));
  ASSIGN_OR_RETURN(std::string out, a.String("out"));
  ASSIGN_OR_RETURN(std::string method, a.String("method"));
  const std::vector<std::string> pack_paths = a.Strings("pack");
  const std::string dtype = a.StringOr("dtype", "float32");
  MergeOptions o;
  ASSIGN_OR_RETURN(o.method, ParseMergeMethod(method));
  ASSIGN_OR_RETURN(o.lambda, a.DoubleOr("lambda", o.lambda));
  ASSIGN_OR_RETURN(o.density, a.DoubleOr("density", o.density));
  ASSIGN_OR_RETURN(o.drop, a.DoubleOr("drop", o.drop));
  ASSIGN_OR_RETURN(int64_t seed, a.IntOr("seed", 0));
  RETURN_IF_ERROR(SetThreads(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  if (seed < 0) return absl::InvalidArgumentError("--seed must be >= 0");
  o.seed = static_cast<uint64_t>(seed);
  if (a.Has("density") && o.method != MergeOptions::Method::kTies) {
    return absl::InvalidArgumentError("--density applies to --method ties only");
  }
  if ((a.Has("drop") || a.Has("seed")) && o.method != MergeOptions::Method::kDare) {
    return absl::InvalidArgumentError("--drop and --seed apply to --method dare only");
  }
  Status valid = ValidateMergeOptions(o);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("--", valid.message()));
  if (pack_paths.size() < 2) return absl::InvalidArgumentError("give at least two --pack to merge");
  RETURN_IF_ERROR(CheckOutputDirs(base_dir, out, dtype));

  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto base, LoadModel(base_dir, Fp32()));
  ASSIGN_OR_RETURN(std::string fp, BaseFingerprint(*base->weights));
  ASSIGN_OR_RETURN(std::vector<DecodedPack> decoded, LoadPacksFor(*base->weights, fp, pack_paths));
  std::vector<const DecodedPack*> packs;
  for (const DecodedPack& d : decoded) packs.push_back(&d);
  ASSIGN_OR_RETURN(auto merged, MergePacks(packs, o));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, w] : base->weights->tensors()) {
    auto it = merged.find(name);
    tensors[name] = it == merged.end() ? w : w.to(at::kFloat).add(it->second).to(w.scalar_type());
  }
  ASSIGN_OR_RETURN(auto fused, ModelWeights::Create(base->weights->config(), std::move(tensors)));
  RETURN_IF_ERROR(WriteModelFolder(base_dir, *fused, out, dtype));
  std::printf("wrote %s: base %s + %s merge of %zu packs (%zu modules) in %.2f s\n", out.c_str(), base_dir.c_str(),
              MergeMethodName(o.method), pack_paths.size(), merged.size(), SecondsSince(t0));
  return absl::OkStatus();
}

Status Apply(const Args& a) {
  ASSIGN_OR_RETURN(std::string base_dir, a.String("base"));
  ASSIGN_OR_RETURN(std::string out, a.String("out"));
  const std::vector<std::string> pack_paths = a.Strings("pack");
  const std::vector<std::string> weight_strs = a.Strings("weight");
  const std::string dtype = a.StringOr("dtype", "float32");
  const std::vector<std::string> assign_flags = a.Strings("assign");
  const std::string assignment_path = a.StringOr("assignment", "");
  RETURN_IF_ERROR(SetThreads(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  if (pack_paths.empty()) return absl::InvalidArgumentError("give at least one --pack");
  if (!weight_strs.empty() && weight_strs.size() != pack_paths.size()) {
    return absl::InvalidArgumentError(absl::StrCat("give one --weight per --pack (", pack_paths.size(), " packs, ",
                                                   weight_strs.size(), " weights) or none"));
  }
  RETURN_IF_ERROR(CheckOutputDirs(base_dir, out, dtype));
  std::vector<float> weights(pack_paths.size(), 1.0f);
  for (size_t i = 0; i < weight_strs.size(); ++i) {
    if (!absl::SimpleAtof(weight_strs[i], &weights[i]) || !std::isfinite(weights[i])) {
      return absl::InvalidArgumentError(absl::StrCat("--weight must be a number, got '", weight_strs[i], "'"));
    }
  }
  if (!assign_flags.empty() && !assignment_path.empty()) {
    return absl::InvalidArgumentError("give --assign or --assignment, not both");
  }
  ModuleAssignment assignment;
  if (!assignment_path.empty()) {
    ASSIGN_OR_RETURN(Json j, ReadJsonFile(assignment_path));
    ASSIGN_OR_RETURN(assignment, ParseModuleAssignment(j, assignment_path));
  } else if (!assign_flags.empty()) {
    ASSIGN_OR_RETURN(assignment, ParseAssignmentFlags(assign_flags));
  }

  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto base, LoadModel(base_dir, Fp32()));
  ASSIGN_OR_RETURN(std::string fp, BaseFingerprint(*base->weights));
  ASSIGN_OR_RETURN(std::vector<DecodedPack> decoded, LoadPacksFor(*base->weights, fp, pack_paths));
  std::vector<PackSelection> selections;
  std::vector<const DecodedPack*> packs;
  for (size_t i = 0; i < decoded.size(); ++i) {
    selections.push_back({decoded[i].name, weights[i], {}});
    packs.push_back(&decoded[i]);
  }
  if (!assignment.empty()) {
    std::vector<std::string> names;
    for (const auto& [name, t] : base->weights->tensors()) names.push_back(name);
    RETURN_IF_ERROR(CheckAssignmentExclusive(assignment, names));
    ASSIGN_OR_RETURN(selections, ApplyAssignment(assignment, selections));
    for (size_t i = 0; i < selections.size(); ++i) {
      int64_t n = 0;
      for (const auto& [name, m] : packs[i]->modules) n += ModuleFilterMatches(selections[i].modules, name);
      std::fprintf(stderr, "pack %s: %" PRId64 " of its modules assigned (%s)\n", selections[i].name.c_str(), n,
                   absl::StrJoin(selections[i].modules, ",").c_str());
    }
  }
  ASSIGN_OR_RETURN(auto fused, ComposeWeights(*base->weights, selections, packs));
  RETURN_IF_ERROR(WriteModelFolder(base_dir, *fused, out, dtype));
  std::printf("wrote %s: base %s + %zu pack(s) in %.2f s\n", out.c_str(), base_dir.c_str(), pack_paths.size(),
              SecondsSince(t0));
  return absl::OkStatus();
}

// "1,2,4" -> numbers; INVALID_ARGUMENT naming the flag.
template <typename T>
StatusOr<std::vector<T>> NumberList(const std::string& flag, const std::string& text) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    T v;
    bool ok;
    if constexpr (std::is_integral_v<T>) {
      ok = absl::SimpleAtoi(part, &v);
    } else {
      ok = absl::SimpleAtod(part, &v);
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": not a number: '", part, "'"));
    out.push_back(v);
  }
  return out;
}

// The singular-value spectrum of tuned - base per projection (pack/spectrum.h), as JSON.
Status Spectrum(const Args& a) {
  ASSIGN_OR_RETURN(std::string base_dir, a.String("base"));
  ASSIGN_OR_RETURN(std::string tuned_dir, a.String("tuned"));
  const std::string out = a.StringOr("out", "");
  SpectrumOptions o;
  if (a.Has("ranks")) {
    ASSIGN_OR_RETURN(o.ranks, NumberList<int64_t>("ranks", a.StringOr("ranks", "")));
  }
  if (a.Has("energies")) {
    ASSIGN_OR_RETURN(o.energies, NumberList<double>("energies", a.StringOr("energies", "")));
  }
  RETURN_IF_ERROR(SetThreads(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (!a.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  }
  if (Status s = ValidateSpectrumOptions(o); !s.ok()) return Annotate(s, "--ranks / --energies");
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<LoadedModel>> base = LoadModel(base_dir, Fp32());
  if (!base.ok()) return Annotate(base.status(), "--base");
  StatusOr<std::unique_ptr<LoadedModel>> tuned = LoadModel(tuned_dir, Fp32());
  if (!tuned.ok()) return Annotate(tuned.status(), "--tuned");
  ASSIGN_OR_RETURN(Json report, DeltaSpectrumReport(*(*base)->weights, *(*tuned)->weights, o));
  report["base"] = base_dir;
  report["tuned"] = tuned_dir;
  report["seconds"] = SecondsSince(t0);
  if (out.empty()) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    RETURN_IF_ERROR(WriteFileAtomically(out, report.dump(2)));
    std::printf("wrote %s (%zu modules)\n", out.c_str(), report["modules"].size());
  }
  return absl::OkStatus();
}

}  // namespace

int RunPackCommand(const std::vector<std::string>& argv) {
  return RunCliSubcommand("pack", argv,
                          {{"create", Create, {}},
                           {"inspect", Inspect, {"json"}},
                           {"verify", Verify, {}},
                           {"apply", Apply, {}},
                           {"merge", Merge, {}},
                           {"spectrum", Spectrum, {}}},
                          kPackUsage);
}

}  // namespace skillpack
