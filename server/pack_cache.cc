#include "server/pack_cache.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/server_metrics.h"

namespace skillpack {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Sorted by name, filters sorted: the order of a request's packs does not matter.
void Canonicalize(std::vector<PackSelection>& choices) {
  for (PackSelection& c : choices) std::sort(c.modules.begin(), c.modules.end());
  std::sort(choices.begin(), choices.end(),
            [](const PackSelection& a, const PackSelection& b) { return a.name < b.name; });
}

bool Uses(const std::vector<std::string>& packs, const std::string& name) {
  return std::find(packs.begin(), packs.end(), name) != packs.end();
}

}  // namespace

const char* ServingModeName(ServingMode m) {
  switch (m) {
    case ServingMode::kMerged:
      return "merged";
    case ServingMode::kFactorized:
      return "factorized";
    case ServingMode::kAuto:
      return "auto";
  }
  return "auto";
}

StatusOr<ServingMode> ParseServingMode(absl::string_view name) {
  for (ServingMode m : {ServingMode::kMerged, ServingMode::kFactorized, ServingMode::kAuto}) {
    if (name == ServingModeName(m)) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat("serving mode '", name, "' is not one of merged, factorized, auto"));
}

PackCache::PackCache(std::shared_ptr<const ModelWeights> base, const PackStore* store, const PackRuntime* runtime,
                     PackCacheOptions options, ServerMetrics* metrics)
    : base_(std::move(base)),
      store_(store),
      runtime_(runtime),
      options_(options),
      metrics_(metrics),
      policy_(options.merge) {
  {
    absl::MutexLock lock(&mu_);
    PublishMetrics();
  }
  if (options_.mode == ServingMode::kAuto) merge_thread_ = std::thread([this] { MergeLoop(); });
}

PackCache::~PackCache() {
  {
    absl::MutexLock lock(&merge_mu_);
    stop_ = true;
    merge_cv_.SignalAll();
  }
  if (merge_thread_.joinable()) merge_thread_.join();
}

StatusOr<ServingWeights> PackCache::Get(std::vector<PackSelection> choices, double* compose_seconds) {
  if (compose_seconds) *compose_seconds = 0;
  Canonicalize(choices);
  const std::string key = SelectionKey(choices);
  if (options_.mode == ServingMode::kMerged) {
    if (choices.empty()) return ServingWeights{base_, nullptr};
    ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, GetFused(choices, key, compose_seconds));
    return ServingWeights{std::move(w), nullptr};
  }
  if (options_.mode == ServingMode::kAuto) {
    bool merge = false;
    {
      absl::MutexLock lock(&mu_);
      merge = policy_.Observe(key);  // base-only requests count: they share the base pass
      if (choices.empty()) return ServingWeights{base_, nullptr};
      if (merge) {
        if (auto w = FindFused(key)) return ServingWeights{std::move(w), nullptr};
      } else if (auto it = fused_.find(key); it != fused_.end()) {
        EraseFused(it);  // cooled down: unmerge (running requests keep their copy)
        PublishMetrics();
      }
    }
    if (merge) QueueMerge(choices, key);
  } else if (choices.empty()) {
    return ServingWeights{base_, nullptr};
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const WeightDelta> delta, GetDelta(choices, key, compose_seconds));
  return ServingWeights{base_, std::move(delta)};
}

