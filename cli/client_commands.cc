// `skillpack client ...`: the gRPC client commands of the operator's CLI.
//   client generate|stream  --server HOST:PORT (--prompt T | --chat T | --token-ids 1,2,3) [sampling] [--pack NAME[:W]]
//   client route  --server HOST:PORT (--prompt T | --chat T | --token-ids 1,2,3) [routing flags]
//   client packs upload|list|get|load|unload|delete|stats  --server HOST:PORT --admin-token-file F ...
//   client router set FILE | get | clear  --server HOST:PORT --admin-token-file F
//   client health --server HOST:PORT [--service NAME]
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/cli.h"
#include "core/args.h"
#include "core/file_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "rpc/bearer_auth.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "rpc/upload_client.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "skillpack/v1/inference.grpc.pb.h"

namespace skillpack {
namespace {

constexpr char kClientUsage[] =
    "usage: skillpack client <command> --server HOST:PORT [--tls-ca FILE] [--timeout-seconds S] [flags]\n"
    "\n"
    "  generate|stream (--prompt TEXT | --chat TEXT [--system TEXT] | --token-ids 1,2,3)\n"
    "      [--max-new-tokens N --temperature T --top-k K --top-p P --min-p P --repetition-penalty R\n"
    "       --seed S --stop STR ... --stop-token-id ID ... --ignore-eos --logprobs]\n"
    "      [--pack NAME[:WEIGHT[:MODULE,MODULE...]] ... | --no-packs | routing flags] [--request-id ID]\n"
    "      one completion; `stream` prints the text as it arrives; usage and timings go to stderr.\n"
    "      Without --pack / --no-packs the server's router picks the packs (AUTO); routing flags:\n"
    "      --routing-mode top1|topk --routing-k N --routing-threshold T --route-scores\n"
    "  route (--prompt TEXT | --chat TEXT [--system TEXT] | --token-ids 1,2,3) [routing flags]\n"
    "      the router's decision without generating: packs, weights, every label's score\n"
    "  packs upload FILE [--name NAME --overwrite]     (admin commands need --admin-token-file F)\n"
    "  packs list | get NAME | load NAME [--pin] | unload NAME | delete NAME | stats\n"
    "  router set FILE | get | clear\n"
    "      replace the server's router (validated against its base and packs), show it, remove it\n"
    "  health [--service NAME]\n"
    "      grpc.health.v1 Check of the server (or of one service, e.g. skillpack.v1.Inference): prints\n"
    "      the status; exits 0 only when SERVING (1 otherwise). Deadline 5 s unless --timeout-seconds.\n";

int Fail(const Status& s, absl::string_view what) {
  std::fprintf(stderr, "skillpack client %s: %s: %s\n", std::string(what).c_str(),
               absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::string admin_token;
  double timeout_seconds = 0;

  // A context with the deadline and, for admin calls, the bearer token.
  std::unique_ptr<grpc::ClientContext> Context(bool admin) const {
    return NewCallContext(timeout_seconds, admin ? admin_token : std::string());
  }
};

StatusOr<Connection> Connect(const Args& a) {
  Connection c;
  ASSIGN_OR_RETURN(std::string server, a.String("server"));
  ASSIGN_OR_RETURN(c.timeout_seconds, a.DoubleOr("timeout-seconds", 0));
  const std::string ca = a.StringOr("tls-ca", "");
  const std::string token_file = a.StringOr("admin-token-file", "");
  if (!token_file.empty()) {
    ASSIGN_OR_RETURN(c.admin_token, ReadBearerToken(token_file));
  }
  std::string root_certs;
  if (!ca.empty()) {
    ASSIGN_OR_RETURN(root_certs, ReadFileToString(ca));
  }
  c.channel = MakeChannel(server, root_certs);
  return c;
}

// --routing-mode / --routing-k / --routing-threshold / --route-scores into `skills`.
Status SetRoutingFlags(const Args& a, v1::Skills* skills) {
  const std::string mode = a.StringOr("routing-mode", "");
  if (mode == "top1") {
    skills->set_routing_mode(v1::Skills::TOP1);
  } else if (mode == "topk") {
    skills->set_routing_mode(v1::Skills::TOPK);
  } else if (!mode.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--routing-mode must be top1 or topk, got '", mode, "'"));
  }
  if (a.Has("routing-k")) {
    ASSIGN_OR_RETURN(int64_t k, a.IntOr("routing-k", 0));
    if (k < 1 || k > 16) return absl::InvalidArgumentError("--routing-k must be in [1, 16]");
    skills->set_routing_k(static_cast<int32_t>(k));
  }
  if (a.Has("routing-threshold")) {
    ASSIGN_OR_RETURN(double t, a.DoubleOr("routing-threshold", 0));
    skills->set_routing_threshold(static_cast<float>(t));
  }
  if (a.Bool("route-scores")) skills->set_return_scores(true);
  return absl::OkStatus();
}

bool HasRoutingFlags(const Args& a) {
  return a.Has("routing-mode") || a.Has("routing-k") || a.Has("routing-threshold") || a.Has("route-scores");
}

// --prompt / --chat [--system] / --token-ids into a GenerateRequest or RouteRequest.
template <typename Request>
Status SetInput(const Args& a, Request* req) {
  const std::string prompt = a.StringOr("prompt", "");
  const std::string chat = a.StringOr("chat", "");
  const std::string system = a.StringOr("system", "");
  const std::string ids = a.StringOr("token-ids", "");
  if ((!prompt.empty()) + (!chat.empty()) + (!ids.empty()) != 1) {
    return absl::InvalidArgumentError("give exactly one of --prompt, --chat and --token-ids");
  }
  if (!prompt.empty()) req->set_prompt(prompt);
  if (!chat.empty()) {
    if (!system.empty()) {
      auto* m = req->mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(system);
    }
    auto* m = req->mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(chat);
  }
  if (!ids.empty()) {
    for (absl::string_view s : absl::StrSplit(ids, ',')) {
      int32_t id;
      if (!absl::SimpleAtoi(s, &id)) return absl::InvalidArgumentError(absl::StrCat("--token-ids: bad id '", s, "'"));
      req->mutable_tokens()->add_ids(id);
    }
  }
  return absl::OkStatus();
}

StatusOr<v1::GenerateRequest> BuildRequest(const Args& a) {
  v1::GenerateRequest req;
  RETURN_IF_ERROR(SetInput(a, &req));
  v1::SamplingParams* p = req.mutable_sampling();
  if (a.Has("max-new-tokens")) {
    ASSIGN_OR_RETURN(int64_t n, a.IntOr("max-new-tokens", 0));
    p->set_max_new_tokens(static_cast<int32_t>(n));
  }
  // Greedy by default, as `skillpack generate`.
  ASSIGN_OR_RETURN(double t, a.DoubleOr("temperature", 0.0));
  p->set_temperature(static_cast<float>(t));
  ASSIGN_OR_RETURN(int64_t k, a.IntOr("top-k", 0));
  p->set_top_k(static_cast<int32_t>(k));
  if (a.Has("top-p")) {
    ASSIGN_OR_RETURN(double v, a.DoubleOr("top-p", 1));
    p->set_top_p(static_cast<float>(v));
  }
  ASSIGN_OR_RETURN(double min_p, a.DoubleOr("min-p", 0));
  p->set_min_p(static_cast<float>(min_p));
  if (a.Has("repetition-penalty")) {
    ASSIGN_OR_RETURN(double v, a.DoubleOr("repetition-penalty", 1));
    p->set_repetition_penalty(static_cast<float>(v));
  }
  if (a.Has("seed")) {
    ASSIGN_OR_RETURN(int64_t seed, a.IntOr("seed", 0));
    p->set_seed(static_cast<uint64_t>(seed));
  }
  for (const std::string& s : a.Strings("stop")) p->add_stop(s);
  for (const std::string& s : a.Strings("stop-token-id")) {
    int32_t id;
    if (!absl::SimpleAtoi(s, &id)) return absl::InvalidArgumentError(absl::StrCat("--stop-token-id: bad id '", s, "'"));
    p->add_stop_token_ids(id);
  }
  p->set_ignore_eos(a.Bool("ignore-eos"));
  p->set_logprobs(a.Bool("logprobs"));
  const std::vector<std::string> packs = a.Strings("pack");
  if (HasRoutingFlags(a) && (!packs.empty() || a.Bool("no-packs"))) {
    return absl::InvalidArgumentError("routing flags apply to AUTO only: not with --pack or --no-packs");
  }
  RETURN_IF_ERROR(SetRoutingFlags(a, req.mutable_skills()));
  if (a.Bool("no-packs")) {
    if (!packs.empty()) return absl::InvalidArgumentError("--no-packs and --pack exclude each other");
    req.mutable_skills()->set_mode(v1::Skills::NONE);
  } else if (!packs.empty()) {
    req.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    for (const std::string& spec : packs) {
      std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 2));
      v1::PackSelection* sel = req.mutable_skills()->add_packs();
      sel->set_name(parts[0]);
      if (parts.size() > 1 && !parts[1].empty()) {
        float w;
        if (!absl::SimpleAtof(parts[1], &w))
          return absl::InvalidArgumentError(absl::StrCat("--pack: bad weight in '", spec, "'"));
        sel->set_weight(w);
      }
      if (parts.size() > 2) {
        for (absl::string_view m : absl::StrSplit(parts[2], ',', absl::SkipEmpty())) sel->add_modules(std::string(m));
      }
    }
  }
  req.set_request_id(a.StringOr("request-id", ""));
  return req;
}

template <typename Response>
void PrintSummary(const Response& r) {
  std::string packs;
  for (const auto& p : r.packs()) absl::StrAppend(&packs, packs.empty() ? "" : ",", p.name(), ":", p.weight());
  std::fprintf(stderr,
               "finish: %s | prompt %d tokens, %d generated | queue %.3f s, first token %.3f s, total %.3f s,"
               " compose %.3f s | packs: %s\n",
               v1::FinishReason_Name(r.finish_reason()).c_str(), r.usage().prompt_tokens(),
               r.usage().completion_tokens(), r.timings().queue_seconds(), r.timings().time_to_first_token_seconds(),
               r.timings().total_seconds(), r.timings().compose_seconds(), packs.empty() ? "none" : packs.c_str());
  if (r.timings().route_seconds() > 0) std::fprintf(stderr, "routed in %.4f s\n", r.timings().route_seconds());
  for (const auto& sc : r.route_scores()) std::fprintf(stderr, "score %-24s %.4f\n", sc.label().c_str(), sc.score());
}

Status Route(const Args& a) {
  ASSIGN_OR_RETURN(Connection c, Connect(a));
  v1::RouteRequest req;
  RETURN_IF_ERROR(SetInput(a, &req));
  RETURN_IF_ERROR(SetRoutingFlags(a, req.mutable_skills()));
  req.set_request_id(a.StringOr("request-id", ""));
  RETURN_IF_ERROR(a.CheckAllUsed());
  auto stub = v1::Inference::NewStub(c.channel);
  auto ctx = c.Context(false);
  v1::RouteResponse resp;
  RETURN_IF_ERROR(FromGrpcStatus(stub->Route(ctx.get(), req, &resp)));
  std::string packs;
  for (const auto& p : resp.packs()) absl::StrAppend(&packs, packs.empty() ? "" : ",", p.name(), ":", p.weight());
  std::printf("packs: %s\n", packs.empty() ? "none" : packs.c_str());
  for (const auto& sc : resp.scores()) std::printf("  %-24s %.4f\n", sc.label().c_str(), sc.score());
  std::fprintf(stderr, "routed %d prompt tokens in %.4f s\n", resp.routed_tokens(), resp.route_seconds());
  return absl::OkStatus();
}

void PrintRouter(const v1::RouterInfo& r) {
  std::string labels;
  for (const std::string& l : r.labels()) absl::StrAppend(&labels, labels.empty() ? "" : ", ", l);
  std::printf("router %s (sha256 %.12s, loaded %s)\n  labels: %s\n  layer %lld, hidden %lld, width %lld, base %s\n",
              r.source().c_str(), r.sha256().c_str(), r.loaded_at().c_str(), labels.c_str(),
              static_cast<long long>(r.layer()), static_cast<long long>(r.hidden_size()),
              static_cast<long long>(r.width()), r.base_fingerprint().c_str());
}

Status RouterAdmin(const Args& a) {
  const auto& pos = a.positional();
  if (pos.empty()) return absl::InvalidArgumentError("router: missing subcommand (set FILE | get | clear)");
  const std::string& sub = pos[0];
  ASSIGN_OR_RETURN(Connection c, Connect(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  auto stub = v1::Admin::NewStub(c.channel);
  auto ctx = c.Context(true);
  if (sub == "set" || sub == "clear") {
    v1::SetRouterRequest req;
    if (sub == "set") {
      if (pos.size() != 2) return absl::InvalidArgumentError("router set: give one router file");
      ASSIGN_OR_RETURN(*req.mutable_router(), ReadFileToString(pos[1]));
    } else {
      if (pos.size() != 1) return absl::InvalidArgumentError("router clear: takes no argument");
      req.set_clear(true);
    }
    v1::SetRouterResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->SetRouter(ctx.get(), req, &resp)));
    if (resp.has_router()) {
      PrintRouter(resp.router());
    } else {
      std::printf("router cleared\n");
    }
    return absl::OkStatus();
  }
  if (sub == "get") {
    if (pos.size() != 1) return absl::InvalidArgumentError("router get: takes no argument");
    v1::GetRouterResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->GetRouter(ctx.get(), v1::GetRouterRequest(), &resp)));
    if (resp.loaded()) {
      PrintRouter(resp.router());
    } else {
      std::printf("no router loaded (AUTO requests use no pack)\n");
    }
    std::printf("policy %s, k %d, threshold %.3f, features over the first %d prompt tokens\n",
                resp.policy().mode().c_str(), resp.policy().k(), resp.policy().threshold(), resp.max_tokens());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("router: unknown subcommand '", sub, "'"));
}

