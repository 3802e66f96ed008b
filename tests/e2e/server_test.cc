// End-to-end tests of skillpack-server: the real binary on 127.0.0.1 with
// ephemeral ports, driven through the generated C++ stubs (helpers in
// server_harness.h). Expected outputs
// come from offline generation in this process (GenerateAll) on the base
// model, or on the folder `skillpack pack apply` writes for a pack.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/model.h"
#include "core/omp_wait_policy.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pack/fingerprint.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "skillpack/v1/inference.grpc.pb.h"
#include "tests/e2e/proc_status.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// `skillpack client health` against a server (a 5 s timeout, times
// TimeoutScale()): its exit code and its stdout + stderr.
CommandResult CliHealth(const std::string& address, const std::string& service = "") {
  const int64_t timeout = std::chrono::duration_cast<seconds>(Scaled(seconds(5)) + milliseconds(999)).count();
  std::string cmd = kCliBin + " client health --server " + address + " --timeout-seconds " + std::to_string(timeout);
  if (!service.empty()) cmd += " --service " + service;
  return Shell(cmd);
}

class ServerE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("skillpack-server-e2e-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_TRUE(InitTinyModel(TinyOptions(2, 64, 1, 16384), Path("base")).ok());
    for (int i : {2, 3}) {
      const std::string n = std::to_string(i);
      MakeTinyPack(Path("base"), TinyOptions(2, 64, i, 16384), Path("tuned" + n), "p" + n,
                   Path("p" + n + ".skillpack"));
    }
    RunCommand(kCliBin + " pack apply --base " + Path("base") + " --pack " + Path("p2.skillpack") + " -o " +
               Path("applied2"));
    RunCommand(kCliBin + " pack apply --base " + Path("base") + " --pack " + Path("p3.skillpack") + " -o " +
               Path("applied3"));
    RunCommand(kCliBin + " pack apply --base " + Path("base") + " --pack " + Path("p2.skillpack") + " --pack " +
               Path("p3.skillpack") + " --weight 0.5 --weight 0.5 -o " + Path("applied23"));
    ASSERT_TRUE(WriteFileAtomically(Path("token"), std::string(kToken) + "\n").ok());
    // float32 factors: PackOutputsEqualOfflineGenerationOnAppliedFolders
    // expects `pack apply`'s tokens, composed in float32, and only float32
    // factors promise them (int8, the default, rounds the factors; it is
    // served and tested in Int8FactorsTakeFewerHostBytesAndServeThePack).
    server_ = new ServerProcess();
    server_->Start(
        {"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token"), "--max-running", "4",
         "--max-seq-len", "2048", "--max-prompt-bytes", "4096", "--factor-precision", "float32"},
        Path("server.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string Path(const std::string& name) { return JoinPath(*dir_, name); }

  static v1::GenerateResponse MustGenerate(const v1::GenerateRequest& req) {
    return skillpack::MustGenerate(server_->channel(), req);
  }
  static grpc::Status GenerateStatus(const v1::GenerateRequest& req) {
    auto stub = v1::Inference::NewStub(server_->channel());
    grpc::ClientContext ctx;
    v1::GenerateResponse resp;
    return stub->Generate(&ctx, req, &resp);
  }

  static std::string* dir_;
  static ServerProcess* server_;
};
std::string* ServerE2eTest::dir_ = nullptr;
ServerProcess* ServerE2eTest::server_ = nullptr;

TEST_F(ServerE2eTest, GreedyWithoutPackEqualsOfflineGeneration) {
  Offline off = Offline::Load(Path("base"));
  for (const char* prompt : {"Hello", "The quick brown fox", "1 + 1 ="}) {
    GenerationOutput want = off.Generate(prompt, Greedy(40));
    v1::GenerateResponse got = MustGenerate(Request(prompt, Greedy(40)));
    EXPECT_EQ(Ids(got.token_ids()), want.tokens) << prompt;
    EXPECT_EQ(got.text(), want.text) << prompt;
    EXPECT_EQ(got.usage().prompt_tokens(), want.prompt_tokens);
    EXPECT_EQ(got.usage().completion_tokens(), static_cast<int32_t>(want.tokens.size()));
    EXPECT_EQ(got.finish_reason(), want.finish_reason == FinishReason::kLength ? v1::LENGTH : v1::STOP);
    EXPECT_EQ(got.packs_size(), 0);
  }
}

TEST_F(ServerE2eTest, StreamConcatenatesToUnary) {
  SamplingParams p = Greedy(60);
  p.logprobs = true;
  v1::GenerateRequest req = Request("Streaming test", p);
  req.set_request_id("req-42");
  v1::GenerateResponse unary = MustGenerate(req);
  auto stub = v1::Inference::NewStub(server_->channel());
  grpc::ClientContext ctx;
  auto reader = stub->GenerateStream(&ctx, req);
  v1::GenerateStreamResponse m, last;
  std::string text;
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  int messages = 0;
  while (reader->Read(&m)) {
    ++messages;
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << "message after the final one";
    text += m.text();
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    logprobs.insert(logprobs.end(), m.logprobs().begin(), m.logprobs().end());
    last = m;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GT(messages, 1);
  EXPECT_EQ(text, unary.text());
  EXPECT_EQ(ids, Ids(unary.token_ids()));
  EXPECT_EQ(logprobs, std::vector<float>(unary.logprobs().begin(), unary.logprobs().end()));
  EXPECT_EQ(last.finish_reason(), unary.finish_reason());
  EXPECT_EQ(last.usage().completion_tokens(), unary.usage().completion_tokens());
  EXPECT_EQ(last.request_id(), "req-42");
}

TEST_F(ServerE2eTest, ConcurrentRequestsWithDifferentSampling) {
  Offline off = Offline::Load(Path("base"));
  struct Case {
    std::string prompt;
    SamplingParams p;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 6; ++i) {
    Case c{"Prompt number " + std::to_string(i), Greedy(30 + 5 * i)};
    if (i % 2 == 1) {
      c.p.temperature = 0.7f + 0.1f * i;
      c.p.top_k = 20 * i;
      c.p.top_p = 0.9f;
      c.p.seed = 100 + i;
    }
    cases.push_back(c);
  }
  std::vector<v1::GenerateResponse> got(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = MustGenerate(Request(cases[i].prompt, cases[i].p)); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    GenerationOutput want = off.Generate(cases[i].prompt, cases[i].p);
    EXPECT_EQ(Ids(got[i].token_ids()), want.tokens) << "case " << i;
    EXPECT_EQ(got[i].text(), want.text) << "case " << i;
  }
}

TEST_F(ServerE2eTest, InvalidArgumentNamesTheField) {
  struct Bad {
    std::function<void(v1::GenerateRequest*)> edit;
    std::string field;
  };
  std::vector<Bad> bads = {
      {[](v1::GenerateRequest* r) { r->clear_prompt(); }, "input"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-1); }, "temperature"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(0); }, "top_p"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_new_tokens(0); }, "max_new_tokens"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_new_tokens(100000); }, "max_new_tokens"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->add_stop(""); }, "stop"},
      {[](v1::GenerateRequest* r) { r->mutable_tokens()->add_ids(1 << 20); }, "tokens.ids[0]"},
      {[](v1::GenerateRequest* r) {
         auto* m = r->mutable_chat()->add_messages();
         m->set_role("robot");
       },
       "chat.messages[0].role"},
      {[](v1::GenerateRequest* r) {
         r->mutable_skills()->set_mode(v1::Skills::NONE);
         r->mutable_skills()->add_packs()->set_name("p2");
       },
       "skills.packs"},
      {[](v1::GenerateRequest* r) {
         r->mutable_skills()->set_mode(v1::Skills::EXPLICIT);
         r->mutable_skills()->add_packs()->set_name("Bad Name!");
       },
       "skills.packs[0].name"},
      {[](v1::GenerateRequest* r) {
         r->mutable_skills()->set_mode(v1::Skills::EXPLICIT);
         auto* p = r->mutable_skills()->add_packs();
         p->set_name("p2");
         p->set_weight(NAN);
       },
       "skills.packs[0].weight"},
      {[](v1::GenerateRequest* r) {
         r->mutable_skills()->set_mode(v1::Skills::EXPLICIT);
         r->mutable_skills()->add_packs()->set_name("p2");
         r->mutable_skills()->set_routing_mode(v1::Skills::TOPK);
       },
       "skills.routing_mode"},
      {[](v1::GenerateRequest* r) { r->mutable_skills()->set_routing_k(0); }, "skills.routing_k"},
      {[](v1::GenerateRequest* r) { r->mutable_skills()->set_routing_threshold(2); }, "skills.routing_threshold"},
      // Limits checked before tokenizing, and values this server does not know.
      {[](v1::GenerateRequest* r) { r->set_prompt(std::string(4097, 'a')); }, "prompt: 4097 bytes exceeds"},
      {[](v1::GenerateRequest* r) {
         auto* m = r->mutable_chat()->add_messages();
         m->set_role("user");
         m->set_content(std::string(5000, 'a'));
       },
       "chat.messages: 5004 bytes exceeds"},
      {[](v1::GenerateRequest* r) { r->set_request_id(std::string(257, 'r')); }, "request_id: 257 bytes"},
      {[](v1::GenerateRequest* r) { r->mutable_skills()->set_mode(static_cast<v1::Skills::Mode>(99)); },
       "skills.mode: unknown value 99"},
  };
  for (const Bad& b : bads) {
    v1::GenerateRequest req = Request("hi", Greedy(4));
    b.edit(&req);
    grpc::Status s = GenerateStatus(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.field << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(b.field), std::string::npos) << b.field << ": " << s.error_message();
  }
  v1::GenerateRequest unknown = Request("hi", Greedy(4));
  unknown.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
  unknown.mutable_skills()->add_packs()->set_name("no-such-pack");
  EXPECT_EQ(GenerateStatus(unknown).error_code(), grpc::StatusCode::NOT_FOUND);
  // A module filter that selects none of a stored pack's modules (it would
  // serve the base while reporting the pack as used).
  const grpc::Status up = Upload(server_->channel(), Path("p2.skillpack"));
  ASSERT_TRUE(up.ok() || up.error_code() == grpc::StatusCode::ALREADY_EXISTS) << up.error_message();
  v1::GenerateRequest filtered = Request("hi", Greedy(4));
  filtered.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
  auto* sel = filtered.mutable_skills()->add_packs();
  sel->set_name("p2");
  sel->add_modules("no_such_module");
  const grpc::Status filter_status = GenerateStatus(filtered);
  EXPECT_EQ(filter_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << filter_status.error_message();
  EXPECT_NE(filter_status.error_message().find("pack p2: module filter [no_such_module] matches none of its"),
            std::string::npos)
      << filter_status.error_message();
  // Leave the store as the suite's other tests expect it.
  if (up.ok()) {
    EXPECT_TRUE(DeletePack(server_->channel(), "p2").ok());
  }
}

