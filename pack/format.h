// The .skillpack file: a SkillPack stored as one safetensors file, with its
// manifest (JSON) in the safetensors "__metadata__". docs/skillpack-format.md
// is the specification; this is its implementation. Readers validate
// everything (container, metadata, manifest, every tensor's dtype, shape and
// value ranges) before a pack is used, and name the module and field at fault.
//
// Storage is lossless: ParseSkillPack(SerializeSkillPack(p)) holds exactly p's
// values, so DecodeModuleDelta gives bit-identical results before and after a
// round trip. Quantisation scales are stored as F16 only when every scale of
// that matrix is exactly a normal fp16 value (RoundScalesToHalf makes them so),
// otherwise as F32.
#ifndef SKILLPACK_PACK_FORMAT_H_
#define SKILLPACK_PACK_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/json_util.h"
#include "core/status.h"
#include "core/weights.h"
#include "pack/skillpack.h"

namespace skillpack {

// "__metadata__" keys and values of a .skillpack file.
inline constexpr char kPackFormatKey[] = "format";
inline constexpr char kPackFormatValue[] = "skillpack";
inline constexpr char kPackFormatVersionKey[] = "format_version";
inline constexpr char kPackManifestKey[] = "manifest";

// Largest group size accepted: the row length (cols) or, for short rows, this
// (our compressor writes its configured group size, e.g. 128, even for a
// 5-column band: one group per row). Readers check it before allocating.
inline constexpr int64_t kMaxGroupSize = 4096;
// OK when 1 <= group_size <= max(cols, kMaxGroupSize); INVALID_ARGUMENT
// naming `where` otherwise.
Status CheckGroupSize(int64_t group_size, int64_t cols, absl::string_view where);
// Largest module (numel) accepted.
inline constexpr int64_t kMaxModuleNumel = int64_t{1} << 48;

// Checks an in-memory pack against every rule the reader enforces: manifest
// (format_version == kSkillPackFormatVersion, ValidatePackName, a well-formed
// base_fingerprint "sha256:<64 hex>", non-empty version, provenance an object),
// modules sorted by name with unique non-empty names, and per module the
// tensors its op needs with the right dtypes, shapes and value ranges (see
// pack_format.cc / the spec). INVALID_ARGUMENT naming the module and field.
Status ValidateSkillPack(const SkillPack& pack);

// The whole .skillpack file image. Validates first (ValidateSkillPack).
StatusOr<std::string> SerializeSkillPack(const SkillPack& pack);

// Validates and writes `pack` to `path` atomically (temp file + rename).
Status WriteSkillPack(const SkillPack& pack, const std::string& path);

// Reads and fully validates a .skillpack file; tensors come back on the CPU in
// the dtypes skillpack.h documents. NOT_FOUND if `path` does not exist;
// INVALID_ARGUMENT naming the file, module and field for anything malformed;
// a file whose format_version is above kSkillPackFormatVersion is refused with
// "made by a newer skillpack (format_version N > 1)".
StatusOr<SkillPack> ReadSkillPack(const std::string& path);

// Same for an in-memory file image; `what` names it in error messages.
StatusOr<SkillPack> ParseSkillPack(std::string bytes, absl::string_view what);

// Checks that `pack` can be applied to `base`, whose fingerprint is
// `base_fingerprint` (from BaseFingerprint(base), passed in because it is
// usually cached). FAILED_PRECONDITION "pack X was made for base sha256:... but
// this base is sha256:..." on a fingerprint mismatch; FAILED_PRECONDITION naming
// the module when a module is not a tensor of the base or its shape differs,
// and for a delta on "lm_head.weight" when the base ties lm_head to
// embed_tokens (such packs are refused, not redirected to the embedding).
Status CheckPackFitsBase(const SkillPack& pack, const ModelWeights& base, absl::string_view base_fingerprint);

// Bytes the module's tensors occupy in a .skillpack file (tensor data only).
// REQUIRES: the module passes ValidateSkillPack (so does DescribePack's pack).
int64_t ModuleStoredBytes(const ModuleDelta& m);

// A summary for `skillpack pack inspect` and the server's GetPack:
// {"name", "version", "format_version", "base_fingerprint", "description",
//  "tags", "provenance", "created_at",
//  "modules": [{"name", "op", "shape", "rank", "bands": [{"rank_begin",
//     "rank_end", "width", "bits", "u": {bits, group_size, act_order},
//     "vt": {...}}] (lowrank), "quant": {...} (dense_quant), "nnz",
//     "density" (sparse), "stored_bytes", "fp16_bytes"}],
//  "num_modules", "stored_bytes" (sum over modules), "fp16_delta_bytes" (sum
//  of numel * 2), "compression_ratio" (fp16_delta_bytes / stored_bytes, 0 when
//  nothing is stored)}. "bits" of a band is the u factor's width when u and vt
//  share it, else the larger of the two.
Json DescribePack(const SkillPack& pack);

// Rounds the scales of every quantised matrix with bits <= 4 to fp16 when all
// of that matrix's scales stay finite normal fp16 values (>= 2^-14) after
// rounding, so the writer stores them as F16 (2 bytes per group instead of 4).
// Changes each dequantised weight by at most 2^-11 relative. 8-bit matrices
// are left alone: there the rounding would be a sizeable fraction of the
// quantisation step. For the compressor, before it measures errors.
Status RoundScalesToHalf(SkillPack* pack);
// The same for one matrix.
Status RoundScalesToHalf(QuantizedMatrix* q);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_FORMAT_H_
