// `skillpack pack ...`: placeholder until the pack commands land.
#include <cstdio>

#include "server/cli.h"

namespace skillpack {

int RunPackCommand(const std::vector<std::string>&) {
  std::fprintf(stderr, "skillpack pack: not built yet\n");
  return 2;
}

}  // namespace skillpack
