#include "trainer/fidelity.h"

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/model.h"
#include "core/tiny_model.h"
#include "pack/fingerprint.h"
#include "router/router.h"
#include "trainer/lora_adapter.h"
#include "trainer/tasks/paraphrase.h"

namespace skillpack {
namespace {

// The small setting `make test` runs end to end (tiny random base, 2 tasks,
// few steps): the committed bench/fidelity/small.json.
std::string SmallSpecPath() { return std::string(SKILLPACK_SOURCE_DIR) + "/bench/fidelity/small.json"; }
Json SmallSpec() { return ReadJsonFile(SmallSpecPath()).value(); }

void ExpectInvalid(const Json& j, const std::string& field) {
  auto s = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_FALSE(s.ok()) << "accepted a spec with a bad " << field;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_NE(s.status().message().find(field), std::string::npos) << s.status();
}

// Runs bench/fidelity_bench on `spec` into `out`, its output in `log`;
// true when it exits 0.
bool RunFidelityBench(const std::string& spec, const std::string& out, const std::string& log) {
  const std::string cmd = std::string(SKILLPACK_BINARY_DIR) + "/bench/fidelity_bench --spec " + spec + " --out " + out +
                          " --no-progress > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

void ExpectUnit(const Json& v, const std::string& what) {
  ASSERT_TRUE(v.is_number()) << what << ": " << v.dump();
  EXPECT_GE(v.get<double>(), 0.0) << what;
  EXPECT_LE(v.get<double>(), 1.0) << what;
}

TEST(FidelitySpecTest, TheCommittedSpecsParse) {
  for (const char* name : {"small.json", "full.json"}) {
    auto s = LoadFidelitySpec(std::string(SKILLPACK_SOURCE_DIR) + "/bench/fidelity/" + name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.status();
    EXPECT_GE(s->tasks.size(), 2u);
  }
  auto s = ParseFidelitySpec(SmallSpec(), ::testing::TempDir());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->sft.has_value());
  EXPECT_EQ(s->sft->loop.steps, 12);
  EXPECT_TRUE(s->dpo.has_value());
  EXPECT_EQ(s->fusion->ratio, 0.25);
}

TEST(FidelitySpecTest, BadFieldsAreNamed) {
  Json j = SmallSpec();
  j["tasks"] = Json::array({"reverse", "nosuch"});
  ExpectInvalid(j, "spec.tasks[1]");
  j = SmallSpec();
  j["tasks"] = Json::array({"sort", "sort"});
  ExpectInvalid(j, "spec.tasks[1]");
  j = SmallSpec();
  j.erase("tasks");
  ExpectInvalid(j, "spec.tasks");
  j = SmallSpec();
  j["ratios"] = Json::array({0.25, 2.0});
  ExpectInvalid(j, "spec.ratios[1]");
  j = SmallSpec();
  j["sft"]["lr"] = -1;
  ExpectInvalid(j, "spec.sft.lr");
  j = SmallSpec();
  j["sft"]["lora"] = {{"rank", 4}};
  ExpectInvalid(j, "spec.sft.lora");
  j = SmallSpec();
  j["dpo"]["data"] = "pairs.jsonl";
  ExpectInvalid(j, "spec.dpo.data");
  j = SmallSpec();
  j["dpo_rounds"] = 0;
  ExpectInvalid(j, "spec.dpo_rounds");
  j = SmallSpec();
  j["base_model"]["tiny"]["hidden"] = 30;
  ExpectInvalid(j, "spec.base_model.tiny");
  j = SmallSpec();
  j["compress"]["config"] = {{"target_ratio", 0.1}};
  ExpectInvalid(j, "spec.compress.config");
  j = SmallSpec();
  j["compress"]["config"] = {{"beta", 7}};
  ExpectInvalid(j, "spec.compress.config");
  j = SmallSpec();
  j["compress"]["refit"]["data"] = "sft.jsonl";
  ExpectInvalid(j, "spec.compress.refit.data: not allowed");
  j = SmallSpec();
  j["compress"]["refit"]["lr"] = 7;
  ExpectInvalid(j, "spec.compress.refit.lr");
  j = SmallSpec();
  j["compress"]["served_factor_precisions"] = Json::array({"int8", "int4"});
  ExpectInvalid(j, "spec.compress.served_factor_precisions[1]: factor precision 'int4'");
  j = SmallSpec();
  j["compress"]["served_factor_precisions"] = Json::array({"int8", "int8"});
  ExpectInvalid(j, "spec.compress.served_factor_precisions[1]: 'int8' twice");
  j = SmallSpec();
  j["compress"]["served_factor_precisions"] = "int8";
  ExpectInvalid(j, "spec.compress.served_factor_precisions must be a list");
  j = SmallSpec();
  j["fusion"]["ratio"] = 0;
  ExpectInvalid(j, "spec.fusion.ratio");
  j = SmallSpec();
  j["continual"]["task_b"] = "add";
  ExpectInvalid(j, "spec.continual.task_b");
  j = SmallSpec();
  j.erase("router");
  ExpectInvalid(j, "spec.router");
  j = SmallSpec();
  j["router"]["bogus"] = 1;
  ExpectInvalid(j, "spec.router.bogus");
  // A router file: it must exist, and nothing about training goes with it.
  const std::string router_file = ::testing::TempDir() + "/fidelity_spec_router.safetensors";
  ASSERT_TRUE(WriteFileAtomically(router_file, "not read when parsing").ok());
  j = SmallSpec();
  j["router"] = {{"file", 3}};
  ExpectInvalid(j, "spec.router.file must be a non-empty path string");
  j["router"] = {{"file", ::testing::TempDir() + "/no_such_router.safetensors"}};
  ExpectInvalid(j, "spec.router.file: not found");
  j["router"] = {{"file", router_file}, {"width", 16}};
  ExpectInvalid(j, "spec.router.width: not used with spec.router.file");
  j["router"] = {{"file", router_file}, {"eval_per_task", 0}};
  ExpectInvalid(j, "spec.router.eval_per_task");
  j["router"] = {{"file", "fidelity_spec_router.safetensors"}, {"eval_per_task", 5}};  // against the spec's folder
  auto from_file = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->router->file, JoinPath(::testing::TempDir(), "fidelity_spec_router.safetensors"));
  EXPECT_EQ(from_file->router->eval_per_task, 5);
  j = SmallSpec();
  j["lora_lr_scale"] = 0;
  ExpectInvalid(j, "spec.lora_lr_scale");
  j = SmallSpec();
  j["lora_lr_scale"] = 900;  // 3e-3 x 900 > 1
  ExpectInvalid(j, "spec.lora_lr_scale");
  j = SmallSpec();
  j["lora_dpo_lr_scale"] = 0;
  ExpectInvalid(j, "spec.lora_dpo_lr_scale");
  j = SmallSpec();
  j["dpo"]["lr"] = 0.01;
  j["lora_dpo_lr_scale"] = 200;  // 0.01 x 200 > 1 (SFT's 3e-3 x lora_lr_scale 2 is fine)
  ExpectInvalid(j, "spec.lora_dpo_lr_scale (200) makes a LoRA DPO learning rate above 1");
  j = SmallSpec();
  j["dpo"]["lr"] = 0.01;
  j["sft"]["lr"] = 1e-3;
  j.erase("lora_dpo_lr_scale");
  j["lora_lr_scale"] = 200;  // without it, lora_lr_scale scales DPO too: 0.01 x 200 > 1 (SFT 0.2)
  ExpectInvalid(j, "spec.lora_lr_scale (200) makes a LoRA DPO learning rate above 1");
  j = SmallSpec();
  j["dpo_pairs"] = "best";
  ExpectInvalid(j, "spec.dpo_pairs");
  j = SmallSpec();
  j["dpo_prompts"] = 0;
  ExpectInvalid(j, "spec.dpo_prompts");
  j = SmallSpec();
  j["sft_wrong_share"] = 0.95;
  ExpectInvalid(j, "spec.sft_wrong_share must be in [0, 0.9]");
  j["sft_wrong_share"] = 0.4;
  ExpectInvalid(j, "spec.sft_wrong_share: Table 1 only");  // the small spec has fusion and continual
  j.erase("fusion");
  j.erase("continual");
  auto wrong = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(wrong->sft_wrong_share, 0.4);
  j = SmallSpec();
  j["extra"] = 1;
  ExpectInvalid(j, "spec.extra");
  j = SmallSpec();
  j["router"]["layers"] = Json::array({1, 0});
  ExpectInvalid(j, "spec.router.layers");
  j = SmallSpec();
  j["router"]["pooling"] = Json::array({"median"});
  ExpectInvalid(j, "spec.router.pooling");
  j = SmallSpec();
  j["router"]["augment"] = {{"copies", -1}};
  ExpectInvalid(j, "spec.router.augment.copies");
  j = SmallSpec();
  j["router"]["composed"] = {{"per_task", -1}};
  ExpectInvalid(j, "spec.router.composed.per_task");
  j["router"]["composed"] = {{"general", 5}, {"bogus", 1}};
  ExpectInvalid(j, "spec.router.composed.bogus");
  j["router"]["composed"] = {{"general", 5}};
  auto composed = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->router->composed_per_task, 0);
  EXPECT_EQ(composed->router->composed_general, 5);
  EXPECT_TRUE(composed->router->composed_topic_corpus.empty());
  j["router"]["composed"]["corpus_topics"] = {{"words", 10}};
  ExpectInvalid(j, "spec.router.composed.corpus_topics.paths");
  j["router"]["composed"]["corpus_topics"] = {{"paths", Json::array({"/etc/hostname"})}, {"words", 0}};
  ExpectInvalid(j, "spec.router.composed.corpus_topics.words");
  j["router"]["composed"]["corpus_topics"] = {{"paths", Json::array({"/etc/hostname"})}, {"prompts", 0}};
  ExpectInvalid(j, "spec.router.composed.corpus_topics.prompts");
  j["router"]["composed"]["corpus_topics"] = {{"paths", Json::array({"/etc/hostname"})}};
  composed = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->router->composed_topic_corpus, std::vector<std::string>{"/etc/hostname"});
  EXPECT_EQ(composed->router->composed_topic_words, 2000);
  EXPECT_EQ(composed->router->composed_corpus_general, 800);
  EXPECT_EQ(composed->router->context_per_task, 0);
  EXPECT_EQ(composed->router->context_general, 0);
  j["router"]["composed"]["contexts"] = {{"per_task", -1}};
  ExpectInvalid(j, "spec.router.composed.contexts.per_task");
  j["router"]["composed"]["contexts"] = {{"general", 3}, {"bogus", 1}};
  ExpectInvalid(j, "spec.router.composed.contexts.bogus");
  j["router"]["composed"]["contexts"] = 4;
  ExpectInvalid(j, "spec.router.composed.contexts");
  j["router"]["composed"]["contexts"] = {{"per_task", 7}, {"general", 3}};
  composed = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->router->context_per_task, 7);
  EXPECT_EQ(composed->router->context_general, 3);
  EXPECT_EQ(composed->router->made_up_general, 0);
  j["router"]["composed"]["made_up_topics"] = {{"words", 0}};
  ExpectInvalid(j, "spec.router.composed.made_up_topics.words");
  j["router"]["composed"]["made_up_topics"] = {{"prompts", 5}, {"bogus", 1}};
  ExpectInvalid(j, "spec.router.composed.made_up_topics.bogus");
  j["router"]["composed"]["made_up_topics"] = Json::array();
  ExpectInvalid(j, "spec.router.composed.made_up_topics");
  j["router"]["composed"]["made_up_topics"] = Json::object();
  composed = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->router->made_up_topic_words, 1000);
  EXPECT_EQ(composed->router->made_up_general, 400);
  j = SmallSpec();
  j["router"]["ensemble"] = 0;
  ExpectInvalid(j, "spec.router.ensemble");
  j["router"]["ensemble"] = 5;
  auto ensemble = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(ensemble.ok()) << ensemble.status();
  EXPECT_EQ(ensemble->router->ensemble, 5);
  EXPECT_EQ(ensemble->router->train.ensemble, 1) << "the final router's, not the candidates'";
  EXPECT_EQ(ensemble->router->candidates[0].options.ensemble, 1);
  j["router"]["select"]["candidates"][0]["ensemble"] = 2;
  ExpectInvalid(j, "spec.router.select.candidates[0].ensemble: set it on spec.router");
  j = SmallSpec();
  j["router"]["select"]["candidates"][1]["name"] = "mean0";
  ExpectInvalid(j, "spec.router.select.candidates[1].name");
  j = SmallSpec();
  j["router"]["select"]["candidates"][0]["bogus"] = 1;
  ExpectInvalid(j, "spec.router.select.candidates[0].bogus");
  j = SmallSpec();
  j["router"]["select"]["epochs"] = Json::array({20, 10});
  ExpectInvalid(j, "spec.router.select.epochs");
  j = SmallSpec();
  j["router"]["select"]["candidates"] = Json::array();
  ExpectInvalid(j, "spec.router.select.candidates");
  j = SmallSpec();
  j["router"]["select"]["general_groups"] = "topic";
  ExpectInvalid(j, "spec.router.select.general_groups must be \"opener_topic\" or \"opener\", got 'topic'");
  j = SmallSpec();
  auto by_topic = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(by_topic.ok()) << by_topic.status();
  EXPECT_TRUE(by_topic->router->general_groups_by_topic) << "the default holds out topics too";
  j["router"]["select"]["general_groups"] = "opener";
  auto by_opener = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(by_opener.ok()) << by_opener.status();
  EXPECT_FALSE(by_opener->router->general_groups_by_topic);
  EXPECT_FALSE(by_opener->router->raw_prompts_validated) << "raw prompts are training-only by default";
  j["router"]["select"]["raw_prompts"] = "validated";
  auto raw_validated = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(raw_validated.ok()) << raw_validated.status();
  EXPECT_TRUE(raw_validated->router->raw_prompts_validated);
  j["router"]["select"]["raw_prompts"] = "sometimes";
  ExpectInvalid(j, "spec.router.select.raw_prompts must be \"training_only\" or \"validated\", got 'sometimes'");
  j = SmallSpec();
  j["router"]["general_corpus"] = {{"sentences", 10}};
  ExpectInvalid(j, "spec.router.general_corpus.paths");
  j = SmallSpec();
  j["router"]["general_corpus"] = {{"paths", Json::array({"/no/such/corpus"})}};
  ExpectInvalid(j, "spec.router.general_corpus.paths[0]: not found: /no/such/corpus");
  j = SmallSpec();
  j["router"]["general_corpus"] = {{"paths", Json::array({SmallSpecPath()})}, {"sentences", 0}};
  ExpectInvalid(j, "spec.router.general_corpus.sentences");
  j["router"]["general_corpus"]["sentences"] = Json::array({0, 50, 50});
  ExpectInvalid(j, "spec.router.general_corpus.sentences must be strictly ascending");
  j["router"]["general_corpus"]["sentences"] = Json::array({-1, 50});
  ExpectInvalid(j, "spec.router.general_corpus.sentences");
  j["router"]["general_corpus"]["sentences"] = Json::array({0, 50});
  auto amounts = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(amounts.ok()) << amounts.status();
  EXPECT_EQ(amounts->router->general_corpus_sentences, (std::vector<int64_t>{0, 50}));
  j["router"].erase("select");
  ExpectInvalid(j, "spec.router.general_corpus.sentences: several amounts need spec.router.select");
}

