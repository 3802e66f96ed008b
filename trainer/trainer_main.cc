// `skillpack-trainer`: runs training jobs (distill -> SFT -> DPO -> compress
// -> publish) locally, one process or data-parallel over c10d Gloo; serves the
// Trainer gRPC API (`serve`); writes task data sets.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/args.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/malloc_policy.h"
#include "core/omp_wait_policy.h"
#include "core/status.h"
#include "core/stop_signals.h"
#include "rpc/bearer_auth.h"
#include "trainer/data.h"
#include "trainer/job.h"
#include "trainer/job_service.h"
#include "trainer/pretrain.h"
#include "trainer/tasks/phrasing_grammar.h"
#include "trainer/tasks/router_data.h"
#include "trainer/tasks/task.h"

namespace skillpack {
namespace {

constexpr char kUsage[] =
    "usage: skillpack-trainer <command> [flags]\n"
    "\n"
    "commands:\n"
    "  run JOB.json --out DIR [--no-progress] [--no-resume]\n"
    "      [--rank R --world-size W --store-host HOST --store-port PORT --bind-host HOST\n"
    "       --timeout SECONDS]\n"
    "      run one job: DIR/model (the tuned model folder), DIR/report.json,\n"
    "      DIR/checkpoints/ (resumed unless --no-resume). With --world-size > 1 start one\n"
    "      process per rank with the same job and --out; rank 0 hosts the TCP store.\n"
    "  serve --state-dir DIR [--host 127.0.0.1 --port 50061 --admin-token-file FILE]\n"
    "      the Trainer gRPC service (docs/trainer.md): jobs queued and run one at a time,\n"
    "      their records and outputs under DIR/jobs/<id>/; prints \"listening trainer=HOST:PORT\"\n"
    "      (--port 0: an ephemeral port). With a token file every call needs\n"
    "      \"authorization: Bearer <token>\". SIGINT / SIGTERM stop it (a running job is\n"
    "      recorded INTERRUPTED).\n"
    "  validate JOB.json\n"
    "      check a job spec without running it\n"
    "  tasks\n"
    "      list the synthetic tasks\n"
    "  make-data --task NAME --out FILE.jsonl [--split train|held_out --n N --seed S\n"
    "            --preferences]\n"
    "      write task examples as SFT JSONL {prompt,response} or, with --preferences,\n"
    "      DPO JSONL {prompt,chosen,rejected}\n"
    "  make-router-data --tasks NAME,NAME --out FILE.jsonl [--n 200 --general 400 --seed S\n"
    "            --no-composed --corpus-topics PATH,PATH --contexts --made-up-topics]\n"
    "      write a router's labelled prompts {prompt,label,group} for the tasks' packs: per\n"
    "      task N raw prompts, N paraphrases and N composed phrasings (label: the task), and\n"
    "      general prompts plus as many composed ones (label none), and with --corpus-topics\n"
    "      as many more over topic words of that UTF-8 text corpus (files or folders); with\n"
    "      --contexts, N more per task and as many more general ones told inside a situation\n"
    "      (\"For my homework I need to ...\", word problems); with --made-up-topics, as many\n"
    "      more general ones over made-up words (\"brounstel\", \"xqvtr\"); for\n"
    "      `skillpack router train`\n";

int Fail(const Status& s) {
  std::fprintf(stderr, "skillpack-trainer: %s\n", s.ToString().c_str());
  return 1;
}

int RunCommand(const std::vector<std::string>& argv) {
  StatusOr<Args> args = Args::Parse(argv, {"no-progress", "no-resume"});
  if (!args.ok()) return Fail(args.status());
  if (args->positional().size() != 1) {
    std::fprintf(stderr, "skillpack-trainer run: expected one JOB.json\n\n%s", kUsage);
    return 2;
  }
  StatusOr<JobSpec> job = LoadJobSpec(args->positional()[0]);
  if (!job.ok()) return Fail(job.status());
  RunJobOptions opts;
  StatusOr<std::string> out = args->String("out");
  if (!out.ok()) return Fail(out.status());
  opts.out_dir = *out;
  opts.progress = !args->Bool("no-progress");
  opts.resume = !args->Bool("no-resume");
  StatusOr<int64_t> rank = args->IntOr("rank", 0);
  StatusOr<int64_t> world = args->IntOr("world-size", 1);
  StatusOr<int64_t> port = args->IntOr("store-port", 29500);
  StatusOr<double> timeout = args->DoubleOr("timeout", 120);
  for (const Status& s : {rank.status(), world.status(), port.status(), timeout.status()}) {
    if (!s.ok()) return Fail(s);
  }
  opts.dist.rank = static_cast<int>(*rank);
  opts.dist.world_size = static_cast<int>(*world);
  opts.dist.store_port = static_cast<int>(*port);
  opts.dist.timeout_seconds = *timeout;
  opts.dist.store_host = args->StringOr("store-host", "127.0.0.1");
  opts.dist.bind_host = args->StringOr("bind-host", "");
  if (Status s = args->CheckAllUsed(); !s.ok()) return Fail(s);
  StatusOr<Json> report = RunJob(*job, opts);
  if (!report.ok()) return Fail(report.status());
  if (opts.dist.rank == 0) {
    const Json& eval = (*report)["eval"];
    if (eval.is_object() && eval.contains("before") && eval.contains("after")) {
      std::printf("held-out exact match: %.3f -> %.3f\n", eval["before"]["accuracy"].get<double>(),
                  eval["after"]["accuracy"].get<double>());
    }
    std::printf("report: %s\n", JoinPath(opts.out_dir, "report.json").c_str());
  }
  return 0;
}

int ValidateCommand(const std::vector<std::string>& argv) {
  if (argv.size() != 1) {
    std::fprintf(stderr, "skillpack-trainer validate: expected one JOB.json\n");
    return 2;
  }
  StatusOr<JobSpec> job = LoadJobSpec(argv[0]);
  if (!job.ok()) return Fail(job.status());
  std::printf("ok\n");
  return 0;
}

int ServeCommand(const std::vector<std::string>& argv) {
  // Before any thread starts (core/stop_signals.h).
  if (Status st = InstallStopSignals(); !st.ok()) return Fail(st);

  StatusOr<Args> args = Args::Parse(argv, {});
  if (!args.ok()) return Fail(args.status());
  StatusOr<std::string> state_dir = args->String("state-dir");
  const std::string host = args->StringOr("host", "127.0.0.1");
  StatusOr<int64_t> port = args->IntOr("port", 50061);
  const std::string token_file = args->StringOr("admin-token-file", "");
  for (const Status& s : {state_dir.status(), port.status(), args->CheckAllUsed()}) {
    if (!s.ok()) return Fail(s);
  }
  if (!args->positional().empty()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("serve: unexpected argument '", args->positional()[0], "'")));
  }
  if (*port < 0 || *port > 65535) return Fail(absl::InvalidArgumentError("--port must be in [0, 65535]"));
  std::string token;
  if (!token_file.empty()) {
    StatusOr<std::string> t = ReadBearerToken(token_file);
    if (!t.ok()) return Fail(Annotate(t.status(), "--admin-token-file"));
    token = *t;
  }
  JobManager::Options mo;
  mo.state_dir = *state_dir;
  char cwd[4096];
  mo.work_dir = getcwd(cwd, sizeof(cwd)) != nullptr ? cwd : ".";
  StatusOr<std::unique_ptr<JobManager>> manager = JobManager::Create(mo);
  if (!manager.ok()) return Fail(manager.status());
  TrainerService service(manager->get(), token);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string address = host.find(':') != std::string::npos && host[0] != '['
                                  ? absl::StrCat("[", host, "]:", *port)
                                  : absl::StrCat(host, ":", *port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat("cannot listen on ", address)));
  }
  const std::string shown = address.substr(0, address.rfind(':'));
  std::printf("listening trainer=%s:%d\n", shown.c_str(), bound_port);
  std::fflush(stdout);
  const int sig = WaitForStopSignal();
  std::fprintf(stderr, "skillpack-trainer serve: signal %d, stopping\n", sig);
  // Stop the job first (watchers then see its final state), then the calls.
  (*manager)->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

