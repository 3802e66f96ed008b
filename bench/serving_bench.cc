// Serving many pack sets at once, in process: the generation engine fed by
// the server's PackCache in each serving mode (merged, factorized, auto) and
// with no packs at all (base), on the tiny and TinyLlama-1.1B shapes (random
// weights), for 1 / 2 / 4 / 8 / 16 distinct pack sets chosen uniformly or
// Zipf-skewed, with prompts and outputs of mixed lengths. The packs are
// synthetic decoded packs (random low-rank factors on every attention and MLP
// module, the shape a compressed pack decodes to), so the figures measure
// serving, not pack decoding (pack_bench measures that). With --head-density D
// each pack also prunes the embedding and lm_head: a random D of their
// entries, kept as sparse rows (the host tier's form of a pack's sparse
// modules, core/sparse_rows.h) or, as the variant "<precision>/dense-head"
// (--head-forms sparse,dense), as the dense float32 deltas the host tier held
// before it kept them sparse. The variants "<precision>/quant-head"
// (--head-forms quant) and "<precision>/half-head" (--head-forms half) give
// each pack a dense embedding and lm_head delta instead (every entry: a
// dense_quant module, the allocator's fallback where pruning costs more),
// held as the host tier holds a dense_quant module (its 8-bit codes in groups
// of 128, core/quant_rows.h) or as it holds a dense matrix (float16 unless
// the precision is float32, pack/decode.h's StoreDeltaAsHalf).
//
// Reported per run: generated tokens/s (and the ratio to base), the fused and
// factorized cache state, the memory added per pack set against the decoded
// factors' bytes, and the time to first token of a request for a cold pack
// set against a warm one. Writes bench/results/serving_<timestamp>.json.
//
// Each pack-serving run is repeated for every factor precision asked for
// (float32 / float16 / int8: how the host tier keeps the low-rank factors, the
// server's --factor-precision), and the whole set of runs, base included, is
// repeated --repeats times, interleaved, so every ratio to base compares runs
// of the same round (against the mean of the round's two base runs, one at
// each end); the summary holds each configuration's median ratio.
//
// It runs with the server's run-time settings (main() below; the JSON's
// machine block records them): before 2026-12-07 it kept OpenBLAS's default
// spin and glibc's malloc thresholds, under which the tiny shapes' ratios
// differ (bench/README.md, "The tiny 8-set goal under the server's run-time
// settings").
//
// usage: serving_bench [--shapes tiny,1.1b] [--sets 1,2,4,8,16] [--dists uniform,zipf]
//                      [--modes base,merged,factorized,auto] [--factor-precisions float32,float16,int8]
//                      [--repeats N] [--requests N] [--max-batch N] [--rank R] [--threads N]
//                      [--fused-budget-bytes N] [--head-density D] [--head-forms sparse,dense,half,quant]
//                      [--out DIR]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_models.h"
#include "bench/machine_info.h"
#include "bench/stats.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "pack/composer.h"
#include "pack/decode.h"
#include "server/pack_cache.h"
#include "server/pack_store.h"
#include "server/server.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A decoded pack held in memory: what PackRuntime::Decode returns.
class BenchHostPack : public HostPack {
 public:
  explicit BenchHostPack(DecodedPack p) : pack_(std::move(p)) {}
  int64_t bytes() const override { return pack_.bytes(); }
  const DecodedPack& pack() const { return pack_; }

 private:
  DecodedPack pack_;
};

// The PackRuntime over synthetic packs: "<name>.skillpack" files are
// placeholders; Decode hands out the pack built for that name. Compose and
// Factorize are the real composer's.
class BenchRuntime : public PackRuntime {
 public:
  BenchRuntime(std::shared_ptr<const ModelWeights> base, std::map<std::string, std::shared_ptr<const HostPack>> packs)
      : base_(std::move(base)), packs_(std::move(packs)) {}
  StatusOr<PackSummary> Inspect(const std::string& path) const override {
    PackSummary s;
    s.name = std::filesystem::path(path).stem().string();
    if (packs_.count(s.name) == 0) return absl::NotFoundError(s.name);
    return s;
  }
  StatusOr<Json> Describe(const std::string&) const override { return Json::object(); }
  StatusOr<std::shared_ptr<const HostPack>> Decode(const std::string& path) const override {
    auto it = packs_.find(std::filesystem::path(path).stem().string());
    if (it == packs_.end()) return absl::NotFoundError(path);
    return it->second;
  }
  StatusOr<FusedWeights> Compose(const std::vector<PackSelection>& selections,
                                 const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    FusedWeights out;
    ASSIGN_OR_RETURN(out.weights, ComposeWeights(*base_, selections, Decoded(packs)));
    for (const auto& [name, t] : out.weights->tensors()) {
      if (base_->Find(name)->data_ptr() != t.data_ptr()) out.bytes += static_cast<int64_t>(t.nbytes());
    }
    return out;
  }
  StatusOr<std::shared_ptr<const WeightDelta>> Factorize(
      const std::vector<PackSelection>& selections,
      const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    return ComposeFactorized(*base_, selections, Decoded(packs));
  }