Status Generate(const Args& a, bool stream) {
  ASSIGN_OR_RETURN(Connection c, Connect(a));
  ASSIGN_OR_RETURN(v1::GenerateRequest req, BuildRequest(a));
  RETURN_IF_ERROR(a.CheckAllUsed());
  auto stub = v1::Inference::NewStub(c.channel);
  auto ctx = c.Context(false);
  if (!stream) {
    v1::GenerateResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->Generate(ctx.get(), req, &resp)));
    std::printf("%s\n", resp.text().c_str());
    PrintSummary(resp);
    if (req.sampling().logprobs()) {
      for (int i = 0; i < resp.token_ids_size() && i < resp.logprobs_size(); ++i) {
        std::fprintf(stderr, "token %d logprob %.4f\n", resp.token_ids(i), resp.logprobs(i));
      }
    }
    return absl::OkStatus();
  }
  auto reader = stub->GenerateStream(ctx.get(), req);
  v1::GenerateStreamResponse m, last;
  while (reader->Read(&m)) {
    std::fwrite(m.text().data(), 1, m.text().size(), stdout);
    std::fflush(stdout);
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = m;
  }
  std::printf("\n");
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  PrintSummary(last);
  return absl::OkStatus();
}

void PrintPack(const v1::PackInfo& p) {
  std::printf("%-24s v%-6s %10llu bytes  %3d modules  %s%s  sha256 %.12s  %s\n", p.name().c_str(), p.version().c_str(),
              static_cast<unsigned long long>(p.file_bytes()), p.num_modules(), p.loaded() ? "loaded" : "on disk",
              p.pinned() ? ",pinned" : "", p.sha256().c_str(), p.description().c_str());
}

