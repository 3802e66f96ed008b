// Prefill and decode throughput of the CPU model at batch 1, 2, 4, 8 and 16,
// for a tiny model (~3M parameters) and TinyLlama-1.1B shapes (random weights).
// Decode at batch 1 on the large shapes is memory-bound: its time per token is
// compared with the bound = bytes of weights read per token / memcpy bandwidth
// measured in the same run. A batched decode step reads the same weights, so
// it should cost about the same: each batch the small-batch kernels serve
// (core/small_gemm.h, 2 to 16 rows) is decoded with each kernel this CPU runs
// (AVX-512, AVX2) and with BLAS; every step is compared with the batch-1 step.
// Every step is also set against this machine's roofline, measured in the same
// run (bench/roofline.h): max(bytes read / read bandwidth, 2 · batch · weights
// / FMA peak), the weights being those a step reads (all but the embedding
// table); attention over the short context is left out. Past the batch where
// the FMA term overtakes the bytes term a step cannot cost the same as a
// batch-1 step on this machine, whatever the kernel. Writes
// bench/results/model_<timestamp>.json.
//
// Then the step's linear layers alone (every layer's seven and the lm_head,
// through LinearForward, the function the model runs them with), in
// --linear-rounds rounds that each time every batch once, interleaved so that
// this machine's drift hits every batch alike: what the kernels cost without
// attention, norms, the KV cache and the thread pool's waits between them.
// Each batch's ratio to batch 1 is the median of the per-round ratios, and
// beside it the ratio of the two fastest passes.
//
// Then whole decode steps the same way (--step-rounds): every batch keeps its
// cache from the runs above, and each round times one step of every batch, the
// model's own path (the best kernel, attention in place), so the ratio the
// issue's goal names (a batch-8 step over a batch-1 step) is taken within a
// round rather than between runs minutes apart.
//
// Per batch, too: decode steps with attention read in place from the KV cache
// (core/decode_attention.h, what the model runs) against ATen's gathered and
// masked attention, alternating step by step; --prompt-len sets the context.
//
// usage: model_bench [--shapes tiny,1.1b] [--batches 1,2,4,8,16] [--prompt-len N]
//                    [--decode-steps N] [--linear-rounds N] [--step-rounds N] [--sets S,...] [--set-rounds N]
//                    [--threads N] [--out DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_models.h"
#include "bench/machine_info.h"
#include "bench/roofline.h"
#include "bench/stats.h"
#include "core/args.h"
#include "core/cpu_threads.h"
#include "core/decode_attention.h"
#include "core/file_util.h"
#include "core/model.h"
#include "core/omp_wait_policy.h"
#include "core/small_gemm.h"
#include "core/weight_delta.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Ceilings {
  double memcpy_bandwidth = 0;  // bytes/s
  double read_bandwidth = 0;    // bytes/s, all threads
  double fma_flops = 0;         // FLOP/s, all threads
};

// Per-round times of one pass against a batch-1 pass timed in the same rounds:
// the median of the rounds' ratios and the ratio of the fastest passes, into
// r["vs_batch1_<name>..."] and r["fastest_vs_batch1_<name>"]; returns a note for the log.
std::string RatiosToBatch1(const std::vector<double>& seconds, const std::vector<double>& batch1_seconds,
                           const std::string& name, Json& r) {
  std::vector<double> ratios;
  for (size_t i = 0; i < seconds.size() && i < batch1_seconds.size(); ++i) {
    ratios.push_back(seconds[i] / batch1_seconds[i]);
  }
  const double fastest = *std::min_element(seconds.begin(), seconds.end()) /
                         *std::min_element(batch1_seconds.begin(), batch1_seconds.end());
  r["vs_batch1_" + name + "_per_round"] = ratios;
  r["vs_batch1_" + name] = Median(ratios);
  r["fastest_vs_batch1_" + name] = fastest;
  return absl::StrCat(", ", Median(ratios), "x batch 1 ", name, " (fastest passes: ", fastest, "x)");
}

