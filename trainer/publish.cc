#include "trainer/publish.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/fingerprint.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "trainer/rpc_util.h"
#include "trainer/spec_reader.h"

namespace skillpack {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

Json PackInfoToJson(const v1::PackInfo& p) {
  return {{"name", p.name()},           {"version", p.version()},     {"file_bytes", p.file_bytes()},
          {"sha256", p.sha256()},       {"num_modules", p.num_modules()}, {"loaded", p.loaded()},
          {"pinned", p.pinned()},       {"base_fingerprint", p.base_fingerprint()}};
}

}  // namespace

StatusOr<PublishStageSpec> ParsePublishStage(const Json& j, const std::string& path, const std::string& base_dir) {
  PublishStageSpec spec;
  FieldReader r(j, path);
  RETURN_IF_ERROR(r.CheckObject());
  if (!r.Has("server")) return absl::InvalidArgumentError(absl::StrCat(path, ".server: missing (host:port)"));
  RETURN_IF_ERROR(r.Read("server", &spec.server));
  RETURN_IF_ERROR(ValidateAddress(spec.server, r.Path("server")));
  for (const char* key : {"admin_token_file", "pack"}) {
    std::string* out = std::string(key) == "pack" ? &spec.pack : &spec.admin_token_file;
    if (!r.Has(key)) continue;
    RETURN_IF_ERROR(r.Read(key, out));
    *out = ResolveSpecPath(base_dir, *out);
    if (!PathExists(*out)) return absl::InvalidArgumentError(absl::StrCat(r.Path(key), ": file not found: ", *out));
  }
  if (!spec.admin_token_file.empty()) {
    StatusOr<std::string> token = ReadBearerToken(spec.admin_token_file);
    if (!token.ok()) return Annotate(token.status(), r.Path("admin_token_file"));
  }
  RETURN_IF_ERROR(r.Read("overwrite", &spec.overwrite));
  RETURN_IF_ERROR(r.Read("load", &spec.load));
  RETURN_IF_ERROR(r.Read("pin", &spec.pin));
  if (spec.pin && !spec.load) return absl::InvalidArgumentError(absl::StrCat(r.Path("pin"), " needs load: true"));
  RETURN_IF_ERROR(r.ReadInRange<double>("timeout_seconds", &spec.timeout_seconds, 0.001, 86400.0));
  RETURN_IF_ERROR(r.Finish());
  return spec;
}

StatusOr<Json> PublishPack(const PublishStageSpec& spec, const std::string& pack_path) {
  const auto start = std::chrono::steady_clock::now();
  std::string token;
  if (!spec.admin_token_file.empty()) {
    ASSIGN_OR_RETURN(token, ReadBearerToken(spec.admin_token_file));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(pack_path));
  const std::string sha = Sha256Hex(bytes);
  auto stub = v1::Admin::NewStub(MakeChannel(spec.server));
  auto context = [&]() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(spec.timeout_seconds * 1000)));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  };
  const std::string what = absl::StrCat("publish to ", spec.server);
  v1::UploadPackResponse uploaded;
  {
    auto ctx = context();
    auto writer = stub->UploadPack(ctx.get(), &uploaded);
    v1::UploadPackRequest msg;
    msg.mutable_header()->set_sha256(sha);
    msg.mutable_header()->set_total_size(bytes.size());
    msg.mutable_header()->set_overwrite(spec.overwrite);
    bool ok = writer->Write(msg);
    for (size_t off = 0; ok && off < bytes.size(); off += kChunkBytes) {
      msg.Clear();
      msg.set_chunk(bytes.substr(off, kChunkBytes));
      ok = writer->Write(msg);
    }
    writer->WritesDone();
    // A failed Write means the server ended the call; Finish says why.
    RETURN_IF_ERROR(FromGrpcStatus(writer->Finish(), absl::StrCat(what, ": UploadPack")));
  }
  Json report;
  report["server"] = spec.server;
  report["pack"] = pack_path;
  report["bytes"] = bytes.size();
  report["sha256"] = sha;
  report["uploaded"] = PackInfoToJson(uploaded.pack());
  if (uploaded.pack().sha256() != sha) {
    return absl::DataLossError(absl::StrCat(what, ": the server stored sha256 ", uploaded.pack().sha256(),
                                            ", the file has ", sha));
  }
  if (spec.load) {
    auto ctx = context();
    v1::LoadPackRequest req;
    req.set_name(uploaded.pack().name());
    req.set_pin(spec.pin);
    v1::LoadPackResponse loaded;
    RETURN_IF_ERROR(FromGrpcStatus(stub->LoadPack(ctx.get(), req, &loaded), absl::StrCat(what, ": LoadPack")));
    report["loaded"] = PackInfoToJson(loaded.pack());
    report["load_seconds"] = loaded.load_seconds();
  }
  report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace skillpack
