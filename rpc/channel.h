// Client side of our gRPC calls: "host:port" addresses, channels (plain or
// TLS) and per-call contexts with a deadline and an optional bearer token.
#ifndef SKILLPACK_RPC_CHANNEL_H_
#define SKILLPACK_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Largest message a channel from MakeChannel sends or receives.
inline constexpr int kMaxClientMessageBytes = 64 << 20;

// INVALID_ARGUMENT naming `field` unless `address` looks like "host:port"
// (port in [1, 65535]; host non-empty, may be a bracketed IPv6 address).
Status ValidateAddress(absl::string_view address, absl::string_view field);

// A channel to `address`: insecure when `tls_root_certs_pem` is empty, else
// TLS trusting those PEM root certificates.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const std::string& tls_root_certs_pem = "");

// A context for one call: a deadline `timeout_seconds` from now (none when
// <= 0) and, when `bearer_token` is non-empty, "authorization: Bearer <token>".
std::unique_ptr<grpc::ClientContext> NewCallContext(double timeout_seconds, const std::string& bearer_token);

}  // namespace skillpack

#endif  // SKILLPACK_RPC_CHANNEL_H_
