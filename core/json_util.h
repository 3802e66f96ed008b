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

// Deepest JSON nesting accepted from outside bytes. nlohmann::json copies,
// dumps and compares recursively, so deeper input could exhaust the stack;
// every document we read (manifests, configs, job specs, tokenizer.json)
// nests far less.
inline constexpr int kMaxJsonDepth = 64;

// The deepest [ / { nesting of `text` outside strings, in one pass and without
// allocating (so it can bound hostile input before any parser sees it).
int JsonNestingDepth(absl::string_view text);

// Parses `text`; INVALID_ARGUMENT naming `what` (e.g. a file name) on bad JSON
// or JSON nested deeper than kMaxJsonDepth.
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
