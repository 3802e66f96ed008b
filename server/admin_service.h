// The skillpack.v1.Admin gRPC service: pack upload (streamed, sha256-checked,
// validated before it becomes visible), listing, inspection, cache load /
// unload, deletion (refused for a pack the loaded router names), statistics,
// and the router (SetRouter / GetRouter). Every call requires the admin bearer
// token ("authorization: Bearer <token>"); without it UNAUTHENTICATED.
#ifndef SKILLPACK_SERVER_ADMIN_SERVICE_H_
#define SKILLPACK_SERVER_ADMIN_SERVICE_H_

#include <memory>

#include "server/serving_context.h"
#include "skillpack/v1/admin.grpc.pb.h"

namespace skillpack {

// `ctx` must outlive the service.
std::unique_ptr<v1::Admin::Service> NewAdminService(const ServingContext* ctx);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_ADMIN_SERVICE_H_