// The linears of one decode step at `batch` rows (x random, the weights `w`'s), as the model runs them.
void LinearPass(const ModelWeights& w, const at::Tensor& x_hidden, const at::Tensor& x_intermediate) {
  for (const LayerWeights& lw : w.layers()) {
    (void)LinearForward(x_hidden, lw.q, lw.q_bias);
    (void)LinearForward(x_hidden, lw.k, lw.k_bias);
    (void)LinearForward(x_hidden, lw.v, lw.v_bias);
    (void)LinearForward(x_hidden, lw.o, lw.o_bias);
    (void)LinearForward(x_hidden, lw.gate, lw.gate_bias);
    (void)LinearForward(x_hidden, lw.up, lw.up_bias);
    (void)LinearForward(x_intermediate, lw.down, lw.down_bias);
  }
  (void)LinearForward(x_hidden, w.lm_head(), at::Tensor());
}

// `rounds` rounds, each timing one LinearPass per batch (batch 1 twice: with
// the kernel, which the model runs, and with BLAS's GEMV); per pass the median
// seconds and the median of the rounds' ratios to that round's batch-1 passes,
// and the ratio of the fastest passes. This VM's memory bandwidth drops by up
// to half for seconds at a time (a pass's time jumps from 70 to 150 ms and
// back), so a round's ratio can compare a slow pass with a fast one; the
// fastest pass of each is the one least disturbed.
Json TimeLinears(const ModelConfig& c, const ModelWeights& w, const std::vector<int64_t>& batches, int64_t rounds,
                 double linear_bytes, const Ceilings& ceil) {
  c10::InferenceMode guard;
  struct Pass {
    int64_t batch;
    SmallGemmIsa isa;
    SmallGemmWalk walk;
    std::string linear;
    at::Tensor x_hidden, x_intermediate;
    std::vector<double> seconds;
  };
  std::vector<Pass> passes;
  const SmallGemmWalk best_walk = SmallGemmBestWalk();
  const SmallGemmWalk other_walk =
      best_walk == SmallGemmWalk::kKBlocks ? SmallGemmWalk::kL2Lookahead : SmallGemmWalk::kKBlocks;
  for (int64_t b : batches) {
    // (kernel, walk): the best, and its other walk (small_gemm.h); for one row, BLAS's GEMV.
    std::vector<std::pair<SmallGemmIsa, SmallGemmWalk>> kernels = {{SmallGemmBestIsa(), best_walk}};
    if (SmallGemmBestIsa() != SmallGemmIsa::kOff && b <= kSmallGemmMaxRows) {
      kernels.emplace_back(SmallGemmBestIsa(), other_walk);
    }
    if (b == 1 && SmallGemmBestIsa() != SmallGemmIsa::kOff) kernels.emplace_back(SmallGemmIsa::kOff, best_walk);
    for (const auto& [isa, walk] : kernels) {
      const bool kernel = isa != SmallGemmIsa::kOff && b <= kSmallGemmMaxRows;
      std::string linear = kernel ? absl::StrCat("small_gemm_", SmallGemmIsaName(isa)) : (b == 1 ? "gemv" : "blas");
      if (kernel && walk != best_walk) absl::StrAppend(&linear, "_", SmallGemmWalkName(walk));
      passes.push_back(
          {b, isa, walk, std::move(linear), at::randn({b, c.hidden_size}), at::randn({b, c.intermediate_size}), {}});
    }
  }
  auto run = [&](Pass& p) {
    SetSmallGemmIsa(p.isa);
    SetSmallGemmWalk(p.walk);
    auto t0 = Clock::now();
    LinearPass(w, p.x_hidden, p.x_intermediate);
    const double s = Seconds(t0);
    SetSmallGemmEnabled(true);
    SetSmallGemmWalk(best_walk);
    // OpenBLAS's workers keep spinning for a while after its GEMV returns and
    // took a core from the next pass (batch 2's ran at 1.9x batch 1's in the
    // rounds' median, 1.0x in their fastest); let them go to sleep first.
    if (p.isa == SmallGemmIsa::kOff) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return s;
  };
  for (Pass& p : passes) run(p);  // warm-up
  for (int64_t r = 0; r < rounds; ++r) {
    for (Pass& p : passes) p.seconds.push_back(run(p));
  }
  Json out = Json::array();
  for (const Pass& p : passes) {
    const double med = Median(p.seconds);
    Json r;
    r["batch"] = p.batch;
    r["linear"] = p.linear;
    r["seconds"] = p.seconds;
    r["median_seconds"] = med;
    r["bytes_per_s"] = linear_bytes / med;
    r["flops_per_s"] = 2.0 * p.batch * (linear_bytes / 4) / med;
    const double roof =
        std::max(linear_bytes / ceil.read_bandwidth, 2.0 * p.batch * (linear_bytes / 4) / ceil.fma_flops);
    r["vs_roofline"] = med / roof;
    r["fastest_seconds"] = *std::min_element(p.seconds.begin(), p.seconds.end());
    std::string note;
    for (const Pass& one : passes) {
      if (one.batch != 1 || &one == &p) continue;
      absl::StrAppend(&note, RatiosToBatch1(p.seconds, one.seconds, one.linear, r));
    }
    std::fprintf(stderr, "  linears alone, batch %lld (%s): %.2f ms, %.1f GB/s, %.0f GFLOP/s, %.2fx roofline%s\n",
                 static_cast<long long>(p.batch), p.linear.c_str(), 1e3 * med, r["bytes_per_s"].get<double>() / 1e9,
                 r["flops_per_s"].get<double>() / 1e9, r["vs_roofline"].get<double>(), note.c_str());
    out.push_back(r);
  }
  return out;
}