 private:
  static std::vector<const DecodedPack*> Decoded(const std::vector<std::shared_ptr<const HostPack>>& packs) {
    std::vector<const DecodedPack*> out;
    for (const auto& p : packs) out.push_back(&static_cast<const BenchHostPack*>(p.get())->pack());
    return out;
  }
  std::shared_ptr<const ModelWeights> base_;
  std::map<std::string, std::shared_ptr<const HostPack>> packs_;
};

// Rank-`rank` factors on every attention and MLP weight (SyntheticFactors),
// scaled so that the delta is a small refinement of the base; with
// head_density > 0 also a random head_density of the embedding's and
// lm_head's entries, N(0, 0.01) in float16 as a pack stores them, as sparse
// rows.
DecodedPack SyntheticPack(const ModelWeights& base, const std::string& name, int64_t rank, uint64_t seed,
                          double head_density) {
  DecodedPack p;
  p.name = name;
  for (auto& [tname, f] : SyntheticFactors(base, rank, seed)) {
    DecodedModule m;
    m.name = tname;
    m.us = std::move(f.first);
    m.vt = std::move(f.second);
    p.modules.emplace(tname, std::move(m));
  }
  if (head_density <= 0) return p;
  at::Generator gen = at::detail::createCPUGenerator(seed + 1000);
  std::vector<std::string> heads = {"model.embed_tokens.weight"};
  if (!base.config().tie_word_embeddings) heads.push_back("lm_head.weight");
  for (const std::string& tname : heads) {
    const at::Tensor& w = *base.Find(tname);
    const int64_t rows = w.size(0), cols = w.size(1);
    // Entries drawn in pieces of rows, so no [rows, cols] draw is held at once.
    std::vector<at::Tensor> flat;
    const int64_t piece = std::max<int64_t>(1, (int64_t{1} << 22) / cols);
    for (int64_t r0 = 0; r0 < rows; r0 += piece) {
      const int64_t len = std::min(piece, rows - r0);
      flat.push_back(at::nonzero((at::rand({len * cols}, gen) < head_density)).view({-1}) + r0 * cols);
    }
    const at::Tensor idx = at::cat(flat);
    const at::Tensor values = (at::randn({idx.size(0)}, gen) * 0.01).to(at::kHalf);
    DecodedModule m;
    m.name = tname;
    m.sparse = SparseRows::FromFlat(idx, values, rows, cols);
    p.modules.emplace(tname, std::move(m));
  }
  return p;
}

struct Request {
  int set = -1;  // -1: no pack
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 0;
};

