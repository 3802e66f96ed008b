// The job pipeline's publish stage: uploads a .skillpack to a skillpack-server
// through Admin.UploadPack (a header with the file's sha256 and size, then the
// file in 1 MiB chunks, on one client stream) and optionally loads it
// (Admin.LoadPack). The server validates the pack against its base model; its
// error comes back as is (e.g. FAILED_PRECONDITION for another base).
//
//   "publish": {"server": "127.0.0.1:50051", "admin_token_file": "token",
//               "pack": "x.skillpack", "overwrite": false, "load": true, "pin": false,
//               "timeout_seconds": 300}
// "pack" defaults to the job's compress stage output (one of them is required).
#ifndef SKILLPACK_TRAINER_PUBLISH_H_
#define SKILLPACK_TRAINER_PUBLISH_H_

#include <string>

#include "core/json_util.h"
#include "core/status.h"

namespace skillpack {

struct PublishStageSpec {
  std::string server;            // host:port
  std::string admin_token_file;  // absolute after parsing; empty: no token sent
  std::string pack;              // absolute after parsing; empty: the compress stage's pack
  bool overwrite = false;        // replace a stored pack of the same name
  bool load = false;             // LoadPack after the upload
  bool pin = false;              // with load: pin it in the host cache
  double timeout_seconds = 300;  // per call
};

// INVALID_ARGUMENT naming the field (bad address, missing file, ...).
StatusOr<PublishStageSpec> ParsePublishStage(const Json& j, const std::string& path, const std::string& base_dir);

// Uploads `pack_path` (and loads it when spec.load). Returns the report:
// server, name, bytes, sha256, the server's PackInfo summary, seconds.
StatusOr<Json> PublishPack(const PublishStageSpec& spec, const std::string& pack_path);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_PUBLISH_H_
