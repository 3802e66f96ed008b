// The pack cache between the pack store (disk) and the scheduler:
//   host:       decoded packs (PackRuntime::Decode), one per pack name, with a
//               byte budget and LRU eviction; LoadPack can pin one so it is
//               never evicted;
//   fused:      composed weight sets, one per distinct selection (pack names,
//               weights, module filters), aliasing every base tensor no pack
//               touches; byte budget, LRU;
//   factorized: WeightDeltas, one per distinct selection, referencing the
//               host tier's decoded tensors (they add no bytes: an entry is
//               dropped with any of its packs' host entries); count-bounded LRU.
// How a selection is served (ServingMode): merged (fused weights, one forward
// pass per distinct set), factorized (the base plus the set's delta, sharing
// the base pass with every other set), or auto: factorized, except sets that
// MergePolicy finds hot, which are composed in the background and served
// merged once ready, and unmerged when they cool down.
// Evicting an entry only drops the cache's reference: requests running on a
// weight set keep it alive until they finish.
#ifndef SKILLPACK_SERVER_PACK_CACHE_H_
#define SKILLPACK_SERVER_PACK_CACHE_H_

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/status.h"
#include "pack/selection.h"
#include "server/merge_policy.h"
#include "server/pack_runtime.h"
#include "server/pack_store.h"

namespace skillpack {

class ModelWeights;
class ServerMetrics;

enum class ServingMode { kMerged, kFactorized, kAuto };
const char* ServingModeName(ServingMode m);  // "merged" | "factorized" | "auto"
// INVALID_ARGUMENT naming the value for anything else.
StatusOr<ServingMode> ParseServingMode(absl::string_view name);

struct PackCacheOptions {
  int64_t host_budget_bytes = int64_t{4} << 30;
  int64_t fused_budget_bytes = int64_t{8} << 30;
  ServingMode mode = ServingMode::kAuto;
  MergePolicyOptions merge;            // auto mode
  int32_t max_factorized_sets = 4096;  // factorized tier entries
};

// What a request runs with: fused weights (delta null), or the base weights
// plus the selection's delta, applied to the request's rows only.
struct ServingWeights {
  std::shared_ptr<const ModelWeights> weights;
  std::shared_ptr<const WeightDelta> delta;
};

struct CacheTierStats {
  std::string tier;
  int64_t bytes = 0;
  int64_t budget_bytes = 0;
  int32_t entries = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;
};

// Thread-safe. Misses (decoding, composing) are serialised on one mutex so
// that a burst of requests for the same new selection builds it once; hits
// never wait for a miss.
class PackCache {
 public:
  // `store`, `runtime` and `metrics` (may be null) must outlive the cache.
  PackCache(std::shared_ptr<const ModelWeights> base, const PackStore* store, const PackRuntime* runtime,
            PackCacheOptions options, ServerMetrics* metrics);
  // Waits for a background composition in flight.
  ~PackCache();

  // What a request for `choices` runs with, by the serving mode (see above):
  // the base for an empty selection; else fused weights (GetWeights) or the
  // base plus the factorized delta, decoding packs as needed. NOT_FOUND for a
  // pack not in the store; *compose_seconds (may be null) gets the time spent
  // loading and composing on this call (0 on a hit).
  StatusOr<ServingWeights> Get(std::vector<PackSelection> choices, double* compose_seconds)
      ABSL_LOCKS_EXCLUDED(mu_, build_mu_, merge_mu_);

  // The weight set for `choices`: the base for an empty selection, else the
  // fused set, built (decoding packs as needed) on a miss. The selection is
  // canonicalised (sorted by name, filters sorted), so order does not matter.
  // NOT_FOUND for a pack not in the store; *compose_seconds (may be null) gets
  // the time spent loading and composing (0 on a hit).
  StatusOr<std::shared_ptr<const ModelWeights>> GetWeights(std::vector<PackSelection> choices, double* compose_seconds)
      ABSL_LOCKS_EXCLUDED(mu_, build_mu_);

  // Decodes `name` into the host tier (a no-op when already there) and pins
  // or unpins it. NOT_FOUND when not stored; RESOURCE_EXHAUSTED when pinned
  // packs alone would exceed the host budget.
  Status Load(const std::string& name, bool pin, double* load_seconds) ABSL_LOCKS_EXCLUDED(mu_, build_mu_);

