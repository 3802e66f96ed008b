// Bridges between safetensors views (plain bytes) and libtorch tensors.
#ifndef SKILLPACK_CORE_TENSOR_UTIL_H_
#define SKILLPACK_CORE_TENSOR_UTIL_H_

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/safetensors.h"
#include "core/status.h"

namespace skillpack {

// "[2, 3]".
std::string ShapeString(const std::vector<int64_t>& shape);

// libtorch scalar type of a safetensors dtype.
c10::ScalarType TorchScalarType(DType dtype);
// The safetensors dtype of a torch tensor; INVALID_ARGUMENT for unsupported ones.
StatusOr<DType> DTypeOfTensor(const at::Tensor& t);
// "float32" | "float16" | "bfloat16" (Hugging Face torch_dtype names).
StatusOr<DType> DTypeFromTorchName(const std::string& name);

// Copies the view into a new tensor: floating dtypes are converted to
// options.dtype(), integer/bool dtypes keep their type; placed on options.device().
StatusOr<at::Tensor> TensorFromView(const TensorView& view, const at::TensorOptions& options);

// A contiguous CPU tensor holding `t` converted to `dtype` (a float dtype), ready to write.
at::Tensor TensorForWrite(const at::Tensor& t, DType dtype);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_TENSOR_UTIL_H_
