// `skillpack`: the operator's command-line tool.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "core/malloc_policy.h"
#include "core/omp_wait_policy.h"

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
    "      offline generation; prints the text, then timing to stderr\n"
    "  pack create --base DIR --tuned DIR --name NAME -o FILE.skillpack\n"
    "              [--calib FILE --calib-samples N --calib-len L]\n"
    "              [--config FILE.json | --target-ratio R | --target-bytes N]\n"
    "              [--description TEXT --tag TAG ... --version V --threads N]\n"
    "      compress the delta tuned - base into a SkillPack (progress to stderr)\n"
    "  pack inspect FILE.skillpack [--json]\n"
    "      the manifest and, per module, op, rank, bits and bytes\n"
    "  pack verify FILE.skillpack --base DIR\n"
    "      exit 0 only if the pack is well-formed and fits this base\n"
    "  pack apply --base DIR --pack FILE [--pack FILE ...] [--weight W ...]\n"
    "             [--dtype float32|float16|bfloat16] -o DIR\n"
    "      write base + weighted pack deltas as a Hugging Face model folder\n"
    "  router train --model DIR --data LABELLED.jsonl -o ROUTER.safetensors\n"
    "               [--layer N --width N --epochs N --lr X --seed N --holdout F --threads N]\n"
    "      train a router from labelled prompts; prints held-out accuracy and the confusion table\n"
    "  router inspect ROUTER.safetensors\n"
    "      the router's labels, layer, sizes and base fingerprint\n"
    "  client generate|stream --server HOST:PORT (--prompt TEXT | --chat TEXT | --token-ids IDS) [flags]\n"
    "  client route --server HOST:PORT (--prompt TEXT | --chat TEXT | --token-ids IDS)\n"
    "               [--routing-mode top1|topk --routing-k N --routing-threshold T]\n"
    "  client health --server HOST:PORT [--service NAME]\n"
    "  client packs upload FILE | list | get NAME | load NAME [--pin] | unload NAME | delete NAME | stats\n"
    "  client router set FILE | get | clear\n"
    "         --server HOST:PORT --admin-token-file FILE\n"
    "      talk to a skillpack-server over gRPC (`skillpack client --help` for every flag)\n";

}  // namespace

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // core/omp_wait_policy.h
  skillpack::SetMallocThresholdsUnlessSet();           // core/malloc_policy.h
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "model") return skillpack::RunModelCommand(rest);
  if (cmd == "generate") return skillpack::RunGenerateCommand(rest);
  if (cmd == "pack") return skillpack::RunPackCommand(rest);
  if (cmd == "client") return skillpack::RunClientCommand(rest);
  if (cmd == "router") return skillpack::RunRouterCommand(rest);
  std::fprintf(stderr, "skillpack: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
