#include "server/pack_registry.h"

#include <algorithm>
#include <cstdio>

#include "server/request_router.h"
#include "server/server_metrics.h"

namespace skillpack {

PackRegistry::PackRegistry(PackStore* store, PackCache* cache, RequestRouter* router, ServerMetrics* metrics)
    : store_(store), cache_(cache), router_(router), metrics_(metrics) {}

PackRegistry::~PackRegistry() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (rescan_thread_.joinable()) rescan_thread_.join();
}

StatusOr<StoredPack> PackRegistry::Commit(PackUpload* upload) {
  ASSIGN_OR_RETURN(StoredPack verified, upload->Verify());
  absl::MutexLock lock(&mu_);
  bool replaced = false;
  ASSIGN_OR_RETURN(StoredPack stored, upload->Install(std::move(verified), &replaced));
  if (replaced) cache_->Unload(stored.summary.name);
  return stored;
}

Status PackRegistry::Delete(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto remove = [&] { return store_->Delete(name); };
  Status s = router_ != nullptr ? router_->RemovePack(name, remove) : remove();
  // NOT_FOUND may mean another server removed it first: nothing of it may stay cached.
  if (s.ok() || s.code() == absl::StatusCode::kNotFound) cache_->Unload(name);
  return s;
}

Status PackRegistry::Unload(const std::string& name) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(store_->Get(name).status());
  cache_->Unload(name);
  return absl::OkStatus();
}

std::vector<PackChange> PackRegistry::Rescan() {
  // Validating and hashing new files may take long: done before taking the
  // lock, so uploads and deletes through this server do not wait for it (the
  // store's index keeps what they did meanwhile, PackStore::Rescan).
  std::vector<PackChange> changes = store_->Rescan();
  if (changes.empty()) return changes;
  absl::MutexLock lock(&mu_);
  std::vector<std::string> labels;
  if (router_ != nullptr) labels = router_->Current().config.labels;
  for (const PackChange& c : changes) {
    std::fprintf(stderr, "pack store: rescan: %s %s (changed by another process)\n", PackChangeKindName(c.kind),
                 c.name.c_str());
    if (metrics_) metrics_->pack_store_changes.WithLabels({PackChangeKindName(c.kind)}).Increment();
    if (c.kind == PackChange::kAdded) continue;
    cache_->Unload(c.name);
    if (c.kind == PackChange::kRemoved && std::find(labels.begin(), labels.end(), c.name) != labels.end()) {
      std::fprintf(stderr,
                   "pack store: warning: the loaded router names pack %s, which was removed; requests routed to it "
                   "fail with NOT_FOUND until the router is replaced (Admin.SetRouter)\n",
                   c.name.c_str());
    }
  }
  return changes;
}

void PackRegistry::StartRescans(absl::Duration interval) {
  absl::MutexLock lock(&stop_mu_);
  if (rescan_thread_.joinable() || stop_) return;
  rescan_thread_ = std::thread([this, interval] { RescanLoop(interval); });
}

void PackRegistry::RescanLoop(absl::Duration interval) {
  for (;;) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), interval)) return;
    }
    Rescan();
  }
}

}  // namespace skillpack