StatusOr<std::shared_ptr<const WeightDelta>> PackCache::GetDelta(const std::vector<PackSelection>& canonical,
                                                                 const std::string& key, double* compose_seconds) {
  std::vector<std::shared_ptr<const HostPack>> packs;
  {
    absl::MutexLock lock(&mu_);
    auto it = factorized_.find(key);
    if (it != factorized_.end()) {
      ++factorized_tier_.hits;
      if (metrics_) metrics_->cache_hits.WithLabels({"factorized"}).Increment();
      factorized_lru_.splice(factorized_lru_.begin(), factorized_lru_, it->second.lru);
      return it->second.delta;
    }
    // Warm packs need no build lock: a cold set never holds up a warm one.
    for (const PackSelection& c : canonical) {
      auto h = host_.find(c.name);
      if (h == host_.end()) break;
      host_lru_.splice(host_lru_.begin(), host_lru_, h->second.lru);
      packs.push_back(h->second.pack);
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (packs.size() != canonical.size()) {
    packs.clear();
    absl::MutexLock build(&build_mu_);
    for (const PackSelection& c : canonical) {
      ASSIGN_OR_RETURN(std::shared_ptr<const HostPack> pack, GetHostPack(c.name, /*count_hit=*/true));
      packs.push_back(std::move(pack));
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  StatusOr<std::shared_ptr<const WeightDelta>> delta = runtime_->Factorize(canonical, packs);
  if (!delta.ok()) return Annotate(delta.status(), absl::StrCat("composing ", key));
  std::vector<std::string> names;
  for (const PackSelection& c : canonical) names.push_back(c.name);
  absl::MutexLock lock(&mu_);
  if (metrics_) metrics_->pack_compose_seconds.WithLabels({absl::StrJoin(names, "+")}).Observe(SecondsSince(t1));
  // A miss only once every pack exists (a request naming an unknown pack is none).
  ++factorized_tier_.misses;
  if (metrics_) metrics_->cache_misses.WithLabels({"factorized"}).Increment();
  // Inserted only while every pack is still in the host tier, so an Unload or
  // eviction that ran meanwhile (and dropped the deltas of its pack) is not undone.
  bool all_present = true;
  for (size_t i = 0; i < canonical.size(); ++i) {
    auto h = host_.find(canonical[i].name);
    all_present = all_present && h != host_.end() && h->second.pack == packs[i];
  }
  if (all_present && factorized_.count(key) == 0) {
    FactorizedEntry e;
    e.delta = *delta;
    e.packs = std::move(names);
    factorized_lru_.push_front(key);
    e.lru = factorized_lru_.begin();
    factorized_[key] = std::move(e);
    while (static_cast<int32_t>(factorized_.size()) > std::max(1, options_.max_factorized_sets)) {
      factorized_.erase(factorized_lru_.back());
      factorized_lru_.pop_back();
      ++factorized_tier_.evictions;
      if (metrics_) metrics_->cache_evictions.WithLabels({"factorized"}).Increment();
    }
  }
  if (compose_seconds) *compose_seconds = SecondsSince(t0);
  return *delta;
}

void PackCache::DropDeltasOf(const std::string& name) {
  for (auto it = factorized_.begin(); it != factorized_.end();) {
    if (Uses(it->second.packs, name)) {
      factorized_lru_.erase(it->second.lru);
      it = factorized_.erase(it);
    } else {
      ++it;
    }
  }
}

void PackCache::QueueMerge(std::vector<PackSelection> canonical, const std::string& key) {
  absl::MutexLock lock(&merge_mu_);
  if (stop_ || merge_queue_.count(key) > 0) return;
  merge_queue_.emplace(key, std::move(canonical));
  merge_cv_.Signal();
}

void PackCache::MergeLoop() {
  for (;;) {
    std::string key;
    std::vector<PackSelection> choices;  // canonical (QueueMerge)
    {
      absl::MutexLock lock(&merge_mu_);
      while (!stop_ && merge_queue_.empty()) merge_cv_.Wait(&merge_mu_);
      if (stop_) return;
      key = merge_queue_.begin()->first;
      choices = merge_queue_.begin()->second;
      merging_ = true;
    }
    // Errors (a pack deleted meanwhile) surface to the requests themselves.
    (void)GetFused(choices, key, nullptr);
    absl::MutexLock lock(&merge_mu_);
    merge_queue_.erase(key);
    merging_ = false;
    merge_cv_.SignalAll();
  }
}

void PackCache::WaitForMerges() {
  absl::MutexLock lock(&merge_mu_);
  while (!stop_ && (merging_ || !merge_queue_.empty())) merge_cv_.Wait(&merge_mu_);
}

std::string PackCache::SelectionKey(const std::vector<PackSelection>& canonical) {
  std::vector<std::string> parts;
  for (const PackSelection& c : canonical) {
    // %a prints the float exactly, so distinct weights never share a key.
    char w[64];
    std::snprintf(w, sizeof(w), "%a", static_cast<double>(c.weight));
    parts.push_back(absl::StrCat(c.name, "*", w, "[", absl::StrJoin(c.modules, ","), "]"));
  }
  return absl::StrJoin(parts, "+");
}

StatusOr<std::shared_ptr<const ModelWeights>> PackCache::GetWeights(std::vector<PackSelection> choices,
                                                                    double* compose_seconds) {
  if (compose_seconds) *compose_seconds = 0;
  if (choices.empty()) return base_;
  Canonicalize(choices);
  return GetFused(choices, SelectionKey(choices), compose_seconds);
}

std::shared_ptr<const ModelWeights> PackCache::FindFused(const std::string& key) {
  auto it = fused_.find(key);
  if (it == fused_.end()) return nullptr;
  ++fused_tier_.hits;
  if (metrics_) metrics_->cache_hits.WithLabels({"fused"}).Increment();
  fused_lru_.splice(fused_lru_.begin(), fused_lru_, it->second.lru);
  return it->second.weights;
}

StatusOr<std::shared_ptr<const ModelWeights>> PackCache::GetFused(const std::vector<PackSelection>& choices,
                                                                  const std::string& key, double* compose_seconds) {
  {
    absl::MutexLock lock(&mu_);
    if (auto w = FindFused(key)) return w;
  }
  absl::MutexLock build(&build_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (auto w = FindFused(key)) return w;  // built while we waited
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<const HostPack>> packs;
  for (const PackSelection& c : choices) {
    ASSIGN_OR_RETURN(std::shared_ptr<const HostPack> pack, GetHostPack(c.name, /*count_hit=*/true));
    packs.push_back(std::move(pack));
  }
  {
    // A miss only once every pack exists: a request naming an unknown pack
    // fails above without touching the cache.
    absl::MutexLock lock(&mu_);
    ++fused_tier_.misses;
    if (metrics_) metrics_->cache_misses.WithLabels({"fused"}).Increment();
  }
  const auto t1 = std::chrono::steady_clock::now();
  StatusOr<FusedWeights> fused = runtime_->Compose(choices, packs);
  if (!fused.ok()) return Annotate(fused.status(), absl::StrCat("composing ", key));
  absl::MutexLock lock(&mu_);
  FusedEntry e;
  e.weights = fused->weights;
  e.bytes = fused->bytes;
  for (const PackSelection& c : choices) e.packs.push_back(c.name);
  if (metrics_) metrics_->pack_compose_seconds.WithLabels({absl::StrJoin(e.packs, "+")}).Observe(SecondsSince(t1));
  fused_lru_.push_front(key);
  e.lru = fused_lru_.begin();
  fused_tier_.bytes += e.bytes;
  fused_[key] = std::move(e);
  EvictFused(key);
  PublishMetrics();
  if (compose_seconds) *compose_seconds = SecondsSince(t0);
  return fused->weights;
}

StatusOr<std::shared_ptr<const HostPack>> PackCache::GetHostPack(const std::string& name, bool count_hit) {
  {
    absl::MutexLock lock(&mu_);
    auto it = host_.find(name);
    if (it != host_.end()) {
      if (count_hit) {
        ++host_tier_.hits;
        if (metrics_) metrics_->cache_hits.WithLabels({"host"}).Increment();
      }
      host_lru_.splice(host_lru_.begin(), host_lru_, it->second.lru);
      return it->second.pack;
    }
  }
  ASSIGN_OR_RETURN(StoredPack stored, store_->Get(name));
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<std::shared_ptr<const HostPack>> pack = runtime_->Decode(stored.path);
  if (!pack.ok()) return Annotate(pack.status(), absl::StrCat("decoding pack '", name, "'"));
  if (metrics_) metrics_->pack_load_seconds.WithLabels({name}).Observe(SecondsSince(t0));
  absl::MutexLock lock(&mu_);
  ++host_tier_.misses;
  if (metrics_) metrics_->cache_misses.WithLabels({"host"}).Increment();
  HostEntry e;
  e.pack = *pack;
  e.bytes = (*pack)->bytes();
  host_lru_.push_front(name);
  e.lru = host_lru_.begin();
  host_tier_.bytes += e.bytes;
  host_[name] = std::move(e);
  EvictHost(name);
  PublishMetrics();
  return *pack;
}

Status PackCache::Load(const std::string& name, bool pin, double* load_seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  absl::MutexLock build(&build_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<const HostPack> pack, GetHostPack(name, /*count_hit=*/false));
  if (load_seconds) *load_seconds = SecondsSince(t0);
  absl::MutexLock lock(&mu_);
  auto it = host_.find(name);
  if (it == host_.end()) {
    // Evicted at once: bigger than the budget left by pinned packs.
    return absl::ResourceExhaustedError(absl::StrCat("pack '", name, "' (", pack->bytes(),
                                                     " bytes decoded) does not fit the host cache budget of ",
                                                     options_.host_budget_bytes, " bytes"));
  }
  if (pin && !it->second.pinned) {
    int64_t pinned = 0;
    for (const auto& [n, e] : host_) pinned += e.pinned ? e.bytes : 0;
    if (pinned + it->second.bytes > options_.host_budget_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("pinning '", name, "' would put ", pinned + it->second.bytes,
                                                       " bytes of pinned packs over the host cache budget of ",
                                                       options_.host_budget_bytes, " bytes"));
    }
  }
  it->second.pinned = pin;
  return absl::OkStatus();
}

bool PackCache::Unload(const std::string& name) {
  // Waits for a build in flight (it may be decoding or composing this very
  // pack) so that nothing of `name` is inserted after we return.
  absl::MutexLock build(&build_mu_);
  absl::MutexLock lock(&mu_);
  bool dropped = false;
  auto it = host_.find(name);
  if (it != host_.end()) {
    host_tier_.bytes -= it->second.bytes;
    host_lru_.erase(it->second.lru);
    host_.erase(it);
    dropped = true;
  }
  for (auto f = fused_.begin(); f != fused_.end();) {
    auto next = std::next(f);
    if (Uses(f->second.packs, name)) {
      policy_.Forget(f->first);
      EraseFused(f);
      dropped = true;
    }
    f = next;
  }
  const size_t deltas = factorized_.size();
  DropDeltasOf(name);
  dropped = dropped || factorized_.size() != deltas;
  PublishMetrics();
  return dropped;
}

void PackCache::EvictHost(const std::string& keep) {
  while (host_tier_.bytes > options_.host_budget_bytes) {
    auto victim = host_lru_.end();
    for (auto it = host_lru_.rbegin(); it != host_lru_.rend(); ++it) {
      const HostEntry& e = host_.at(*it);
      if (!e.pinned && *it != keep) {
        victim = std::prev(it.base());
        break;
      }
    }
    if (victim == host_lru_.end()) {
      // Only `keep` and pinned packs are left: drop `keep` unless pinned.
      auto k = host_.find(keep);
      if (k == host_.end() || k->second.pinned) return;
      victim = k->second.lru;
    }
    auto e = host_.find(*victim);
    DropDeltasOf(e->first);  // they reference its tensors
    host_tier_.bytes -= e->second.bytes;
    ++host_tier_.evictions;
    if (metrics_) metrics_->cache_evictions.WithLabels({"host"}).Increment();
    host_.erase(e);
    host_lru_.erase(victim);
  }
}

void PackCache::EraseFused(std::map<std::string, FusedEntry>::iterator it) {
  fused_tier_.bytes -= it->second.bytes;
  fused_lru_.erase(it->second.lru);
  fused_.erase(it);
}

void PackCache::EvictFused(const std::string& keep) {
  // The newest set stays even when it alone exceeds the budget: the request
  // that built it is about to use it.
  while (fused_tier_.bytes > options_.fused_budget_bytes && fused_lru_.size() > 1) {
    const std::string victim = fused_lru_.back() == keep ? *std::prev(fused_lru_.end(), 2) : fused_lru_.back();
    EraseFused(fused_.find(victim));
    ++fused_tier_.evictions;
    if (metrics_) metrics_->cache_evictions.WithLabels({"fused"}).Increment();
  }
}

void PackCache::PublishMetrics() {
  if (!metrics_) return;
  metrics_->cache_bytes.WithLabels({"host"}).Set(static_cast<double>(host_tier_.bytes));
  metrics_->cache_bytes.WithLabels({"fused"}).Set(static_cast<double>(fused_tier_.bytes));
  metrics_->cache_budget_bytes.WithLabels({"host"}).Set(static_cast<double>(options_.host_budget_bytes));
  metrics_->cache_budget_bytes.WithLabels({"fused"}).Set(static_cast<double>(options_.fused_budget_bytes));
}

PackCache::PackState PackCache::StateOf(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  PackState s;
  auto it = host_.find(name);
  if (it != host_.end()) {
    s.loaded = true;
    s.pinned = it->second.pinned;
    s.host_bytes = it->second.bytes;
  }
  return s;
}

std::vector<CacheTierStats> PackCache::Stats() const {
  absl::MutexLock lock(&mu_);
  auto make = [](const char* name, const Tier& t, int64_t budget, size_t entries) {
    CacheTierStats s;
    s.tier = name;
    s.bytes = t.bytes;
    s.budget_bytes = budget;
    s.entries = static_cast<int32_t>(entries);
    s.hits = t.hits;
    s.misses = t.misses;
    s.evictions = t.evictions;
    return s;
  };
  return {make("host", host_tier_, options_.host_budget_bytes, host_.size()),
          make("fused", fused_tier_, options_.fused_budget_bytes, fused_.size()),
          make("factorized", factorized_tier_, 0, factorized_.size())};
}

}  // namespace skillpack
