// The client side of Admin.UploadPack, shared by `skillpack client packs
// upload` and the trainer's publish stage: a header with the file's sha256 and
// size, then the file in 1 MiB chunks, on one client stream.
#ifndef SKILLPACK_RPC_UPLOAD_CLIENT_H_
#define SKILLPACK_RPC_UPLOAD_CLIENT_H_

#include <cstdint>
#include <string>

#include <grpcpp/grpcpp.h>

#include "core/status.h"
#include "skillpack/v1/admin.grpc.pb.h"

namespace skillpack {

struct UploadRequest {
  std::string path;        // the .skillpack file to send
  std::string name;        // empty: the server takes the manifest's name
  bool overwrite = false;  // replace a stored pack of the same name
};

struct UploadResult {
  v1::PackInfo pack;   // as the server stored it
  std::string sha256;  // lowercase hex of the file sent
  int64_t file_bytes = 0;
};

// Sends the file on `context` (which carries the deadline and admin token).
// The server's error comes back as is (e.g. FAILED_PRECONDITION for a pack of
// another base); a read error for the local file; DATA_LOSS when the server
// reports a sha256 other than the file's.
StatusOr<UploadResult> UploadPackFile(v1::Admin::StubInterface* stub, grpc::ClientContext* context,
                                      const UploadRequest& request);

}  // namespace skillpack

#endif  // SKILLPACK_RPC_UPLOAD_CLIENT_H_
