// Status helpers used across skillpack: absl::Status / absl::StatusOr plus the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN macros that this abseil release lacks.
#ifndef SKILLPACK_CORE_STATUS_H_
#define SKILLPACK_CORE_STATUS_H_

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace skillpack {

using absl::Status;
using absl::StatusOr;

// Returns `status` with `context + ": "` prepended to its message (code kept).
Status Annotate(const Status& status, absl::string_view context);

// Turns an exception caught at a component boundary into an INTERNAL status
// (INVALID_ARGUMENT for std::invalid_argument / std::out_of_range).
Status StatusFromException(const std::exception& e, absl::string_view context);

}  // namespace skillpack

#define SP_STATUS_CONCAT_INNER_(a, b) a##b
#define SP_STATUS_CONCAT_(a, b) SP_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the caller if not OK.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status sp_status_ = (expr);      \
    if (!sp_status_.ok()) return sp_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error
// returns its status from the caller, else moves the value into `lhs`, which
// may be a declaration (`auto x`, `const Foo& y` is not allowed).
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL_(SP_STATUS_CONCAT_(sp_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(var, lhs, expr)   \
  auto var = (expr);                             \
  if (!var.ok()) return std::move(var).status(); \
  lhs = std::move(var).value()

#endif  // SKILLPACK_CORE_STATUS_H_
