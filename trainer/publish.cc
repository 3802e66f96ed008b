#include "trainer/publish.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "rpc/bearer_auth.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "rpc/upload_client.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "trainer/spec_reader.h"

namespace skillpack {
namespace {

Json PackInfoToJson(const v1::PackInfo& p) {
  return {{"name", p.name()},
          {"version", p.version()},
          {"file_bytes", p.file_bytes()},
          {"sha256", p.sha256()},
          {"num_modules", p.num_modules()},
          {"loaded", p.loaded()},
          {"pinned", p.pinned()},
          {"base_fingerprint", p.base_fingerprint()}};
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
  auto stub = v1::Admin::NewStub(MakeChannel(spec.server));
  const std::string what = absl::StrCat("publish to ", spec.server);
  UploadRequest request;
  request.path = pack_path;
  request.overwrite = spec.overwrite;
  auto upload_ctx = NewCallContext(spec.timeout_seconds, token);
  StatusOr<UploadResult> uploaded = UploadPackFile(stub.get(), upload_ctx.get(), request);
  if (!uploaded.ok()) return Annotate(uploaded.status(), absl::StrCat(what, ": UploadPack"));
  Json report;
  report["server"] = spec.server;
  report["pack"] = pack_path;
  report["bytes"] = uploaded->file_bytes;
  report["sha256"] = uploaded->sha256;
  report["uploaded"] = PackInfoToJson(uploaded->pack);
  if (spec.load) {
    auto ctx = NewCallContext(spec.timeout_seconds, token);
    v1::LoadPackRequest req;
    req.set_name(uploaded->pack.name());
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