int MakeDataCommand(const std::vector<std::string>& argv) {
  StatusOr<Args> args = Args::Parse(argv, {"preferences"});
  if (!args.ok()) return Fail(args.status());
  StatusOr<std::string> name = args->String("task");
  StatusOr<std::string> out = args->String("out");
  StatusOr<TaskSplit> split = TaskSplitFromName(args->StringOr("split", "train"));
  StatusOr<int64_t> n = args->IntOr("n", 1000);
  StatusOr<int64_t> seed = args->IntOr("seed", 0);
  const bool prefs = args->Bool("preferences");
  for (const Status& s :
       {name.status(), out.status(), split.status(), n.status(), seed.status(), args->CheckAllUsed()}) {
    if (!s.ok()) return Fail(s);
  }
  if (*n < 1) return Fail(absl::InvalidArgumentError(absl::StrCat("--n must be >= 1, got ", *n)));
  StatusOr<std::unique_ptr<Task>> task = MakeTask(*name);
  if (!task.ok()) return Fail(task.status());
  const bool unique = *split == TaskSplit::kHeldOut;
  Status written;
  if (prefs) {
    StatusOr<std::vector<TaskPreference>> p =
        GenerateTaskPreferences(**task, *split, *n, static_cast<uint64_t>(*seed), unique);
    if (!p.ok()) return Fail(p.status());
    std::vector<PreferenceRecord> records;
    for (TaskPreference& t : *p) records.push_back({t.prompt, t.chosen, t.rejected, false});
    written = WritePreferenceJsonl(*out, records);
  } else {
    StatusOr<std::vector<TaskExample>> e =
        GenerateTaskExamples(**task, *split, *n, static_cast<uint64_t>(*seed), unique);
    if (!e.ok()) return Fail(e.status());
    std::vector<SftRecord> records;
    for (TaskExample& t : *e) records.push_back({t.prompt, t.response, false});
    written = WriteSftJsonl(*out, records);
  }
  if (!written.ok()) return Fail(written);
  return 0;
}

