#include "rpc/request_decode.h"

#include <cstdint>
#include <map>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "absl/strings/str_cat.h"
#include "core/utf8.h"

namespace skillpack {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

// Deeper nesting than protobuf's own default recursion limit is malformed.
constexpr int kMaxDepth = 100;

// What a walk over a message's wire bytes found.
struct Finding {
  std::string path;   // the field holding invalid UTF-8 ("" when none)
  size_t offset = 0;  // of the bad byte inside that field's value
  size_t size = 0;    // of the field's value
};

// Walks one message's fields (until the stream's current limit), recursing
// into known message fields. false on a wire-format error (the bytes are not
// a message) or when a string field holds invalid UTF-8 (*found says which).
bool Walk(const Descriptor* type, CodedInputStream* in, const std::string& prefix, int depth, Finding* found) {
  std::map<int, int> seen;  // occurrences per field number: the index of a repeated field
  while (true) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) return in->ConsumedEntireMessage();
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const FieldDescriptor* field = type->FindFieldByNumber(number);
    const bool walk = field != nullptr &&
                      WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED &&
                      (field->type() == FieldDescriptor::TYPE_STRING || field->type() == FieldDescriptor::TYPE_MESSAGE);
    if (!walk) {
      if (!WireFormatLite::SkipField(in, tag)) return false;
      continue;
    }
    const int index = seen[number]++;
    std::string path = absl::StrCat(prefix, field->name());
    if (field->is_repeated()) absl::StrAppend(&path, "[", index, "]");
    uint32_t length = 0;
    if (!in->ReadVarint32(&length) || length > static_cast<uint32_t>(INT32_MAX)) return false;
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      if (length == 0) continue;
      // In place: the stream reads from one array, whose rest up to the
      // current limit is the direct buffer.
      const void* data = nullptr;
      int available = 0;
      if (!in->GetDirectBufferPointer(&data, &available) || static_cast<uint32_t>(available) < length) return false;
      const size_t bad = FirstInvalidUtf8(absl::string_view(static_cast<const char*>(data), length));
      if (bad != std::string::npos) {
        *found = {path, bad, length};
        return false;
      }
      if (!in->Skip(static_cast<int>(length))) return false;
      continue;
    }
    if (depth >= kMaxDepth) return false;
    const CodedInputStream::Limit limit = in->PushLimit(static_cast<int>(length));
    if (!Walk(field->message_type(), in, path + ".", depth + 1, found)) return false;
    in->PopLimit(limit);
  }
}

}  // namespace

Status ParseRequestBytes(absl::string_view bytes, google::protobuf::Message* msg) {
  msg->Clear();
  const Status malformed =
      absl::InvalidArgumentError(absl::StrCat("malformed ", msg->GetTypeName(), " (not a valid protobuf encoding)"));
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) return malformed;
  // The walk comes first: protobuf's parser would refuse invalid UTF-8 too,
  // but it logs a "libprotobuf ERROR" line for each such string, which any
  // client could then write into the server's log at will.
  Finding found;
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  const bool walked = Walk(msg->GetDescriptor(), &in, "", 0, &found);
  if (!found.path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(found.path, ": not valid UTF-8 (byte ", found.offset, " of ",
                                                   found.size, "); string fields must be UTF-8"));
  }
  if (walked && msg->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return absl::OkStatus();
  msg->Clear();
  return malformed;
}

Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* msg) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable request message");
  if (slices.size() == 1) {
    return ParseRequestBytes(absl::string_view(reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()),
                             msg);
  }
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return ParseRequestBytes(bytes, msg);
}

}  // namespace skillpack
