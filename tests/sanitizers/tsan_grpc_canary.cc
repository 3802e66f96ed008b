// scripts/sanitize.sh tsan builds this twice before the tree's tests: a gRPC
// callback-API echo server and client in one process, as our server and CLI
// use the API, 64 concurrent unary calls over loopback TCP. The server's
// reactor sets a plain field in OnReadDone and reads it in OnDone, which gRPC
// runs after the call finished, on whichever of its threads it likes; the
// client's callbacks read the reply gRPC wrote. Only gRPC's own completion
// queues, executors and atomics order those accesses. Against Debian's gRPC
// (not built with TSan) ThreadSanitizer must report races here, since it sees
// none of that ordering (the reports bench/README.md's "Sanitizers" section
// found in every e2e server); against the instrumented gRPC of
// scripts/build-sanitized-grpc.sh it must report nothing. The first shows the
// check can fail, the second that TSan now sees gRPC's hand-overs.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// Echoes the one request message of a unary call.
class Echo : public grpc::ServerGenericBidiReactor {
 public:
  Echo() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
      return;
    }
    reply_ = request_;
    replied_ = true;
    StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override {
    if (!replied_) std::fprintf(stderr, "tsan_grpc_canary: a call ended without a reply\n");
    delete this;
  }

 private:
  grpc::ByteBuffer request_;
  grpc::ByteBuffer reply_;
  bool replied_ = false;  // plain on purpose: ordered only by gRPC
};

class EchoService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override { return new Echo(); }
};

struct Call {
  std::string payload;
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
};

}  // namespace

int main() {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "tsan_grpc_canary: cannot listen on 127.0.0.1\n");
    return 1;
  }
  grpc::GenericStub stub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  constexpr int kCalls = 64;
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    call->payload = "canary call " + std::to_string(i);
    grpc::Slice slice(call->payload);
    call->request = grpc::ByteBuffer(&slice, 1);
    Call* c = call.get();
    calls.push_back(std::move(call));
    stub.UnaryCall(&c->context, "/canary.Echo/Echo", grpc::StubOptions(), &c->request, &c->response,
                   [c, &mu, &cv, &done](grpc::Status status) {
                     c->status = std::move(status);
                     std::lock_guard<std::mutex> lock(mu);
                     ++done;
                     cv.notify_all();
                   });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == kCalls; });
  }
  int bad = 0;
  for (const auto& c : calls) {
    std::vector<grpc::Slice> slices;
    std::string got;
    if (c->status.ok() && c->response.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) got.append(s.begin(), s.end());
    }
    if (!c->status.ok() || got != c->payload) {
      std::fprintf(stderr, "tsan_grpc_canary: '%s' came back as '%s' (%s)\n", c->payload.c_str(), got.c_str(),
                   c->status.error_message().c_str());
      ++bad;
    }
  }
  server->Shutdown();
  return bad == 0 ? 0 : 1;
}