Status Upload(const Connection& c, const Args& a, const std::string& path) {
  UploadRequest request;
  request.path = path;
  request.name = a.StringOr("name", "");
  request.overwrite = a.Bool("overwrite");
  RETURN_IF_ERROR(a.CheckAllUsed());
  auto stub = v1::Admin::NewStub(c.channel);
  auto ctx = c.Context(true);
  ASSIGN_OR_RETURN(UploadResult uploaded, UploadPackFile(stub.get(), ctx.get(), request));
  PrintPack(uploaded.pack);
  return absl::OkStatus();
}

Status Packs(const Args& a) {
  const auto& pos = a.positional();
  if (pos.empty()) return absl::InvalidArgumentError("packs: missing subcommand");
  const std::string& sub = pos[0];
  ASSIGN_OR_RETURN(Connection c, Connect(a));
  auto need_name = [&]() -> StatusOr<std::string> {
    if (pos.size() != 2) return absl::InvalidArgumentError(absl::StrCat("packs ", sub, ": give one pack name"));
    return pos[1];
  };
  auto stub = v1::Admin::NewStub(c.channel);
  if (sub == "upload") {
    ASSIGN_OR_RETURN(std::string path, need_name());
    return Upload(c, a, path);
  }
  const bool pin = sub == "load" && a.Bool("pin");
  RETURN_IF_ERROR(a.CheckAllUsed());
  auto ctx = c.Context(true);
  if (sub == "list") {
    v1::ListPacksResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->ListPacks(ctx.get(), v1::ListPacksRequest(), &resp)));
    for (const auto& p : resp.packs()) PrintPack(p);
    return absl::OkStatus();
  }
  if (sub == "stats") {
    v1::GetStatsResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->GetStats(ctx.get(), v1::GetStatsRequest(), &resp)));
    std::printf("%s", resp.DebugString().c_str());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string name, need_name());
  if (sub == "get") {
    v1::GetPackRequest req;
    req.set_name(name);
    v1::GetPackResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->GetPack(ctx.get(), req, &resp)));
    PrintPack(resp.pack());
    for (const auto& m : resp.modules()) {
      std::string shape;
      for (int64_t d : m.shape()) absl::StrAppend(&shape, shape.empty() ? "" : "x", d);
      std::printf("  %-56s %-12s %-12s rank %lld\n", m.name().c_str(), m.op().c_str(), shape.c_str(),
                  static_cast<long long>(m.rank()));
    }
    std::printf("provenance: %s\n", resp.provenance_json().c_str());
    return absl::OkStatus();
  }
  if (sub == "load") {
    v1::LoadPackRequest req;
    req.set_name(name);
    req.set_pin(pin);
    v1::LoadPackResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(stub->LoadPack(ctx.get(), req, &resp)));
    PrintPack(resp.pack());
    return absl::OkStatus();
  }
  if (sub == "unload") {
    v1::UnloadPackRequest req;
    req.set_name(name);
    v1::UnloadPackResponse resp;
    return FromGrpcStatus(stub->UnloadPack(ctx.get(), req, &resp));
  }
  if (sub == "delete") {
    v1::DeletePackRequest req;
    req.set_name(name);
    v1::DeletePackResponse resp;
    return FromGrpcStatus(stub->DeletePack(ctx.get(), req, &resp));
  }
  return absl::InvalidArgumentError(absl::StrCat("packs: unknown subcommand '", sub, "'"));
}

