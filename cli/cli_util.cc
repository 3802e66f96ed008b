// Shared plumbing of the `skillpack` CLI's command groups.
#include <cstdio>

#include "cli/cli.h"

namespace skillpack {

int CliFail(const Status& s, absl::string_view what) {
  std::fprintf(stderr, "skillpack %s: %s\n", std::string(what).c_str(), std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int RunCliSubcommand(absl::string_view group, const std::vector<std::string>& argv,
                     const std::vector<CliSubcommand>& table, const char* usage) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "help") {
    std::fputs(usage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  const std::string& sub = argv[0];
  for (const CliSubcommand& c : table) {
    if (sub != c.name) continue;
    std::vector<std::string> rest(argv.begin() + 1, argv.end());
    for (std::string& arg : rest) {
      if (arg == "-o") arg = "--out";  // -o FILE is --out FILE
    }
    const std::string what = absl::StrCat(group, " ", sub);
    auto a = Args::Parse(rest, c.bool_flags);
    if (!a.ok()) return CliFail(a.status(), what);
    Status s = c.run(*a);
    return s.ok() ? 0 : CliFail(s, what);
  }
  std::fprintf(stderr, "skillpack %s: unknown subcommand '%s'\n\n%s", std::string(group).c_str(), sub.c_str(), usage);
  return 2;
}

}  // namespace skillpack
