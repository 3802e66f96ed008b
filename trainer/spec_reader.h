// Reading job-spec JSON with errors that name the field: FieldReader reads the
// fields of one JSON object, remembers which it read, and Finish() rejects the
// unknown (misspelt) ones. Errors read "<path>.<field> ...", e.g.
// "job.stages.sft.lr must be in [...]". Shared by the job's stage parsers.
#ifndef SKILLPACK_TRAINER_SPEC_READER_H_
#define SKILLPACK_TRAINER_SPEC_READER_H_

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/status.h"

namespace skillpack {

class FieldReader {
 public:
  // `obj` must outlive the reader.
  FieldReader(const Json& obj, std::string path) : obj_(obj), path_(std::move(path)) {}

  Status CheckObject() const {
    if (!obj_.is_object()) return absl::InvalidArgumentError(absl::StrCat(path_, " must be a JSON object"));
    return absl::OkStatus();
  }
  // True when `key` is present and not null; marks it read.
  bool Has(const std::string& key) {
    used_.insert(key);
    return obj_.contains(key) && !obj_[key].is_null();
  }
  // REQUIRES: Has(key).
  const Json& Get(const std::string& key) {
    used_.insert(key);
    return obj_[key];
  }
  std::string Path(absl::string_view key) const { return absl::StrCat(path_, ".", key); }

  // Leaves *out unchanged when the key is absent.
  template <typename T>
  Status Read(const std::string& key, T* out) {
    if (!Has(key)) return absl::OkStatus();
    StatusOr<T> v = GetField<T>(obj_, key, path_);
    if (!v.ok()) return v.status();
    *out = *v;
    return absl::OkStatus();
  }
  // Reads a number that must lie in [lo, hi].
  template <typename T>
  Status ReadInRange(const std::string& key, T* out, T lo, T hi) {
    RETURN_IF_ERROR(Read(key, out));
    if (!(*out >= lo && *out <= hi)) {
      return absl::InvalidArgumentError(absl::StrCat(Path(key), " must be in [", lo, ", ", hi, "], got ", *out));
    }
    return absl::OkStatus();
  }
  // Reads a string that must be one of `names` (*out, the default, unchanged
  // when the key is absent); the error names them all: '... must be "a" or
  // "b", got 'c''.
  Status ReadOneOf(const std::string& key, const std::vector<std::string>& names, std::string* out) {
    RETURN_IF_ERROR(Read(key, out));
    if (std::find(names.begin(), names.end(), *out) != names.end()) return absl::OkStatus();
    std::string accepted;
    for (size_t i = 0; i < names.size(); ++i) {
      absl::StrAppend(&accepted, i == 0 ? "" : i + 1 == names.size() ? " or " : ", ", "\"", names[i], "\"");
    }
    return absl::InvalidArgumentError(absl::StrCat(Path(key), " must be ", accepted, ", got '", *out, "'"));
  }
  Status Finish() const {
    for (const auto& [key, value] : obj_.items()) {
      if (!used_.count(key)) return absl::InvalidArgumentError(absl::StrCat(Path(key), ": unknown field"));
    }
    return absl::OkStatus();
  }

 private:
  const Json& obj_;
  std::string path_;
  std::set<std::string> used_;
};

// `p` resolved against `base_dir` unless it is absolute (or base_dir is empty).
inline std::string ResolveSpecPath(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || base_dir.empty()) return p;
  return JoinPath(base_dir, p);
}

// `list` at `path` as a non-empty list of existing files or folders, each
// resolved against `base_dir` (ResolveSpecPath). INVALID_ARGUMENT naming
// `path` or the entry ("<path>[i]") otherwise.
inline StatusOr<std::vector<std::string>> ReadPathList(const Json& list, const std::string& path,
                                                       const std::string& base_dir) {
  if (!list.is_array() || list.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " must be a non-empty list of paths"));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string field = absl::StrCat(path, "[", i, "]");
    if (!list[i].is_string() || list[i].get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, " must be a non-empty path string"));
    }
    std::string p = ResolveSpecPath(base_dir, list[i].get<std::string>());
    if (!PathExists(p)) return absl::InvalidArgumentError(absl::StrCat(field, ": not found: ", p));
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_SPEC_READER_H_
