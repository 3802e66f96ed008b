// Glue between absl::Status and gRPC: the one-to-one mapping of status codes
// used by every handler, time conversions, and reading small files the server
// and client need (tokens, TLS certificates).
#ifndef SKILLPACK_SERVER_GRPC_UTIL_H_
#define SKILLPACK_SERVER_GRPC_UTIL_H_

#include <chrono>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "core/status.h"

namespace skillpack {

// Same code (absl and gRPC number their codes identically) and message.
grpc::Status ToGrpcStatus(const Status& status);
// The inverse, for clients.
Status FromGrpcStatus(const grpc::Status& status);

// gRPC deadlines are system_clock time points; "no deadline" (time_point::max
// or beyond) maps to absl::InfiniteFuture().
absl::Time ToAbslTime(std::chrono::system_clock::time_point t);

// Reads a small secret file (e.g. the admin token) and strips surrounding
// whitespace. INVALID_ARGUMENT when it is empty.
StatusOr<std::string> ReadTokenFile(const std::string& path);

// Compares two strings in time that depends only on their lengths.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_GRPC_UTIL_H_