TEST(FidelitySpecTest, TablesSelectWhatRuns) {
  auto all = ParseFidelitySpec(SmallSpec(), ::testing::TempDir());
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->tables, (std::set<int>{1, 2, 3, 4}));
  EXPECT_EQ(all->router->candidates.size(), 2u);
  EXPECT_EQ(all->router->candidates[1].options.layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(all->router->candidates[1].options.width, 16) << "candidates start from the router's own options";
  Json j = SmallSpec();
  j["tables"] = Json::array({4});
  auto only4 = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(only4.ok()) << only4.status();
  EXPECT_EQ(only4->tables, (std::set<int>{4}));
  j["tables"] = Json::array({2, 4});
  ExpectInvalid(j, "spec.tables");  // table 2 needs table 1
  j["tables"] = Json::array({4, 4});
  ExpectInvalid(j, "spec.tables");
  j["tables"] = Json::array({5});
  ExpectInvalid(j, "spec.tables[0]");
  j = SmallSpec();
  j.erase("fusion");
  j.erase("continual");
  j.erase("router");
  j["tables"] = Json::array({1, 4});
  ExpectInvalid(j, "spec.tables");  // table 4 needs spec.router

  // Without an sft stage a spec runs Table 4 alone; the stages built on it go too.
  j = SmallSpec();
  j.erase("sft");
  ExpectInvalid(j, "spec.dpo: needs spec.sft");
  j.erase("dpo");
  ExpectInvalid(j, "spec.compress.refit: needs spec.sft");
  j.erase("compress");
  ExpectInvalid(j, "spec.sft: missing (the fine-tuning stage of Tables 1-3");  // tables 1-4 by default
  j["tables"] = Json::array({1, 4});
  ExpectInvalid(j, "spec.sft: missing");
  j["tables"] = Json::array({4});
  auto no_sft = ParseFidelitySpec(j, ::testing::TempDir());
  ASSERT_TRUE(no_sft.ok()) << no_sft.status();
  EXPECT_FALSE(no_sft->sft.has_value());
  EXPECT_TRUE(no_sft->tiny_base.has_value()) << "the base model is still read";
  j["base_model"] = ::testing::TempDir() + "/no_such_base";
  ExpectInvalid(j, "spec.base_model: not a folder");
}

