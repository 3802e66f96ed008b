// Bearer-token authentication on gRPC metadata ("authorization: Bearer
// <token>", RFC 6750), for the server's Admin API and the trainer service, and
// the client side that sends it.
#ifndef SKILLPACK_RPC_BEARER_AUTH_H_
#define SKILLPACK_RPC_BEARER_AUTH_H_

#include <map>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Reads a token file and strips surrounding whitespace. INVALID_ARGUMENT when
// it is empty; the read error otherwise.
StatusOr<std::string> ReadBearerToken(const std::string& path);

// OK when `metadata` (a call's client metadata) has "authorization: Bearer
// <token>"; the scheme is case-insensitive (RFC 7235), the token compared in
// time that depends only on the lengths. UNAUTHENTICATED saying whether the
// header is missing or wrong otherwise. REQUIRES: token non-empty.
Status CheckBearerToken(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, const std::string& token);

// Adds "authorization: Bearer <token>" to a call.
void AddBearerToken(grpc::ClientContext* context, const std::string& token);

// Compares two strings in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace skillpack

#endif  // SKILLPACK_RPC_BEARER_AUTH_H_
