// libFuzzer target: a whole .skillpack file image (pack/format.h). A pack the
// reader accepts must describe itself, serialize back to a file that parses
// again, and decode (modules up to a size bound, so the target stays fast)
// without error: the reader promises that everything decode relies on was
// checked.
#include <cstddef>
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "pack/decode.h"
#include "pack/format.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace skillpack;
  StatusOr<SkillPack> pack = ParseSkillPack(std::string(reinterpret_cast<const char*>(data), size), "fuzz.skillpack");
  if (!pack.ok()) {
    fuzz::CheckRejection(pack.status());
    return 0;
  }
  FUZZ_CHECK(ValidateSkillPack(*pack).ok());
  Json described = DescribePack(*pack);
  FUZZ_CHECK(described.is_object());
  (void)described.dump();
  StatusOr<std::string> bytes = SerializeSkillPack(*pack);
  FUZZ_CHECK(bytes.ok());
  StatusOr<SkillPack> again = ParseSkillPack(*bytes, "reserialized");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->modules.size() == pack->modules.size());
  for (const ModuleDelta& m : pack->modules) {
    FUZZ_CHECK(ModuleStoredBytes(m) >= 0);
    // Decoding materialises numel floats: bounded so one input stays small.
    if (Numel(m.shape) > (int64_t{1} << 20)) continue;
    StatusOr<at::Tensor> delta = DecodeModuleDelta(m);
    if (!delta.ok()) {
      std::fprintf(stderr, "decode of an accepted module failed: %s\n", delta.status().ToString().c_str());
      std::abort();
    }
    FUZZ_CHECK(delta->numel() == Numel(m.shape));
  }
  return 0;
}
