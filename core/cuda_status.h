// Turns the launchers' cudaError_t / cublasStatus_t results into
// skillpack::Status at the component boundary (core's GPU paths). Header-only;
// needs abseil and the CUDA headers, not the kernels library.
#ifndef SKILLPACK_CORE_CUDA_STATUS_H_
#define SKILLPACK_CORE_CUDA_STATUS_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace skillpack {

// OK for cudaSuccess. Otherwise INVALID_ARGUMENT for cudaErrorInvalidValue
// (what the launchers return for bad arguments), RESOURCE_EXHAUSTED for
// cudaErrorMemoryAllocation, INTERNAL for anything else; the message is
// "<context>: <cudaGetErrorName>: <cudaGetErrorString>".
inline absl::Status CudaStatus(cudaError_t err, absl::string_view context) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorInvalidValue:
      return absl::InvalidArgumentError(message);
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

// OK for CUBLAS_STATUS_SUCCESS; INVALID_ARGUMENT for
// CUBLAS_STATUS_INVALID_VALUE, RESOURCE_EXHAUSTED for
// CUBLAS_STATUS_ALLOC_FAILED, INTERNAL otherwise.
inline absl::Status CublasStatus(cublasStatus_t status, absl::string_view context) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message =
      absl::StrCat(context, ": ", cublasGetStatusName(status), ": ", cublasGetStatusString(status));
  switch (status) {
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::InvalidArgumentError(message);
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace skillpack

#endif  // SKILLPACK_CORE_CUDA_STATUS_H_
