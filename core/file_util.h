// Small filesystem helpers with Status errors: whole-file reads and atomic
// (temp file + fsync + rename) writes, so a crash never leaves a partial file
// under the final name.
#ifndef SKILLPACK_CORE_FILE_UTIL_H_
#define SKILLPACK_CORE_FILE_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include "core/status.h"

namespace skillpack {

// Reads the whole file. NOT_FOUND if it does not exist.
StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically: a temporary file in the same
// directory is written, fsynced, renamed over `path`, and the directory fsynced.
Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// fsyncs the directory holding `path` (makes a rename durable).
Status SyncParentDirectory(const std::string& path);

// "a" + "b" -> "a/b" (no doubled slash).
std::string JoinPath(absl::string_view dir, absl::string_view name);

bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);

// Creates `path` and its parents (like mkdir -p).
Status MakeDirectories(const std::string& path);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_FILE_UTIL_H_
