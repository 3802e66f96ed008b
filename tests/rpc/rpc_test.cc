// rpc/: the Status <-> gRPC mapping, addresses and call contexts, bearer-token
// checks, and the upload client against an in-process Admin service on
// 127.0.0.1 that records what it receives.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "rpc/bearer_auth.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "rpc/upload_client.h"
#include "skillpack/v1/admin.grpc.pb.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

TEST(GrpcStatusTest, EveryCodeMapsOneToOneBothWays) {
  for (int c = 1; c <= 16; ++c) {
    const Status s(static_cast<absl::StatusCode>(c), absl::StrCat("message ", c));
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(g.error_message(), absl::StrCat("message ", c));
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "call").ok());
}

TEST(GrpcStatusTest, WhatIsPrependedToFailures) {
  const Status s = FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "no pack"), "publish: LoadPack");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("publish: LoadPack"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("no pack"));
}

TEST(GrpcStatusTest, NoDeadlineIsInfiniteFuture) {
  EXPECT_EQ(ToAbslTime(std::chrono::system_clock::time_point::max()), absl::InfiniteFuture());
  const auto t = std::chrono::system_clock::now() + std::chrono::seconds(5);
  EXPECT_EQ(ToAbslTime(t), absl::FromChrono(t));
}

TEST(ChannelTest, ValidateAddress) {
  EXPECT_TRUE(ValidateAddress("127.0.0.1:50051", "f").ok());
  EXPECT_TRUE(ValidateAddress("[::1]:1", "f").ok());
  EXPECT_TRUE(ValidateAddress("localhost:65535", "f").ok());
  for (const char* bad : {"127.0.0.1", ":50051", "host:0", "host:65536", "host:x", ""}) {
    const Status s = ValidateAddress(bad, "job.publish.server");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("job.publish.server")) << bad;
  }
}

TEST(BearerAuthTest, CheckBearerToken) {
  std::multimap<grpc::string_ref, grpc::string_ref> md;
  Status s = CheckBearerToken(md, "secret");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing"));
  for (const char* good : {"Bearer secret", "bearer secret", "BEARER secret"}) {
    md = {{"authorization", good}};
    EXPECT_TRUE(CheckBearerToken(md, "secret").ok()) << good;
  }
  for (const char* bad : {"Bearer secreT", "Bearer secret ", "Basic secret", "secret", "Bearer", ""}) {
    md = {{"authorization", bad}};
    s = CheckBearerToken(md, "secret");
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("invalid")) << bad;
  }
}

TEST(BearerAuthTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

std::string TempFile(const std::string& name, const std::string& contents) {
  const std::string path = JoinPath(::testing::TempDir(), absl::StrCat("rpc_test_", getpid(), "_", name));
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

TEST(BearerAuthTest, ReadBearerTokenStripsWhitespaceAndRefusesEmpty) {
  EXPECT_EQ(ReadBearerToken(TempFile("tok", "  s3cret\n")).value(), "s3cret");
  EXPECT_EQ(ReadBearerToken(TempFile("empty", " \n")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ReadBearerToken(TempFile("x", "") + ".missing").ok());
}

// An Admin service that reassembles uploads and answers with their sha256
// (or a fixed error / a wrong digest when told to).
class RecordingAdmin final : public v1::Admin::Service {
 public:
  grpc::Status UploadPack(grpc::ServerContext* context, grpc::ServerReader<v1::UploadPackRequest>* reader,
                          v1::UploadPackResponse* response) override {
    auto md = context->client_metadata().find("authorization");
    token = md == context->client_metadata().end() ? "" : std::string(md->second.data(), md->second.size());
    v1::UploadPackRequest msg;
    chunks = 0;
    received.clear();
    while (reader->Read(&msg)) {
      if (msg.has_header()) {
        header = msg.header();
      } else {
        received += msg.chunk();
        ++chunks;
      }
    }
    if (!fail.ok()) return ToGrpcStatus(fail);
    response->mutable_pack()->set_name(header.name().empty() ? "from-manifest" : header.name());
    response->mutable_pack()->set_sha256(lie_about_sha ? std::string(64, '0') : Sha256Hex(received));
    response->mutable_pack()->set_file_bytes(received.size());
    return grpc::Status::OK;
  }

  v1::UploadHeader header;
  std::string received;
  std::string token;
  int chunks = 0;
  Status fail = absl::OkStatus();
  bool lie_about_sha = false;
};

class UploadClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&admin_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Admin::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", port)));
  }
  void TearDown() override { server_->Shutdown(); }

  RecordingAdmin admin_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

TEST_F(UploadClientTest, SendsHeaderThenTheFileInChunks) {
  std::string bytes;
  for (int64_t i = 0; i < (5 << 19) + 17; ++i) bytes.push_back(static_cast<char>(i * 7919 % 251));  // 2.5 MiB
  UploadRequest req;
  req.path = TempFile("big.skillpack", bytes);
  req.name = "p";
  req.overwrite = true;
  auto ctx = NewCallContext(30, "tok");
  StatusOr<UploadResult> r = UploadPackFile(stub_.get(), ctx.get(), req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(admin_.received, bytes);
  EXPECT_EQ(admin_.chunks, 3);  // 1 MiB chunks
  EXPECT_EQ(admin_.header.name(), "p");
  EXPECT_TRUE(admin_.header.overwrite());
  EXPECT_EQ(admin_.header.total_size(), bytes.size());
  EXPECT_EQ(admin_.header.sha256(), Sha256Hex(bytes));
  EXPECT_EQ(admin_.token, "Bearer tok");
  EXPECT_EQ(r->sha256, Sha256Hex(bytes));
  EXPECT_EQ(r->file_bytes, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(r->pack.name(), "p");
}

TEST_F(UploadClientTest, ServerErrorComesBackAsIs) {
  admin_.fail = absl::FailedPreconditionError("pack made for another base");
  UploadRequest req;
  req.path = TempFile("small.skillpack", "abc");
  auto ctx = NewCallContext(30, "");
  StatusOr<UploadResult> r = UploadPackFile(stub_.get(), ctx.get(), req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("another base"));
  EXPECT_EQ(admin_.token, "");
}

TEST_F(UploadClientTest, DigestMismatchIsDataLoss) {
  admin_.lie_about_sha = true;
  UploadRequest req;
  req.path = TempFile("lie.skillpack", "abc");
  auto ctx = NewCallContext(30, "");
  EXPECT_EQ(UploadPackFile(stub_.get(), ctx.get(), req).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(UploadClientTest, MissingFileIsALocalErrorAndSendsNothing) {
  UploadRequest req;
  req.path = JoinPath(::testing::TempDir(), "rpc_test_no_such_file.skillpack");
  auto ctx = NewCallContext(30, "");
  StatusOr<UploadResult> r = UploadPackFile(stub_.get(), ctx.get(), req);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rpc_test_no_such_file"));
  EXPECT_EQ(admin_.chunks, 0);
}

}  // namespace
}  // namespace skillpack
