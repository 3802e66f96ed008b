// The one mapping between absl::Status and grpc::Status, used by every gRPC
// handler (server, trainer service) and every client (CLI, trainer stages).
// absl and gRPC number their codes identically, so the mapping is one to one.
#ifndef SKILLPACK_RPC_GRPC_STATUS_H_
#define SKILLPACK_RPC_GRPC_STATUS_H_

#include <chrono>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/status.h"

namespace skillpack {

// Same code and message.
grpc::Status ToGrpcStatus(const Status& status);
// The inverse, for clients.
Status FromGrpcStatus(const grpc::Status& status);
// FromGrpcStatus with "<what>: " prepended to a failure's message.
Status FromGrpcStatus(const grpc::Status& status, absl::string_view what);

// gRPC deadlines are system_clock time points; "no deadline" (time_point::max
// or anything past ~100 years from now) maps to absl::InfiniteFuture().
absl::Time ToAbslTime(std::chrono::system_clock::time_point t);

}  // namespace skillpack

#endif  // SKILLPACK_RPC_GRPC_STATUS_H_
