#include "core/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

// A shard name from an index must stay inside the model folder.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

std::string ShardName(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

Status RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("cannot remove stale ", path));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string index_path = JoinPath(dir, kCheckpointIndexFile);
  const std::string single_path = JoinPath(dir, kSingleCheckpointFile);

  if (!PathExists(index_path)) {
    if (!PathExists(single_path)) {
      return absl::NotFoundError(absl::StrCat("no ", kSingleCheckpointFile, " or ", kCheckpointIndexFile, " in ", dir));
    }
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    ckpt->files_.push_back(std::move(file));
    RETURN_IF_ERROR(ckpt->Index());
    return ckpt;
  }

  ASSIGN_OR_RETURN(Json index, ReadJsonFile(index_path));
  if (!index.is_object()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing object 'weight_map'"));
  }
  // shard file -> tensor names the index assigns to it, in first-seen order.
  std::vector<std::string> shard_order;
  std::map<std::string, std::set<std::string>> expected;
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry for '", name, "' is not a string"));
    }
    const std::string& file = shard.get_ref<const std::string&>();
    if (!IsPlainFileName(file)) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry for '", name, "' names '", file, "', not a file in the folder"));
    }
    auto [it, inserted] = expected.try_emplace(file);
    if (inserted) shard_order.push_back(file);
    it->second.insert(name);
  }

  for (const std::string& file : shard_order) {
    const std::string path = JoinPath(dir, file);
    StatusOr<std::unique_ptr<SafetensorsFile>> shard = SafetensorsFile::Open(path);
    if (!shard.ok()) {
      return Annotate(shard.status(), absl::StrCat("shard listed in ", index_path));
    }
    const std::set<std::string>& want = expected[file];
    for (const std::string& name : want) {
      if ((*shard)->Find(name) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, " maps tensor '", name, "' to ", path, ", which does not contain it"));
      }
    }
    for (const TensorView& t : (*shard)->tensors()) {
      if (want.count(t.name) == 0) {
        auto other = wm->find(t.name);
        return absl::InvalidArgumentError(
            absl::StrCat(path, " contains tensor '", t.name, "', which ", index_path,
                         other == wm->end() ? " does not list" : absl::StrCat(" maps to ", other->get<std::string>())));
      }
    }
    ckpt->files_.push_back(std::move(shard).value());
  }
  RETURN_IF_ERROR(ckpt->Index());
  return ckpt;
}

Status Checkpoint::Index() {
  by_name_.clear();
  std::map<absl::string_view, const SafetensorsFile*> owner;
  for (const auto& file : files_) {
    for (const TensorView& t : file->tensors()) {
      auto [it, inserted] = owner.emplace(t.name, file.get());
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' is in both ", it->second->path(), " and ", file->path()));
      }
      by_name_.emplace_back(t.name, &t);
    }
  }
  std::sort(by_name_.begin(), by_name_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return absl::OkStatus();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(name);
  return out;
}

const TensorView* Checkpoint::Find(absl::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [](const std::pair<std::string, const TensorView*>& e, absl::string_view n) {
                               return absl::string_view(e.first) < n;
                             });
  if (it == by_name_.end() || it->first != name) return nullptr;
  return it->second;
}

StatusOr<TensorView> Checkpoint::Get(absl::string_view name) const {
  const TensorView* t = Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no tensor '", name, "' in checkpoint ", dir_));
  return *t;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, view] : by_name_) total += view->nbytes;
  return total;
}

Status WriteCheckpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors, uint64_t max_shard_bytes,
                       const std::map<std::string, std::string>& metadata) {
  std::set<absl::string_view> seen;
  uint64_t total = 0;
  for (const TensorToWrite& t : tensors) {
    RETURN_IF_ERROR(Annotate(ValidateTensorToWrite(t), dir));
    if (!seen.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": duplicate tensor name '", t.name, "'"));
    }
    total += t.nbytes;
  }
  RETURN_IF_ERROR(MakeDirectories(dir));
  const std::string index_path = JoinPath(dir, kCheckpointIndexFile);
  const std::string single_path = JoinPath(dir, kSingleCheckpointFile);

  if (max_shard_bytes == 0 || total <= max_shard_bytes) {
    RETURN_IF_ERROR(WriteSafetensorsFile(single_path, tensors, metadata));
    RETURN_IF_ERROR(RemoveIfExists(index_path));
    return SyncParentDirectory(single_path);
  }

  // Greedy split in the given order.
  std::vector<std::vector<TensorToWrite>> shards;
  uint64_t current = 0;
  for (const TensorToWrite& t : tensors) {
    if (shards.empty() || (!shards.back().empty() && current + t.nbytes > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += t.nbytes;
  }

  Json weight_map = Json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string name = ShardName(k + 1, shards.size());
    RETURN_IF_ERROR(WriteSafetensorsFile(JoinPath(dir, name), shards[k], metadata));
    for (const TensorToWrite& t : shards[k]) weight_map[t.name] = name;
  }
  Json index = Json::object();
  index["metadata"] = Json::object({{"total_size", total}});
  index["weight_map"] = std::move(weight_map);
  RETURN_IF_ERROR(WriteFileAtomically(index_path, index.dump(2, ' ', false, Json::error_handler_t::replace) + "\n"));
  RETURN_IF_ERROR(RemoveIfExists(single_path));
  return SyncParentDirectory(index_path);
}

}  // namespace skillpack
