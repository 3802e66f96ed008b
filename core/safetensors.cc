#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

constexpr char kMetadataKey[] = "__metadata__";

// Untrusted names can be huge; keep error messages short.
std::string Shorten(absl::string_view s) {
  constexpr size_t kMax = 96;
  if (s.size() <= kMax) return std::string(s);
  return absl::StrCat(s.substr(0, kMax), "...");
}

Status Invalid(absl::string_view what, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", msg));
}

Status ErrnoStatus(int err, absl::string_view op, const std::string& path) {
  std::string msg = absl::StrCat(op, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLen[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLen[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Reads a JSON integer that must be >= 0 and fit `max`. False otherwise.
bool GetNonNegative(const Json& v, uint64_t max, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
  } else {
    return false;
  }
  return *out <= max;
}

struct Layout {
  std::string prefix;         // 8-byte length + padded JSON header
  std::vector<size_t> order;  // indices into the tensor list, in data order
  uint64_t data_bytes = 0;
};

// Validates `tensors` as a set (each valid, names unique) and builds the header.
StatusOr<Layout> BuildLayout(const std::vector<TensorToWrite>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  std::set<absl::string_view> names;
  for (const TensorToWrite& t : tensors) {
    RETURN_IF_ERROR(ValidateTensorToWrite(t));
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", Shorten(t.name), "'"));
    }
  }
  Layout layout;
  layout.order.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) layout.order[i] = i;
  std::sort(layout.order.begin(), layout.order.end(), [&](size_t a, size_t b) {
    const size_t sa = DTypeSize(tensors[a].dtype), sb = DTypeSize(tensors[b].dtype);
    if (sa != sb) return sa > sb;
    return tensors[a].name < tensors[b].name;
  });

  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[kMetadataKey] = std::move(meta);
  }
  uint64_t offset = 0;
  for (size_t i : layout.order) {
    const TensorToWrite& t = tensors[i];
    Json entry = Json::object();
    entry["dtype"] = DTypeName(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = Json::array({offset, offset + t.nbytes});
    header[t.name] = std::move(entry);
    offset += t.nbytes;
  }
  layout.data_bytes = offset;

  std::string json = header.dump(-1, ' ', false, Json::error_handler_t::replace);
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t n = json.size();
  layout.prefix.resize(8);
  for (int b = 0; b < 8; ++b) layout.prefix[b] = static_cast<char>((n >> (8 * b)) & 0xFF);
  layout.prefix += json;
  return layout;
}

Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------
// DType

StatusOr<DType> DTypeFromName(absl::string_view name) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"I8", DType::kI8},     {"U8", DType::kU8},
      {"I16", DType::kI16}, {"I32", DType::kI32}, {"I64", DType::kI64},   {"BOOL", DType::kBool},
  };
  for (const auto& [n, d] : kNames) {
    if (name == n) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", Shorten(name), "'"));
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kI16:
      return "I16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI8:
      return 1;
    case DType::kU8:
      return 1;
    case DType::kI16:
      return 2;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
    case DType::kBool:
      return 1;
  }
  return 1;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------
// SafetensorsFile

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* m = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot mmap", path);
    }
    file->mapping_ = m;
    file->base_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  RETURN_IF_ERROR(file->Parse());
  return file;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(std::string bytes, std::string what) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(what);
  file->owned_ = std::move(bytes);
  file->base_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  RETURN_IF_ERROR(file->Parse());
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