int MakeRouterDataCommand(const std::vector<std::string>& argv) {
  StatusOr<Args> args = Args::Parse(argv, {"no-composed", "contexts", "made-up-topics"});
  if (!args.ok()) return Fail(args.status());
  StatusOr<std::string> tasks = args->String("tasks");
  StatusOr<std::string> out = args->String("out");
  StatusOr<int64_t> n = args->IntOr("n", 200);
  StatusOr<int64_t> general = args->IntOr("general", 400);
  StatusOr<int64_t> seed = args->IntOr("seed", 0);
  const std::string corpus = args->StringOr("corpus-topics", "");
  RouterDataOptions o;
  o.composed = !args->Bool("no-composed");
  o.contexts = args->Bool("contexts");
  o.made_up_topics = args->Bool("made-up-topics");
  for (const Status& s :
       {tasks.status(), out.status(), n.status(), general.status(), seed.status(), args->CheckAllUsed()}) {
    if (!s.ok()) return Fail(s);
  }
  if (!args->positional().empty()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("make-router-data: unexpected argument '", args->positional()[0], "'")));
  }
  if (*seed < 0) return Fail(absl::InvalidArgumentError(absl::StrCat("--seed must be >= 0, got ", *seed)));
  o.per_task = *n;
  o.general = *general;
  o.seed = static_cast<uint64_t>(*seed);
  // Each of these adds composed phrasings, so none goes with --no-composed.
  for (const auto& [flag, given] : {std::pair<const char*, bool>{"--contexts", o.contexts},
                                    {"--made-up-topics", o.made_up_topics},
                                    {"--corpus-topics", !corpus.empty()}}) {
    if (given && !o.composed) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("make-router-data: ", flag, " needs composed phrasings (drop --no-composed)")));
    }
  }
  if (!corpus.empty()) {
    StatusOr<std::vector<CorpusDocument>> docs = ReadCorpus(absl::StrSplit(corpus, ',', absl::SkipEmpty()));
    if (!docs.ok()) return Fail(Annotate(docs.status(), "make-router-data: --corpus-topics"));
    std::vector<std::string> texts;
    for (CorpusDocument& d : *docs) texts.push_back(std::move(d.text));
    o.topic_words = CorpusTopicWords(texts, 2000, o.seed * 1000003 + 6);
    if (o.topic_words.empty()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("make-router-data: --corpus-topics ", corpus, " has no usable topic word")));
    }
  }
  StatusOr<std::vector<RouterDataRecord>> records = MakeRouterData(absl::StrSplit(*tasks, ',', absl::SkipEmpty()), o);
  if (!records.ok()) return Fail(Annotate(records.status(), "make-router-data"));
  std::string text;
  for (const RouterDataRecord& r : *records) {
    text += Json{{"prompt", r.prompt}, {"label", r.label}, {"group", r.group}}.dump();
    text += '\n';
  }
  if (Status s = WriteFileAtomically(*out, text); !s.ok()) return Fail(s);
  std::printf("%zu labelled prompts: %s\n", records->size(), out->c_str());
  return 0;
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // core/omp_wait_policy.h
  skillpack::SetMallocThresholdsUnlessSet();           // core/malloc_policy.h
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(skillpack::kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "run") return skillpack::RunCommand(rest);
  if (cmd == "validate") return skillpack::ValidateCommand(rest);
  if (cmd == "serve") return skillpack::ServeCommand(rest);
  if (cmd == "make-data") return skillpack::MakeDataCommand(rest);
  if (cmd == "make-router-data") return skillpack::MakeRouterDataCommand(rest);
  if (cmd == "tasks") {
    std::printf("%s\n", absl::StrJoin(skillpack::TaskNames(), "\n").c_str());
    return 0;
  }
  std::fprintf(stderr, "skillpack-trainer: unknown command '%s'\n\n%s", cmd.c_str(), skillpack::kUsage);
  return 2;
}
