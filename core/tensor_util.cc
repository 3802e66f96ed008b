#include "core/tensor_util.h"

#include <ATen/ATen.h>

#include "absl/strings/str_join.h"

namespace skillpack {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

c10::ScalarType TorchScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return at::kFloat;
    case DType::kF16:
      return at::kHalf;
    case DType::kBF16:
      return at::kBFloat16;
    case DType::kI8:
      return at::kChar;
    case DType::kU8:
      return at::kByte;
    case DType::kI16:
      return at::kShort;
    case DType::kI32:
      return at::kInt;
    case DType::kI64:
      return at::kLong;
    case DType::kBool:
      return at::kBool;
  }
  return at::kFloat;
}

StatusOr<DType> DTypeOfTensor(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kF32;
    case at::kHalf:
      return DType::kF16;
    case at::kBFloat16:
      return DType::kBF16;
    case at::kChar:
      return DType::kI8;
    case at::kByte:
      return DType::kU8;
    case at::kShort:
      return DType::kI16;
    case at::kInt:
      return DType::kI32;
    case at::kLong:
      return DType::kI64;
    case at::kBool:
      return DType::kBool;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported tensor dtype ", c10::toString(t.scalar_type())));
  }
}

StatusOr<DType> DTypeFromTorchName(const std::string& name) {
  if (name == "float32") return DType::kF32;
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", name, "' (float32, float16 or bfloat16)"));
}

StatusOr<at::Tensor> TensorFromView(const TensorView& view, const at::TensorOptions& options) {
  try {
    at::ScalarType st = TorchScalarType(view.dtype);
    // from_blob needs a non-null pointer even for empty tensors.
    static uint8_t empty_byte = 0;
    void* data = view.nbytes == 0 ? &empty_byte : const_cast<uint8_t*>(view.data);
    at::Tensor src = at::from_blob(data, view.shape, at::TensorOptions().dtype(st));
    at::Tensor out;
    if (at::isFloatingType(st)) {
      out = src.to(options.device(), options.dtype().toScalarType(), /*non_blocking=*/false, /*copy=*/true);
    } else {
      out = src.to(options.device(), st, false, true);
    }
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("converting tensor '", view.name, "'"));
  }
}

at::Tensor TensorForWrite(const at::Tensor& t, DType dtype) {
  return t.detach().to(at::kCPU, TorchScalarType(dtype)).contiguous();
}

}  // namespace skillpack
