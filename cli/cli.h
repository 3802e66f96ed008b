// Subcommands of the `skillpack` operator CLI. Each takes the arguments after
// its own name and returns a process exit code; errors are printed to stderr.
#ifndef SKILLPACK_CLI_CLI_H_
#define SKILLPACK_CLI_CLI_H_

#include <set>
#include <string>
#include <vector>

#include "core/args.h"
#include "core/status.h"

namespace skillpack {

// Prints "skillpack <what>: <message>" to stderr and returns the exit code:
// 2 for INVALID_ARGUMENT (bad input), 1 otherwise.
int CliFail(const Status& s, absl::string_view what);

// One subcommand of a command group, e.g. `create` of `skillpack pack`.
struct CliSubcommand {
  const char* name;
  Status (*run)(const Args& args);
  std::set<std::string> bool_flags;  // flags that take no value
};

// Runs the subcommand argv[0] of `group` from `table` with the remaining
// arguments parsed as flags (`-o X` is `--out X`). No argument, `--help` or
// `help` prints `usage` (to stderr with exit 2 when there was no argument).
int RunCliSubcommand(absl::string_view group, const std::vector<std::string>& argv,
                     const std::vector<CliSubcommand>& table, const char* usage);

// skillpack model init-tiny --out DIR [--layers N --hidden N --heads N --kv-heads N --vocab N --seed N ...]
int RunModelCommand(const std::vector<std::string>& args);
// skillpack generate --model DIR --prompt TEXT [sampling flags]
int RunGenerateCommand(const std::vector<std::string>& args);
// skillpack pack create|inspect|verify|apply ...
int RunPackCommand(const std::vector<std::string>& args);
// skillpack client generate|stream|route|packs|router ... --server HOST:PORT (cli_client.cc)
int RunClientCommand(const std::vector<std::string>& args);
// skillpack router train|inspect ... (cli_router.cc)
int RunRouterCommand(const std::vector<std::string>& args);

}  // namespace skillpack

#endif  // SKILLPACK_CLI_CLI_H_