Status SafetensorsFile::Parse() {
  const std::string& what = path_;
  if (size_ < 8) {
    return Invalid(what, absl::StrCat("file is ", size_, " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int b = 7; b >= 0; --b) header_len = (header_len << 8) | base_[b];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(what, absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                      kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > size_ - 8) {
    return Invalid(what, absl::StrCat("header length ", header_len, " exceeds the ", size_ - 8,
                                      " bytes after the length field (truncated file?)"));
  }
  absl::string_view text(reinterpret_cast<const char*>(base_ + 8), header_len);
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return Invalid(what, absl::StrCat("header JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }

  // Parse, rejecting duplicate keys in any object (plain parsing keeps the last).
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  Json::parser_callback_t on_event = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // defensive: allocation failures etc.
    return Invalid(what, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (header.is_discarded()) return Invalid(what, "header is not valid JSON");
  if (!header.is_object()) return Invalid(what, "header is not a JSON object");
  if (!duplicate.empty()) {
    return Invalid(what, absl::StrCat("header has duplicate key '", Shorten(duplicate), "'"));
  }

  const uint64_t data_start = 8 + header_len;
  const uint64_t buffer_size = size_ - data_start;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  tensors_.clear();
  metadata_.clear();

  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) return Invalid(what, "__metadata__ is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return Invalid(what, absl::StrCat("__metadata__ value for '", Shorten(mk), "' is not a string"));
        }
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    // The writer refuses an empty name (ValidateTensorToWrite); so does the reader.
    if (key.empty()) return Invalid(what, "a tensor has an empty name");
    const std::string where = absl::StrCat("tensor '", Shorten(key), "'");
    if (!value.is_object()) return Invalid(what, absl::StrCat(where, ": entry is not a JSON object"));

    TensorView view;
    view.name = key;
    auto dtype_it = value.find("dtype");
    if (dtype_it == value.end()) return Invalid(what, absl::StrCat(where, ": missing 'dtype'"));
    if (!dtype_it->is_string()) return Invalid(what, absl::StrCat(where, ": 'dtype' is not a string"));
    StatusOr<DType> dtype = DTypeFromName(dtype_it->get_ref<const std::string&>());
    if (!dtype.ok()) return Invalid(what, absl::StrCat(where, ": ", dtype.status().message()));
    view.dtype = *dtype;

    auto shape_it = value.find("shape");
    if (shape_it == value.end()) return Invalid(what, absl::StrCat(where, ": missing 'shape'"));
    if (!shape_it->is_array()) return Invalid(what, absl::StrCat(where, ": 'shape' is not an array"));
    uint64_t numel = 1;
    bool overflow = false;
    for (const Json& dim : *shape_it) {
      uint64_t d;
      if (!GetNonNegative(dim, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), &d)) {
        return Invalid(what, absl::StrCat(where, ": 'shape' must hold non-negative integers, got ",
                                          Shorten(dim.dump(-1, ' ', false, Json::error_handler_t::replace))));
      }
      view.shape.push_back(static_cast<int64_t>(d));
      overflow |= __builtin_mul_overflow(numel, d, &numel);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(view.dtype)), &nbytes);
    if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(what, absl::StrCat(where, ": shape's byte size overflows"));
    }

    auto off_it = value.find("data_offsets");
    if (off_it == value.end()) return Invalid(what, absl::StrCat(where, ": missing 'data_offsets'"));
    uint64_t begin = 0, end = 0;
    if (!off_it->is_array() || off_it->size() != 2 ||
        !GetNonNegative((*off_it)[0], std::numeric_limits<uint64_t>::max(), &begin) ||
        !GetNonNegative((*off_it)[1], std::numeric_limits<uint64_t>::max(), &end)) {
      return Invalid(what, absl::StrCat(where, ": 'data_offsets' must be two non-negative integers"));
    }
    if (begin > end) {
      return Invalid(what, absl::StrCat(where, ": data_offsets begin ", begin, " > end ", end));
    }
    if (end > buffer_size) {
      return Invalid(what, absl::StrCat(where, ": data_offsets end ", end, " beyond the ", buffer_size,
                                        "-byte data buffer (truncated file?)"));
    }
    if (end - begin != nbytes) {
      return Invalid(what, absl::StrCat(where, ": data_offsets span ", end - begin, " bytes but dtype ",
                                        DTypeName(view.dtype), " and shape need ", nbytes));
    }
    view.data = base_ + data_start + begin;
    view.nbytes = static_cast<size_t>(nbytes);
    ranges.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(view));
  }

  // The tensors must tile the data buffer exactly: no overlap, no gap, no tail.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    const std::string name = Shorten(tensors_[r.index].name);
    if (r.begin < covered) {
      return Invalid(what, absl::StrCat("tensor '", name, "' [", r.begin, ", ", r.end, ") overlaps tensor '",
                                        Shorten(tensors_[ranges[i - 1].index].name), "'"));
    }
    if (r.begin > covered) {
      return Invalid(what, absl::StrCat("data bytes [", covered, ", ", r.begin, ") before tensor '", name,
                                        "' belong to no tensor"));
    }
    covered = r.end;
  }
  if (covered != buffer_size) {
    return Invalid(what,
                   absl::StrCat("data buffer has ", buffer_size - covered, " trailing bytes that belong to no tensor"));
  }

  std::sort(tensors_.begin(), tensors_.end(), [](const TensorView& a, const TensorView& b) { return a.name < b.name; });
  return absl::OkStatus();
}

const TensorView* SafetensorsFile::Find(absl::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorView& t, absl::string_view n) { return absl::string_view(t.name) < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  const TensorView* t = Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat("no tensor '", name, "' in ", path_));
  }
  return *t;
}

