// Module assignment, the paper's R made explicit: when several packs are
// composed, each gets its own sub-modules (by layer, by module type, ...) so
// that no module sums two packs' deltas and the skills do not interfere.
//
// An assignment maps pack names to module filters (the rule of
// pack/selection.h). Composing selections under an assignment gives each
// selection whose pack the assignment names that filter as its module filter
// g_i(m); with filters that share no module of the base (checked by
// CheckAssignmentExclusive) every module receives at most one pack's delta.
//
// JSON form (pack apply --assignment FILE, and "assignment" in a router's
// config): {"reverse": ["layers.0-1"], "sort": ["layers.2-3", "lm_head"]}.
// Flag form (pack apply --assign, repeatable): "reverse=layers.0-1" or
// "sort=layers.2-3,lm_head".
#ifndef SKILLPACK_PACK_ASSIGNMENT_H_
#define SKILLPACK_PACK_ASSIGNMENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/json_util.h"
#include "core/status.h"
#include "pack/selection.h"

namespace skillpack {

struct ModuleAssignment {
  // Pack name -> its modules (a non-empty, valid module filter).
  std::map<std::string, std::vector<std::string>> filters;
  bool empty() const { return filters.empty(); }
};

// INVALID_ARGUMENT naming `what` and the pack for a non-object, a bad pack
// name, a filter that is not a non-empty array of strings, or a bad pattern.
StatusOr<ModuleAssignment> ParseModuleAssignment(const Json& j, absl::string_view what);
// From "PACK=PATTERN[,PATTERN...]" strings; a pack given twice gets the union.
StatusOr<ModuleAssignment> ParseAssignmentFlags(const std::vector<std::string>& flags);
Json ModuleAssignmentToJson(const ModuleAssignment& a);

// OK when no name in `module_names` is selected by the filters of two
// different packs; INVALID_ARGUMENT naming the module and both packs
// otherwise.
Status CheckAssignmentExclusive(const ModuleAssignment& a, const std::vector<std::string>& module_names);

// `selections` with each named pack's module filter set from `a`.
// INVALID_ARGUMENT when a selection's pack is not in `a` (under an assignment
// every pack must have its modules) or already has a module filter of its own.
StatusOr<std::vector<PackSelection>> ApplyAssignment(const ModuleAssignment& a,
                                                     const std::vector<PackSelection>& selections);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_ASSIGNMENT_H_
