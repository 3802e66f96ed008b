#include "core/json_util.h"

#include <algorithm>
#include <cstdint>

#include "core/file_util.h"

namespace skillpack {
namespace {

template <typename T>
bool HasType(const Json& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    return v.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    return v.is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v.is_string();
  } else {
    return true;
  }
}

template <typename T>
const char* TypeName() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  if constexpr (std::is_integral_v<T>) return "an integer";
  if constexpr (std::is_floating_point_v<T>) return "a number";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  return "a JSON value";
}

}  // namespace

int JsonNestingDepth(absl::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return max_depth;
}

StatusOr<Json> ParseJson(absl::string_view text, absl::string_view what) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  Json j = Json::parse(text.data(), text.data() + text.size(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  return j;
}

StatusOr<Json> ReadJsonFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJson(text, path);
}

template <typename T>
StatusOr<T> GetField(const Json& obj, absl::string_view key, absl::string_view what) {
  if (!obj.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing field '", key, "'"));
  }
  if (!HasType<T>(*it)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": field '", key, "' must be ", TypeName<T>(), ", got ", it->dump()));
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // Range check before narrowing.
    if (it->is_number_unsigned()) {
      auto u = it->template get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": field '", key, "' out of range: ", u));
      }
    } else {
      auto s = it->template get<int64_t>();
      if (s < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (s > 0 && static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": field '", key, "' out of range: ", s));
      }
    }
  }
  return it->template get<T>();
}

template <typename T>
StatusOr<T> GetFieldOr(const Json& obj, absl::string_view key, T fallback, absl::string_view what) {
  if (obj.is_object()) {
    auto it = obj.find(std::string(key));
    if (it == obj.end() || it->is_null()) return fallback;
  }
  return GetField<T>(obj, key, what);
}

#define SP_INSTANTIATE_JSON_FIELD(T)                                                   \
  template StatusOr<T> GetField<T>(const Json&, absl::string_view, absl::string_view); \
  template StatusOr<T> GetFieldOr<T>(const Json&, absl::string_view, T, absl::string_view);
SP_INSTANTIATE_JSON_FIELD(bool)
SP_INSTANTIATE_JSON_FIELD(int32_t)
SP_INSTANTIATE_JSON_FIELD(int64_t)
SP_INSTANTIATE_JSON_FIELD(uint64_t)
SP_INSTANTIATE_JSON_FIELD(double)
SP_INSTANTIATE_JSON_FIELD(float)
SP_INSTANTIATE_JSON_FIELD(std::string)
SP_INSTANTIATE_JSON_FIELD(Json)
#undef SP_INSTANTIATE_JSON_FIELD

}  // namespace skillpack
