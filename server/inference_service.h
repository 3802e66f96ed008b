// The skillpack.v1.Inference gRPC service: decodes a GenerateRequest and runs
// it through the shared submission path (submission.h: tokens, sampling, a
// weight set, the scheduler), then returns or streams the result. AUTO
// requests are routed on the handler thread first (request_router.h): the
// router's packs and weights become the selection, which then runs exactly as
// an EXPLICIT one. Route returns the decision alone. Every outcome maps to one
// gRPC code (see docs/api.md, "Errors").
#ifndef SKILLPACK_SERVER_INFERENCE_SERVICE_H_
#define SKILLPACK_SERVER_INFERENCE_SERVICE_H_

#include <memory>

#include "server/serving_context.h"
#include "skillpack/v1/inference.grpc.pb.h"

namespace skillpack {

// `ctx` must outlive the service.
std::unique_ptr<v1::Inference::Service> NewInferenceService(const ServingContext* ctx);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_INFERENCE_SERVICE_H_
