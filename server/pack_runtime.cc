// PackRuntime over the SkillPack library (pack/format.h, pack/decode.h,
// composer.h): the only server file that touches pack internals.
#include "server/pack_runtime.h"

#include <exception>
#include <utility>

#include "pack/composer.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "pack/format.h"

namespace skillpack {
namespace {

class CoreHostPack : public HostPack {
 public:
  explicit CoreHostPack(DecodedPack pack) : pack_(std::move(pack)), bytes_(pack_.bytes()) {}
  int64_t bytes() const override { return bytes_; }
  const DecodedPack& pack() const { return pack_; }

 private:
  const DecodedPack pack_;
  const int64_t bytes_;
};

class CorePackRuntime : public PackRuntime {
 public:
  CorePackRuntime(std::shared_ptr<const ModelWeights> base, std::string fingerprint, FactorPrecision factors)
      : base_(std::move(base)), fingerprint_(std::move(fingerprint)), factors_(factors) {}

  StatusOr<PackSummary> Inspect(const std::string& path) const override {
    ASSIGN_OR_RETURN(SkillPack pack, ReadAndCheck(path));
    PackSummary s;
    s.name = pack.manifest.name;
    s.version = pack.manifest.version;
    s.description = pack.manifest.description;
    s.tags = pack.manifest.tags;
    s.base_fingerprint = pack.manifest.base_fingerprint;
    s.created_at = pack.manifest.created_at;
    s.num_modules = static_cast<int32_t>(pack.modules.size());
    return s;
  }

  StatusOr<Json> Describe(const std::string& path) const override {
    ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
    try {
      return DescribePack(pack);
    } catch (const std::exception& e) {
      return StatusFromException(e, "describing pack");
    }
  }

  StatusOr<std::shared_ptr<const HostPack>> Decode(const std::string& path) const override {
    ASSIGN_OR_RETURN(SkillPack pack, ReadAndCheck(path));
    try {
      // Factors, not dense deltas: rank << min(out, in) keeps the host tier small.
      ASSIGN_OR_RETURN(DecodedPack decoded, DecodePack(pack, /*keep_factors=*/true, factors_));
      return std::shared_ptr<const HostPack>(std::make_shared<CoreHostPack>(std::move(decoded)));
    } catch (const std::exception& e) {
      return StatusFromException(e, "decoding pack");
    }
  }

  StatusOr<FusedWeights> Compose(const std::vector<PackSelection>& selections,
                                 const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    ASSIGN_OR_RETURN(std::vector<const DecodedPack*> decoded, Decoded(packs));
    try {
      FusedWeights out;
      ASSIGN_OR_RETURN(out.weights, ComposeWeights(*base_, selections, decoded));
      // Bytes the fused set adds: tensors it does not share with the base.
      for (const auto& [name, t] : out.weights->tensors()) {
        const at::Tensor* b = base_->Find(name);
        if (b == nullptr || b->data_ptr() != t.data_ptr()) out.bytes += static_cast<int64_t>(t.nbytes());
      }
      return out;
    } catch (const std::exception& e) {
      return StatusFromException(e, "composing packs");
    }
  }

  StatusOr<std::shared_ptr<const WeightDelta>> Factorize(
      const std::vector<PackSelection>& selections,
      const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    ASSIGN_OR_RETURN(std::vector<const DecodedPack*> decoded, Decoded(packs));
    // The delta's terms hold references to the decoded tensors, so they stay
    // alive for its users when the host tier drops the pack.
    try {
      return ComposeFactorized(*base_, selections, decoded);
    } catch (const std::exception& e) {
      return StatusFromException(e, "composing packs");
    }
  }

 private:
  static StatusOr<std::vector<const DecodedPack*>> Decoded(const std::vector<std::shared_ptr<const HostPack>>& packs) {
    std::vector<const DecodedPack*> decoded;
    for (const auto& pack : packs) {
      const auto* host = dynamic_cast<const CoreHostPack*>(pack.get());
      if (host == nullptr) return absl::InternalError("pack not decoded by this runtime");
      decoded.push_back(&host->pack());
    }
    return decoded;
  }

  StatusOr<SkillPack> ReadAndCheck(const std::string& path) const {
    try {
      ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
      RETURN_IF_ERROR(CheckPackFitsBase(pack, *base_, fingerprint_));
      return pack;
    } catch (const std::exception& e) {
      return StatusFromException(e, "reading pack");
    }
  }

  const std::shared_ptr<const ModelWeights> base_;
  const std::string fingerprint_;
  const FactorPrecision factors_;
};

}  // namespace

StatusOr<std::unique_ptr<PackRuntime>> NewPackRuntime(std::shared_ptr<const ModelWeights> base,
                                                      FactorPrecision factors) {
  ASSIGN_OR_RETURN(std::string fingerprint, BaseFingerprint(*base));
  return std::unique_ptr<PackRuntime>(new CorePackRuntime(std::move(base), std::move(fingerprint), factors));
}

}  // namespace skillpack