// Table 4 alone: the router is selected, trained and measured without any
// fine-tuning run.
TEST(FidelityEndToEndTest, Table4AloneRunsNoFineTuning) {
  const std::string dir = ::testing::TempDir() + "/fidelity_table4";
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  Json j = SmallSpec();
  j["tables"] = Json::array({4});
  // General text as more none examples: two fortune-style entries, five usable
  // sentences (the attribution, the short one and the lower-case one are not).
  ASSERT_TRUE(WriteFileAtomically(dir + "/corpus.txt",
                                  "A clash of doctrine is not a disaster. It is an opportunity for\n"
                                  "  everyone involved!\n\t\t-- A. Writer\n%\nShort one. "
                                  "Never trust a computer you cannot lift. lower case words are not kept here. "
                                  "Where do the quiet rivers go at night? The moon rose over the old town.\n")
                  .ok());
  // Amounts: selection compares no corpus with all of it (5 usable; 50 and
  // 100 are both all of it, one setting).
  j["router"]["general_corpus"] = {{"paths", Json::array({dir + "/corpus.txt"})},
                                   {"sentences", Json::array({0, 50, 100})}};
  // Composed phrasings (phrasing_grammar.h) beside the templates, composed
  // general prompts over a corpus's topic words (two usable: each written in
  // lower case three times; "quiet" only once), and phrasings and general
  // prompts in context frames, and general prompts over made-up words.
  ASSERT_TRUE(
      WriteFileAtomically(dir + "/topics.txt", "teapots and teapots, teapots; a lantern, lantern, lantern. quiet\n")
          .ok());
  j["router"]["composed"] = {{"per_task", 10},
                             {"general", 8},
                             {"corpus_topics", {{"paths", Json::array({dir + "/topics.txt"})}, {"prompts", 6}}},
                             {"contexts", {{"per_task", 4}, {"general", 5}}},
                             {"made_up_topics", {{"words", 30}, {"prompts", 7}}}};
  // The final router an ensemble of three; member 0 scored beside it.
  j["router"]["ensemble"] = 3;
  ASSERT_TRUE(WriteFileAtomically(dir + "/spec.json", j.dump()).ok());
  const std::string out = dir + "/out";
  ASSERT_TRUE(RunFidelityBench(dir + "/spec.json", out, dir + "/log.txt"))
      << ReadFileToString(dir + "/log.txt").value_or("");
  auto res = ReadJsonFile(out + "/fidelity.json");
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_FALSE(res->contains("table1"));
  EXPECT_FALSE(res->contains("table2"));
  ASSERT_TRUE(res->contains("table4"));
  const Json& t4 = (*res)["table4"];
  EXPECT_EQ(t4["general_corpus"]["amounts"], Json::array({0, 5}));
  const Json& sel = t4["selection"];
  ASSERT_EQ(sel["scores"].size(), 2 * 2 * j["router"]["select"]["epochs"].size()) << "candidates x amounts x epochs";
  EXPECT_EQ(sel["general_groups"], "opener_topic");
  // Raw task prompts train every fold and are never validated: at most the
  // paraphrases and general prompts are (each once per candidate and epochs).
  EXPECT_EQ(sel["raw_prompts"], "training_only");
  const Json& rr = j["router"];
  const int64_t composed = static_cast<int64_t>(j["tasks"].size()) * (10 + 4) + 8 + 6 + 5 + 7;
  const int64_t validatable = static_cast<int64_t>(j["tasks"].size()) * rr["examples_per_task"].get<int64_t>() +
                              rr["general"].get<int64_t>() + composed;
  for (const Json& s : sel["scores"]) {
    EXPECT_GT(s["validated"].get<int64_t>(), 0) << s.dump();
    EXPECT_LE(s["validated"].get<int64_t>(), validatable) << s.dump();
  }
  std::set<std::string> names;
  for (const Json& s : sel["scores"]) names.insert(s["candidate"].get<std::string>());
  EXPECT_EQ(names.size(), 4u);
  EXPECT_TRUE(names.count("mean0+corpus0") && names.count("mean0+corpus5")) << sel["scores"].dump();
  const std::string chosen = sel["chosen"].get<std::string>();
  const int64_t used = t4["general_corpus"]["sentences"].get<int64_t>();
  EXPECT_EQ(chosen.substr(chosen.size() - 1), std::to_string(used)) << chosen;
  const Json& r = j["router"];
  EXPECT_EQ(t4["train_prompts"].get<int64_t>() - used,
            j["tasks"].size() * 2 * r["examples_per_task"].get<int64_t>() + r["general"].get<int64_t>() + composed)
      << "the chosen amount's sentences and the composed phrasings are trained on";
  EXPECT_EQ(t4["options"]["composed"]["per_task"], 10);
  EXPECT_EQ(t4["options"]["composed"]["general"], 8);
  const Json& ct = t4["options"]["composed"]["corpus_topics"];
  EXPECT_EQ(ct["words"], 2);
  EXPECT_EQ(ct["prompts"], 6);
  EXPECT_EQ(t4["options"]["composed"]["contexts"], (Json{{"per_task", 4}, {"general", 5}}));
  EXPECT_EQ(t4["options"]["composed"]["made_up_topics"], (Json{{"words", 30}, {"prompts", 7}}));
  EXPECT_EQ(std::set<std::string>(ct["first_words"].begin(), ct["first_words"].end()),
            (std::set<std::string>{"teapots", "lantern"}));
  EXPECT_TRUE(std::filesystem::is_empty(out + "/runs")) << "no fine-tuning run for Table 4 alone";
  // The ensemble: stored as one MLP of three members' width; member 0 alone
  // scored on every category's same prompts.
  EXPECT_EQ(t4["options"]["ensemble"], 3);
  auto router = Router::Load(out + "/router.safetensors");
  ASSERT_TRUE(router.ok()) << router.status();
  EXPECT_EQ((*router)->config().width, 3 * rr["width"].get<int64_t>());
  ASSERT_TRUE(t4.contains("first_member"));
  ASSERT_EQ(t4["first_member"]["categories"].size(), t4["categories"].size());
  for (const auto& [category, c] : t4["categories"].items()) {
    const Json& single = t4["first_member"]["categories"][category];
    EXPECT_EQ(single["n"], c["n"]) << category;
    ExpectUnit(single["accuracy"], category);
  }
  auto md = ReadFileToString(out + "/fidelity.md");
  ASSERT_TRUE(md.ok());
  EXPECT_NE(md->find("| accuracy (ensemble of 3) | member 0 alone |"), std::string::npos) << *md;
  EXPECT_EQ(md->find("## Table 1"), std::string::npos);
  EXPECT_NE(md->find("## Table 4"), std::string::npos);
  EXPECT_NE(md->find("Confusion, paraphrases_held_out_templates"), std::string::npos);

  // The same router read back from its file (spec.router.file) on the same
  // base and seed: nothing trained, every category scored as above.
  Json scored = j;
  scored["base_model"] = out + "/base";
  scored["router"] = {{"file", out + "/router.safetensors"}, {"eval_per_task", rr["eval_per_task"]}};
  for (const char* unused : {"sft", "dpo", "compress", "fusion", "continual"}) scored.erase(unused);  // Table 4 alone
  ASSERT_TRUE(WriteFileAtomically(dir + "/scored.json", scored.dump()).ok());
  const std::string out2 = dir + "/out_file";
  ASSERT_TRUE(RunFidelityBench(dir + "/scored.json", out2, dir + "/log2.txt"))
      << ReadFileToString(dir + "/log2.txt").value_or("");
  auto res2 = ReadJsonFile(out2 + "/fidelity.json");
  ASSERT_TRUE(res2.ok()) << res2.status();
  const Json& f4 = (*res2)["table4"];
  EXPECT_EQ(f4["router_file"], out + "/router.safetensors");
  EXPECT_EQ(f4["labels"], Json::array({"none", "reverse", "sort"}));
  EXPECT_FALSE(f4.contains("selection"));
  EXPECT_FALSE(f4.contains("train_prompts"));
  EXPECT_FALSE(PathExists(out2 + "/router.safetensors")) << "a router read from a file is not written again";
  EXPECT_EQ(f4["features"], t4["features"]);
  ASSERT_EQ(f4["categories"].size(), t4["categories"].size());
  for (const auto& [category, c] : t4["categories"].items()) {
    EXPECT_EQ(f4["categories"][category], c) << category;
  }
  auto md2 = ReadFileToString(out2 + "/fidelity.md");
  ASSERT_TRUE(md2.ok());
  EXPECT_NE(md2->find("Router read from `" + out + "/router.safetensors` (labels none, reverse, sort), not trained"),
            std::string::npos)
      << *md2;
  // A task the file's router has no label for: the run stops, naming it.
  scored["tasks"] = Json::array({"reverse", "sort", "kv"});
  ASSERT_TRUE(WriteFileAtomically(dir + "/scored_kv.json", scored.dump()).ok());
  EXPECT_FALSE(RunFidelityBench(dir + "/scored_kv.json", dir + "/out_kv", dir + "/log3.txt"));
  EXPECT_NE(
      ReadFileToString(dir + "/log3.txt").value_or("").find("spec.tasks: 'kv' is not a label of spec.router.file"),
      std::string::npos)
      << ReadFileToString(dir + "/log3.txt").value_or("");
}

