#include "rpc/grpc_status.h"

#include <string>

namespace skillpack {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

Status FromGrpcStatus(const grpc::Status& status, absl::string_view what) {
  return Annotate(FromGrpcStatus(status), what);
}

absl::Time ToAbslTime(std::chrono::system_clock::time_point t) {
  // Far-future deadlines (gRPC uses time_point::max for none) overflow absl's
  // conversion; anything past ~100 years counts as none.
  const auto limit = std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 100);
  if (t >= limit) return absl::InfiniteFuture();
  return absl::FromChrono(t);
}

}  // namespace skillpack
