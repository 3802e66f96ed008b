#include "pack/assignment.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace skillpack {

StatusOr<ModuleAssignment> ParseModuleAssignment(const Json& j, absl::string_view what) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a module assignment must be an object {\"pack\": [\"module pattern\", ...]}"));
  }
  ModuleAssignment a;
  for (const auto& [pack, filter] : j.items()) {
    Status name_ok = ValidatePackName(pack);
    if (!name_ok.ok()) return Annotate(name_ok, what);
    const std::string where = absl::StrCat(what, ".", pack);
    if (!filter.is_array() || filter.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": must be a non-empty array of module patterns"));
    }
    std::vector<std::string> patterns;
    for (const Json& p : filter) {
      if (!p.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ": module patterns must be strings"));
      patterns.push_back(p.get<std::string>());
    }
    Status ok = ValidateModuleFilter(patterns);
    if (!ok.ok()) return Annotate(ok, where);
    a.filters[pack] = std::move(patterns);
  }
  return a;
}

StatusOr<ModuleAssignment> ParseAssignmentFlags(const std::vector<std::string>& flags) {
  ModuleAssignment a;
  for (const std::string& f : flags) {
    const size_t eq = f.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == f.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--assign must be PACK=PATTERN[,PATTERN...], got '", f, "'"));
    }
    const std::string pack = f.substr(0, eq);
    Status name_ok = ValidatePackName(pack);
    if (!name_ok.ok()) return Annotate(name_ok, absl::StrCat("--assign '", f, "'"));
    std::vector<std::string> patterns = absl::StrSplit(f.substr(eq + 1), ',');
    Status ok = ValidateModuleFilter(patterns);
    if (!ok.ok()) return Annotate(ok, absl::StrCat("--assign '", f, "'"));
    std::vector<std::string>& dst = a.filters[pack];
    for (std::string& p : patterns) {
      if (std::find(dst.begin(), dst.end(), p) == dst.end()) dst.push_back(std::move(p));
    }
  }
  return a;
}

Json ModuleAssignmentToJson(const ModuleAssignment& a) {
  Json j = Json::object();
  for (const auto& [pack, filter] : a.filters) j[pack] = filter;
  return j;
}

Status CheckAssignmentExclusive(const ModuleAssignment& a, const std::vector<std::string>& module_names) {
  for (const std::string& m : module_names) {
    const std::string* first = nullptr;
    for (const auto& [pack, filter] : a.filters) {
      if (!ModuleFilterMatches(filter, m)) continue;
      if (first != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("module assignment: module '", m, "' is assigned to both '",
                                                       *first, "' (", absl::StrJoin(a.filters.at(*first), ","),
                                                       ") and '", pack, "' (", absl::StrJoin(filter, ","),
                                                       "); each module may go to one pack only"));
      }
      first = &pack;
    }
  }
  return absl::OkStatus();
}

StatusOr<std::vector<PackSelection>> ApplyAssignment(const ModuleAssignment& a,
                                                     const std::vector<PackSelection>& selections) {
  std::vector<PackSelection> out = selections;
  for (PackSelection& s : out) {
    auto it = a.filters.find(s.name);
    if (it == a.filters.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("module assignment: pack '", s.name, "' is selected but assigned no modules"));
    }
    if (!s.modules.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("module assignment: pack '", s.name, "' has a module filter of its own; give one or the other"));
    }
    s.modules = it->second;
  }
  return out;
}

}  // namespace skillpack
