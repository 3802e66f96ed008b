// A model's weights as Hugging Face stores them in a model folder: either one
// `model.safetensors`, or shards `model-0000K-of-0000N.safetensors` listed by
// `model.safetensors.index.json`. Checkpoint opens (memory-maps) every file and
// gives one name -> tensor view; WriteCheckpoint writes the same layout.
#ifndef SKILLPACK_CORE_CHECKPOINT_H_
#define SKILLPACK_CORE_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/safetensors.h"
#include "core/status.h"

namespace skillpack {

inline constexpr char kSingleCheckpointFile[] = "model.safetensors";
inline constexpr char kCheckpointIndexFile[] = "model.safetensors.index.json";

// The weights of one model folder. Immutable after Open; TensorViews it returns
// stay valid while the Checkpoint lives. Thread-compatible.
class Checkpoint {
 public:
  // Opens `dir`. If dir/model.safetensors.index.json exists it is used:
  // {"metadata": {...}, "weight_map": {"tensor": "shard file name", ...}}.
  // Every shard it names must be a plain file name in `dir`, exist, be a valid
  // safetensors file, and hold exactly the tensors the index maps to it; a tensor
  // in two shards is an error. Otherwise dir/model.safetensors is opened.
  // NOT_FOUND when neither file exists or a shard is missing; INVALID_ARGUMENT
  // naming the file and tensor for a malformed index or shard.
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  // All tensor names, sorted.
  std::vector<std::string> names() const;
  // nullptr if absent.
  const TensorView* Find(absl::string_view name) const;
  // NOT_FOUND naming the tensor and the folder if absent.
  StatusOr<TensorView> Get(absl::string_view name) const;

  // The opened files (one, or the shards in index order of first appearance).
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::string& dir() const { return dir_; }
  // Sum of tensor data bytes over all files.
  uint64_t total_bytes() const;

 private:
  Checkpoint() = default;
  Status Index();  // fills by_name_ from files_; errors on duplicates

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::pair<std::string, const TensorView*>> by_name_;  // sorted by name
};

// Writes `tensors` (unique names; caller-owned data) as a model folder `dir`
// (created if needed). If their data fits in `max_shard_bytes` (0 = no limit),
// writes dir/model.safetensors with `metadata` as its __metadata__, and removes
// a stale index. Otherwise splits them, in the given order, into shards of at
// most `max_shard_bytes` data bytes (a tensor larger than that gets a shard of
// its own) named model-0000K-of-0000N.safetensors, each carrying `metadata`,
// plus model.safetensors.index.json with metadata.total_size (data bytes) and
// the weight_map, written last; a stale model.safetensors is removed. Each file
// is written atomically.
Status WriteCheckpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors, uint64_t max_shard_bytes,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace skillpack

#endif  // SKILLPACK_CORE_CHECKPOINT_H_
