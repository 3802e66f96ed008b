#include "server/pack_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/file_util.h"
#include "pack/selection.h"

namespace skillpack {
namespace {

constexpr char kPackSuffix[] = ".skillpack";
// An upload file no process holds a lock on is a leftover once it is this old
// (younger ones may be between their writer's open() and flock()).
constexpr int64_t kLeftoverAgeSeconds = 10;

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

StatusOr<StoredPack::FileId> StatFileId(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    return ErrnoError("cannot stat", path);
  }
  StoredPack::FileId id;
  id.device = static_cast<uint64_t>(st.st_dev);
  id.inode = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<int64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

// Renames `from` to `to` unless `to` exists, atomically even when another
// process creates `to` at the same moment: renameat2(RENAME_NOREPLACE), or
// link()+unlink() on file systems without it. EEXIST when `to` exists.
int RenameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  if (::link(from.c_str(), to.c_str()) != 0) return -1;
  ::unlink(from.c_str());
  return 0;
}

// A temporary file name no other server sharing the directory will pick.
std::string UploadFileName(int64_t n) {
  char host[64] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = 0;
  std::string h;
  for (const char* c = host; *c; ++c) h.push_back(std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_');
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("upload-%s-%d-%d-%016x.part", h, ::getpid(), n, rng());
}

// Whether the index entry of `name` is still what `seen` recorded when a scan
// began (an upload or delete of this server meanwhile is newer than the scan).
bool UnchangedSince(const std::map<std::string, StoredPack>& packs,
                    const std::map<std::string, StoredPack::FileId>& seen, const std::string& name) {
  auto it = packs.find(name);
  auto s = seen.find(name);
  if (s == seen.end()) return it == packs.end();
  return it != packs.end() && it->second.file_id == s->second;
}

}  // namespace

const char* PackChangeKindName(PackChange::Kind k) {
  switch (k) {
    case PackChange::kAdded:
      return "added";
    case PackChange::kReplaced:
      return "replaced";
    case PackChange::kRemoved:
      return "removed";
  }
  return "changed";
}

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
  // Unlinked before the descriptor (and with it the lock) goes.
  if (!committed_) ::unlink(tmp_path_.c_str());
  if (fd_ >= 0) ::close(fd_);
}

Status PackUpload::Append(absl::string_view chunk) {
  if (fd_ < 0 || verified_) return absl::FailedPreconditionError("upload already finished");
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
  ASSIGN_OR_RETURN(StoredPack verified, Verify());
  return Install(std::move(verified), nullptr);
}

StatusOr<StoredPack> PackUpload::Verify() {
  if (fd_ < 0 || verified_) return absl::FailedPreconditionError("upload already finished");
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
  verified_ = true;  // the descriptor stays open: it holds the lock until Install
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
  return pack;
}

StatusOr<StoredPack> PackUpload::Install(StoredPack verified, bool* replaced) {
  if (!verified_ || committed_) return absl::FailedPreconditionError("upload not verified, or already installed");
  ASSIGN_OR_RETURN(StoredPack stored, store_->Install(tmp_path_, std::move(verified), overwrite_, replaced));
  committed_ = true;
  ::close(fd_);
  fd_ = -1;
  return stored;
}

// ---------------------------------------------------------------------------
// PackStore

StatusOr<std::unique_ptr<PackStore>> PackStore::Open(const std::string& dir, const PackRuntime* runtime,
                                                     int64_t max_pack_bytes) {
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::unique_ptr<PackStore> store(new PackStore(dir, runtime, max_pack_bytes));
  RETURN_IF_ERROR(MakeDirectories(store->IncomingDir()));
  std::error_code ec;
  std::filesystem::directory_iterator probe(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  store->Rescan();
  return store;
}

std::string PackStore::PathOf(const std::string& name) const { return JoinPath(dir_, name + kPackSuffix); }
std::string PackStore::IncomingDir() const { return JoinPath(dir_, ".incoming"); }

StatusOr<StoredPack> PackStore::Index(const std::string& path) const {
  ASSIGN_OR_RETURN(StoredPack::FileId before, StatFileId(path));
  StoredPack pack;
  ASSIGN_OR_RETURN(pack.summary, runtime_->Inspect(path));
  const std::string stem = std::filesystem::path(path).stem().string();
  if (pack.summary.name != stem) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest name '", pack.summary.name, "' differs from the file name"));
  }
  ASSIGN_OR_RETURN(pack.sha256, HashFile(path, &pack.file_bytes));
  ASSIGN_OR_RETURN(StoredPack::FileId after, StatFileId(path));
  if (before != after || after.size != pack.file_bytes) {
    return absl::UnavailableError(absl::StrCat(path, " changed while it was being checked"));
  }
  pack.path = path;
  pack.file_id = after;
  return pack;
}

