// JSON helpers over nlohmann::json that report errors as Status, naming the
// file and the field that is wrong.
#ifndef SKILLPACK_CORE_JSON_UTIL_H_
#define SKILLPACK_CORE_JSON_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace skillpack {

using Json = nlohmann::json;

// Parses `text`; INVALID_ARGUMENT naming `what` (e.g. a file name) on bad JSON.
StatusOr<Json> ParseJson(absl::string_view text, absl::string_view what);

// Reads and parses a JSON file.
StatusOr<Json> ReadJsonFile(const std::string& path);

// Typed field access: `obj[key]` must exist and have the type of T.
// INVALID_ARGUMENT "<what>: field 'key' ..." otherwise.
template <typename T>
StatusOr<T> GetField(const Json& obj, absl::string_view key, absl::string_view what);

// Like GetField, but returns `fallback` when the key is absent or null.
template <typename T>
StatusOr<T> GetFieldOr(const Json& obj, absl::string_view key, T fallback, absl::string_view what);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_JSON_UTIL_H_