// ---------------------------------------------------------------------------
// Writing

Status ValidateTensorToWrite(const TensorToWrite& t) {
  if (t.name.empty()) return absl::InvalidArgumentError("tensor name is empty");
  if (t.name == kMetadataKey) {
    return absl::InvalidArgumentError("tensor name '__metadata__' is reserved");
  }
  if (!IsValidUtf8(t.name)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor name '", Shorten(t.name), "' is not valid UTF-8"));
  }
  const std::string where = absl::StrCat("tensor '", Shorten(t.name), "'");
  uint64_t numel = 1;
  bool overflow = false;
  for (int64_t d : t.shape) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative dimension ", d));
    overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel);
  }
  uint64_t expected = 0;
  overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(t.dtype)), &expected);
  if (overflow) return absl::InvalidArgumentError(absl::StrCat(where, ": shape's byte size overflows"));
  if (expected != t.nbytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", t.nbytes, " bytes given but dtype ", DTypeName(t.dtype),
                                                   " and shape need ", expected));
  }
  if (t.nbytes > 0 && t.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": data is null"));
  }
  return absl::OkStatus();
}

Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorToWrite>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  StatusOr<Layout> layout_or = BuildLayout(tensors, metadata);
  if (!layout_or.ok()) return Annotate(layout_or.status(), path);
  const Layout& layout = *layout_or;

  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", tmp);
  Status st = WriteAll(fd, layout.prefix.data(), layout.prefix.size(), tmp);
  for (size_t i = 0; st.ok() && i < layout.order.size(); ++i) {
    const TensorToWrite& t = tensors[layout.order[i]];
    st = WriteAll(fd, t.data, t.nbytes, tmp);
  }
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus(errno, "fsync", tmp);
  if (::close(fd) != 0 && st.ok()) st = ErrnoStatus(errno, "close", tmp);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = ErrnoStatus(errno, "rename to", path);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return SyncParentDirectory(path);
}

void SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

Status SafetensorsWriter::Add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
                              size_t nbytes) {
  TensorToWrite t{name, dtype, shape, data, nbytes};
  RETURN_IF_ERROR(ValidateTensorToWrite(t));
  if (entries_.count(name) > 0) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", Shorten(name), "'"));
  }
  Entry e{name, dtype, std::move(shape),
          nbytes > 0 ? std::string(static_cast<const char*>(data), nbytes) : std::string()};
  entries_.emplace(std::move(name), std::move(e));
  data_bytes_ += nbytes;
  return absl::OkStatus();
}

std::vector<TensorToWrite> SafetensorsWriter::Views() const {
  std::vector<TensorToWrite> views;
  views.reserve(entries_.size());
  for (const auto& [name, e] : entries_) {
    views.push_back({e.name, e.dtype, e.shape, e.bytes.data(), e.bytes.size()});
  }
  return views;
}

std::string SafetensorsWriter::Serialize() const {
  std::vector<TensorToWrite> views = Views();
  // Every entry was validated by Add, so this cannot fail.
  StatusOr<Layout> layout = BuildLayout(views, metadata_);
  if (!layout.ok()) return std::string();
  std::string out = std::move(layout->prefix);
  out.reserve(out.size() + layout->data_bytes);
  for (size_t i : layout->order) {
    out.append(static_cast<const char*>(views[i].data), views[i].nbytes);
  }
  return out;
}

Status SafetensorsWriter::Write(const std::string& path) const {
  return WriteSafetensorsFile(path, Views(), metadata_);
}

// ---------------------------------------------------------------------------
// Half / bfloat16

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7FFFFFFFu;
  const uint32_t mant = abs & 0x7FFFFF;
  if (abs >= 0x7F800000u) {
    if (abs == 0x7F800000u) return sign | 0x7C00;                // inf
    return static_cast<uint16_t>(sign | 0x7E00 | (mant >> 13));  // quiet NaN
  }
  const int e = static_cast<int>(abs >> 23) - 127;
  if (e > 15) return sign | 0x7C00;
  if (e >= -14) {
    // Normal half; a rounding carry may ripple into the exponent (up to inf).
    uint32_t h = (static_cast<uint32_t>(e + 15) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  // Subnormal half (units of 2^-24): significand * 2^(e+1), i.e. shift right.
  const int shift = -(e + 1);  // >= 14
  if (shift >= 32) return sign;
  const uint32_t sig = mant | 0x800000;
  uint32_t q = sig >> shift;
  const uint32_t rest = sig & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1))) ++q;
  return static_cast<uint16_t>(sign | q);
}

float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t FloatToBFloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  x += 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace skillpack