void PackStore::RemoveUploadLeftovers() const {
  std::error_code ec;
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  for (const auto& entry : std::filesystem::directory_iterator(IncomingDir(), ec)) {
    const std::string path = entry.path().string();
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (now - static_cast<int64_t>(st.st_mtim.tv_sec) < kLeftoverAgeSeconds) continue;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    // The writer holds an exclusive lock for the upload's whole life.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      std::fprintf(stderr, "pack store: removing %s, left by an interrupted upload\n", path.c_str());
      ::unlink(path.c_str());
    }
    ::close(fd);
  }
}

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
  // The .incoming folder may have been removed by hand since Open.
  RETURN_IF_ERROR(MakeDirectories(IncomingDir()));
  std::string tmp = JoinPath(IncomingDir(), UploadFileName(n));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    Status s = ErrnoError("cannot lock", tmp);
    ::unlink(tmp.c_str());
    ::close(fd);
    return s;
  }
  return std::unique_ptr<PackUpload>(new PackUpload(this, name, sha256, total_bytes, overwrite, tmp, fd));
}

StatusOr<StoredPack> PackStore::Install(const std::string& tmp_path, StoredPack pack, bool overwrite, bool* replaced) {
  absl::MutexLock lock(&mu_);
  const std::string& name = pack.summary.name;
  auto exists = [&] {
    return absl::AlreadyExistsError(
        absl::StrCat("pack '", name, "' already exists (set header.overwrite to replace it)"));
  };
  if (packs_.count(name) && !overwrite) return exists();
  pack.path = PathOf(name);
  const bool was_there = packs_.count(name) > 0 || PathExists(pack.path);
  if (overwrite) {
    if (::rename(tmp_path.c_str(), pack.path.c_str()) != 0) return ErrnoError("rename to", pack.path);
  } else if (RenameNoReplace(tmp_path, pack.path) != 0) {
    // Another server sharing the directory stored that name first.
    if (errno == EEXIST) return exists();
    return ErrnoError("rename to", pack.path);
  }
  RETURN_IF_ERROR(SyncParentDirectory(pack.path));
  ASSIGN_OR_RETURN(pack.file_id, StatFileId(pack.path));
  packs_[name] = pack;
  if (replaced) *replaced = was_there;
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
  const std::string path = it != packs_.end() ? it->second.path : PathOf(name);
  // A pack another server stored that this index has not seen yet is deleted too.
  if (it == packs_.end() && !PathExists(path)) return absl::NotFoundError(absl::StrCat("no pack named '", name, "'"));
  if (::unlink(path.c_str()) != 0) {
    if (errno != ENOENT) return ErrnoError("cannot remove", path);
    if (it != packs_.end()) packs_.erase(it);
    return absl::NotFoundError(
        absl::StrCat("no pack named '", name, "' (another server sharing the store removed it)"));
  }
  if (it != packs_.end()) packs_.erase(it);
  return SyncParentDirectory(path);
}

std::vector<PackChange> PackStore::Rescan() {
  absl::MutexLock scan(&scan_mu_);
  RemoveUploadLeftovers();
  std::map<std::string, std::string> files;  // name -> path
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string fname = entry.path().filename().string();
    std::error_code ec2;
    if (absl::EndsWith(fname, kPackSuffix) && entry.is_regular_file(ec2)) {
      files[entry.path().stem().string()] = entry.path().string();
    }
  }
  if (ec) {
    std::fprintf(stderr, "pack store: cannot list %s: %s\n", dir_.c_str(), ec.message().c_str());
    return {};
  }
  std::map<std::string, StoredPack::FileId> seen;  // the index as the scan began
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, pack] : packs_) seen[name] = pack.file_id;
  }
  std::vector<PackChange> changes;
  std::set<std::string> rejected_paths;
  for (const auto& [name, path] : files) {
    StatusOr<StoredPack::FileId> id = StatFileId(path);
    if (!id.ok()) continue;  // gone meanwhile: the next scan sees it
    auto s = seen.find(name);
    if (s != seen.end() && s->second == *id) continue;
    auto r = rejected_.find(path);
    if (r != rejected_.end() && r->second == *id) {
      rejected_paths.insert(path);
      continue;
    }
    StatusOr<StoredPack> pack = Index(path);
    if (!pack.ok() && pack.status().code() == absl::StatusCode::kUnavailable) continue;  // being written
    absl::MutexLock lock(&mu_);
    if (!UnchangedSince(packs_, seen, name)) continue;
    if (!pack.ok()) {
      std::fprintf(stderr, "pack store: skipping %s: %s\n", path.c_str(), std::string(pack.status().message()).c_str());
      rejected_[path] = *id;
      rejected_paths.insert(path);
      if (packs_.erase(name) > 0) changes.push_back({PackChange::kRemoved, name});
      continue;
    }
    StatusOr<StoredPack::FileId> now = StatFileId(path);
    if (!now.ok() || *now != pack->file_id) continue;
    changes.push_back({packs_.count(name) ? PackChange::kReplaced : PackChange::kAdded, name});
    packs_[name] = *std::move(pack);
  }
  for (const auto& [name, id] : seen) {
    if (files.count(name)) continue;
    absl::MutexLock lock(&mu_);
    auto it = packs_.find(name);
    if (it == packs_.end() || it->second.file_id != id || PathExists(it->second.path)) continue;
    packs_.erase(it);
    changes.push_back({PackChange::kRemoved, name});
  }
  for (auto it = rejected_.begin(); it != rejected_.end();) {
    it = rejected_paths.count(it->first) ? std::next(it) : rejected_.erase(it);
  }
  return changes;
}

}  // namespace skillpack