TEST(FidelityLoraTest, BytesPerRankCountsTheSevenProjections) {
  const std::string dir = ::testing::TempDir() + "/fidelity_lora_model";
  TinyModelOptions o;
  o.layers = 2;
  o.hidden = 32;
  o.heads = 4;
  o.kv_heads = 2;
  ASSERT_TRUE(InitTinyModel(o, dir).ok());
  auto m = LoadModel(dir, at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = (*m)->config;
  const int64_t h = c.hidden_size, kv = c.num_key_value_heads * c.head_dim, in = c.intermediate_size;
  // q, o: h + h; k, v: h + kv; gate, up: h + I; down: I + h; fp16 = 2 bytes.
  const int64_t per_layer = 2 * (h + h) + 2 * (h + kv) + 3 * (h + in);
  EXPECT_EQ(LoraBytesPerRank(*(*m)->weights), 2 * c.num_hidden_layers * per_layer);
}

TEST(FidelityLoraTest, RankForBytesIsTheNearestAtLeastOne) {
  EXPECT_EQ(LoraRankForBytes(1000, 100), 10);
  EXPECT_EQ(LoraRankForBytes(1049, 100), 10);
  EXPECT_EQ(LoraRankForBytes(1050, 100), 11);
  EXPECT_EQ(LoraRankForBytes(10, 100), 1);  // never rank 0
  EXPECT_EQ(LoraRankForBytes(0, 100), 1);
  for (int64_t target : {3000, 4567, 99999}) {
    const int64_t r = LoraRankForBytes(target, 321);
    EXPECT_LE(std::llabs(r * 321 - target), 321 / 2 + 1) << target;
  }
}

// The real fidelity_bench binary on the small setting.
// Table 4's scoring on a hand-built case: 9 prompts in two categories.
TEST(FidelityRoutingTest, ConfusionCountsTrueAgainstRoutedPerCategory) {
  const std::vector<RoutingCase> cases = {
      {"held_out", "reverse", "r1"}, {"held_out", "reverse", "r2"}, {"held_out", "reverse", "r3"},
      {"held_out", "caesar", "c1"},  {"held_out", "caesar", "c2"},  {"held_out", "none", "g1"},
      {"raw", "reverse", "r4"},      {"raw", "caesar", "c3"},       {"raw", "caesar", "c4"},
      {"general", "none", "g2"},
  };
  const std::vector<std::string> routed = {"reverse", "none",    "caesar", "reverse", "reverse",
                                           "none",    "reverse", "caesar", "caesar",  "reverse"};
  auto s = ScoreRouting(cases, routed, /*max_examples=*/3);
  ASSERT_TRUE(s.ok()) << s.status();
  const Json& held = (*s)["categories"]["held_out"];
  EXPECT_EQ(held["n"].get<int64_t>(), 6);
  EXPECT_DOUBLE_EQ(held["accuracy"].get<double>(), 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(held["per_label"]["reverse"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(held["per_label"]["caesar"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(held["per_label"]["none"].get<double>(), 1.0);
  EXPECT_EQ(held["confusion"], Json::parse(R"({"reverse": {"reverse": 1, "none": 1, "caesar": 1},
                                               "caesar": {"reverse": 2}, "none": {"none": 1}})"));
  const Json& raw = (*s)["categories"]["raw"];
  EXPECT_EQ(raw["n"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(raw["accuracy"].get<double>(), 1.0);
  EXPECT_EQ(raw["confusion"], Json::parse(R"({"reverse": {"reverse": 1}, "caesar": {"caesar": 2}})"));
  // Each category's first 3 misroutes, in order: 3 of held_out's 4, general's one.
  const Json& ex = (*s)["misrouted_examples"];
  ASSERT_EQ(ex.size(), 4u);
  EXPECT_EQ(ex[0], Json::parse(R"({"category": "held_out", "prompt": "r2", "expected": "reverse", "routed": "none"})"));
  EXPECT_EQ(ex[1]["prompt"], "r3");
  EXPECT_EQ(ex[2]["prompt"], "c1");
  EXPECT_EQ(ex[3], Json::parse(R"({"category": "general", "prompt": "g2", "expected": "none", "routed": "reverse"})"));

  // The Markdown: a table per category, a column per label seen, the diagonal in bold.
  const std::string md = RoutingConfusionMarkdown((*s)["categories"]);
  EXPECT_NE(md.find("Confusion, held_out"), std::string::npos) << md;
  EXPECT_NE(md.find("| true \\ routed | caesar | none | reverse | n |"), std::string::npos) << md;
  EXPECT_NE(md.find("| caesar | **0** | 0 | 2 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| reverse | 1 | 1 | **1** | 3 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| none | 0 | **1** | 0 | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("Confusion, raw"), std::string::npos) << md;
  EXPECT_NE(md.find("| true \\ routed | caesar | reverse | n |"), std::string::npos) << md;
  EXPECT_NE(md.find("| caesar | **2** | 0 | 2 |"), std::string::npos) << md;

  // Bad input is named.
  auto short_routed = ScoreRouting(cases, {"reverse"}, 3);
  EXPECT_EQ(short_routed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_routed.status().message().find("10 cases but 1 routed"), std::string::npos) << short_routed.status();
  auto no_label = ScoreRouting({{"held_out", "", "x"}}, {"none"}, 3);
  EXPECT_EQ(no_label.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_label.status().message().find("empty label"), std::string::npos) << no_label.status();
}

TEST(FidelityEndToEndTest, SmallStudyWritesEveryTable) {
  const std::string dir = ::testing::TempDir() + "/fidelity_e2e";
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  const std::string out = dir + "/out";
  // One LoRA as if its SFT model had answered every on-policy prompt right
  // (the marker DPO pairs leave then): no DPO round from it.
  const std::string no_pairs = "sort-lora11-lrx2-sft";
  ASSERT_EQ(std::system(("mkdir -p '" + out + "/runs'").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomically(out + "/runs/" + no_pairs + "-onpolicy-no-pairs.json", "{}\n").ok());
  const auto t0 = std::chrono::steady_clock::now();
  const bool ran = RunFidelityBench(SmallSpecPath(), out, dir + "/log.txt");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ran) << ReadFileToString(dir + "/log.txt").value_or("");
  std::printf("small fidelity study: %.1f s\n", seconds);
  auto res = ReadJsonFile(out + "/fidelity.json");
  ASSERT_TRUE(res.ok()) << res.status();
  const Json& r = *res;
  ASSERT_TRUE(r["machine"].is_object());
  EXPECT_GT(r["cpu_seconds"].get<double>(), 0);

  // Table 1: every task x regime, one pack and one LoRA per ratio.
  const Json& t1 = r["table1"];
  const int64_t fp16 = t1["fp16_delta_bytes"].get<int64_t>(), per_rank = t1["lora_bytes_per_rank"].get<int64_t>();
  EXPECT_GT(fp16, 0);
  EXPECT_GT(per_rank, 0);
  EXPECT_EQ(t1["regimes"], Json::array({"sft", "sft_dpo"}));
  auto base = LoadModel(out + "/base", at::kFloat);
  ASSERT_TRUE(base.ok()) << base.status();
  const std::string base_fingerprint = *BaseFingerprint(*(*base)->weights);
  for (const char* task : {"reverse", "sort"}) {
    for (const char* regime : {"sft", "sft_dpo"}) {
      SCOPED_TRACE(std::string(task) + " " + regime);
      const Json& row = t1["tasks"][task][regime];
      ExpectUnit(row["base"], "base");
      ExpectUnit(row["full_ft"], "full_ft");
      if (std::string(regime) == "sft_dpo") {
        EXPECT_EQ(row["full_ft_dpo_rounds_trained"], 2);
      }
      ASSERT_EQ(row["packs"].size(), 2u);
      ASSERT_EQ(row["lora"].size(), 2u);
      for (size_t i = 0; i < 2; ++i) {
        const Json& p = row["packs"][i];
        const double ratio = t1["ratios"][i].get<double>();
        EXPECT_EQ(p["ratio"].get<double>(), ratio);
        ExpectUnit(p["accuracy"], "pack accuracy");
        // Budget mode never exceeds the target; it aims at [98%, 100%] of it,
        // or the largest file it finds under it: on this 32-wide model a 1/16
        // pack is ~4 KB, where one module's step is a few % of the file (the
        // measured worst here is 94%).
        const double target = ratio * static_cast<double>(fp16);
        EXPECT_LE(p["file_bytes"].get<double>(), target) << p.dump();
        EXPECT_GE(p["file_bytes"].get<double>(), target * 0.9) << p.dump();
        EXPECT_NEAR(p["file_ratio"].get<double>(), p["file_bytes"].get<double>() / fp16, 1e-9);
        EXPECT_TRUE(PathExists(p["path"].get<std::string>()));
        // Served at float32 factors: what the pack decodes to, so its accuracy;
        // at int8 factors, some accuracy (bench/README.md measures how close).
        EXPECT_EQ(p["served"]["float32"]["accuracy"], p["accuracy"]) << p.dump();
        ExpectUnit(p["served"]["int8"]["accuracy"], "int8-served accuracy");
        // Refitted (3 steps) where that lowered the validation KL, unless
        // the pack was already within skip_below_kl (default 0.02) of its fine-tune.
        if (p["refit"]["kl_before"].get<double>() <= 0.02) {
          EXPECT_TRUE(p["refit"]["skipped"].get<bool>()) << p.dump();
          EXPECT_FALSE(p["refit"].contains("loop")) << p.dump();
        } else {
          EXPECT_FALSE(p["refit"]["skipped"].get<bool>()) << p.dump();
          EXPECT_EQ(p["refit"]["loop"]["steps"], 3) << p.dump();
        }
        EXPECT_EQ(p["refit"]["kept"] == "refitted",
                  p["refit"]["kl_after"].get<double>() < p["refit"]["kl_before"].get<double>());
        const Json& l = row["lora"][i];
        ExpectUnit(l["accuracy"], "lora accuracy");
        const int64_t rank = l["rank"].get<int64_t>();
        EXPECT_EQ(rank, LoraRankForBytes(l["target_bytes"].get<int64_t>(), per_rank));
        EXPECT_LE(std::llabs(rank * per_rank - l["target_bytes"].get<int64_t>()), per_rank / 2 + 1);
        // Under SFT->DPO the DPO rounds (2 in this spec) continue the SFT
        // adapter: one adapter's bytes in both regimes, over the base itself
        // (a new adapter per round would be over the model merged before it).
        EXPECT_EQ(l["bytes"].get<int64_t>(), rank * per_rank);
        if (std::string(regime) == "sft_dpo" && absl::StrCat(task, "-lora", rank, "-lrx2-sft") == no_pairs) {
          // No pair: no DPO round, the cell is the SFT adapter's.
          EXPECT_EQ(l["dpo_rounds_trained"], 0);
          EXPECT_EQ(l["accuracy"], t1["tasks"][task]["sft"]["lora"][i]["accuracy"]);
          EXPECT_FALSE(PathExists(
              absl::StrCat(out, "/runs/", task, "-lora", rank, "-lrx2-dpolrx1-sft_dpo_one_adapter-onpolicy")));
        } else if (std::string(regime) == "sft_dpo") {
          EXPECT_EQ(l["dpo_rounds_trained"], 2);
          // Named with the DPO rate's own scale (lora_dpo_lr_scale 1, not
          // lora_lr_scale's 2): DPO at the spec's dpo.lr x 1.
          const std::string run =
              absl::StrCat(out, "/runs/", task, "-lora", rank, "-lrx2-dpolrx1-sft_dpo_one_adapter-onpolicy");
          for (const std::string& round : {run, run + "-r2"}) {
            auto adapter = ReadLoraAdapter(round + "/adapter");
            ASSERT_TRUE(adapter.ok()) << adapter.status();
            EXPECT_EQ(adapter->config.rank, rank);
            EXPECT_EQ(adapter->base_fingerprint, base_fingerprint) << round;
            auto dr = ReadJsonFile(round + "/report.json");
            ASSERT_TRUE(dr.ok()) << dr.status();
            EXPECT_EQ((*dr)["stages"]["dpo"]["lora_rank"].get<int64_t>(), rank);
            EXPECT_DOUBLE_EQ((*dr)["stages"]["dpo"]["lr"].get<double>(), 1e-4) << round;
          }
        }
        // The LoRA run trained at that rank, at the spec's lr x lora_lr_scale (2).
        auto lr = ReadJsonFile(out + "/runs/" + task + "-lora" + std::to_string(rank) + "-lrx2-sft/report.json");
        ASSERT_TRUE(lr.ok()) << lr.status();
        EXPECT_EQ((*lr)["stages"]["sft"]["lora_rank"].get<int64_t>(), rank);
        EXPECT_DOUBLE_EQ((*lr)["stages"]["sft"]["lr"].get<double>(), 2 * 3e-3);
        if (!p["gain_kept"].is_null()) {
          const double ft = row["full_ft"].get<double>(), base = row["base"].get<double>();
          EXPECT_NEAR(p["gain_kept"].get<double>(), (p["accuracy"].get<double>() - base) / (ft - base), 1e-9);
        }
      }
    }
    // The plot's legend names both regimes' LoRA as it stores them: one adapter.
    auto svg = ReadFileToString(out + "/table1_" + task + ".svg");
    ASSERT_TRUE(svg.ok()) << svg.status();
    EXPECT_NE(svg->find("LoRA (SFT\u2192DPO)<"), std::string::npos);
    EXPECT_EQ(svg->find("2x bytes"), std::string::npos);
  }
  // SFT->DPO trained on the SFT models' own wrong answers (dpo_pairs on_policy);
  // none were made for the marked one.
  for (const Json& l : t1["tasks"]["reverse"]["sft"]["lora"]) {
    const std::string run = absl::StrCat("reverse-lora", l["rank"].get<int64_t>(), "-lrx2-sft");
    for (const std::string& r : {std::string("reverse-ft-sft"), run}) {
      auto pairs = ReadFileToString(out + "/runs/" + r + "-onpolicy-pairs.jsonl");
      ASSERT_TRUE(pairs.ok()) << r;
      EXPECT_NE(pairs->find("\"rejected\""), std::string::npos);
    }
  }
  EXPECT_FALSE(PathExists(out + "/runs/" + no_pairs + "-onpolicy-pairs.jsonl"));
  auto report = ReadFileToString(out + "/fidelity.md");
  ASSERT_TRUE(report.ok());
  EXPECT_NE(report->find("Fewer DPO rounds than the spec's 2"), std::string::npos);
  EXPECT_NE(report->find("sort LoRA 1/"), std::string::npos);
  // The LoRA rates the runs above asserted, in the JSON and the report.
  EXPECT_EQ(t1["lora_lr_scale"], Json({{"sft", 2.0}, {"dpo", 1.0}}));
  EXPECT_NE(report->find("LoRA trains at 2× full FT's learning rate in SFT and 1× in DPO."), std::string::npos);
  EXPECT_TRUE(PathExists(out + "/runs/sort-ft-sft_dpo-onpolicy/report.json"));
  // Two DPO rounds (dpo_rounds): the second starts from the first's model, on
  // pairs made from that model's own wrong answers; sft_dpo is the second's.
  EXPECT_EQ(t1["dpo_rounds"], 2);
  for (const char* task : {"reverse", "sort"}) {
    SCOPED_TRACE(task);
    const std::string first = std::string(task) + "-ft-sft_dpo-onpolicy";
    auto pairs = ReadFileToString(out + "/runs/" + first + "-onpolicy-pairs.jsonl");
    ASSERT_TRUE(pairs.ok()) << "no pairs made from round 1's model";
    EXPECT_NE(pairs->find("\"rejected\""), std::string::npos);
    auto second = ReadJsonFile(out + "/runs/" + first + "-r2/report.json");
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_NE(second->dump().find(first + "/model"), std::string::npos) << "round 2 did not start from round 1";
    EXPECT_FALSE(PathExists(out + "/runs/" + first + "-r3"));
  }
  // Table 2: the rows of every method, a number per task.
  const Json& t2 = r["table2"];
  std::vector<std::string> methods;
  for (const Json& row : t2["rows"]) {
    methods.push_back(row["method"].get<std::string>());
    for (const char* task : {"reverse", "sort"}) ExpectUnit(row["accuracy"][task], methods.back());
    ExpectUnit(row["mean"], "mean");
  }
  EXPECT_EQ(methods, (std::vector<std::string>{"base", "routed_packs", "own_pack_explicit", "ta", "ties", "dare",
                                               "multitask_ft"}));
  // Table 3.
  const Json& t3 = r["table3"];
  ASSERT_EQ(t3["rows"].size(), 3u);
  for (const Json& row : t3["rows"]) {
    ExpectUnit(row["a_before"], "a_before");
    ExpectUnit(row["a_after"], "a_after");
    ExpectUnit(row["b_after"], "b_after");
    EXPECT_DOUBLE_EQ(row["forgetting"].get<double>(), row["a_before"].get<double>() - row["a_after"].get<double>());
  }
  // Table 4: every category, per label.
  const Json& t4 = r["table4"];
  for (const char* c : {"task_prompts",
                        "paraphrases_train_templates",
                        "paraphrases_held_out_templates",
                        "general_held_out",
                        "paraphrases_fresh_templates",
                        "general_fresh",
                        "paraphrases_fresh2_templates",
                        "general_fresh2",
                        "paraphrases_fresh3_templates",
                        "general_fresh3",
                        "paraphrases_fresh4_templates",
                        "general_fresh4",
                        "paraphrases_fresh5_templates",
                        "general_fresh5",
                        "paraphrases_fresh6_templates",
                        "general_fresh6",
                        "paraphrases_fresh7_templates",
                        "general_fresh7",
                        "paraphrases_fresh8_templates",
                        "general_fresh8",
                        "paraphrases_fresh9_templates",
                        "general_fresh9",
                        "paraphrases_fresh10_templates",
                        "general_fresh10",
                        "paraphrases_fresh11_templates",
                        "general_fresh11",
                        "paraphrases_fresh12_templates",
                        "general_fresh12"}) {
    ASSERT_TRUE(t4["categories"].contains(c)) << c;
    ExpectUnit(t4["categories"][c]["accuracy"], c);
    EXPECT_GT(t4["categories"][c]["n"].get<int64_t>(), 0);
    int64_t total = 0;  // the confusion table counts every prompt of the category
    for (const auto& [label, by_routed] : t4["categories"][c]["confusion"].items()) {
      for (const auto& [routed, k] : by_routed.items()) total += k.get<int64_t>();
    }
    EXPECT_EQ(total, t4["categories"][c]["n"].get<int64_t>()) << c;
  }
  EXPECT_EQ(t4["categories"]["paraphrases_held_out_templates"]["n"].get<int64_t>(), 16);
  // Every fresh set: its templates and general prompts scored, its templates listed.
  for (TemplateSplit split :
       {TemplateSplit::kFresh, TemplateSplit::kFresh2, TemplateSplit::kFresh3, TemplateSplit::kFresh4,
        TemplateSplit::kFresh5, TemplateSplit::kFresh6, TemplateSplit::kFresh7, TemplateSplit::kFresh8,
        TemplateSplit::kFresh9, TemplateSplit::kFresh10, TemplateSplit::kFresh11, TemplateSplit::kFresh12}) {
    const std::string name = TemplateSplitName(split);
    SCOPED_TRACE(name);
    EXPECT_EQ(t4["categories"][absl::StrCat("paraphrases_", name, "_templates")]["n"].get<int64_t>(), 16);
    EXPECT_EQ(t4["categories"][absl::StrCat("general_", name)]["n"].get<int64_t>(), NumGeneralPrompts(split));
    EXPECT_EQ(t4["templates"]["reverse"][name].get<std::vector<std::string>>(), *ParaphraseTemplates("reverse", split));
  }
  // Model selection: 2 candidates x 2 epochs, scored on training templates only.
  const Json& sel = t4["selection"];
  ASSERT_EQ(sel["scores"].size(), 4u);
  const std::string chosen = sel["chosen"].get<std::string>();
  EXPECT_TRUE(chosen == "mean0" || chosen == "meanmax01") << chosen;
  for (const Json& sc : sel["scores"]) ExpectUnit(sc["balanced_accuracy"], "balanced_accuracy");
  EXPECT_FALSE(t4.contains("internal_holdout_accuracy")) << "the chosen options train on every training prompt";
  EXPECT_EQ(t4["features"]["layers"].size(), chosen == "mean0" ? 1u : 2u);
  // The Markdown report has every table.
  auto md = ReadFileToString(out + "/fidelity.md");
  ASSERT_TRUE(md.ok());
  for (const char* h : {"## Table 1", "### SFT\n", "### SFT → DPO", "## Table 2", "## Table 3", "## Table 4",
                        "| reverse |", "pack 1/16", "LoRA 1/4", "| routed_packs |", "| sequential_lora |",
                        "| paraphrases_held_out_templates |", "Model selection", "| meanmax01 |",
                        "Served with the low-rank factors held at each precision", "pack 1/16, int8"}) {
    EXPECT_NE(md->find(h), std::string::npos) << h << "\n" << *md;
  }
  // Misroutes: listed per category (at most 20 each), in the Markdown too.
  std::map<std::string, int> listed;
  for (const Json& e : t4["misrouted_examples"]) {
    EXPECT_NE(e["routed"], e["expected"]);
    ASSERT_TRUE(t4["categories"].contains(e["category"].get<std::string>())) << e;
    EXPECT_LE(++listed[e["category"].get<std::string>()], 20);
    EXPECT_NE(md->find(e["prompt"].get<std::string>()), std::string::npos) << e;
  }
  EXPECT_EQ(md->find("Misrouted prompts") != std::string::npos, !t4["misrouted_examples"].empty());

  // A rerun reuses every run and pack: same figures.
  ASSERT_TRUE(RunFidelityBench(SmallSpecPath(), out, dir + "/log.txt"));
  auto again = ReadJsonFile(out + "/fidelity.json");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["table1"], r["table1"]);
}

}  // namespace
}  // namespace skillpack