// One batch's cache and decode step, kept for the rounds at the end.
struct Decoding {
  int64_t batch;
  std::unique_ptr<KvCache> cache;
  std::vector<SeqStep> dec;
  std::vector<double> seconds;
};

// A synthetic pack set (SyntheticFactors, serving_bench's packs) kept
// factorized as the server's host tier keeps it at --factor-precision
// float16 (its default until int8 replaced it; these steps stay float16 so
// that their series in bench/README.md compares), both factors in the host
// tier's layout (host_layout: transposed; only us before 2026-12-08, when the
// host tier kept vt contiguous) or both contiguous.
std::shared_ptr<const WeightDelta> SyntheticDelta(const ModelConfig& c, const ModelWeights& w, int64_t rank,
                                                  uint64_t seed, bool host_layout) {
  std::map<std::string, std::vector<DeltaTerm>> terms;
  for (const auto& [name, f] : SyntheticFactors(w, rank, seed)) {
    DeltaTerm term;
    term.us = f.first.to(at::kHalf);
    term.vt = f.second.to(at::kHalf);
    if (host_layout) {
      term.us = UsLayout(term.us);
      term.vt = VtLayout(term.vt);
    }
    terms[name].push_back(std::move(term));
  }
  return *WeightDelta::Create(c, std::move(terms));
}

// PackSetSteps' step variants (without packs, and three with), each run once
// per round and the three with packs once more to warm up.
constexpr int kPackSetVariants = 4;

