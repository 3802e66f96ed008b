// The pack store: a directory of validated .skillpack files, one per pack
// name (<dir>/<name>.skillpack), with an in-memory index of their manifests.
// Uploads stream into a temporary file under <dir>/.incoming/, are fsynced,
// checked (size, sha256, PackRuntime::Inspect against the base model) and
// only then renamed into place, so a pack is either fully visible and valid or
// not there at all.
//
// Several servers may share one directory (replicas on one volume). Each
// keeps its own index; Rescan() brings it up to date with files that other
// processes added, replaced or removed (a file is identified by device, inode,
// size and modification time, and re-validated and re-hashed when that
// changes). Writers never expose a partial file: uploads are renamed into
// place whole, an upload that must not overwrite uses an atomic no-replace
// rename, and a temporary upload file is locked (flock) by the process writing
// it, so a server only removes leftovers that no live process holds.
#ifndef SKILLPACK_SERVER_PACK_STORE_H_
#define SKILLPACK_SERVER_PACK_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/sha256.h"
#include "core/status.h"
#include "server/pack_runtime.h"

namespace skillpack {

// A stored pack.
struct StoredPack {
  PackSummary summary;
  std::string path;
  std::string sha256;  // lowercase hex of the file
  int64_t file_bytes = 0;
  // Which file this entry indexed: a change means another version.
  struct FileId {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId& o) const {
      return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
    bool operator!=(const FileId& o) const { return !(*this == o); }
  };
  FileId file_id;
};

// What changed in the store's index (Install with overwrite, Delete, Rescan).
struct PackChange {
  enum Kind { kAdded, kReplaced, kRemoved };
  Kind kind;
  std::string name;
};
const char* PackChangeKindName(PackChange::Kind k);  // "added" | "replaced" | "removed"

class PackStore;

// One upload in progress. Not thread-safe (one gRPC stream feeds it). The
// temporary file is removed when the upload is destroyed without Commit().
class PackUpload {
 public:
  ~PackUpload();
  PackUpload(const PackUpload&) = delete;
  PackUpload& operator=(const PackUpload&) = delete;

  // Appends the next chunk. INVALID_ARGUMENT when the data goes past the
  // announced total size.
  Status Append(absl::string_view chunk);
  // Whether the announced total size has arrived.
  bool complete() const { return received_ == total_bytes_; }

  // Checks size and sha256, validates the pack against the base, and makes
  // it visible under its manifest name: Verify(), then Install(). INVALID_ARGUMENT on a size or sha256
  // mismatch, a malformed pack or a name that differs from the announced
  // one; FAILED_PRECONDITION for a pack of another base; ALREADY_EXISTS when
  // the name is taken (here or, on a shared directory, by another server)
  // and overwrite was not asked for.
  StatusOr<StoredPack> Commit();

  // The two halves of Commit(), for a caller that installs under its own
  // lock (PackRegistry): Verify checks and closes the file (the slow part);
  // Install renames it into place and indexes it. `*replaced` (may be null)
  // tells whether a pack of that name was there before.
  StatusOr<StoredPack> Verify();
  StatusOr<StoredPack> Install(StoredPack verified, bool* replaced);

 private:
  friend class PackStore;
  PackUpload(PackStore* store, std::string name, std::string sha256, int64_t total_bytes, bool overwrite,
             std::string tmp_path, int fd);

  PackStore* store_;
  std::string name_;  // may be empty: take the manifest's
  std::string expected_sha256_;
  int64_t total_bytes_;
  bool overwrite_;
  std::string tmp_path_;
  int fd_;
  int64_t received_ = 0;
  Sha256 hash_;
  bool verified_ = false;
  bool committed_ = false;
};

class PackStore {
 public:
  // Opens (creating it if needed) the store in `dir` and indexes the packs
  // there; files that fail validation are reported on stderr and skipped, and
  // leftovers of interrupted uploads (temporary files no live process holds)
  // are removed. `runtime` must outlive the store. `max_pack_bytes` bounds uploads.
  static StatusOr<std::unique_ptr<PackStore>> Open(const std::string& dir, const PackRuntime* runtime,
                                                   int64_t max_pack_bytes);

  // Starts an upload. `name` is empty or a valid pack name; `sha256` 64 hex
  // characters; 0 < total_bytes <= max_pack_bytes. INVALID_ARGUMENT naming
  // the header field otherwise.
  StatusOr<std::unique_ptr<PackUpload>> BeginUpload(const std::string& name, const std::string& sha256,
                                                    int64_t total_bytes, bool overwrite);

  // NOT_FOUND when no pack has that name.
  StatusOr<StoredPack> Get(const std::string& name) const ABSL_LOCKS_EXCLUDED(mu_);
  // Sorted by name.
  std::vector<StoredPack> List() const ABSL_LOCKS_EXCLUDED(mu_);
  // Removes the file (fsyncing the directory). NOT_FOUND when absent (also
  // when another server sharing the directory removed it first).
  Status Delete(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  // Brings the index up to date with the directory: files added, replaced or
  // removed by another process. A new or changed file is validated and hashed
  // before it is indexed; one that fails (a foreign or corrupt file) is
  // reported on stderr once per version and not indexed (a replaced pack that
  // no longer validates is dropped from the index). A file that changes while
  // it is being checked is left for the next scan. Also removes leftovers of
  // interrupted uploads. Scans are serialised; uploads and deletes may run
  // meanwhile. Returns what changed.
  std::vector<PackChange> Rescan() ABSL_LOCKS_EXCLUDED(scan_mu_, mu_);

  const std::string& dir() const { return dir_; }
  const PackRuntime* runtime() const { return runtime_; }
  int64_t max_pack_bytes() const { return max_pack_bytes_; }

 private:
  friend class PackUpload;
  PackStore(std::string dir, const PackRuntime* runtime, int64_t max_pack_bytes)
      : dir_(std::move(dir)), runtime_(runtime), max_pack_bytes_(max_pack_bytes) {}
  std::string PathOf(const std::string& name) const;
  std::string IncomingDir() const;
  // Renames the validated temporary file into place and indexes it.
  StatusOr<StoredPack> Install(const std::string& tmp_path, StoredPack pack, bool overwrite, bool* replaced)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Validates and hashes the file at `path` for the index.
  StatusOr<StoredPack> Index(const std::string& path) const;
  // Removes .incoming files whose writer is gone (no flock held).
  void RemoveUploadLeftovers() const;

  const std::string dir_;
  const PackRuntime* runtime_;
  const int64_t max_pack_bytes_;
  absl::Mutex scan_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one Rescan at a time
  mutable absl::Mutex mu_;
  std::map<std::string, StoredPack> packs_ ABSL_GUARDED_BY(mu_);
  // Files that failed validation in a scan, by path: reported once per version.
  std::map<std::string, StoredPack::FileId> rejected_ ABSL_GUARDED_BY(scan_mu_);
  int64_t next_upload_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_PACK_STORE_H_
