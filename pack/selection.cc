#include "pack/selection.h"

#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace skillpack {
namespace {

bool IsDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// For a component "A-B" of two decimals, sets *lo/*hi and returns true.
bool ParseRange(absl::string_view c, int64_t* lo, int64_t* hi) {
  const size_t dash = c.find('-');
  if (dash == absl::string_view::npos) return false;
  const absl::string_view a = c.substr(0, dash), b = c.substr(dash + 1);
  if (!IsDecimal(a) || !IsDecimal(b)) return false;
  return absl::SimpleAtoi(a, lo) && absl::SimpleAtoi(b, hi);
}

bool ComponentMatches(absl::string_view pattern, absl::string_view name) {
  if (pattern == "*" || pattern == name) return true;
  int64_t lo = 0, hi = 0, v = 0;
  return ParseRange(pattern, &lo, &hi) && IsDecimal(name) && absl::SimpleAtoi(name, &v) && lo <= v && v <= hi;
}

bool PatternMatches(absl::string_view pattern, absl::string_view module) {
  const std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  const std::vector<absl::string_view> n = absl::StrSplit(module, '.');
  for (size_t start = 0; start + p.size() <= n.size(); ++start) {
    bool all = true;
    for (size_t k = 0; all && k < p.size(); ++k) all = ComponentMatches(p[k], n[start + k]);
    if (all) return true;
  }
  return false;
}

}  // namespace

Status ValidateModuleFilter(const std::vector<std::string>& filter) {
  for (const std::string& pattern : filter) {
    if (pattern.empty()) return absl::InvalidArgumentError("module filter: empty pattern");
    for (absl::string_view c : absl::StrSplit(pattern, '.')) {
      if (c.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("module filter: pattern '", pattern, "' has an empty component"));
      }
      int64_t lo = 0, hi = 0;
      if (ParseRange(c, &lo, &hi) && lo > hi) {
        return absl::InvalidArgumentError(
            absl::StrCat("module filter: pattern '", pattern, "' has an empty range ", c));
      }
    }
  }
  return absl::OkStatus();
}

bool ModuleFilterMatches(const std::vector<std::string>& filter, absl::string_view module) {
  if (filter.empty()) return true;
  for (const std::string& p : filter) {
    if (PatternMatches(p, module)) return true;
  }
  return false;
}

Status ValidatePackName(absl::string_view name) {
  auto allowed = [](char c, bool first) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
    return !first && (c == '.' || c == '_' || c == '-');
  };
  bool ok = !name.empty() && name.size() <= 64;
  for (size_t i = 0; ok && i < name.size(); ++i) ok = allowed(name[i], i == 0);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid pack name '", name, "': want 1-64 characters of [a-z0-9._-] starting with a letter or digit"));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