// Decode steps of every batch with its rows spread over S distinct pack sets
// (row b on set b mod S: factorized serving's step, every row adding its own
// set's corrections to the shared base GEMMs) against the same batch's step
// without packs, in `rounds` rounds that each run every variant, so drift hits
// them alike: what the corrections cost a step, without the scheduler and the
// requests around it (serving_bench measures those). Two layouts: the host
// tier's (us transposed: SmallGemmAccumulate adds t · usᵀ along the outputs;
// vt transposed too since 2026-12-08: t = x · vtᵀ as rank-wide vectors of
// sums, the key "us_transposed" kept for the series) and contiguous (SmallGemm
// sums along the rank into a buffer, and along the inputs for t: the only path
// before 2026-12-04). And "shared_factors": S distinct sets (S groups, as
// many kernel calls) that all reference the first set's transposed factors,
// one set's bytes: what the groups cost apart from the bytes they read. Per
// (batch, S) the median of the rounds' ratios and the ratio of the fastest
// steps.
Json PackSetSteps(const std::string& name, const ModelConfig& c, const Transformer& m, const ModelWeights& w,
                  std::vector<Decoding>& decodings, const std::vector<int64_t>& sets, int64_t rounds) {
  const int64_t rank = SyntheticPackRank(name);
  const int64_t most = *std::max_element(sets.begin(), sets.end());
  std::vector<std::shared_ptr<const WeightDelta>> deltas[2];  // [us transposed?]
  std::vector<std::shared_ptr<const WeightDelta>> shared;     // set 0's factors, `most` sets
  for (int64_t i = 0; i < most; ++i) {
    for (bool transposed : {false, true}) deltas[transposed].push_back(SyntheticDelta(c, w, rank, 100 + i, transposed));
    shared.push_back(*WeightDelta::Create(c, deltas[1][0]->terms()));
  }
  std::fprintf(stderr, "[%s] decode steps over distinct pack sets (rank %lld, float16 factors), %lld rounds:\n",
               name.c_str(), static_cast<long long>(rank), static_cast<long long>(rounds));
  Json runs = Json::array();
  for (Decoding& d : decodings) {
    for (int64_t s : sets) {
      if (s > d.batch) continue;
      // Variant 0: no packs; 1: us transposed; 2: us contiguous; 3: shared factors.
      constexpr int kVariants = kPackSetVariants;
      const char* const keys[kVariants] = {"", "us_transposed", "us_contiguous", "shared_factors"};
      std::vector<SeqStep> steps[kVariants] = {d.dec, d.dec, d.dec, d.dec};
      for (size_t b = 0; b < d.dec.size(); ++b) {
        steps[1][b].delta = deltas[1][b % s].get();
        steps[2][b].delta = deltas[0][b % s].get();
        steps[3][b].delta = shared[b % s].get();
      }
      for (int v = 1; v < kVariants; ++v) (void)*m.Step(w, *d.cache, steps[v]);  // warm-up
      std::vector<double> seconds[kVariants];
      for (int64_t r = 0; r < rounds; ++r) {
        for (int v = 0; v < kVariants; ++v) {
          for (auto& q : steps[v]) q.tokens[0] = static_cast<int32_t>((r * 17 + q.slot) % c.vocab_size);
          auto ts = Clock::now();
          (void)*m.Step(w, *d.cache, steps[v]);
          seconds[v].push_back(Seconds(ts));
        }
      }
      Json r;
      r["batch"] = d.batch;
      r["sets"] = s;
      r["rank"] = rank;
      r["base_seconds"] = seconds[0];
      std::string note;
      for (int v = 1; v < kVariants; ++v) {
        const std::string key = keys[v];
        std::vector<double> ratios;
        for (size_t i = 0; i < seconds[v].size(); ++i) ratios.push_back(seconds[v][i] / seconds[0][i]);
        const double fastest = *std::min_element(seconds[v].begin(), seconds[v].end()) /
                               *std::min_element(seconds[0].begin(), seconds[0].end());
        r[key] = {{"seconds", seconds[v]}, {"vs_base", Median(ratios)}, {"fastest_vs_base", fastest}};
        char part[160];
        std::snprintf(part, sizeof(part), ", %s %.3f ms (%.3fx; fastest %.3fx)", key.c_str(), 1e3 * Median(seconds[v]),
                      Median(ratios), fastest);
        note += part;
      }
      std::fprintf(stderr, "  batch %lld, %lld sets: without packs %.3f ms%s\n", static_cast<long long>(d.batch),
                   static_cast<long long>(s), 1e3 * Median(seconds[0]), note.c_str());
      runs.push_back(r);
    }
  }
  return {{"rounds", rounds}, {"rank", rank}, {"factor_precision", "float16"}, {"runs", runs}};
}

