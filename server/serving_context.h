// The parts of a running server that the gRPC services share. Owned by
// SkillpackServer (server.h); the services hold a const pointer to it.
#ifndef SKILLPACK_SERVER_SERVING_CONTEXT_H_
#define SKILLPACK_SERVER_SERVING_CONTEXT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_replace.h"

#include "absl/time/time.h"
#include "core/model_config.h"
#include "core/tokenizer.h"
#include "server/pack_cache.h"
#include "server/pack_registry.h"
#include "server/pack_runtime.h"
#include "server/pack_store.h"
#include "server/request_router.h"
#include "server/scheduler.h"
#include "server/server_metrics.h"

namespace skillpack {

struct ServingContext {
  const ModelConfig* model_config = nullptr;  // the base model's config.json
  std::string model_dir;                      // the --model folder
  const Tokenizer* tokenizer = nullptr;
  Scheduler* scheduler = nullptr;
  // Reads go to the store and the cache; every change to the set of packs
  // (upload, delete, unload) goes through the registry.
  PackStore* store = nullptr;
  PackCache* cache = nullptr;
  PackRegistry* packs = nullptr;
  ServerMetrics* metrics = nullptr;
  RequestRouter* router = nullptr;
  // Bearer token the Admin service requires; empty = Admin refuses every call.
  std::string admin_token;
  // Largest prompt (or chat text) in bytes; longer ones are refused before
  // they are tokenized (--max-prompt-bytes).
  int64_t max_prompt_bytes = int64_t{1} << 20;
  // Admin.UploadPack: uploads in progress at once, and how long one may send
  // nothing before the server cancels it (--max-concurrent-uploads,
  // --upload-idle-timeout-seconds).
  int32_t max_concurrent_uploads = 4;
  absl::Duration upload_idle_timeout = absl::Seconds(30);
  absl::Time started;

  // `s` as a client may see it: the server's own directories (the pack store,
  // the model folder) in its message become "<packs>" and "<model>".
  Status ClientFacing(const Status& s) const {
    if (s.ok()) return s;
    std::vector<std::pair<std::string, std::string>> paths;
    if (store != nullptr && !store->dir().empty()) paths.emplace_back(store->dir(), "<packs>");
    if (!model_dir.empty()) paths.emplace_back(model_dir, "<model>");
    return Status(s.code(), absl::StrReplaceAll(s.message(), paths));
  }
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SERVING_CONTEXT_H_
