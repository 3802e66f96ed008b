#include "core/skillpack.h"

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

Status ValidatePackName(absl::string_view name) {
  auto allowed = [](char c, bool first) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
    return !first && (c == '.' || c == '_' || c == '-');
  };
  bool ok = !name.empty() && name.size() <= 64;
  for (size_t i = 0; ok && i < name.size(); ++i) ok = allowed(name[i], i == 0);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid pack name '", name,
                     "': want 1-64 characters of [a-z0-9._-] starting with a letter or digit"));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
