// The fidelity study (issue 11, trainer/fidelity.h): Tables 1-4 of packs vs
// full fine-tuning, LoRA at equal bytes, merging baselines, continual
// learning and routing, on the base model the spec names.
//
//   fidelity_bench --spec bench/fidelity/full.json --out DIR [--no-progress]
//
// Writes DIR/fidelity.json (raw figures, the spec, the machine), DIR/fidelity.md
// (Markdown tables) and DIR/table1_<task>.svg; intermediate runs stay under
// DIR/runs and DIR/packs, and a rerun with the same DIR reuses them.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "bench/machine_info.h"
#include "core/args.h"
#include "core/malloc_policy.h"
#include "core/omp_wait_policy.h"
#include "trainer/fidelity.h"

int main(int argc, char** argv) {
  skillpack::ReexecWithPassiveOmpWaitUnlessSet(argv);  // as skillpack-trainer does
  skillpack::SetMallocThresholdsUnlessSet();           // and this (core/malloc_policy.h)
  using namespace skillpack;
  StatusOr<Args> args = Args::Parse(argc, argv, 1, {"no-progress"});
  StatusOr<std::string> spec_path = args.ok() ? args->String("spec") : args.status();
  StatusOr<std::string> out = args.ok() ? args->String("out") : args.status();
  const bool progress = args.ok() && !args->Bool("no-progress");
  Status used = args.ok() ? args->CheckAllUsed() : args.status();
  for (const Status& s : {spec_path.status(), out.status(), used}) {
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\nusage: fidelity_bench --spec SPEC.json --out DIR [--no-progress]\n",
                   s.ToString().c_str());
      return 2;
    }
  }
  StatusOr<FidelitySpec> spec = LoadFidelitySpec(*spec_path);
  if (!spec.ok()) {
    std::fprintf(stderr, "error: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  FidelityOptions opts;
  opts.out_dir = *out;
  opts.progress = progress;
  opts.machine = MachineInfo();
  opts.machine["timestamp"] = UtcTimestamp();
  StatusOr<Json> result = RunFidelityStudy(*spec, opts);
  if (!result.ok()) {
    std::fprintf(stderr, "error: %s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf("%s/fidelity.json\n%s/fidelity.md\n", out->c_str(), out->c_str());
  return 0;
}
