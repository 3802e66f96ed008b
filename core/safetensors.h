// Reading and writing the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON header describing each tensor (dtype, shape, byte
// range) plus optional string metadata, then the raw little-endian tensor data.
//
// SafetensorsFile memory-maps a file (or owns an in-memory buffer) and
// validates the whole header on open, so every TensorView it hands out is
// known to lie inside the buffer. SafetensorsWriter builds a file from copies of
// tensors; WriteSafetensorsFile streams caller-owned tensors to disk. Also here:
// scalar fp16 / bf16 <-> fp32 conversions shared by the rest of the code.
#ifndef SKILLPACK_CORE_SAFETENSORS_H_
#define SKILLPACK_CORE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// Element types this code understands (the safetensors names in comments).
// Other safetensors dtypes (F64, U16, U32, U64, F8_*) are rejected on read.
enum class DType {
  kF32,   // "F32"
  kF16,   // "F16"  IEEE half
  kBF16,  // "BF16" bfloat16
  kI8,    // "I8"
  kU8,    // "U8"
  kI16,   // "I16"
  kI32,   // "I32"
  kI64,   // "I64"
  kBool,  // "BOOL" one byte per element
};

// "F32", "F16", "BF16", "I8", "U8", "I16", "I32", "I64", "BOOL" (exact case).
// INVALID_ARGUMENT naming the bad string otherwise.
StatusOr<DType> DTypeFromName(absl::string_view name);
// The safetensors name of `dtype`, e.g. "BF16".
const char* DTypeName(DType dtype);
// Bytes per element.
size_t DTypeSize(DType dtype);

// Largest header a reader accepts (bytes of JSON); larger is treated as corrupt.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// One tensor inside a SafetensorsFile. `data` points into the file's buffer and
// is valid only while that SafetensorsFile lives. `nbytes == numel() *
// DTypeSize(dtype)` always holds. `data` is aligned to the element size for
// files written by this code; files from elsewhere may not be, so read through
// memcpy when alignment matters. Data is little-endian.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty = scalar (one element)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  // Product of `shape` (1 for a scalar, 0 if any dimension is 0).
  int64_t numel() const;
};

// A validated, read-only safetensors file. Thread-compatible: all accessors are
// const and may be called concurrently.
class SafetensorsFile {
 public:
  // Memory-maps `path` read-only and validates it. NOT_FOUND if it does not
  // exist; INVALID_ARGUMENT naming the file and the offending tensor / field if
  // it is malformed (bad header length, bad JSON, unknown dtype, bad shape or
  // offsets, overlapping or gapped data, non-string metadata, ...).
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Validates an in-memory file image, which the returned object owns. `what`
  // names the buffer in error messages and is what path() returns.
  static StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(std::string bytes, std::string what);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // The header's "__metadata__" (empty if absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // All tensors, sorted by name.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if there is no tensor `name`.
  const TensorView* Find(absl::string_view name) const;
  // NOT_FOUND naming the tensor and the file if absent.
  StatusOr<TensorView> Get(absl::string_view name) const;
  // The path given to Open, or `what` given to FromBuffer.
  const std::string& path() const { return path_; }
  // Size of the whole file image in bytes.
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  Status Parse();  // fills metadata_ / tensors_ from base_[0, size_)

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when base_ is an mmap of size_ bytes
  std::string owned_;        // the buffer when created by FromBuffer
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;
};

// A tensor to be written, pointing at caller-owned bytes (little-endian).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Checks one tensor for writing: non-empty name that is valid UTF-8 and not
// "__metadata__", non-negative dims, nbytes == numel * DTypeSize (no overflow),
// data non-null when nbytes > 0. INVALID_ARGUMENT naming the tensor otherwise.
Status ValidateTensorToWrite(const TensorToWrite& tensor);

// Writes `tensors` (names must be unique) and `metadata` as one safetensors
// file at `path`, atomically: streamed to a temporary file in the same
// directory, fsynced, then renamed over `path`. The header is space-padded to a
// multiple of 8 bytes and data is laid out by decreasing element size, then by
// name, so every tensor is aligned to its element size. Invalid UTF-8 in
// metadata is replaced by U+FFFD.
Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorToWrite>& tensors,
                            const std::map<std::string, std::string>& metadata);

// Collects copies of tensors, then serializes them as one safetensors file
// (same layout as WriteSafetensorsFile).
class SafetensorsWriter {
 public:
  // Sets (or replaces) one "__metadata__" entry. Invalid UTF-8 is replaced by
  // U+FFFD when serialized.
  void SetMetadata(std::string key, std::string value);

  // Copies `nbytes` bytes from `data`. INVALID_ARGUMENT (nothing added) for a
  // duplicate name or anything ValidateTensorToWrite rejects.
  Status Add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data, size_t nbytes);

  // Total tensor data bytes added so far (excludes the header).
  size_t data_bytes() const { return data_bytes_; }

  // The whole file image.
  std::string Serialize() const;
  // Writes the file atomically (see WriteSafetensorsFile).
  Status Write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::vector<TensorToWrite> Views() const;

  std::map<std::string, std::string> metadata_;
  std::map<std::string, Entry> entries_;
  size_t data_bytes_ = 0;
};

// IEEE binary16 bits -> float (exact; subnormals, inf and NaN preserved).
float HalfToFloat(uint16_t h);
// float -> IEEE binary16 bits, rounding to nearest even; overflow gives inf,
// NaN stays NaN (quiet), tiny values become subnormals or signed zero.
uint16_t FloatToHalf(float f);
// bfloat16 bits -> float (exact).
float BFloat16ToFloat(uint16_t b);
// float -> bfloat16 bits, rounding to nearest even; NaN stays NaN (quiet).
uint16_t FloatToBFloat16(float f);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SAFETENSORS_H_
