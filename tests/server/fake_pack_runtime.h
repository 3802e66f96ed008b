// A PackRuntime for tests of the pack store, cache and registry that need no
// model: a "pack file" is the text "NAME BYTES", its name and decoded size.
#ifndef SKILLPACK_TESTS_SERVER_FAKE_PACK_RUNTIME_H_
#define SKILLPACK_TESTS_SERVER_FAKE_PACK_RUNTIME_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "server/pack_runtime.h"

namespace skillpack {

// A "pack file" is the text "NAME BYTES": its name and its decoded size.
class FakeHostPack : public HostPack {
 public:
  explicit FakeHostPack(int64_t bytes) : bytes_(bytes) {}
  int64_t bytes() const override { return bytes_; }

 private:
  int64_t bytes_;
};

class FakeRuntime : public PackRuntime {
 public:
  StatusOr<PackSummary> Inspect(const std::string& path) const override {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    std::vector<std::string> parts = absl::StrSplit(text, ' ');
    int64_t bytes;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &bytes)) {
      return absl::InvalidArgumentError("not a fake pack");
    }
    PackSummary s;
    s.name = parts[0];
    s.version = "1";
    return s;
  }
  StatusOr<Json> Describe(const std::string&) const override { return Json::object(); }
  StatusOr<std::shared_ptr<const HostPack>> Decode(const std::string& path) const override {
    ++decodes;
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    if (on_decode) on_decode();  // after the read: the file may be deleted meanwhile
    std::vector<std::string> parts = absl::StrSplit(text, ' ');
    int64_t bytes = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &bytes)) return absl::InvalidArgumentError("bad");
    return std::shared_ptr<const HostPack>(std::make_shared<FakeHostPack>(bytes));
  }
  StatusOr<FusedWeights> Compose(const std::vector<PackSelection>& selections,
                                 const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    EXPECT_EQ(selections.size(), packs.size());
    ++composes;
    FusedWeights f;
    // A distinct handle per composition (the cache only compares and hands
    // out the pointer, never dereferences it); bytes = sum of the inputs.
    auto owner = std::make_shared<int>(0);
    f.weights = std::shared_ptr<const ModelWeights>(owner, reinterpret_cast<const ModelWeights*>(owner.get()));
    for (const auto& pack : packs) f.bytes += pack->bytes();
    return f;
  }
  StatusOr<std::shared_ptr<const WeightDelta>> Factorize(
      const std::vector<PackSelection>& selections,
      const std::vector<std::shared_ptr<const HostPack>>& packs) const override {
    EXPECT_EQ(selections.size(), packs.size());
    ++factorizes;
    // A distinct handle per call, never dereferenced by the cache (as above).
    auto owner = std::make_shared<int>(0);
    return std::shared_ptr<const WeightDelta>(owner, reinterpret_cast<const WeightDelta*>(owner.get()));
  }
  mutable int decodes = 0;
  mutable int composes = 0;
  mutable int factorizes = 0;
  std::function<void()> on_decode;  // runs inside Decode, after the file is read (tests block it there)
};

}  // namespace skillpack

#endif  // SKILLPACK_TESTS_SERVER_FAKE_PACK_RUNTIME_H_
