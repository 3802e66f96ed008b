// rpc/request_decode.h: requests decoded from raw bytes; invalid UTF-8 in a
// string field is INVALID_ARGUMENT naming the field's path, other bad bytes
// are INVALID_ARGUMENT "malformed <type>".
#include "rpc/request_decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>

#include "skillpack/v1/admin.pb.h"
#include "skillpack/v1/inference.pb.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

// Wire bytes of a message with string field `number` = `value` (any bytes):
// what a client that does not check UTF-8 sends.
std::string StringField(int number, const std::string& value) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.WriteTag((number << 3) | 2);
    cos.WriteVarint32(static_cast<uint32_t>(value.size()));
    cos.WriteString(value);
  }
  return out;
}

void ExpectInvalid(const std::string& bytes, const std::string& want) {
  v1::GenerateRequest req;
  Status s = ParseRequestBytes(bytes, &req);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(want));
}

TEST(ParseRequestBytesTest, ParsesAValidRequest) {
  v1::GenerateRequest in;
  in.set_prompt("hello \xe2\x9c\x93");
  in.mutable_sampling()->set_max_new_tokens(5);
  in.set_request_id("r1");
  v1::GenerateRequest out;
  ASSERT_TRUE(ParseRequestBytes(in.SerializeAsString(), &out).ok());
  EXPECT_EQ(out.prompt(), in.prompt());
  EXPECT_EQ(out.sampling().max_new_tokens(), 5);
  EXPECT_EQ(out.request_id(), "r1");
}

TEST(ParseRequestBytesTest, NamesTheStringFieldHoldingInvalidUtf8) {
  ExpectInvalid(StringField(1, "hi \xff there"), "prompt: not valid UTF-8 (byte 3 of 10)");
  ExpectInvalid(StringField(6, "\xc3"), "request_id: not valid UTF-8 (byte 0 of 1)");

  // Nested and repeated fields get their path, with the index.
  v1::GenerateRequest chat;
  chat.mutable_chat()->add_messages()->set_content("fine");
  v1::ChatMessage* bad = chat.mutable_chat()->add_messages();
  bad->set_role("user");
  bad->set_content("PLACEHOLDER");
  std::string bytes = chat.SerializeAsString();
  bytes.replace(bytes.find("PLACEHOLDER"), 11, "bad \xed\xa0\x80 xyz");  // same length: a surrogate
  ExpectInvalid(bytes, "chat.messages[1].content: not valid UTF-8 (byte 4 of 11)");

  v1::GenerateRequest stops;
  stops.mutable_sampling()->add_stop("ok");
  stops.mutable_sampling()->add_stop("STOP");
  bytes = stops.SerializeAsString();
  bytes.replace(bytes.find("STOP"), 4, "ST\xfe\xfe");
  ExpectInvalid(bytes, "sampling.stop[1]: not valid UTF-8 (byte 2 of 4)");

  v1::GenerateRequest packs;
  packs.mutable_skills()->add_packs()->set_name("a");
  packs.mutable_skills()->add_packs()->add_modules("MLP");
  bytes = packs.SerializeAsString();
  bytes.replace(bytes.find("MLP"), 3, "\x80LP");
  ExpectInvalid(bytes, "skills.packs[1].modules[0]: not valid UTF-8 (byte 0 of 3)");
}

TEST(ParseRequestBytesTest, NamesTheFieldInAdminRequests) {
  v1::GetPackRequest get;
  Status s = ParseRequestBytes(StringField(1, "pack\xe9"), &get);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("name: not valid UTF-8 (byte 4 of 5)"));

  v1::UploadPackRequest upload;
  upload.mutable_header()->set_name("pack");
  upload.mutable_header()->set_sha256("SHA");
  upload.mutable_header()->set_total_size(7);
  std::string bytes = upload.SerializeAsString();
  bytes.replace(bytes.find("SHA"), 3, "S\xc0\x80");  // overlong NUL
  s = ParseRequestBytes(bytes, &upload);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("header.sha256: not valid UTF-8 (byte 1 of 3)"));

  // A chunk is `bytes`: any bytes.
  upload.Clear();
  upload.set_chunk(std::string("\xff\x00\xc0", 3));
  v1::UploadPackRequest out;
  ASSERT_TRUE(ParseRequestBytes(upload.SerializeAsString(), &out).ok());
  EXPECT_EQ(out.chunk(), upload.chunk());
}

// Every message protobuf logs while the handler is installed.
std::vector<std::string>* logged = nullptr;
void RecordLog(google::protobuf::LogLevel, const char*, int, const std::string& message) { logged->push_back(message); }

TEST(ParseRequestBytesTest, LogsNothingForABadRequest) {
  // protobuf's own parser logs a "libprotobuf ERROR ... invalid UTF-8" line
  // for each bad string; a client must not be able to fill the log that way.
  std::vector<std::string> messages;
  logged = &messages;
  google::protobuf::LogHandler* previous = google::protobuf::SetLogHandler(&RecordLog);
  v1::GenerateRequest req;
  EXPECT_FALSE(ParseRequestBytes(StringField(1, "hi \xff"), &req).ok());
  EXPECT_FALSE(ParseRequestBytes(StringField(6, "\xc3"), &req).ok());
  EXPECT_FALSE(ParseRequestBytes("\x0a\x05hi", &req).ok());
  v1::GetPackRequest get;
  EXPECT_FALSE(ParseRequestBytes(StringField(1, "\xff"), &get).ok());
  // The handler does see what protobuf logs: a direct parse of the same bytes.
  EXPECT_TRUE(messages.empty()) << messages.front();
  EXPECT_FALSE(req.ParseFromString(StringField(1, "hi \xff")));
  google::protobuf::SetLogHandler(previous);
  logged = nullptr;
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_THAT(messages[0], HasSubstr("invalid UTF-8"));
}

TEST(ParseRequestBytesTest, MalformedBytesAreInvalidArgumentNamingTheType) {
  ExpectInvalid("\x0a\x05hi", "malformed skillpack.v1.GenerateRequest");                         // length past the end
  ExpectInvalid("\x0f", "malformed skillpack.v1.GenerateRequest");                               // wire type 7
  ExpectInvalid(std::string("\x12\x03\x0a\x05x", 5), "malformed skillpack.v1.GenerateRequest");  // nested overrun
  // Unknown fields are kept by protobuf, not an error.
  v1::GenerateRequest req;
  EXPECT_TRUE(ParseRequestBytes(StringField(99, "\xff"), &req).ok());
}

TEST(ParseRequestBytesTest, DeepNestingIsMalformedNotACrash) {
  // The schema's own nesting is shallow; unknown groups nest as deep as the
  // bytes say, and the walk stops at protobuf's recursion limit.
  std::string groups(100000, '\x0b');  // start group of field 1, never ended
  groups[0] = '\xff';                  // and make the normal parse fail too
  v1::GenerateRequest req;
  Status s = ParseRequestBytes(groups, &req);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("malformed"));
}

}  // namespace
}  // namespace skillpack