// `client health`: the container HEALTHCHECK and a shell's readiness probe.
// Returns OK only when the server answers SERVING; an answer other than
// SERVING is FAILED_PRECONDITION naming it, an RPC failure its own code.
Status Health(const Args& a) {
  ASSIGN_OR_RETURN(Connection c, Connect(a));
  if (c.timeout_seconds <= 0) c.timeout_seconds = 5;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(a.StringOr("service", ""));
  RETURN_IF_ERROR(a.CheckAllUsed());
  grpc::health::v1::HealthCheckResponse resp;
  auto stub = grpc::health::v1::Health::NewStub(c.channel);
  RETURN_IF_ERROR(FromGrpcStatus(stub->Check(c.Context(false).get(), req, &resp)));
  const std::string status = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  std::printf("%s\n", status.c_str());
  if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::FailedPreconditionError(
        absl::StrCat(req.service().empty() ? "server" : req.service(), " is ", status));
  }
  return Status();
}

}  // namespace

int RunClientCommand(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "help") {
    std::fputs(kClientUsage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  const std::string cmd = argv[0];
  auto a = Args::Parse(std::vector<std::string>(argv.begin() + 1, argv.end()),
                       {"ignore-eos", "logprobs", "no-packs", "overwrite", "pin", "route-scores"});
  if (!a.ok()) return Fail(a.status(), cmd);
  Status s;
  if (cmd == "generate" || cmd == "stream") {
    s = Generate(*a, cmd == "stream");
  } else if (cmd == "route") {
    s = Route(*a);
  } else if (cmd == "packs") {
    s = Packs(*a);
  } else if (cmd == "router") {
    s = RouterAdmin(*a);
  } else if (cmd == "health") {
    s = Health(*a);
  } else {
    std::fprintf(stderr, "skillpack client: unknown command '%s'\n\n%s", cmd.c_str(), kClientUsage);
    return 2;
  }
  return s.ok() ? 0 : Fail(s, cmd);
}

}  // namespace skillpack
