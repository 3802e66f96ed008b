#include "rpc/upload_client.h"

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "rpc/grpc_status.h"

namespace skillpack {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

}  // namespace

StatusOr<UploadResult> UploadPackFile(v1::Admin::StubInterface* stub, grpc::ClientContext* context,
                                      const UploadRequest& request) {
  // Hash first (one pass over the bytes), then stream them.
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(request.path));
  UploadResult result;
  result.sha256 = Sha256Hex(bytes);
  result.file_bytes = static_cast<int64_t>(bytes.size());
  v1::UploadPackResponse response;
  auto writer = stub->UploadPack(context, &response);
  v1::UploadPackRequest msg;
  msg.mutable_header()->set_name(request.name);
  msg.mutable_header()->set_sha256(result.sha256);
  msg.mutable_header()->set_total_size(bytes.size());
  msg.mutable_header()->set_overwrite(request.overwrite);
  bool ok = writer->Write(msg);
  for (size_t off = 0; ok && off < bytes.size(); off += kChunkBytes) {
    msg.Clear();
    msg.set_chunk(bytes.substr(off, kChunkBytes));
    ok = writer->Write(msg);
  }
  writer->WritesDone();
  // A failed Write means the server ended the call; Finish says why.
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  if (response.pack().sha256() != result.sha256) {
    return absl::DataLossError(
        absl::StrCat("the server stored sha256 ", response.pack().sha256(), ", the file has ", result.sha256));
  }
  result.pack = response.pack();
  return result;
}

}  // namespace skillpack
