#include "core/status.h"

#include <stdexcept>

namespace skillpack {

Status Annotate(const Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

Status StatusFromException(const std::exception& e, absl::string_view context) {
  std::string what = e.what();
  // libtorch messages carry a long C++ backtrace after the first line.
  if (auto nl = what.find("\nException raised from"); nl != std::string::npos) {
    what.resize(nl);
  }
  if (dynamic_cast<const std::invalid_argument*>(&e) != nullptr ||
      dynamic_cast<const std::out_of_range*>(&e) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", what));
  }
  return absl::InternalError(absl::StrCat(context, ": ", what));
}

}  // namespace skillpack
