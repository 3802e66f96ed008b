#include "core/malloc_policy.h"

#include <cstdlib>
#include <string_view>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace skillpack {

bool MallocThresholdsSetByEnvironment(const std::function<const char*(const char*)>& getenv) {
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}) {
    if (getenv(name) != nullptr) return true;
  }
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (tunables == nullptr) return false;
  // A colon-separated list of name=value.
  std::string_view rest(tunables);
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string_view item = rest.substr(0, colon);
    const std::string_view name = item.substr(0, item.find('='));
    for (std::string_view chosen : {"glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold",
                                    "glibc.malloc.top_pad", "glibc.malloc.mmap_max"}) {
      if (name == chosen) return true;
    }
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return false;
}

namespace {
bool set_by_us = false;
}  // namespace

bool SetMallocThresholdsUnlessSet() {
#if defined(__GLIBC__)
  if (MallocThresholdsSetByEnvironment([](const char* name) { return std::getenv(name); })) return false;
  set_by_us = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMallocMmapThreshold)) == 1 &&
              mallopt(M_TRIM_THRESHOLD, static_cast<int>(kMallocTrimThreshold)) == 1;
#endif
  return set_by_us;
}

bool MallocThresholdsSetByUs() { return set_by_us; }

}  // namespace skillpack