Json RunShape(const std::string& name, const std::vector<int64_t>& batches, int64_t prompt_len, int64_t steps,
              int64_t linear_rounds, int64_t step_rounds, const std::vector<int64_t>& sets, int64_t set_rounds,
              const Ceilings& ceil) {
  ModelConfig c = BenchShape(name);
  auto t0 = Clock::now();
  auto w = RandomBenchWeights(c);
  std::fprintf(stderr, "[%s] %.2fM parameters, init %.1f s\n", name.c_str(), c.NumParameters() / 1e6, Seconds(t0));
  Transformer m(c);
  Json out;
  out["parameters"] = c.NumParameters();
  out["weight_bytes"] = w->TotalBytes();
  // Bytes read per decoded token: every weight except the embedding table
  // (only one row of it is gathered), counting a tied lm_head once.
  int64_t read_bytes = w->TotalBytes();
  if (!c.tie_word_embeddings) read_bytes -= w->embed_tokens().numel() * 4;
  out["decode_bytes_per_step"] = read_bytes;
  double batch1_step = 0;
  // The roofline of a decode step at `batch` rows: every weight read once, 2 FLOP per weight and row.
  auto roofline = [&](int64_t batch) {
    return std::max(read_bytes / ceil.read_bandwidth, 2.0 * batch * (read_bytes / 4) / ceil.fma_flops);
  };
  std::vector<Decoding> decodings;
  for (int64_t batch : batches) {
    // The linears' kernel per run: the best small-batch kernel first (what
    // serving uses), then the other one, then BLAS (kOff). One prefill, then
    // steps + 1 decode steps per variant into the same cache.
    std::vector<SmallGemmIsa> variants = {SmallGemmBestIsa()};
    if (batch <= kSmallGemmMaxRows && SmallGemmBestIsa() != SmallGemmIsa::kOff) {
      if (batch >= 2 && SmallGemmBestIsa() == SmallGemmIsa::kAvx512) variants.push_back(SmallGemmIsa::kAvx2);
      variants.push_back(SmallGemmIsa::kOff);
    }
    const int64_t decode_tokens =
        static_cast<int64_t>(variants.size()) * (steps + 1) + 2 * steps + step_rounds + 1 +
        static_cast<int64_t>(sets.size()) * (kPackSetVariants * set_rounds + kPackSetVariants - 1);
    auto cache = *KvCache::Create(c, batch, prompt_len + decode_tokens + 1, at::kFloat);
    std::vector<SeqStep> pre;
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<int32_t> toks(prompt_len);
      for (int64_t i = 0; i < prompt_len; ++i) toks[i] = static_cast<int32_t>((i * 31 + b * 7) % c.vocab_size);
      pre.push_back({*cache->Acquire(), toks});
    }
    // Warm-up forward on one short sequence (allocator, BLAS threads).
    {
      auto warm = *KvCache::Create(c, 1, 8, at::kFloat);
      (void)m.Step(*w, *warm, {{*warm->Acquire(), {1, 2, 3}}});
    }
    auto tp = Clock::now();
    auto logits = m.Step(*w, *cache, pre);
    double prefill_s = Seconds(tp);
    if (!logits.ok()) {
      std::fprintf(stderr, "prefill failed: %s\n", std::string(logits.status().message()).c_str());
      std::exit(1);
    }
    std::vector<SeqStep> dec;
    for (int64_t b = 0; b < batch; ++b) dec.push_back({pre[b].slot, {5}});
    for (SmallGemmIsa isa : variants) {
      SetSmallGemmIsa(isa);
      (void)*m.Step(*w, *cache, dec);  // one untimed step per variant
      auto td = Clock::now();
      for (int64_t s = 0; s < steps; ++s) {
        for (auto& d : dec) d.tokens[0] = static_cast<int32_t>((s * 13 + d.slot) % c.vocab_size);
        (void)*m.Step(*w, *cache, dec);
      }
      double decode_s = Seconds(td);
      SetSmallGemmEnabled(true);
      Json r;
      r["batch"] = batch;
      const bool kernel = isa != SmallGemmIsa::kOff && batch <= kSmallGemmMaxRows;
      r["linear"] = kernel ? absl::StrCat("small_gemm_", SmallGemmIsaName(isa)) : (batch == 1 ? "gemv" : "blas");
      r["prompt_len"] = prompt_len;
      r["prefill_seconds"] = prefill_s;
      r["prefill_tokens_per_s"] = batch * prompt_len / prefill_s;
      r["decode_steps"] = steps;
      r["decode_seconds_per_step"] = decode_s / steps;
      r["decode_tokens_per_s"] = batch * steps / decode_s;
      std::string note;
      r["roofline_seconds_per_step"] = roofline(batch);
      r["step_vs_roofline"] = (decode_s / steps) / roofline(batch);
      // The least step_vs_batch1 this machine allows: this batch's roofline over batch 1's.
      r["roofline_step_vs_batch1"] = roofline(batch) / roofline(1);
      if (batch == 1) {
        // The batch-1 step the others are set against: the model's own path (the first variant).
        if (isa == variants.front()) batch1_step = decode_s / steps;
        double bound = read_bytes / ceil.memcpy_bandwidth;
        r["memory_bound_seconds_per_token"] = bound;
        r["decode_vs_bound"] = (decode_s / steps) / bound;
        note = absl::StrCat(", ", r["decode_vs_bound"].get<double>(), "x the memory bound");
      } else if (batch1_step > 0) {
        r["step_vs_batch1"] = (decode_s / steps) / batch1_step;
        note = absl::StrCat(", ", r["step_vs_batch1"].get<double>(), "x the batch-1 step (roofline allows ",
                            r["roofline_step_vs_batch1"].get<double>(), "x; this step is ",
                            r["step_vs_roofline"].get<double>(), "x its roofline)");
      }
      std::fprintf(stderr, "[%s] batch %lld (%s): prefill %.1f tok/s, decode %.1f tok/s (%.2f ms/step)%s\n",
                   name.c_str(), static_cast<long long>(batch), r["linear"].get<std::string>().c_str(),
                   r["prefill_tokens_per_s"].get<double>(), r["decode_tokens_per_s"].get<double>(),
                   1e3 * decode_s / steps, note.c_str());
      out["runs"].push_back(r);
    }
    // Attention read in place from the KV cache (core/decode_attention.h, the
    // default) against ATen's gathered, masked path, the linears on the best
    // kernel: steps alternating between the two, so drift hits both alike.
    std::vector<double> in_place, gathered;
    for (int64_t s = 0; s < steps; ++s) {
      for (bool direct : {true, false}) {
        SetDecodeAttentionEnabled(direct);
        auto ts = Clock::now();
        (void)*m.Step(*w, *cache, dec);
        (direct ? in_place : gathered).push_back(Seconds(ts));
      }
    }
    SetDecodeAttentionEnabled(true);
    Json a;
    a["batch"] = batch;
    a["context"] = cache->length(dec.front().slot);
    a["decode_attention_isa"] = DecodeAttentionIsaName(DecodeAttentionActiveIsa());
    a["in_place_seconds_per_step"] = in_place;
    a["gathered_seconds_per_step"] = gathered;
    a["gathered_vs_in_place"] = Median(gathered) / Median(in_place);
    std::fprintf(stderr, "[%s] batch %lld, context %lld: attention in place %.2f ms/step, gathered %.2f (%.3fx)\n",
                 name.c_str(), static_cast<long long>(batch), static_cast<long long>(a["context"].get<int64_t>()),
                 1e3 * Median(in_place), 1e3 * Median(gathered), a["gathered_vs_in_place"].get<double>());
    out["attention_runs"].push_back(a);
    decodings.push_back({batch, std::move(cache), dec, {}});
  }
  if (step_rounds > 0) {
    for (Decoding& d : decodings) (void)*m.Step(*w, *d.cache, d.dec);  // warm-up
    for (int64_t r = 0; r < step_rounds; ++r) {
      for (Decoding& d : decodings) {
        for (auto& q : d.dec) q.tokens[0] = static_cast<int32_t>((r * 17 + q.slot) % c.vocab_size);
        auto ts = Clock::now();
        (void)*m.Step(*w, *d.cache, d.dec);
        d.seconds.push_back(Seconds(ts));
      }
    }
    const Decoding* one = nullptr;
    for (const Decoding& d : decodings) {
      if (d.batch == 1) one = &d;
    }
    std::fprintf(stderr, "[%s] whole decode steps, %lld rounds:\n", name.c_str(), static_cast<long long>(step_rounds));
    Json runs = Json::array();
    for (const Decoding& d : decodings) {
      Json r;
      r["batch"] = d.batch;
      r["context"] = d.cache->length(d.dec.front().slot);
      r["seconds"] = d.seconds;
      r["median_seconds"] = Median(d.seconds);
      r["fastest_seconds"] = *std::min_element(d.seconds.begin(), d.seconds.end());
      const std::string note = one != nullptr && one != &d ? RatiosToBatch1(d.seconds, one->seconds, "step", r) : "";
      std::fprintf(stderr, "  step, batch %lld: %.2f ms (fastest %.2f)%s\n", static_cast<long long>(d.batch),
                   1e3 * r["median_seconds"].get<double>(), 1e3 * r["fastest_seconds"].get<double>(), note.c_str());
      runs.push_back(r);
    }
    out["step_rounds"] = {{"rounds", step_rounds}, {"runs", runs}};
  }
  if (set_rounds > 0 && !sets.empty()) {
    out["pack_set_steps"] = PackSetSteps(name, c, m, *w, decodings, sets, set_rounds);
  }
  if (linear_rounds > 0) {
    double linear_bytes = static_cast<double>(w->lm_head().numel()) * 4;
    for (const LayerWeights& lw : w->layers()) {
      for (const at::Tensor* t : {&lw.q, &lw.k, &lw.v, &lw.o, &lw.gate, &lw.up, &lw.down}) {
        linear_bytes += static_cast<double>(t->numel()) * 4;
      }
    }
    std::fprintf(stderr, "[%s] the linears alone (%.2f GB), %lld rounds:\n", name.c_str(), linear_bytes / 1e9,
                 static_cast<long long>(linear_rounds));
    out["linears_alone"] = {{"bytes", linear_bytes},
                            {"rounds", linear_rounds},
                            {"runs", TimeLinears(c, *w, batches, linear_rounds, linear_bytes, ceil)}};
  }
  return out;
}

