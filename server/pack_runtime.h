// What the server needs from the SkillPack library, behind one small
// interface: validate a pack file against the base model, describe it,
// decode it into host memory and compose decoded packs onto the base weights.
// The store and the cache talk only to this interface, so tests can run them
// with a fake, and the SkillPack library (pack/format.h, pack/decode.h,
// composer.h) is wired in one place (pack_runtime.cc).
#ifndef SKILLPACK_SERVER_PACK_RUNTIME_H_
#define SKILLPACK_SERVER_PACK_RUNTIME_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/status.h"
#include "pack/factor_precision.h"
#include "pack/selection.h"

namespace skillpack {

class ModelWeights;
class WeightDelta;

// The manifest fields the server shows for a stored pack.
struct PackSummary {
  std::string name;
  std::string version;
  std::string description;
  std::vector<std::string> tags;
  std::string base_fingerprint;
  std::string created_at;
  int32_t num_modules = 0;
};

// A pack decoded into host memory (the "host" cache tier). Immutable and
// shareable across threads.
class HostPack {
 public:
  virtual ~HostPack() = default;
  // Bytes the decoded deltas occupy.
  virtual int64_t bytes() const = 0;
};

// A composed weight set and the bytes it adds over the base (tensors it does
// not share with the base).
struct FusedWeights {
  std::shared_ptr<const ModelWeights> weights;
  int64_t bytes = 0;
};

// All methods are thread-safe.
class PackRuntime {
 public:
  virtual ~PackRuntime() = default;

  // Reads the .skillpack file at `path` and checks it fully, including that
  // it fits the base model. INVALID_ARGUMENT for a malformed file,
  // FAILED_PRECONDITION for a pack made for another base.
  virtual StatusOr<PackSummary> Inspect(const std::string& path) const = 0;

  // The pack's full description (DescribePack's JSON: modules, provenance ...).
  virtual StatusOr<Json> Describe(const std::string& path) const = 0;

  // Reads and decodes the pack into host memory.
  virtual StatusOr<std::shared_ptr<const HostPack>> Decode(const std::string& path) const = 0;

  // W = W_base + sum_i w_i * g_i * delta_i (pack/composer.h), selections[i]
  // applied with packs[i]. Modules no selection touches alias the base
  // tensors. REQUIRES: selections non-empty, the same size as packs, packs
  // from Decode().
  virtual StatusOr<FusedWeights> Compose(const std::vector<PackSelection>& selections,
                                         const std::vector<std::shared_ptr<const HostPack>>& packs) const = 0;

  // The same composition kept factorized (pack/composer.h's ComposeFactorized):
  // a delta applied per request on the base weights, referencing the decoded
  // packs' tensors. Same REQUIRES as Compose.
  virtual StatusOr<std::shared_ptr<const WeightDelta>> Factorize(
      const std::vector<PackSelection>& selections,
      const std::vector<std::shared_ptr<const HostPack>>& packs) const = 0;
};

// The runtime over the SkillPack library (pack/) for `base` (its fingerprint is
// computed once here). Decode keeps low-rank factors in `factors` precision
// (pack/decode.h; the server's default, kServedFactorPrecision, is int8: a
// quarter of float32's bytes in the host tier and in what a factorized decode
// step streams).
StatusOr<std::unique_ptr<PackRuntime>> NewPackRuntime(std::shared_ptr<const ModelWeights> base,
                                                      FactorPrecision factors = kServedFactorPrecision);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_PACK_RUNTIME_H_
