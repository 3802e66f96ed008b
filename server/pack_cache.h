// The pack cache between the pack store (disk) and the scheduler, in two
// tiers, each with a byte budget and LRU eviction:
//   host:  decoded packs (PackRuntime::Decode), one per pack name; LoadPack
//          can pin one so it is never evicted;
//   fused: composed weight sets, one per distinct selection (pack names,
//          weights, module filters), aliasing every base tensor no pack touches.
// Evicting an entry only drops the cache's reference: requests running on a
// weight set keep it alive until they finish.
#ifndef SKILLPACK_SERVER_PACK_CACHE_H_
#define SKILLPACK_SERVER_PACK_CACHE_H_

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/status.h"
#include "pack/selection.h"
#include "server/pack_runtime.h"
#include "server/pack_store.h"

namespace skillpack {

class ModelWeights;
class ServerMetrics;

struct PackCacheOptions {
  int64_t host_budget_bytes = int64_t{4} << 30;
  int64_t fused_budget_bytes = int64_t{8} << 30;
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

  std::vector<CacheTierStats> Stats() const ABSL_LOCKS_EXCLUDED(mu_);

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
  struct Tier {
    int64_t bytes = 0;
    int64_t hits = 0, misses = 0, evictions = 0;
  };

  // Host-tier lookup or decode. REQUIRES: build_mu_ held.
  StatusOr<std::shared_ptr<const HostPack>> GetHostPack(const std::string& name, bool count_hit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(build_mu_) ABSL_LOCKS_EXCLUDED(mu_);
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
  Tier host_tier_ ABSL_GUARDED_BY(mu_);
  Tier fused_tier_ ABSL_GUARDED_BY(mu_);
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_PACK_CACHE_H_