TEST_F(ServerE2eTest, AdminNeedsTheBearerToken) {
  auto stub = v1::Admin::NewStub(server_->channel());
  v1::ListPacksResponse resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->ListPacks(&ctx, v1::ListPacksRequest(), &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, "wrong");
    EXPECT_EQ(stub->ListPacks(&ctx, v1::ListPacksRequest(), &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    EXPECT_TRUE(stub->ListPacks(&ctx, v1::ListPacksRequest(), &resp).ok());
  }
  {
    grpc::ClientContext ctx;  // the scheme is case-insensitive (RFC 7235)
    ctx.AddMetadata("authorization", std::string("bearer ") + kToken);
    EXPECT_TRUE(stub->ListPacks(&ctx, v1::ListPacksRequest(), &resp).ok());
  }
}

TEST_F(ServerE2eTest, DeadlineExceededFreesTheSlot) {
  SamplingParams p = Greedy(2000);
  p.ignore_eos = true;
  auto stub = v1::Inference::NewStub(server_->channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(300));
  v1::GenerateResponse resp;
  grpc::Status s = stub->Generate(&ctx, Request("slow", p), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_TRUE(WaitForLoad(server_->channel(), 0, 3000)) << "the request still holds its slot";
  EXPECT_EQ(Stats(server_->channel()).kv_slots_free(), Stats(server_->channel()).kv_slots_total());
}

TEST_F(ServerE2eTest, UploadWithWrongSha256IsRejectedAndLeavesNothing) {
  const std::string store = Path("packs");
  grpc::Status s = Upload(server_->channel(), Path("p2.skillpack"), std::string(64, 'a'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("sha256"), std::string::npos);
  for (const auto& e : fs::recursive_directory_iterator(store)) {
    if (e.is_regular_file()) ADD_FAILURE() << "left in the store: " << e.path();
  }
  // A file that is not a pack at all (right sha256) is refused too.
  ASSERT_TRUE(WriteFileAtomically(Path("junk.skillpack"), "not a pack").ok());
  s = Upload(server_->channel(), Path("junk.skillpack"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  // Client-facing messages name no server path.
  EXPECT_EQ(s.error_message().find(store), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("<packs>/.incoming/"), std::string::npos) << s.error_message();
  for (const auto& e : fs::recursive_directory_iterator(store)) {
    if (e.is_regular_file()) ADD_FAILURE() << "left in the store: " << e.path();
  }
}

TEST_F(ServerE2eTest, PackOutputsEqualOfflineGenerationOnAppliedFolders) {
  v1::UploadPackResponse up;
  ASSERT_TRUE(Upload(server_->channel(), Path("p2.skillpack"), "", &up).ok());
  EXPECT_EQ(up.pack().name(), "p2");
  ASSERT_TRUE(Upload(server_->channel(), Path("p3.skillpack")).ok());
  EXPECT_TRUE(fs::exists(Path("packs/p2.skillpack")));

  struct Case {
    std::vector<std::pair<std::string, float>> packs;
    std::string folder;
  };
  std::vector<Case> cases = {{{}, "base"},
                             {{{"p2", 1.0f}}, "applied2"},
                             {{{"p3", 1.0f}}, "applied3"},
                             {{{"p2", 0.5f}, {"p3", 0.5f}}, "applied23"}};
  SamplingParams p = Greedy(48);
  p.ignore_eos = true;
  const std::string prompt = "Composed skills";
  auto request = [&](const Case& c) {
    v1::GenerateRequest r = Request(prompt, p);
    if (!c.packs.empty()) r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    for (const auto& [name, w] : c.packs) {
      auto* sel = r.mutable_skills()->add_packs();
      sel->set_name(name);
      sel->set_weight(w);
    }
    return r;
  };
  // Concurrent streams, each with its own pack set.
  std::vector<std::string> texts(cases.size());
  std::vector<std::vector<int32_t>> ids(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::Inference::NewStub(server_->channel());
      grpc::ClientContext ctx;
      auto reader = stub->GenerateStream(&ctx, request(cases[i]));
      v1::GenerateStreamResponse m;
      while (reader->Read(&m)) {
        texts[i] += m.text();
        ids[i].insert(ids[i].end(), m.token_ids().begin(), m.token_ids().end());
      }
      grpc::Status s = reader->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    GenerationOutput want = Offline::Load(Path(cases[i].folder)).Generate(prompt, p);
    EXPECT_EQ(ids[i], want.tokens) << cases[i].folder;
    EXPECT_EQ(texts[i], want.text) << cases[i].folder;
    // Alone (unary) it is the same again.
    v1::GenerateResponse alone = MustGenerate(request(cases[i]));
    EXPECT_EQ(Ids(alone.token_ids()), want.tokens) << cases[i].folder;
    EXPECT_EQ(alone.packs_size(), static_cast<int>(cases[i].packs.size()));
  }
  // The different pack sets really differ.
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  // Admin view: listed, loadable, unloadable, deletable.
  auto stub = v1::Admin::NewStub(server_->channel());
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::GetPackRequest req;
    req.set_name("p2");
    v1::GetPackResponse resp;
    ASSERT_TRUE(stub->GetPack(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.pack().num_modules(), resp.modules_size());
    EXPECT_TRUE(resp.pack().loaded());
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::UnloadPackRequest req;
    req.set_name("p3");
    v1::UnloadPackResponse resp;
    EXPECT_TRUE(stub->UnloadPack(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::LoadPackRequest req;
    req.set_name("p3");
    req.set_pin(true);
    v1::LoadPackResponse resp;
    ASSERT_TRUE(stub->LoadPack(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.pack().pinned());
  }
  EXPECT_TRUE(DeletePack(server_->channel(), "p3").ok());
  EXPECT_FALSE(fs::exists(Path("packs/p3.skillpack")));
  v1::GenerateRequest gone = request(cases[2]);
  EXPECT_EQ(GenerateStatus(gone).error_code(), grpc::StatusCode::NOT_FOUND);
}

// --factor-precision int8: the same pack held as int8 codes takes fewer host
// bytes than at float16 (a quarter of float32 for its low-rank modules against
// a half), and is served factorized from them; a server started without the
// flag holds and serves it exactly as at int8 (the default,
// kServedFactorPrecision).
TEST_F(ServerE2eTest, Int8FactorsTakeFewerHostBytesAndServeThePack) {
  auto host_bytes = [](const std::shared_ptr<grpc::Channel>& ch) -> uint64_t {
    auto stub = v1::Admin::NewStub(ch);
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::GetPackRequest req;
    req.set_name("p2");
    v1::GetPackResponse resp;
    grpc::Status s = stub->GetPack(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.pack().loaded());
    return resp.pack().host_bytes();
  };
  SamplingParams p = Greedy(32);
  p.ignore_eos = true;
  std::map<std::string, uint64_t> bytes;
  std::map<std::string, std::vector<int32_t>> ids;
  for (const std::string prec : {"float16", "int8", "default"}) {
    SCOPED_TRACE(prec);
    std::vector<std::string> args = {
        "--model",     Path("base"),     "--packs",   Path("packs-" + prec), "--admin-token-file",
        Path("token"), "--serving-mode", "factorized"};
    if (prec != "default") args.insert(args.end(), {"--factor-precision", prec});
    ServerProcess s;
    s.Start(args, Path("server-" + prec + ".log"));
    ASSERT_TRUE(Upload(s.channel(), Path("p2.skillpack")).ok());
    v1::GenerateRequest r = Request("Composed skills", p);
    r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    r.mutable_skills()->add_packs()->set_name("p2");
    v1::GenerateResponse resp = skillpack::MustGenerate(s.channel(), r);
    EXPECT_EQ(resp.packs_size(), 1);
    ids[prec] = Ids(resp.token_ids());
    bytes[prec] = host_bytes(s.channel());
    EXPECT_EQ(s.Stop(), 0);
  }
  EXPECT_GT(bytes["int8"], 0u);
  EXPECT_LT(bytes["int8"], bytes["float16"]);
  EXPECT_EQ(bytes["default"], bytes["int8"]);
  EXPECT_EQ(ids["default"], ids["int8"]);
  // The pack is applied at int8 too: its output is not the base's.
  const std::vector<int32_t> base = Ids(MustGenerate(Request("Composed skills", p)).token_ids());
  EXPECT_NE(ids["int8"], base);
  EXPECT_NE(ids["float16"], base);
}

// The server runs libgomp with the passive wait policy, and OpenBLAS's pool
// with a short spin, unless its caller chose (core/omp_wait_policy.h): started
// without OMP_WAIT_POLICY and OPENBLAS_THREAD_TIMEOUT it re-executes itself
// (same process id) with PASSIVE and kServerOpenBlasThreadTimeout; what the
// caller gives is kept, each variable on its own.
TEST_F(ServerE2eTest, RunsWithPassiveThreadWaitsUnlessTheCallerChose) {
  struct Given {
    std::optional<std::string> omp, blas;
  };
  for (const Given& given : {Given{}, Given{"ACTIVE", "28"}, Given{"ACTIVE", std::nullopt}}) {
    SCOPED_TRACE(absl::StrCat(given.omp.value_or("(unset)"), " / ", given.blas.value_or("(unset)")));
    ServerProcess s;
    s.env["OMP_WAIT_POLICY"] = given.omp;
    s.env["OPENBLAS_THREAD_TIMEOUT"] = given.blas;
    s.Start({"--model", Path("base"), "--packs", Path("packs-omp"), "--admin-token-file", Path("token")},
            Path("server-omp.log"));
    auto environ = ReadFileToString("/proc/" + std::to_string(s.pid()) + "/environ");
    ASSERT_TRUE(environ.ok()) << environ.status();
    std::vector<std::string> policies, timeouts;
    for (absl::string_view v : absl::StrSplit(*environ, '\0')) {
      if (absl::ConsumePrefix(&v, "OMP_WAIT_POLICY=")) policies.emplace_back(v);
      if (absl::ConsumePrefix(&v, "OPENBLAS_THREAD_TIMEOUT=")) timeouts.emplace_back(v);
    }
    EXPECT_EQ(policies, std::vector<std::string>{given.omp.value_or("PASSIVE")});
    EXPECT_EQ(timeouts, std::vector<std::string>{given.blas.value_or(kServerOpenBlasThreadTimeout)});
    // And it serves.
    EXPECT_FALSE(skillpack::MustGenerate(s.channel(), Request("omp", Greedy(4))).token_ids().empty());
    EXPECT_EQ(s.Stop(), 0);
  }
}

TEST_F(ServerE2eTest, AdmissionLimitsGiveResourceExhausted) {
  ServerProcess small;
  small.Start({"--model", Path("base"), "--packs", Path("packs-small"), "--admin-token-file", Path("token"),
               "--max-running", "1", "--max-queued", "1", "--max-seq-len", "16384"},
              Path("server-small.log"));
  SamplingParams p = Greedy(16000);
  p.ignore_eos = true;
  auto stub = v1::Inference::NewStub(small.channel());
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>>> readers;
  for (int i = 0; i < 2; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->GenerateStream(ctxs.back().get(), Request("long " + std::to_string(i), p)));
  }
  ASSERT_TRUE(WaitForLoad(small.channel(), 2));
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  grpc::Status s = stub->Generate(&ctx, Request("one too many", Greedy(4)), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  // Clients that go away are cancelled and free their slots at once.
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : readers) EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForLoad(small.channel(), 0, 3000));
  grpc::ClientContext ctx2;
  EXPECT_TRUE(stub->Generate(&ctx2, Request("room again", Greedy(4)), &resp).ok());
  EXPECT_EQ(small.Stop(), 0);
}

// The Inference service holds no thread per call (gRPC's callback API, see
// inference_service.h): 48 waiting streams cost the server a few threads, not
// 48, and every one is cancelled as soon as its client leaves.
TEST_F(ServerE2eTest, WaitingStreamsHoldNoThread) {
  ServerProcess small;
  small.Start({"--model", Path("base"), "--packs", Path("packs-threads"), "--admin-token-file", Path("token"),
               "--max-running", "1", "--max-queued", "64", "--max-seq-len", "16384"},
              Path("server-threads.log"));
  auto stub = v1::Inference::NewStub(small.channel());
  {
    grpc::ClientContext ctx;  // one call of each kind first: gRPC starts its threads lazily
    v1::GenerateResponse resp;
    ASSERT_TRUE(stub->Generate(&ctx, Request("warm", Greedy(2)), &resp).ok());
    ASSERT_TRUE(WaitForLoad(small.channel(), 0));
  }
  const int idle = testing_util::ThreadCount(small.pid());
  ASSERT_GT(idle, 0);
  SamplingParams p = Greedy(16000);
  p.ignore_eos = true;
  constexpr int kStreams = 48;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>>> readers;
  for (int i = 0; i < kStreams; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->GenerateStream(ctxs.back().get(), Request("wait " + std::to_string(i), p)));
  }
  ASSERT_TRUE(WaitForLoad(small.channel(), kStreams));
  const int busy = testing_util::ThreadCount(small.pid());
  EXPECT_LT(busy - idle, 16) << idle << " threads idle, " << busy << " with " << kStreams << " streams";
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : readers) EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForLoad(small.channel(), 0, 3000)) << "cancelled streams still hold their places";
  EXPECT_EQ(small.Stop(), 0);
}

TEST_F(ServerE2eTest, UploadsAreCappedAndIdleOnesCancelled) {
  ServerProcess up;
  up.Start({"--model", Path("base"), "--packs", Path("packs-uploads"), "--admin-token-file", Path("token"),
            "--max-concurrent-uploads", "1", "--upload-idle-timeout-seconds", "2"},
           Path("server-uploads.log"));
  const std::string bytes = ReadFileToString(Path("p2.skillpack")).value();
  // An upload that sends its header and then nothing.
  auto stub = v1::Admin::NewStub(up.channel());
  grpc::ClientContext idle_ctx;
  AddToken(&idle_ctx, kToken);
  idle_ctx.set_deadline(std::chrono::system_clock::now() + Scaled(seconds(60)));  // the server must end it long before
  v1::UploadPackResponse idle_resp;
  auto idle = stub->UploadPack(&idle_ctx, &idle_resp);
  v1::UploadPackRequest header;
  header.mutable_header()->set_sha256(Sha256Hex(bytes));
  header.mutable_header()->set_total_size(bytes.size());
  ASSERT_TRUE(idle->Write(header));
  // The server has taken it once its temporary file exists.
  auto part_files = [&]() {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(Path("packs-uploads/.incoming"), ec)) n += e.is_regular_file();
    return n;
  };
  // Polls `done` every 50 ms for up to 10 s (times TimeoutScale()).
  auto wait_for = [](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + Scaled(seconds(10));
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  };
  wait_for([&] { return part_files() != 0; });
  ASSERT_EQ(part_files(), 1);
  // While it is open, a second upload is refused (one at a time).
  const grpc::Status second = Upload(up.channel(), Path("p2.skillpack"));
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << second.error_message();
  EXPECT_NE(second.error_message().find("--max-concurrent-uploads"), std::string::npos) << second.error_message();
  // The server cancels the idle one (the client's own deadline is 60 s away)
  // and leaves no partial file.
  const grpc::Status ended = idle->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::CANCELLED) << ended.error_message();
  // The client sees CANCELLED as soon as the server cancels; the handler then
  // unwinds (removing the .part file, then freeing its slot) a moment later.
  wait_for([&] { return part_files() == 0; });
  EXPECT_EQ(part_files(), 0);
  // Its slot is free again.
  grpc::Status again;
  wait_for([&] {
    again = Upload(up.channel(), Path("p2.skillpack"));
    return again.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED;
  });
  EXPECT_TRUE(again.ok()) << again.error_message();
  EXPECT_TRUE(fs::exists(Path("packs-uploads/p2.skillpack")));
  EXPECT_EQ(up.Stop(), 0);
}

TEST_F(ServerE2eTest, HealthGoesNotServingOnSigterm) {
  ServerProcess s;
  s.Start({"--model", Path("base"), "--packs", Path("packs-health"), "--max-seq-len", "16384", "--grace-seconds", "2"},
          Path("server-health.log"));
  auto health = grpc::health::v1::Health::NewStub(s.channel());
  // The server as a whole ("") and each of its services by name.
  auto check = [&](const std::string& service = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + Scaled(seconds(2)));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = health->Check(&ctx, req, &resp);
    return st.ok() ? resp.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  for (const char* service : {"", "skillpack.v1.Inference", "skillpack.v1.Admin"}) {
    EXPECT_EQ(check(service), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("skillpack.v1.NoSuchService");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_EQ(health->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // No handler takes SIGTERM on the server's threads: main and every thread
  // it started (gRPC's, the engine's, the workers') block it, and main reads
  // it from a signalfd. Under ThreadSanitizer a handler on a thread asleep
  // in a futex, or on main inside read(), held the signal for as long as the
  // server was idle. Threads named after the program may also be OpenBLAS's,
  // which start before main and keep their mask: not checked.
  {
    const auto masks = testing_util::ThreadSignalMasks(s.pid());
    ASSERT_TRUE(masks.count(s.pid()));
    EXPECT_TRUE(masks.at(s.pid()).second) << "the main thread takes SIGTERM or SIGINT through a handler";
    const std::string program = masks.at(s.pid()).first;
    int named = 0;
    for (const auto& [tid, m] : masks) {
      if (m.first == program) continue;
      ++named;
      EXPECT_TRUE(m.second) << "thread " << tid << " (" << m.first << ") takes SIGTERM or SIGINT";
    }
    EXPECT_GE(named, 4) << "gRPC's threads carry their own names";
    // For the threads that exist before main, a handler passes the signal on:
    // none takes its default, terminating action.
    EXPECT_TRUE(testing_util::CatchesStopSignals(s.pid()));
  }
  // An in-flight stream keeps the server draining for the grace period.
  SamplingParams p = Greedy(16000);
  p.ignore_eos = true;
  auto stub = v1::Inference::NewStub(s.channel());
  grpc::ClientContext sctx;
  auto reader = stub->GenerateStream(&sctx, Request("long", p));
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  s.Signal(SIGTERM);
  bool not_serving = false;
  for (const auto until = std::chrono::steady_clock::now() + Scaled(seconds(1));
       !not_serving && std::chrono::steady_clock::now() < until;) {
    not_serving = check() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
    if (!not_serving) std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(not_serving);
  EXPECT_EQ(check("skillpack.v1.Inference"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(check("skillpack.v1.Admin"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  EXPECT_EQ(stub->Generate(&ctx, Request("late", Greedy(4)), &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  while (reader->Read(&m)) {
  }
  // The grace period (2 s) is far shorter than the generation: cancelled.
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.Stop(), 0);
}

// `skillpack client health` (the container image's HEALTHCHECK) follows the
// server's health: 0 only while SERVING, 1 for NOT_SERVING (draining, held
// open by a stream), NOT_FOUND and nobody listening.
TEST_F(ServerE2eTest, CliHealthCommand) {
  ServerProcess s;
  s.Start({"--model", Path("base"), "--packs", Path("packs-cli-health"), "--max-seq-len", "16384", "--grace-seconds",
           "120"},
          Path("server-cli-health.log"));
  CommandResult r = CliHealth(s.address());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "SERVING\n");
  r = CliHealth(s.address(), "skillpack.v1.Inference");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = CliHealth(s.address(), "skillpack.v1.NoSuchService");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("NOT_FOUND"), std::string::npos) << r.output;

  // A long stream keeps the server draining after SIGTERM (grace 120 s) until we cancel it.
  SamplingParams p = Greedy(16000);
  p.ignore_eos = true;
  auto stub = v1::Inference::NewStub(s.channel());
  grpc::ClientContext sctx;
  auto reader = stub->GenerateStream(&sctx, Request("long", p));
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  s.Signal(SIGTERM);
  auto health = grpc::health::v1::Health::NewStub(s.channel());
  bool not_serving = false;
  for (const auto until = std::chrono::steady_clock::now() + Scaled(seconds(5));
       !not_serving && std::chrono::steady_clock::now() < until;) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    not_serving =
        health->Check(&ctx, req, &resp).ok() && resp.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
    if (!not_serving) std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(not_serving);
  r = CliHealth(s.address());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("NOT_SERVING"), std::string::npos) << r.output;
  sctx.TryCancel();
  while (reader->Read(&m)) {
  }
  reader->Finish();
  const std::string address = s.address();
  EXPECT_EQ(s.Stop(), 0);
  r = CliHealth(address);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("UNAVAILABLE"), std::string::npos) << r.output;
}

// The real server's /metrics after a request: our series are there, and
// Prometheus' own promtool accepts the page.
TEST_F(ServerE2eTest, MetricsEndpoint) {
  ServerProcess s;
  // A long KV slot: the deadline requests below must still be generating when
  // their deadline passes, and the model's own context would end them sooner.
  s.Start({"--model", Path("base"), "--packs", Path("packs-metrics"), "--metrics-port", "0", "--admin-token-file",
           Path("token"), "--max-seq-len", "16384"},
          Path("server-metrics.log"));
  ASSERT_GT(s.metrics_port(), 0);
  auto stub = v1::Inference::NewStub(s.channel());
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  ASSERT_TRUE(stub->Generate(&ctx, Request("metrics", Greedy(8)), &resp).ok());
  const std::string text = FetchMetrics(s.metrics_port());
  for (const char* name :
       {"skillpack_requests_total{method=\"Generate\",code=\"OK\"} 1", "skillpack_generated_tokens_total",
        "skillpack_time_to_first_token_seconds_bucket", "skillpack_request_duration_seconds_count",
        "skillpack_pack_cache_budget_bytes{tier=\"host\"}", "skillpack_requests_running",
        "skillpack_pack_requests_total{pack=\"none\"} 1"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;
  }
  if (std::system("command -v promtool > /dev/null 2>&1") == 0) {
    const std::string page = Path("metrics.txt");
    const size_t body = text.find("\r\n\r\n");
    ASSERT_NE(body, std::string::npos);
    ASSERT_TRUE(WriteFileAtomically(page, text.substr(body + 4)).ok());
    EXPECT_EQ(std::system(("promtool check metrics < " + page).c_str()), 0) << text;
  } else {
    ADD_FAILURE() << "promtool not installed (scripts/install-deps.sh installs prometheus)";
  }
  // Requests that run past their deadline are counted as DEADLINE_EXCEEDED,
  // never as CANCELLED (the client's cancellation arrives a little before the
  // server's copy of the deadline passes).
  // 16000 tokens: on an idle machine this test model decodes 1000 in under the
  // 150 ms deadline (a clean-clone CI run saw such a request finish OK).
  SamplingParams slow = Greedy(16000);
  slow.ignore_eos = true;
  for (int i = 0; i < 8; ++i) {
    grpc::ClientContext late;
    late.set_deadline(std::chrono::system_clock::now() + milliseconds(150 + 20 * i));
    EXPECT_EQ(stub->Generate(&late, Request("slow " + std::to_string(i), slow), &resp).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    grpc::ClientContext late_stream;
    late_stream.set_deadline(std::chrono::system_clock::now() + milliseconds(150 + 20 * i));
    auto reader = stub->GenerateStream(&late_stream, Request("slow stream " + std::to_string(i), slow));
    v1::GenerateStreamResponse chunk;
    while (reader->Read(&chunk)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  ASSERT_TRUE(WaitForLoad(s.channel(), 0, 5000));
  const std::string after = FetchMetrics(s.metrics_port());
  // (A request whose deadline passes before it reaches the handler is never
  // counted, so the counts may be below 8 on a loaded machine; none may be
  // CANCELLED.)
  for (const char* line : {"skillpack_requests_total{method=\"Generate\",code=\"DEADLINE_EXCEEDED\"} ",
                           "skillpack_requests_total{method=\"GenerateStream\",code=\"DEADLINE_EXCEEDED\"} "}) {
    EXPECT_NE(after.find(line), std::string::npos) << line << "\n" << after;
  }
  EXPECT_EQ(after.find("code=\"CANCELLED\""), std::string::npos) << after;
  EXPECT_EQ(s.Stop(), 0);
}

}  // namespace
}  // namespace skillpack
