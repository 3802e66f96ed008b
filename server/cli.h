// Subcommands of the `skillpack` operator CLI. Each takes the arguments after
// its own name and returns a process exit code; errors are printed to stderr.
#ifndef SKILLPACK_SERVER_CLI_H_
#define SKILLPACK_SERVER_CLI_H_

#include <string>
#include <vector>

namespace skillpack {

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

#endif  // SKILLPACK_SERVER_CLI_H_
