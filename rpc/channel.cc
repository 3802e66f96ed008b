#include "rpc/channel.h"

#include <chrono>
#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rpc/bearer_auth.h"

namespace skillpack {

Status ValidateAddress(absl::string_view address, absl::string_view field) {
  const size_t colon = address.rfind(':');
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": '", address, "' is not host:port (", why, ")"));
  };
  if (colon == absl::string_view::npos) return bad("no port");
  if (colon == 0) return bad("no host");
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return bad("port must be in [1, 65535]");
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const std::string& tls_root_certs_pem) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!tls_root_certs_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls_root_certs_pem;
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxClientMessageBytes);
  args.SetMaxSendMessageSize(kMaxClientMessageBytes);
  return grpc::CreateCustomChannel(address, creds, args);
}

std::unique_ptr<grpc::ClientContext> NewCallContext(double timeout_seconds, const std::string& bearer_token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (timeout_seconds > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  }
  if (!bearer_token.empty()) AddBearerToken(ctx.get(), bearer_token);
  return ctx;
}

}  // namespace skillpack
