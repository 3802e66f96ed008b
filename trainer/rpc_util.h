// What the trainer needs to speak gRPC: the one-to-one mapping between
// absl::Status and grpc::Status codes, bearer-token metadata, channels to
// "host:port" addresses, and RFC 3339 timestamps. The trainer reaches servers
// only through their gRPC API (DESIGN.md), so it keeps this glue of its own
// rather than linking server/.
#ifndef SKILLPACK_TRAINER_RPC_UTIL_H_
#define SKILLPACK_TRAINER_RPC_UTIL_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Same code (absl and gRPC number their codes identically) and message.
grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status);
// FromGrpcStatus with "<what>: " prepended to a failure's message.
Status FromGrpcStatus(const grpc::Status& status, absl::string_view what);

// INVALID_ARGUMENT naming `field` unless `address` looks like "host:port"
// (port in [1, 65535]; host non-empty, may be a bracketed IPv6 address).
Status ValidateAddress(absl::string_view address, absl::string_view field);

// An insecure channel to `address` accepting messages up to 64 MiB.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);

// Reads a token file and strips surrounding whitespace. INVALID_ARGUMENT when
// it is empty; the read error otherwise.
StatusOr<std::string> ReadBearerToken(const std::string& path);

// True iff the call's `authorization` metadata is "Bearer <token>"; compared
// in time that depends only on the lengths.
bool HasBearerToken(const grpc::ServerContext& context, const std::string& token);

// Seconds since the epoch as RFC 3339 UTC ("2024-05-01T12:00:00Z").
std::string Rfc3339(double unix_seconds);
double UnixNow();

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_RPC_UTIL_H_
