#include "pack/skillpack.h"

#include "absl/strings/str_cat.h"

namespace skillpack {

const char* ModuleOpName(ModuleOp op) {
  switch (op) {
    case ModuleOp::kLowRank:
      return "lowrank";
    case ModuleOp::kSparse:
      return "sparse";
    case ModuleOp::kDenseQuant:
      return "dense_quant";
    case ModuleOp::kDense:
      return "dense";
  }
  return "unknown";
}

StatusOr<ModuleOp> ModuleOpFromName(absl::string_view name) {
  for (ModuleOp op : {ModuleOp::kLowRank, ModuleOp::kSparse, ModuleOp::kDenseQuant, ModuleOp::kDense}) {
    if (name == ModuleOpName(op)) return op;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown module op '", name, "' (want lowrank, sparse, dense_quant or dense)"));
}

}  // namespace skillpack
