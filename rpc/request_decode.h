// Decoding a request message from the raw bytes of a gRPC call, with a clear
// error when protobuf refuses them.
//
// protobuf (3.21) checks that proto3 `string` fields hold UTF-8 while it
// parses, and gRPC's generated handlers turn any parse failure into INTERNAL
// with an empty message, before our code runs. A handler that takes the raw
// bytes (grpc::ByteBuffer, see server/inference_service.cc) and decodes them
// here answers INVALID_ARGUMENT naming the field instead, e.g.
// "prompt: not valid UTF-8 (byte 3 of 10); string fields must be UTF-8". The
// bytes on the wire are the same, so no client changes.
#ifndef SKILLPACK_RPC_REQUEST_DECODE_H_
#define SKILLPACK_RPC_REQUEST_DECODE_H_

#include <cstddef>
#include <string>

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Parses `bytes` into *msg (cleared first). String fields are checked before
// protobuf parses, so a bad request never makes libprotobuf log an error line.
// OK, or INVALID_ARGUMENT:
//  - naming the first string field, as a path from the message root
//    ("chat.messages[1].content", "sampling.stop[0]"), that holds invalid
//    UTF-8, with the offending byte's offset;
//  - else "malformed <message type> (not a valid protobuf encoding)".
Status ParseRequestBytes(absl::string_view bytes, google::protobuf::Message* msg);

// ParseRequestBytes on a call's request buffer.
Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* msg);

}  // namespace skillpack

#endif  // SKILLPACK_RPC_REQUEST_DECODE_H_
