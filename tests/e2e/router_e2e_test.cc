// End-to-end tests of routing in skillpack-server: a tiny base, two packs
// (arith, reverse), a router trained offline with `skillpack router train` on
// labelled prompt families (one per pack, plus general prompts labelled
// "none"), and the real server started with --router. AUTO requests must pick
// the family's pack and produce exactly what EXPLICIT with that pack produces;
// a general prompt must get no pack and equal the base.
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/model.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "pack/fingerprint.h"
#include "router/router.h"
#include "skillpack/v1/admin.grpc.pb.h"
#include "skillpack/v1/inference.grpc.pb.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

// Prompt families: one per pack, and general text (label "none").
std::string FamilyPrompt(const std::string& family, std::mt19937& rng) {
  auto num = [&](int hi) { return std::to_string(std::uniform_int_distribution<int>(0, hi)(rng)); };
  auto word = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
    return s;
  };
  if (family == "arith") return num(99) + "+" + num(99) + "=";
  if (family == "reverse") return "reverse: " + word(3 + static_cast<int>(rng() % 6));
  static const char* kGeneral[] = {"Tell me about the weather today.",  "What is the capital of France?",
                                   "Write a short poem about the sea.", "How do birds fly?",
                                   "Explain why the sky looks blue.",   "Give me a recipe for bread.",
                                   "Who wrote this old story?",         "Describe a quiet morning walk."};
  return std::string(kGeneral[rng() % 8]) + " " + word(2);
}