// `n` requests over `sets` pack sets, mixed prompt and output lengths.
std::vector<Request> Workload(const ModelConfig& c, int n, int sets, const std::string& dist, bool large) {
  std::mt19937 rng(7);
  // Set k has weight 1 (uniform) or 1 / (k + 1) (Zipf), drawn from one uniform
  // number per request whatever the number of sets (base runs included), so
  // that every run gets the same prompts and lengths.
  std::vector<double> cumulative;
  double total = 0;
  for (int k = 0; k < sets; ++k) cumulative.push_back(total += dist == "zipf" ? 1.0 / (k + 1) : 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto pick = [&] {
    const double u = unit(rng) * total;
    return static_cast<int>(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
  };
  const std::vector<int> prompt_lens = large ? std::vector<int>{8, 16, 32} : std::vector<int>{8, 32, 96};
  const std::vector<int> out_lens = large ? std::vector<int>{4, 8, 12} : std::vector<int>{16, 32, 64};
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    const int set = pick();
    r.set = sets == 0 ? -1 : std::min(set, sets - 1);
    const int len = prompt_lens[rng() % prompt_lens.size()];
    for (int t = 0; t < len; ++t) r.prompt.push_back(static_cast<int32_t>(rng() % c.vocab_size));
    r.max_new_tokens = out_lens[rng() % out_lens.size()];
    out.push_back(std::move(r));
  }
  return out;
}

struct Setup {
  ModelConfig config;
  std::shared_ptr<const ModelWeights> base;
  std::unique_ptr<Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  // By variant (Variants: "float16", "float16/dense-head", ...): the same packs.
  std::map<std::string, std::map<std::string, std::shared_ptr<const HostPack>>> packs;
  std::map<std::string, int64_t> pack_bytes;  // one decoded pack, by variant
  std::string dir;                            // the placeholder store
};

struct RunOptions {
  std::string mode;       // base | merged | factorized | auto
  std::string precision;  // the pack variant: float32 | float16 | int8, "/<form>-head" after it
  int sets = 0;
  std::string dist;
  int requests = 0;
  int max_batch = 8;
  int64_t fused_budget = 0;
  bool large = false;
};

std::vector<PackSelection> SelectionOf(int set) {
  if (set < 0) return {};
  return {{absl::StrCat("pack-", set), 1.0f, {}}};
}

Json Run(const Setup& s, const RunOptions& o) {
  PackCacheOptions co;
  co.host_budget_bytes = int64_t{64} << 30;
  co.fused_budget_bytes = o.fused_budget;
  co.mode = o.mode == "merged" ? ServingMode::kMerged
                               : (o.mode == "factorized" ? ServingMode::kFactorized : ServingMode::kAuto);
  BenchRuntime runtime(s.base, s.packs.at(o.precision));
  auto store = *PackStore::Open(s.dir, &runtime, int64_t{1} << 30);
  // The KV cache (zero-filled, so resident from here: 92 MB on 1.1B shapes)
  // is the engine's whatever the packs; the memory per pack set is counted
  // after it. (It used to be counted in, charging the sets 11.5 MB each on
  // 1.1B shapes, or not where the allocator reused an earlier run's pages.)
  auto kv = *KvCache::Create(s.config, o.max_batch, 256, at::kFloat);
  GenerationEngine engine(*s.model, *s.tokenizer, *kv, {}, EngineOptions{o.max_batch});
  const int64_t rss0 = ResidentBytes();
  PackCache cache(s.base, store.get(), &runtime, co, nullptr);
  const std::vector<Request> work = Workload(s.config, o.requests, o.mode == "base" ? 0 : o.sets, o.dist, o.large);

  // Time to first token, idle engine: a cold set (first use), then the same set warm.
  Json ttft;
  if (o.mode != "base") {
    for (const char* phase : {"cold", "warm"}) {
      const auto t0 = Clock::now();
      double first = -1;
      ServingWeights sw = *cache.Get(SelectionOf(0), nullptr);
      GenerationRequest g;
      g.prompt_tokens = work[0].prompt;
      g.params.temperature = 0;
      g.params.max_new_tokens = 1;
      g.params.ignore_eos = true;
      g.weights = sw.weights;
      g.delta = sw.delta;
      (void)*engine.Add(std::move(g), [&](const GenerationEvent& e) {
        if (first < 0 && !e.new_tokens.empty()) first = Seconds(t0);
      });
      while (engine.HasWork()) engine.Step();
      ttft[phase] = first;
    }
    cache.WaitForMerges();
  }

  // Closed loop: keep the engine's batch full plus as many waiting.
  size_t next = 0;
  int64_t tokens = 0, finished = 0;
  double get_seconds = 0;
  const auto t0 = Clock::now();
  while (next < work.size() || engine.HasWork()) {
    while (next < work.size() && engine.num_running() + engine.num_waiting() < 2 * o.max_batch) {
      const Request& r = work[next++];
      const auto tg = Clock::now();
      ServingWeights sw = *cache.Get(SelectionOf(r.set), nullptr);
      get_seconds += Seconds(tg);
      GenerationRequest g;
      g.prompt_tokens = r.prompt;
      g.params.temperature = 0;
      g.params.max_new_tokens = r.max_new_tokens;
      g.params.ignore_eos = true;
      g.weights = sw.weights;
      g.delta = sw.delta;
      (void)*engine.Add(std::move(g), [&](const GenerationEvent& e) {
        tokens += static_cast<int64_t>(e.new_tokens.size());
        finished += e.done;
      });
    }
    engine.Step();
  }
  const double secs = Seconds(t0);
  cache.WaitForMerges();
  Json r;
  r["mode"] = o.mode;
  r["sets"] = o.mode == "base" ? 0 : o.sets;
  if (o.mode != "base") r["factor_precision"] = o.precision;
  r["distribution"] = o.dist;
  r["requests"] = o.requests;
  r["finished"] = finished;
  r["generated_tokens"] = tokens;
  r["seconds"] = secs;
  r["tokens_per_s"] = tokens / secs;
  r["cache_get_seconds"] = get_seconds;
  if (!ttft.empty()) r["ttft_seconds"] = ttft;
  for (const CacheTierStats& t : cache.Stats()) {
    r["cache"][t.tier] = {
        {"entries", t.entries}, {"bytes", t.bytes}, {"hits", t.hits}, {"misses", t.misses}, {"evictions", t.evictions}};
  }
  // Memory this run added (cache tiers, allocator) per pack set, against
  // the decoded factors of one pack (which the synthetic setup allocated up
  // front; the host tier only references them).
  if (o.mode != "base" && o.sets > 0) {
    r["rss_added_bytes"] = ResidentBytes() - rss0;
    const int64_t factors = s.pack_bytes.at(o.precision) * o.sets;
    r["rss_added_per_set_vs_decoded_factors"] = static_cast<double>(ResidentBytes() - rss0 + factors) / factors;
  }
  std::fprintf(stderr, "  %-10s %-7s sets %2d %-7s %8.1f tok/s  (%lld tokens, %.1f s)\n", o.mode.c_str(),
               o.mode == "base" ? "" : o.precision.c_str(), o.mode == "base" ? 0 : o.sets, o.dist.c_str(),
               tokens / secs, static_cast<long long>(tokens), secs);
  return r;
}

// The pack variants a run may ask for: for each precision, each head form:
// "sparse" the precision's name, "dense" "<precision>/dense-head" (the same
// packs, their sparse modules held as dense float32 deltas), "half" and
// "quant" "<precision>/half-head" and "<precision>/quant-head" (dense heads,
// as a dense matrix and as a dense_quant module are held).
std::vector<std::string> Variants(const std::vector<std::string>& precisions, const std::vector<std::string>& forms) {
  std::vector<std::string> out;
  for (const std::string& p : precisions) {
    for (const std::string& f : forms) out.push_back(f == "sparse" ? p : absl::StrCat(p, "/", f, "-head"));
  }
  return out;
}

// A dense delta of `like`'s shape, N(0, 0.01) entries: a dense_quant head as
// it decodes (the values do not matter to the timings), float32.
at::Tensor DenseHead(const at::Tensor& like, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(like.sizes(), gen) * 0.01;
}

Setup MakeSetup(const std::string& shape, int max_sets, int64_t rank, const std::vector<std::string>& variants,
                double head_density) {
  Setup s;
  s.config = BenchShape(shape);
  s.base = RandomBenchWeights(s.config);
  s.model = std::make_unique<Transformer>(s.config);
  s.tokenizer = *Tokenizer::FromJson(MakeByteLevelTokenizerJson(), "bench");
  s.dir = JoinPath(std::filesystem::temp_directory_path().string(), absl::StrCat("serving-bench-", getpid()));
  std::filesystem::remove_all(s.dir);
  (void)MakeDirectories(s.dir);
  for (int i = 0; i < max_sets; ++i) {
    const std::string name = absl::StrCat("pack-", i);
    const DecodedPack p = SyntheticPack(*s.base, name, rank, 100 + i, head_density);
    // Dense heads by module name, made once for every precision: float32, and as 8-bit codes.
    std::map<std::string, at::Tensor> dense_heads;
    std::map<std::string, QuantRows> quant_heads;
    for (const std::string& variant : variants) {
      const std::vector<std::string> parts = absl::StrSplit(variant, '/');
      const FactorPrecision precision = *ParseFactorPrecision(parts[0]);
      const std::string form = parts.size() > 1 ? parts[1] : "";
      DecodedPack q = p;  // shares p's float32 tensors; SetFactorPrecision replaces them, never writes to them
      for (auto& [mname, m] : q.modules) {
        if (m.factored()) SetFactorPrecision(&m, precision);
        if (!m.is_sparse() || form.empty()) continue;
        if (form == "half-head" || form == "quant-head") {
          at::Tensor& head = dense_heads[mname];
          if (!head.defined()) head = DenseHead(*s.base->Find(mname), 2000 + i);
          if (form == "quant-head") {
            QuantRows& codes = quant_heads[mname];
            if (!codes.defined()) codes = QuantRowsOf(*QuantizeRtn(head, 8, 128));  // a finite matrix: never refused
            m.quant = codes;
          } else {
            m.delta = head;
            if (precision != FactorPrecision::kFloat32) StoreDeltaAsHalf(&m);
          }
        } else {
          m.delta = m.sparse.Dense();
        }
        m.sparse = SparseRows();
      }
      auto hp = std::make_shared<BenchHostPack>(std::move(q));
      s.pack_bytes[variant] = hp->bytes();
      s.packs[variant][name] = std::move(hp);
    }
    (void)WriteFileAtomically(JoinPath(s.dir, name + ".skillpack"), name);
  }
  return s;
}

std::vector<int> ParseInts(const std::string& csv) {
  std::vector<int> out;
  for (absl::string_view p : absl::StrSplit(csv, ',')) {
    int v = 0;
    if (absl::SimpleAtoi(p, &v)) out.push_back(v);
  }
  return out;
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {});
  if (!args.ok()) {
    std::fprintf(stderr, "%s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  const std::string shapes = args->StringOr("shapes", "tiny,1.1b");
  const std::vector<int> sets = ParseInts(args->StringOr("sets", "1,2,4,8,16"));
  const std::string dists = args->StringOr("dists", "uniform,zipf");
  const std::string modes = args->StringOr("modes", "base,merged,factorized,auto");
  const std::vector<std::string> precisions =
      absl::StrSplit(args->StringOr("factor-precisions", "float32,float16"), ',');
  const int64_t repeats = *args->IntOr("repeats", 1);
  const int64_t requests = *args->IntOr("requests", 0);  // 0: per shape (tiny 128, 1.1b 24)
  const int64_t max_batch = *args->IntOr("max-batch", 8);
  const int64_t rank = *args->IntOr("rank", 0);  // 0: tiny 16, 1.1b 32
  const int64_t threads = *args->IntOr("threads", 0);
  const int64_t fused_budget = *args->IntOr("fused-budget-bytes", int64_t{8} << 30);
  const StatusOr<double> head_density_arg = args->DoubleOr("head-density", 0.0);
  if (!head_density_arg.ok()) {
    std::fprintf(stderr, "%s\n", std::string(head_density_arg.status().message()).c_str());
    return 2;
  }
  const double head_density = *head_density_arg;
  const std::string head_forms = args->StringOr("head-forms", "sparse");
  const std::string out_dir = args->StringOr("out", "bench/results");
  if (Status st = args->CheckAllUsed(); !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 2;
  }
  for (const std::string& p : precisions) {
    if (!ParseFactorPrecision(p).ok()) {
      std::fprintf(stderr, "--factor-precisions: '%s' is not float32, float16 or int8\n", p.c_str());
      return 2;
    }
  }
  if (repeats < 1) {
    std::fprintf(stderr, "--repeats must be >= 1\n");
    return 2;
  }
  if (!(head_density >= 0 && head_density <= 1)) {
    std::fprintf(stderr, "--head-density must be in [0, 1]\n");
    return 2;
  }
  const std::vector<std::string> forms = absl::StrSplit(head_forms, ',');
  for (const std::string& form : forms) {
    if (form != "sparse" && form != "dense" && form != "half" && form != "quant") {
      std::fprintf(stderr, "--head-forms: '%s' is not sparse, dense, half or quant\n", form.c_str());
      return 2;
    }
  }
  if (head_density == 0 && forms != std::vector<std::string>{"sparse"}) {
    std::fprintf(stderr, "--head-forms needs --head-density > 0 (the packs have no heads without it)\n");
    return 2;
  }
  const std::vector<std::string> variants = Variants(precisions, forms);
  SetIntraOpThreads(threads);
  Json result;
  result["benchmark"] = "serving_bench";
  result["timestamp"] = UtcTimestamp();
  result["machine"] = MachineInfo();
  result["max_batch"] = max_batch;
  result["repeats"] = repeats;
  const int max_sets = sets.empty() ? 0 : *std::max_element(sets.begin(), sets.end());
  for (absl::string_view shape_view : absl::StrSplit(shapes, ',')) {
    const std::string shape(shape_view);
    const bool large = shape != "tiny";
    const int64_t r = rank > 0 ? rank : SyntheticPackRank(shape);
    std::fprintf(stderr, "[%s] building base and %d synthetic packs (rank %lld)\n", shape.c_str(), max_sets,
                 static_cast<long long>(r));
    Setup s = MakeSetup(shape, max_sets, r, variants, head_density);
    Json& out = result["shapes"][shape];
    out["rank"] = r;
    out["head_density"] = head_density;
    for (const auto& [prec, bytes] : s.pack_bytes) out["pack_decoded_bytes"][prec] = bytes;
    out["base_weight_bytes"] = s.base->TotalBytes();
    RunOptions o;
    o.requests = static_cast<int>(requests > 0 ? requests : (large ? 24 : 128));
    o.max_batch = static_cast<int>(max_batch);
    o.fused_budget = fused_budget;
    o.large = large;
    // Ratios to the base run of the same round, by configuration.
    std::map<std::string, std::vector<double>> ratios;
    const bool with_base = modes.find("base") != std::string::npos;
    // The base run, once at each end of a round: a round's runs are set
    // against the mean of the two, so that a base run that happens to be slow
    // or fast (this VM's speed drifts by 30% within a minute) does not move
    // all of the round's ratios one way.
    auto run_base = [&](int64_t round, const char* at) {
      o.mode = "base";
      o.dist = "uniform";
      o.precision = variants.front();
      Json r0 = Run(s, o);
      r0["round"] = round;
      r0["at"] = at;
      const double tps = r0["tokens_per_s"].get<double>();
      out["runs"].push_back(r0);
      return tps;
    };
    for (int64_t round = 0; round < repeats; ++round) {
      const size_t first_run = out["runs"].size();
      const double base_start = with_base ? run_base(round, "start") : 0;
      for (absl::string_view dist : absl::StrSplit(dists, ',')) {
        for (int n : sets) {
          for (absl::string_view mode : absl::StrSplit(modes, ',')) {
            if (mode == "base") continue;
            for (const std::string& prec : variants) {
              o.mode = std::string(mode);
              o.dist = std::string(dist);
              o.sets = n;
              o.precision = prec;
              Json rr = Run(s, o);
              rr["round"] = round;
              out["runs"].push_back(rr);
            }
          }
        }
      }
      if (!with_base) continue;
      const double base_tps = (base_start + run_base(round, "end")) / 2;
      for (size_t i = first_run; i < out["runs"].size(); ++i) {
        Json& rr = out["runs"][i];
        if (rr["mode"] == "base") continue;
        rr["vs_base"] = rr["tokens_per_s"].get<double>() / base_tps;
        ratios[absl::StrCat(rr["mode"].get<std::string>(), " ", rr["factor_precision"].get<std::string>(), " ",
                            rr["distribution"].get<std::string>(), " ", rr["sets"].get<int>())]
            .push_back(rr["vs_base"].get<double>());
      }
    }
    for (auto& [config, v] : ratios) {
      const double median = Median(v);
      const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      out["median_vs_base"][config] = {{"median", median}, {"min", *lo}, {"max", *hi}};
      std::fprintf(stderr, "  median vs base  %-32s %.3f (%.3f-%.3f over %zu rounds)\n", config.c_str(), median, *lo,
                   *hi, v.size());
    }
    std::filesystem::remove_all(s.dir);
  }
  {
    std::ifstream load("/proc/loadavg");
    double l1 = 0;
    if (load >> l1) result["loadavg_1min_at_end"] = l1;
  }
  return WriteBenchResult(result, "serving", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ApplyServerProcessSettings(argv);  // as the server runs (server/server.h)
  return skillpack::Main(argc, argv);
}
