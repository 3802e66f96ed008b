// PackSelection: one pack chosen for a request or a composition: which pack,
// its weight w_i and its module filter g_i. It mirrors skillpack.v1.PackSelection
// field for field and is the one name of this concept from the API down to the
// composer.
//
// Module filter rule (docs/skillpack-format.md, "Module filters"): an empty
// filter selects every module; otherwise a module is selected when any pattern
// matches it. Patterns and module names are split on '.'; a pattern matches
// when its components match a contiguous run of the name's components, where a
// component matches if it is equal, if it is "*" (any one component), or if it
// is a range "A-B" of decimal numbers and the name's component is a decimal
// number i with A <= i <= B. Examples for
// "model.layers.2.self_attn.q_proj.weight": "self_attn", "q_proj",
// "layers.0-3", "layers.2.self_attn", "layers.*.self_attn" and the exact name
// match; "mlp", "layers.3" and "attn" do not.
#ifndef SKILLPACK_PACK_SELECTION_H_
#define SKILLPACK_PACK_SELECTION_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Pack names: 1-64 chars of [a-z0-9._-], starting with a letter or digit.
// INVALID_ARGUMENT quoting the name otherwise.
Status ValidatePackName(absl::string_view name);

struct PackSelection {
  std::string name;                  // the pack's name (its manifest name)
  float weight = 1.0f;               // w_i (finite; 0 contributes nothing)
  std::vector<std::string> modules;  // module filter (rule above); empty = all modules
};

// INVALID_ARGUMENT naming the pattern for an empty pattern, an empty component
// ("a..b", ".a"), or a range "A-B" with A > B.
Status ValidateModuleFilter(const std::vector<std::string>& filter);

// True when `module` is selected by `filter` (rule above).
// REQUIRES: ValidateModuleFilter(filter).ok().
bool ModuleFilterMatches(const std::vector<std::string>& filter, absl::string_view module);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_SELECTION_H_