// Runs `cmd` and returns its stdout; fails the test on a non-zero exit.
std::string CommandOutput(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (f == nullptr) {
    ADD_FAILURE() << "popen " << cmd;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  const int rc = ::pclose(f);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

class RouterE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("skillpack-router-e2e-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_TRUE(InitTinyModel(TinyOptions(2, 64, 1, 4096), Path("base")).ok());
    fs::create_directories(Path("packs"));
    uint64_t seed = 2;
    for (const std::string pack : {"arith", "reverse"}) {
      MakeTinyPack(Path("base"), TinyOptions(2, 64, seed++, 4096), Path("tuned-" + pack), pack,
                   Path(pack + ".skillpack"));
      fs::copy_file(Path(pack + ".skillpack"), Path("packs/" + pack + ".skillpack"));
    }
    // Labelled prompts, trained into a router with the CLI.
    std::mt19937 rng(7);
    std::string jsonl;
    for (const char* family : {"arith", "reverse"}) {
      for (int i = 0; i < 60; ++i) {
        jsonl += "{\"prompt\": " + JsonString(FamilyPrompt(family, rng)) + ", \"label\": \"" + family + "\"}\n";
      }
    }
    for (int i = 0; i < 80; ++i) {
      jsonl += "{\"prompt\": " + JsonString(FamilyPrompt("general", rng)) + ", \"label\": \"none\"}\n";
    }
    ASSERT_TRUE(WriteFileAtomically(Path("labelled.jsonl"), jsonl).ok());
    train_output_ = new std::string(CommandOutput(
        kCliBin + " router train --model " + Path("base") + " --data " + Path("labelled.jsonl") + " -o " +
        Path("router.safetensors") + " --layer 1 --width 64 --epochs 150 --seed 3 --holdout 0.25 --threads 1"));
    ASSERT_TRUE(WriteFileAtomically(Path("token"), std::string(kToken) + "\n").ok());
    server_ = new ServerProcess();
    server_->Start({"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token"), "--router",
                    Path("router.safetensors"), "--metrics-port", "0", "--max-running", "4", "--max-seq-len", "512"},
                   Path("server.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_, ec);
    delete dir_;
    delete train_output_;
  }
  static std::string Path(const std::string& name) { return JoinPath(*dir_, name); }

  static v1::GenerateResponse MustGenerate(const v1::GenerateRequest& req) {
    return skillpack::MustGenerate(server_->channel(), req);
  }
  static grpc::Status RouteCall(const v1::RouteRequest& req, v1::RouteResponse* resp) {
    auto stub = v1::Inference::NewStub(server_->channel());
    grpc::ClientContext ctx;
    return stub->Route(&ctx, req, resp);
  }
  static grpc::Status SetRouter(const std::string& bytes, v1::SetRouterResponse* resp, bool clear = false) {
    auto stub = v1::Admin::NewStub(server_->channel());
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::SetRouterRequest req;
    req.set_router(bytes);
    req.set_clear(clear);
    return stub->SetRouter(&ctx, req, resp);
  }
  static v1::GetRouterResponse GetRouter() {
    auto stub = v1::Admin::NewStub(server_->channel());
    grpc::ClientContext ctx;
    AddToken(&ctx, kToken);
    v1::GetRouterResponse resp;
    EXPECT_TRUE(stub->GetRouter(&ctx, v1::GetRouterRequest(), &resp).ok());
    return resp;
  }
  // Test prompts of a family, drawn apart from the training set's.
  static std::vector<std::string> Prompts(const std::string& family, int n) {
    std::mt19937 rng(1000 + static_cast<unsigned>(family.size()));
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(FamilyPrompt(family, rng));
    return out;
  }
  static SamplingParams Params() {
    SamplingParams p = Greedy(24);
    p.ignore_eos = true;
    return p;
  }
  static v1::GenerateRequest Explicit(const std::string& prompt,
                                      const std::vector<std::pair<std::string, float>>& packs) {
    v1::GenerateRequest r = Request(prompt, Params());
    r.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
    for (const auto& [name, w] : packs) {
      auto* sel = r.mutable_skills()->add_packs();
      sel->set_name(name);
      sel->set_weight(w);
    }
    return r;
  }

  static std::string* dir_;
  static std::string* train_output_;
  static ServerProcess* server_;
};
std::string* RouterE2eTest::dir_ = nullptr;
std::string* RouterE2eTest::train_output_ = nullptr;
ServerProcess* RouterE2eTest::server_ = nullptr;

TEST_F(RouterE2eTest, TrainCliPrintsHeldOutAccuracyAndConfusionTable) {
  const std::string& out = *train_output_;
  EXPECT_NE(out.find("labels: none, arith, reverse"), std::string::npos) << out;
  const size_t at = out.find("held-out accuracy ");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_GE(std::stod(out.substr(at + std::string("held-out accuracy ").size())), 0.9) << out;
  EXPECT_NE(out.find("(rows: true label, columns: predicted)"), std::string::npos) << out;
  auto r = Router::Load(Path("router.safetensors"));
  ASSERT_TRUE(r.ok()) << r.status();
  auto base = LoadModel(Path("base"), at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok());
  EXPECT_EQ((*r)->config().base_fingerprint, *BaseFingerprint(*(*base)->weights));
}

TEST_F(RouterE2eTest, AutoPicksTheFamilysPackAndEqualsExplicit) {
  for (const std::string family : {"arith", "reverse"}) {
    for (const std::string& prompt : Prompts(family, 3)) {
      v1::GenerateRequest autoreq = Request(prompt, Params());
      autoreq.mutable_skills()->set_mode(v1::Skills::AUTO);
      autoreq.mutable_skills()->set_return_scores(true);
      v1::GenerateResponse got = MustGenerate(autoreq);
      ASSERT_EQ(got.packs_size(), 1) << prompt;
      EXPECT_EQ(got.packs(0).name(), family) << prompt;
      EXPECT_EQ(got.packs(0).weight(), 1.0f);
      ASSERT_EQ(got.route_scores_size(), 3) << prompt;
      EXPECT_EQ(got.route_scores(0).label(), family);
      EXPECT_GT(got.timings().route_seconds(), 0);
      v1::GenerateResponse want = MustGenerate(Explicit(prompt, {{family, 1.0f}}));
      EXPECT_EQ(Ids(got.token_ids()), Ids(want.token_ids())) << prompt;
      EXPECT_EQ(got.text(), want.text()) << prompt;
      EXPECT_EQ(want.route_scores_size(), 0);  // explicit packs bypass the router
      EXPECT_EQ(want.timings().route_seconds(), 0);
      // Without the flag: same output, no scores.
      autoreq.mutable_skills()->set_return_scores(false);
      v1::GenerateResponse quiet = MustGenerate(autoreq);
      EXPECT_EQ(Ids(quiet.token_ids()), Ids(want.token_ids()));
      EXPECT_EQ(quiet.route_scores_size(), 0);
    }
  }
  // The packs really change the output: arith differs from the base.
  const std::string prompt = Prompts("arith", 1)[0];
  v1::GenerateRequest none = Request(prompt, Params());
  none.mutable_skills()->set_mode(v1::Skills::NONE);
  EXPECT_NE(Ids(MustGenerate(none).token_ids()), Ids(MustGenerate(Request(prompt, Params())).token_ids()));

  // A stream's last message carries the packs and scores too.
  v1::GenerateRequest sreq = Request(prompt, Params());
  sreq.mutable_skills()->set_return_scores(true);
  auto stub = v1::Inference::NewStub(server_->channel());
  grpc::ClientContext ctx;
  auto reader = stub->GenerateStream(&ctx, sreq);
  v1::GenerateStreamResponse m, last;
  while (reader->Read(&m)) last = m;
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(last.packs_size(), 1);
  EXPECT_EQ(last.packs(0).name(), "arith");
  EXPECT_EQ(last.route_scores_size(), 3);
}

// Handler threads route concurrently (on the shared base weights) while the
// engine decodes: every request still gets its own family's pack and output.
TEST_F(RouterE2eTest, ConcurrentAutoRequestsRouteIndependently) {
  std::vector<std::pair<std::string, std::string>> cases;  // prompt, expected pack ("" = none)
  for (const std::string family : {"arith", "reverse", "general"}) {
    for (const std::string& prompt : Prompts(family, 3)) cases.emplace_back(prompt, family == "general" ? "" : family);
  }
  std::vector<v1::GenerateResponse> got(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = MustGenerate(Request(cases[i].first, Params())); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [prompt, pack] = cases[i];
    v1::GenerateRequest want_req = Request(prompt, Params());
    if (pack.empty()) {
      want_req.mutable_skills()->set_mode(v1::Skills::NONE);
      EXPECT_EQ(got[i].packs_size(), 0) << prompt;
    } else {
      want_req = Explicit(prompt, {{pack, 1.0f}});
      ASSERT_EQ(got[i].packs_size(), 1) << prompt;
      EXPECT_EQ(got[i].packs(0).name(), pack) << prompt;
    }
    EXPECT_EQ(Ids(got[i].token_ids()), Ids(MustGenerate(want_req).token_ids())) << prompt;
  }
}

TEST_F(RouterE2eTest, GeneralPromptGetsNoPackAndEqualsTheBase) {
  Offline base = Offline::Load(Path("base"));
  for (const std::string& prompt : Prompts("general", 3)) {
    v1::GenerateRequest req = Request(prompt, Params());
    req.mutable_skills()->set_return_scores(true);
    v1::GenerateResponse got = MustGenerate(req);
    EXPECT_EQ(got.packs_size(), 0) << prompt;
    ASSERT_GT(got.route_scores_size(), 0);
    EXPECT_EQ(got.route_scores(0).label(), "none") << prompt;
    EXPECT_EQ(Ids(got.token_ids()), base.Generate(prompt, Params()).tokens) << prompt;
  }
}

TEST_F(RouterE2eTest, RouteReturnsTheDecisionWithoutGenerating) {
  const std::string prompt = Prompts("reverse", 1)[0];
  v1::RouteRequest req;
  req.set_prompt(prompt);
  req.set_request_id("route-1");
  v1::RouteResponse resp;
  grpc::Status s = RouteCall(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.packs_size(), 1);
  EXPECT_EQ(resp.packs(0).name(), "reverse");
  EXPECT_EQ(resp.packs(0).weight(), 1.0f);
  ASSERT_EQ(resp.scores_size(), 3);
  float total = 0;
  for (int i = 0; i < resp.scores_size(); ++i) {
    total += resp.scores(i).score();
    if (i > 0) {
      EXPECT_GE(resp.scores(i - 1).score(), resp.scores(i).score());
    }
  }
  EXPECT_NEAR(total, 1.0f, 1e-4);
  EXPECT_GT(resp.route_seconds(), 0);
  EXPECT_GT(resp.routed_tokens(), 0);
  EXPECT_EQ(resp.request_id(), "route-1");

  // Per-request policy: top-k with no threshold mixes both packs; the AUTO
  // generation with that policy equals EXPLICIT with the same weights.
  req.mutable_skills()->set_routing_mode(v1::Skills::TOPK);
  req.mutable_skills()->set_routing_k(2);
  req.mutable_skills()->set_routing_threshold(0);
  ASSERT_TRUE(RouteCall(req, &resp).ok());
  ASSERT_EQ(resp.packs_size(), 2);
  EXPECT_EQ(resp.packs(0).name(), "reverse");
  EXPECT_NEAR(resp.packs(0).weight() + resp.packs(1).weight(), 1.0f, 1e-5);
  v1::GenerateRequest mixed = Request(prompt, Params());
  *mixed.mutable_skills() = req.skills();
  v1::GenerateResponse got = MustGenerate(mixed);
  ASSERT_EQ(got.packs_size(), 2);
  v1::GenerateResponse want = MustGenerate(Explicit(
      prompt, {{resp.packs(0).name(), resp.packs(0).weight()}, {resp.packs(1).name(), resp.packs(1).weight()}}));
  EXPECT_EQ(Ids(got.token_ids()), Ids(want.token_ids()));
  // A threshold of 1 leaves no pack.
  req.mutable_skills()->set_routing_threshold(1);
  ASSERT_TRUE(RouteCall(req, &resp).ok());
  EXPECT_EQ(resp.packs_size(), 0);

  // Bad requests name the field.
  v1::RouteRequest bad;
  bad.set_prompt(prompt);
  bad.mutable_skills()->set_routing_k(17);
  s = RouteCall(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("skills.routing_k"), std::string::npos) << s.error_message();
  bad.Clear();
  bad.mutable_tokens()->add_ids(1 << 20);
  s = RouteCall(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("tokens.ids[0]"), std::string::npos) << s.error_message();
  bad.Clear();
  s = RouteCall(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("input"), std::string::npos) << s.error_message();
  bad.set_prompt(prompt);
  bad.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
  s = RouteCall(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("skills.mode"), std::string::npos) << s.error_message();
}

TEST_F(RouterE2eTest, SetRouterRefusesRoutersThatDoNotFit) {
  auto base = LoadModel(Path("base"), at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok());
  const std::string fp = *BaseFingerprint(*(*base)->weights);
  auto make = [](std::vector<std::string> labels, int64_t hidden, const std::string& fingerprint) {
    const int64_t w = 8, n = static_cast<int64_t>(labels.size());
    RouterConfig c{std::move(labels), 1, hidden, w, fingerprint, {}, {}, {}, ""};
    auto r = Router::Create(c, at::zeros({hidden}), at::ones({hidden}), at::zeros({w, hidden}), at::zeros({w}),
                            at::zeros({n, w}), at::zeros({n}));
    EXPECT_TRUE(r.ok()) << r.status();
    return *(*r)->Serialize();
  };
  v1::SetRouterResponse resp;
  grpc::Status s = SetRouter(make({"none", "arith", "ghost"}, 64, fp), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("router label 'ghost' names a pack that is not in the store"), std::string::npos)
      << s.error_message();
  s = SetRouter(make({"none", "arith"}, 32, ""), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("hidden size 32"), std::string::npos) << s.error_message();
  s = SetRouter(make({"none", "arith"}, 64, "sha256:" + std::string(64, '0')), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("built for base"), std::string::npos) << s.error_message();
  s = SetRouter("not a router", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("router"), std::string::npos) << s.error_message();
  s = SetRouter("", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The loaded router is unchanged.
  v1::GetRouterResponse got = GetRouter();
  ASSERT_TRUE(got.loaded());
  EXPECT_EQ(std::vector<std::string>(got.router().labels().begin(), got.router().labels().end()),
            (std::vector<std::string>{"none", "arith", "reverse"}));
  EXPECT_EQ(got.router().source(), Path("router.safetensors"));
  EXPECT_EQ(got.router().layer(), 1);
  EXPECT_EQ(got.policy().mode(), "top1");
  // A router that fits is taken (here: one naming only arith, for this base).
  s = SetRouter(make({"none", "arith"}, 64, fp), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.router().source(), "admin");
  EXPECT_EQ(resp.router().labels_size(), 2);
  // Restore the trained one.
  ASSERT_TRUE(SetRouter(*ReadFileToString(Path("router.safetensors")), &resp).ok());
  EXPECT_EQ(resp.router().labels_size(), 3);
}

// Routers with the surprisal pooling (format version 4), with the surprisal
// profile too (version 5) and with lexicon features (version 6: the server
// decodes the routed tokens for the text; version 7 with their maximum over
// the words too), trained with the CLI, taken by
// SetRouter: the server's scores for token inputs equal the offline router's
// on the same base and tokens (and text).
TEST_F(RouterE2eTest, SurprisalRouterFromTheCliScoresAsOffline) {
  struct Case {
    std::string pooling_flag;
    std::vector<Pooling> pooling;
    std::string version;
  };
  const Case cases[] = {
      {"mean,surprisal", {Pooling::kMean, Pooling::kSurprisal}, "4"},
      {"mean,surprisal,surprisal_profile", {Pooling::kMean, Pooling::kSurprisal, Pooling::kSurprisalProfile}, "5"},
      {"mean,lexicon", {Pooling::kMean, Pooling::kLexicon}, "6"},
      {"mean,lexicon,lexicon_max", {Pooling::kMean, Pooling::kLexicon, Pooling::kLexiconMax}, "7"}};
  auto base = LoadModel(Path("base"), at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok());
  auto tok = Tokenizer::FromModelDir(Path("base"));
  ASSERT_TRUE(tok.ok());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pooling_flag);
    const std::string file = Path("router-surprisal-v" + c.version + ".safetensors");
    const std::string out = CommandOutput(kCliBin + " router train --model " + Path("base") + " --data " +
                                          Path("labelled.jsonl") + " -o " + file + " --layers 0,1 --pooling " +
                                          c.pooling_flag + " --width 32 --epochs 60 --seed 4 --threads 1");
    auto offline = Router::Load(file);
    ASSERT_TRUE(offline.ok()) << offline.status() << out;
    EXPECT_EQ((*offline)->config().pooling, c.pooling);
    const std::string shown = CommandOutput(kCliBin + " router inspect " + file);
    EXPECT_NE(shown.find("pooling " + c.pooling_flag), std::string::npos) << shown;
    EXPECT_EQ(shown.find("lexicon " + (*offline)->config().lexicon) != std::string::npos, (*offline)->NeedsText())
        << shown;
    const std::string bytes = *ReadFileToString(file);
    EXPECT_NE(bytes.find("\"format_version\":\"" + c.version + "\""), std::string::npos);
    v1::SetRouterResponse set;
    grpc::Status s = SetRouter(bytes, &set);
    ASSERT_TRUE(s.ok()) << s.error_message();
    for (const std::string family : {"arith", "reverse", "general"}) {
      for (const std::string& prompt : Prompts(family, 2)) {
        const std::vector<int32_t> ids = (*tok)->Encode(prompt, false, true);
        v1::RouteRequest req;
        for (int32_t id : ids) req.mutable_tokens()->add_ids(id);
        v1::RouteResponse resp;
        s = RouteCall(req, &resp);
        ASSERT_TRUE(s.ok()) << s.error_message();
        EXPECT_EQ(resp.routed_tokens(), static_cast<int32_t>(ids.size()));
        const std::string text = (*tok)->Decode(ids, true);
        EXPECT_EQ(text, prompt);
        auto want = (*offline)->Route(*(*base)->transformer, *(*base)->weights, ids, RoutingPolicy(),
                                      (*offline)->NeedsText() ? &text : nullptr);
        ASSERT_TRUE(want.ok()) << want.status();
        ASSERT_EQ(resp.scores_size(), static_cast<int>(want->scores.size())) << prompt;
        for (int i = 0; i < resp.scores_size(); ++i) {
          EXPECT_EQ(resp.scores(i).label(), want->scores[i].first) << prompt;
          EXPECT_NEAR(resp.scores(i).score(), want->scores[i].second, 1e-4) << prompt;
        }
      }
    }
  }
  // A lexicon router trained with other WordNet files (its recorded
  // fingerprint changed in place): refused, naming the lexicon.
  std::string foreign = *ReadFileToString(Path("router-surprisal-v6.safetensors"));
  const size_t at = foreign.find("lexicon\\\":\\\"");
  ASSERT_NE(at, std::string::npos);
  const size_t hex = at + std::string("lexicon\\\":\\\"").size();
  foreign.replace(hex, 64, std::string(64, '0'));
  v1::SetRouterResponse refused;
  grpc::Status s = SetRouter(foreign, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("lexicon"), std::string::npos) << s.error_message();
  // Restore the trained one.
  v1::SetRouterResponse set;
  ASSERT_TRUE(SetRouter(*ReadFileToString(Path("router.safetensors")), &set).ok());
}

TEST_F(RouterE2eTest, DeletingAPackTheRouterNamesIsRefused) {
  auto del = [&](const std::string& name) { return DeletePack(server_->channel(), name); };
  grpc::Status s = del("arith");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("router"), std::string::npos) << s.error_message();
  EXPECT_TRUE(fs::exists(Path("packs/arith.skillpack")));
  // With the router cleared, AUTO means no pack (and the pack could go).
  v1::SetRouterResponse resp;
  ASSERT_TRUE(SetRouter("", &resp, /*clear=*/true).ok());
  EXPECT_FALSE(GetRouter().loaded());
  const std::string prompt = Prompts("arith", 1)[0];
  EXPECT_EQ(MustGenerate(Request(prompt, Params())).packs_size(), 0);
  v1::RouteRequest rreq;
  rreq.set_prompt(prompt);
  v1::RouteResponse rresp;
  EXPECT_EQ(RouteCall(rreq, &rresp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(SetRouter(*ReadFileToString(Path("router.safetensors")), &resp).ok());
  EXPECT_EQ(MustGenerate(Request(prompt, Params())).packs_size(), 1);
}

TEST_F(RouterE2eTest, MetricsShowRouterDecisions) {
  MustGenerate(Request(Prompts("arith", 1)[0], Params()));
  MustGenerate(Request(Prompts("general", 1)[0], Params()));
  v1::RouteRequest req;
  req.set_prompt(Prompts("reverse", 1)[0]);
  v1::RouteResponse resp;
  ASSERT_TRUE(RouteCall(req, &resp).ok());
  const std::string text = FetchMetrics(server_->metrics_port());
  for (const char* series :
       {"skillpack_router_decisions_total{pack=\"arith\"}", "skillpack_router_decisions_total{pack=\"none\"}",
        "skillpack_router_decisions_total{pack=\"reverse\"}", "skillpack_router_seconds_count",
        "skillpack_router_seconds_bucket", "skillpack_router_labels 3",
        "skillpack_requests_total{method=\"Route\",code=\"OK\"}"}) {
    EXPECT_NE(text.find(series), std::string::npos) << series << "\n" << text;
  }
  if (std::system("command -v promtool > /dev/null 2>&1") == 0) {
    const size_t body = text.find("\r\n\r\n");
    ASSERT_NE(body, std::string::npos);
    ASSERT_TRUE(WriteFileAtomically(Path("metrics.txt"), text.substr(body + 4)).ok());
    EXPECT_EQ(std::system(("promtool check metrics < " + Path("metrics.txt")).c_str()), 0) << text;
  }
}

TEST_F(RouterE2eTest, ClientCliRoutesAndShowsTheRouter) {
  const std::string client = kCliBin + " client ";
  const std::string out =
      CommandOutput(client + "route --server " + server_->address() + " --prompt '" + Prompts("arith", 1)[0] + "'");
  EXPECT_NE(out.find("packs: arith:1"), std::string::npos) << out;
  const std::string get =
      CommandOutput(client + "router get --server " + server_->address() + " --admin-token-file " + Path("token"));
  EXPECT_NE(get.find("labels: none, arith, reverse"), std::string::npos) << get;
  const std::string set = CommandOutput(client + "router set " + Path("router.safetensors") + " --server " +
                                        server_->address() + " --admin-token-file " + Path("token"));
  EXPECT_NE(set.find("router admin"), std::string::npos) << set;
}

TEST_F(RouterE2eTest, StartupRefusesARouterNamingAMissingPack) {
  fs::create_directories(Path("packs-empty"));
  const std::string cmd = kServerBin + " --model " + Path("base") + " --packs " + Path("packs-empty") + " --router " +
                          Path("router.safetensors") +
                          " --grpc-address 127.0.0.1 --grpc-port 0 --metrics-port -1 > /dev/null 2> " +
                          Path("startup.log");
  const int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  const std::string log = ReadFileToString(Path("startup.log")).value_or("");
  EXPECT_NE(log.find("names a pack that is not in the store"), std::string::npos) << log;
}

}  // namespace
}  // namespace skillpack
