// Server reflection, protocol version v1 (grpc.reflection.v1), which the gRPC
// release of Debian 12 (1.51) does not provide (its plugin serves only
// v1alpha). Answers from the process's generated descriptor pool, as gRPC's
// own v1alpha service does, so every service compiled into the binary
// (skillpack.v1.*, grpc.health.v1.Health, both reflection services) can be
// described.
#ifndef SKILLPACK_SERVER_REFLECTION_V1_H_
#define SKILLPACK_SERVER_REFLECTION_V1_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace skillpack {

// The grpc.reflection.v1.ServerReflection service. `services`: the full
// names list_services answers with.
std::unique_ptr<grpc::Service> NewReflectionV1Service(std::vector<std::string> services);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_REFLECTION_V1_H_
