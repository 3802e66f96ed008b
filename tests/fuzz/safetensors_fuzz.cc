// libFuzzer target: a whole safetensors file image (core/safetensors.h). Every
// accepted file must hand out tensor views that lie inside the buffer, with
// nbytes == numel * element size, and must serialize back to a file that
// parses to the same tensors.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using skillpack::SafetensorsFile;
using skillpack::SafetensorsWriter;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = SafetensorsFile::FromBuffer(std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
  if (!file.ok()) {
    skillpack::fuzz::CheckRejection(file.status());
    return 0;
  }
  const SafetensorsFile& f = **file;
  SafetensorsWriter writer;
  for (const auto& [k, v] : f.metadata()) writer.SetMetadata(k, v);
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    FUZZ_CHECK(t.numel() >= 0);
    FUZZ_CHECK(static_cast<uint64_t>(t.numel()) * skillpack::DTypeSize(t.dtype) == t.nbytes);
    FUZZ_CHECK(t.nbytes <= f.file_size());
    if (t.nbytes > 0) {
      // Reads every byte: ASan reports a view that points outside the buffer.
      for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    }
    FUZZ_CHECK(f.Find(t.name) != nullptr);
    FUZZ_CHECK(writer.Add(t.name, t.dtype, t.shape, t.data, t.nbytes).ok());
  }
  (void)sum;
  auto again = SafetensorsFile::FromBuffer(writer.Serialize(), "reserialized");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK((*again)->tensors().size() == f.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& a = f.tensors()[i];
    const auto& b = (*again)->tensors()[i];
    FUZZ_CHECK(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes);
    FUZZ_CHECK(a.nbytes == 0 || std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
  return 0;
}
