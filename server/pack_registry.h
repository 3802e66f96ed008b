// The one owner of the pack lifecycle in a running server. Every change to
// the set of packs goes through here: an upload installed, a pack deleted or
// unloaded, or a change that another server sharing the pack directory made
// (found by Rescan). Each reaches the store's index, the router's invariant and
// every cache tier (decoded packs, fused sets, factorized deltas) under one
// lock, in one order: registry -> router -> store -> cache (build, then
// entries); a rescan validates the files it found before it takes the lock.
// Reads (the store's Get/List, the cache's Get on the request path) never
// take the registry's lock.
//
// Guarantee: once Commit, Delete, Unload or a Rescan that found a change
// returns, no cache tier holds anything of the replaced or deleted version,
// so every later request runs on the current version or, after a delete,
// fails with NOT_FOUND. A request that got its weights before keeps that
// version, whole, until it finishes.
//
// On a shared directory, a change made by another server is seen within one
// rescan interval (StartRescans) plus the time to validate the new file.
#ifndef SKILLPACK_SERVER_PACK_REGISTRY_H_
#define SKILLPACK_SERVER_PACK_REGISTRY_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/status.h"
#include "server/pack_cache.h"
#include "server/pack_store.h"

namespace skillpack {

class RequestRouter;
class ServerMetrics;

class PackRegistry {
 public:
  // `store` and `cache` must outlive the registry; `router` and `metrics` may
  // be null (no router invariant to keep, no metrics).
  PackRegistry(PackStore* store, PackCache* cache, RequestRouter* router, ServerMetrics* metrics);
  // Stops the rescan thread.
  ~PackRegistry();
  PackRegistry(const PackRegistry&) = delete;
  PackRegistry& operator=(const PackRegistry&) = delete;

  // Verifies a finished upload (outside the lock: the slow part), then
  // installs it and drops every cached entry of the version it replaces.
  // PackUpload::Commit's errors.
  StatusOr<StoredPack> Commit(PackUpload* upload) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes the pack from the store and the cache. NOT_FOUND when not stored;
  // FAILED_PRECONDITION when the loaded router names it.
  Status Delete(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  // Drops the pack from every cache tier (it stays stored). NOT_FOUND when
  // not stored.
  Status Unload(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  // PackStore::Rescan (without the registry's lock: validating a new file
  // may take long), then, under it, drops the cached entries of every pack
  // replaced or removed. A removed pack that the loaded router names is reported on
  // stderr: requests routed to it fail with NOT_FOUND until the router is
  // replaced. Returns the changes.
  std::vector<PackChange> Rescan() ABSL_LOCKS_EXCLUDED(mu_);

  // Calls Rescan every `interval` on a background thread until destruction
  // (once; later calls are ignored). For replicas sharing a pack directory.
  void StartRescans(absl::Duration interval) ABSL_LOCKS_EXCLUDED(stop_mu_);

  PackStore* store() const { return store_; }
  PackCache* cache() const { return cache_; }

 private:
  void RescanLoop(absl::Duration interval) ABSL_LOCKS_EXCLUDED(stop_mu_);

  PackStore* const store_;
  PackCache* const cache_;
  RequestRouter* const router_;
  ServerMetrics* const metrics_;

  // Serialises every lifecycle change (see the order above).
  absl::Mutex mu_;

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread rescan_thread_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_PACK_REGISTRY_H_
