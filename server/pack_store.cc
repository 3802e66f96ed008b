#include "server/pack_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "pack/selection.h"

namespace skillpack {
namespace {

constexpr char kPackSuffix[] = ".skillpack";

Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

StatusOr<std::string> HashFile(const std::string& path, int64_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  Sha256 h;
  std::string buf(1 << 20, '\0');
  *size = 0;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = ErrnoError("read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
    *size += n;
  }
  ::close(fd);
  return h.FinalHex();
}

}  // namespace

// ---------------------------------------------------------------------------
// PackUpload

PackUpload::PackUpload(PackStore* store, std::string name, std::string sha256, int64_t total_bytes, bool overwrite,
                       std::string tmp_path, int fd)
    : store_(store),
      name_(std::move(name)),
      expected_sha256_(std::move(sha256)),
      total_bytes_(total_bytes),
      overwrite_(overwrite),
      tmp_path_(std::move(tmp_path)),
      fd_(fd) {}

PackUpload::~PackUpload() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

Status PackUpload::Append(absl::string_view chunk) {
  if (fd_ < 0) return absl::FailedPreconditionError("upload already finished");
  if (received_ + static_cast<int64_t>(chunk.size()) > total_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk: received more than header.total_size = ", total_bytes_, " bytes"));
  }
  hash_.Update(chunk);
  received_ += static_cast<int64_t>(chunk.size());
  while (!chunk.empty()) {
    ssize_t n = ::write(fd_, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write", tmp_path_);
    chunk.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

StatusOr<StoredPack> PackUpload::Commit() {
  if (fd_ < 0) return absl::FailedPreconditionError("upload already finished");
  if (received_ != total_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.total_size: announced ", total_bytes_, " bytes, received ", received_));
  }
  const std::string got = hash_.FinalHex();
  if (got != expected_sha256_) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.sha256: announced ", expected_sha256_, " but the data received hashes to ", got));
  }
  if (::fsync(fd_) != 0) return ErrnoError("fsync", tmp_path_);
  ::close(fd_);
  fd_ = -1;
  StatusOr<PackSummary> summary = store_->runtime_->Inspect(tmp_path_);
  if (!summary.ok()) return Annotate(summary.status(), "pack");
  if (!name_.empty() && summary->name != name_) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.name: '", name_, "' differs from the pack's manifest name '", summary->name, "'"));
  }
  StoredPack pack;
  pack.summary = *std::move(summary);
  pack.sha256 = got;
  pack.file_bytes = received_;
  ASSIGN_OR_RETURN(StoredPack stored, store_->Install(tmp_path_, std::move(pack), overwrite_));
  committed_ = true;
  return stored;
}

// ---------------------------------------------------------------------------
// PackStore

StatusOr<std::unique_ptr<PackStore>> PackStore::Open(const std::string& dir, const PackRuntime* runtime,
                                                     int64_t max_pack_bytes) {
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::unique_ptr<PackStore> store(new PackStore(dir, runtime, max_pack_bytes));
  // Leftovers of uploads interrupted by a crash are never valid packs.
  std::error_code ec;
  std::filesystem::remove_all(store->IncomingDir(), ec);
  RETURN_IF_ERROR(MakeDirectories(store->IncomingDir()));
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string fname = entry.path().filename().string();
    if (entry.is_regular_file() && absl::EndsWith(fname, kPackSuffix)) files.push_back(entry.path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  absl::MutexLock lock(&store->mu_);
  for (const std::string& path : files) {
    std::string stem = std::filesystem::path(path).stem().string();
    StatusOr<PackSummary> summary = runtime->Inspect(path);
    if (summary.ok() && summary->name != stem) {
      summary =
          absl::InvalidArgumentError(absl::StrCat("manifest name '", summary->name, "' differs from the file name"));
    }
    StoredPack pack;
    StatusOr<std::string> sha = summary.ok() ? HashFile(path, &pack.file_bytes) : summary.status();
    if (!sha.ok()) {
      std::fprintf(stderr, "pack store: skipping %s: %s\n", path.c_str(), std::string(sha.status().message()).c_str());
      continue;
    }
    pack.summary = *std::move(summary);
    pack.sha256 = *std::move(sha);
    pack.path = path;
    store->packs_[pack.summary.name] = std::move(pack);
  }
  return store;
}

std::string PackStore::PathOf(const std::string& name) const { return JoinPath(dir_, name + kPackSuffix); }
std::string PackStore::IncomingDir() const { return JoinPath(dir_, ".incoming"); }

StatusOr<std::unique_ptr<PackUpload>> PackStore::BeginUpload(const std::string& name, const std::string& sha256,
                                                             int64_t total_bytes, bool overwrite) {
  if (!name.empty()) {
    Status s = ValidatePackName(name);
    if (!s.ok()) return Annotate(s, "header.name");
  }
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError("header.sha256 must be 64 lowercase hex characters");
  }
  if (total_bytes <= 0) return absl::InvalidArgumentError("header.total_size must be positive");
  if (total_bytes > max_pack_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("header.total_size ", total_bytes,
                                                   " exceeds this server's limit of ", max_pack_bytes_,
                                                   " bytes (--max-pack-bytes)"));
  }
  int64_t n;
  {
    absl::MutexLock lock(&mu_);
    n = next_upload_++;
  }
  std::string tmp = JoinPath(IncomingDir(), absl::StrFormat("upload-%d-%d.part", ::getpid(), n));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  return std::unique_ptr<PackUpload>(new PackUpload(this, name, sha256, total_bytes, overwrite, tmp, fd));
}

StatusOr<StoredPack> PackStore::Install(const std::string& tmp_path, StoredPack pack, bool overwrite) {
  absl::MutexLock lock(&mu_);
  const std::string& name = pack.summary.name;
  if (packs_.count(name) && !overwrite) {
    return absl::AlreadyExistsError(
        absl::StrCat("pack '", name, "' already exists (set header.overwrite to replace it)"));
  }
  pack.path = PathOf(name);
  if (::rename(tmp_path.c_str(), pack.path.c_str()) != 0) return ErrnoError("rename to", pack.path);
  RETURN_IF_ERROR(SyncParentDirectory(pack.path));
  packs_[name] = pack;
  return pack;
}

StatusOr<StoredPack> PackStore::Get(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = packs_.find(name);
  if (it == packs_.end()) return absl::NotFoundError(absl::StrCat("no pack named '", name, "'"));
  return it->second;
}

std::vector<StoredPack> PackStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredPack> out;
  for (const auto& [name, pack] : packs_) out.push_back(pack);
  return out;
}

Status PackStore::Delete(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = packs_.find(name);
  if (it == packs_.end()) return absl::NotFoundError(absl::StrCat("no pack named '", name, "'"));
  if (::unlink(it->second.path.c_str()) != 0 && errno != ENOENT) return ErrnoError("cannot remove", it->second.path);
  packs_.erase(it);
  return SyncParentDirectory(PathOf(name));
}

}  // namespace skillpack
