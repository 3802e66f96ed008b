// `skillpack`: the operator's command-line tool.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "server/cli.h"

namespace {

constexpr char kUsage[] =
    "usage: skillpack <command> [flags]\n"
    "\n"
    "commands:\n"
    "  model init-tiny --out DIR [--layers N --hidden N --heads N --kv-heads N\n"
    "                  --intermediate N --vocab N --max-positions N --seed N --tie-embeddings]\n"
    "      write a random-initialised Llama model folder in Hugging Face layout\n"
    "  generate --model DIR (--prompt TEXT | --chat TEXT [--system TEXT])\n"
    "           [--max-new-tokens N --temperature T --top-k K --top-p P --min-p P\n"
    "            --repetition-penalty R --seed S --stop STR ... --stop-token-id ID ...\n"
    "            --ignore-eos --logprobs --threads N]\n"
    "      offline generation; prints the text, then timing to stderr\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "model") return skillpack::RunModelCommand(rest);
  if (cmd == "generate") return skillpack::RunGenerateCommand(rest);
  if (cmd == "pack") return skillpack::RunPackCommand(rest);
  std::fprintf(stderr, "skillpack: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
