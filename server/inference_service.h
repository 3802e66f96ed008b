// The skillpack.v1.Inference gRPC service: decodes a GenerateRequest and runs
// it through the shared submission path (submission.h: tokens, sampling, a
// weight set, the scheduler), then returns or streams the result. It uses
// gRPC's callback API: no thread waits per call; the blocking preparation
// runs on a thread of its own (call_workers.h), and the call follows its
// request through notifications (new output, the end, the client leaving).
// AUTO requests are routed during preparation (request_router.h): the
// router's packs and weights become the selection, which then runs exactly as
// an EXPLICIT one. Route returns the decision alone. Every outcome maps to one
// gRPC code (see docs/api.md, "Errors").
#ifndef SKILLPACK_SERVER_INFERENCE_SERVICE_H_
#define SKILLPACK_SERVER_INFERENCE_SERVICE_H_

#include <cstdint>
#include <memory>

#include "server/serving_context.h"
#include "skillpack/v1/inference.grpc.pb.h"

namespace skillpack {

// `ctx` must outlive the service. At most `max_preparing` calls are being
// prepared (decoded, tokenized, routed, composed) at once, each on a thread
// of its own; more get RESOURCE_EXHAUSTED.
std::unique_ptr<v1::Inference::Service> NewInferenceService(const ServingContext* ctx, int32_t max_preparing);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_INFERENCE_SERVICE_H_