// The comma-separated counts of --`flag` into *out, each in [1, 256]; false,
// naming the flag and the entry, for anything else.
bool ParseCounts(const std::string& text, const char* flag, const char* what, std::vector<int64_t>* out) {
  for (absl::string_view e : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(e, &v) || v < 1 || v > 256) {
      std::fprintf(stderr, "--%s: '%s' is not %s in [1, 256]\n", flag, std::string(e).c_str(), what);
      return false;
    }
    out->push_back(v);
  }
  return true;
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 1, {});
  if (!args.ok()) {
    std::fprintf(stderr, "%s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  std::string shapes = args->StringOr("shapes", "tiny,1.1b");
  std::vector<int64_t> batches, sets;
  if (!ParseCounts(args->StringOr("batches", "1,2,4,8,16"), "batches", "a batch size", &batches) ||
      !ParseCounts(args->StringOr("sets", "8"), "sets", "a number of pack sets", &sets)) {
    return 2;
  }
  int64_t prompt_len = *args->IntOr("prompt-len", 128);
  int64_t steps = *args->IntOr("decode-steps", 32);
  int64_t linear_rounds = *args->IntOr("linear-rounds", 5);
  int64_t step_rounds = *args->IntOr("step-rounds", 9);
  if (step_rounds < 0) {
    std::fprintf(stderr, "--step-rounds: %lld is negative\n", static_cast<long long>(step_rounds));
    return 2;
  }
  int64_t set_rounds = *args->IntOr("set-rounds", 9);
  if (set_rounds < 0) {
    std::fprintf(stderr, "--set-rounds: %lld is negative\n", static_cast<long long>(set_rounds));
    return 2;
  }
  int64_t threads = *args->IntOr("threads", 0);
  std::string out_dir = args->StringOr("out", "bench/results");
  if (Status s = args->CheckAllUsed(); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  }
  SetIntraOpThreads(threads);
  Json result;
  result["benchmark"] = "model_bench";
  result["timestamp"] = UtcTimestamp();
  result["machine"] = MachineInfo();
  Ceilings ceil;
  ceil.memcpy_bandwidth = MemcpyBandwidth(size_t{512} << 20, 5);
  result["memcpy_bandwidth_bytes_per_s"] = ceil.memcpy_bandwidth;
  const int nthreads = at::get_num_threads();
  ceil.read_bandwidth = MeasureReadBandwidth(size_t{1} << 30, nthreads, 5);
  const FmaPeak peak = MeasureFmaPeak(nthreads, 5);
  ceil.fma_flops = peak.flops_per_s;
  result["roofline"] = {{"threads", nthreads},
                        {"read_bandwidth_bytes_per_s", ceil.read_bandwidth},
                        {"fma_isa", peak.isa},
                        {"fma_flops_per_s", ceil.fma_flops},
                        {"ridge_rows", ceil.fma_flops / (2.0 * ceil.read_bandwidth / 4)}};
  std::fprintf(stderr,
               "memcpy bandwidth %.2f GB/s; %d threads: read %.2f GB/s, FMA peak (%s) %.1f GFLOP/s: a float32 "
               "linear is compute-bound from %.1f rows\n",
               ceil.memcpy_bandwidth / 1e9, nthreads, ceil.read_bandwidth / 1e9, peak.isa.c_str(), ceil.fma_flops / 1e9,
               result["roofline"]["ridge_rows"].get<double>());
  for (absl::string_view s : absl::StrSplit(shapes, ',')) {
    result["shapes"][std::string(s)] =
        RunShape(std::string(s), batches, prompt_len, steps, linear_rounds, step_rounds, sets, set_rounds, ceil);
  }
  return WriteBenchResult(result, "model", out_dir);
}

}  // namespace
}  // namespace skillpack

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // core/omp_wait_policy.h
  return skillpack::Main(argc, argv);
}
