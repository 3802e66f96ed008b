#include "server/grpc_util.h"

#include "absl/strings/ascii.h"
#include "core/file_util.h"

namespace skillpack {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Time ToAbslTime(std::chrono::system_clock::time_point t) {
  // Far-future deadlines (gRPC uses time_point::max for none) overflow absl's
  // conversion; anything past ~100 years counts as none.
  const auto limit = std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 100);
  if (t >= limit) return absl::InfiniteFuture();
  return absl::FromChrono(t);
}

StatusOr<std::string> ReadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  return token;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace skillpack