  // Drops `name` from the host tier and every fused set that uses it, after
  // any decode or compose in flight has finished (so when the pack was first
  // removed from the store, nothing of it is cached once this returns).
  // Returns whether anything was dropped.
  bool Unload(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_, build_mu_);

  struct PackState {
    bool loaded = false;
    bool pinned = false;
    int64_t host_bytes = 0;
  };
  PackState StateOf(const std::string& name) const ABSL_LOCKS_EXCLUDED(mu_);

  // host, fused and factorized tiers (the last holds no bytes of its own).
  std::vector<CacheTierStats> Stats() const ABSL_LOCKS_EXCLUDED(mu_);
  ServingMode mode() const { return options_.mode; }
  // Waits until no background composition is queued or running (tests, benches).
  void WaitForMerges() ABSL_LOCKS_EXCLUDED(merge_mu_);

  // Canonical cache key of a selection (exposed for tests).
  static std::string SelectionKey(const std::vector<PackSelection>& canonical);

 private:
  struct HostEntry {
    std::shared_ptr<const HostPack> pack;
    int64_t bytes = 0;
    bool pinned = false;
    std::list<std::string>::iterator lru;  // position in host_lru_
  };
  struct FusedEntry {
    std::shared_ptr<const ModelWeights> weights;
    int64_t bytes = 0;
    std::vector<std::string> packs;  // names used
    std::list<std::string>::iterator lru;
  };
  struct FactorizedEntry {
    std::shared_ptr<const WeightDelta> delta;
    std::vector<std::string> packs;
    std::list<std::string>::iterator lru;
  };
  struct Tier {
    int64_t bytes = 0;
    int64_t hits = 0, misses = 0, evictions = 0;
  };

  // GetWeights for a canonical selection and its key.
  StatusOr<std::shared_ptr<const ModelWeights>> GetFused(const std::vector<PackSelection>& canonical,
                                                         const std::string& key, double* compose_seconds)
      ABSL_LOCKS_EXCLUDED(mu_, build_mu_);
  // A fused-tier hit (counted, moved to the LRU front); nullptr when absent.
  std::shared_ptr<const ModelWeights> FindFused(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Host-tier lookup or decode. REQUIRES: build_mu_ held.
  StatusOr<std::shared_ptr<const HostPack>> GetHostPack(const std::string& name, bool count_hit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(build_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  StatusOr<std::shared_ptr<const WeightDelta>> GetDelta(const std::vector<PackSelection>& canonical,
                                                        const std::string& key, double* compose_seconds)
      ABSL_LOCKS_EXCLUDED(mu_, build_mu_);
  // Drops factorized entries that use pack `name`.
  void DropDeltasOf(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueMerge(std::vector<PackSelection> canonical, const std::string& key) ABSL_LOCKS_EXCLUDED(merge_mu_);
  void MergeLoop() ABSL_LOCKS_EXCLUDED(merge_mu_);
  void EvictHost(const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictFused(const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseFused(std::map<std::string, FusedEntry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const ModelWeights> base_;
  const PackStore* store_;
  const PackRuntime* runtime_;
  const PackCacheOptions options_;
  ServerMetrics* metrics_;

  absl::Mutex build_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serialises misses
  mutable absl::Mutex mu_;
  std::map<std::string, HostEntry> host_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> host_lru_ ABSL_GUARDED_BY(mu_);  // front = most recent
  std::map<std::string, FusedEntry> fused_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> fused_lru_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FactorizedEntry> factorized_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> factorized_lru_ ABSL_GUARDED_BY(mu_);
  Tier host_tier_ ABSL_GUARDED_BY(mu_);
  Tier fused_tier_ ABSL_GUARDED_BY(mu_);
  Tier factorized_tier_ ABSL_GUARDED_BY(mu_);
  MergePolicy policy_ ABSL_GUARDED_BY(mu_);

  // Background compositions of hot sets (auto mode), one at a time.
  absl::Mutex merge_mu_;
  absl::CondVar merge_cv_;
  std::map<std::string, std::vector<PackSelection>> merge_queue_ ABSL_GUARDED_BY(merge_mu_);
  bool merging_ ABSL_GUARDED_BY(merge_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(merge_mu_) = false;
  std::thread merge_thread_;  // auto mode only
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_PACK_CACHE_H_
