// The one submission path of a generation, shared by every transport (the
// gRPC Inference service, inference_service.cc, and the OpenAI-compatible
// HTTP API, openai_http.cc): validate and tokenize a skillpack.v1
// GenerateRequest, route AUTO requests, compose the chosen packs, submit to
// the scheduler, and wait for (or stream) the result. A transport only turns
// its wire format into a GenerateRequest, its client's presence into a
// GenerationSink, and the outcome into its own response.
//
// Every error is a Status whose message names the GenerateRequest field that
// is wrong ("prompt: ...", "sampling: temperature ...", "skills.packs[0].name:
// ..."); transports map the codes (docs/api.md, "Errors").
#ifndef SKILLPACK_SERVER_SUBMISSION_H_
#define SKILLPACK_SERVER_SUBMISSION_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "core/generator.h"
#include "core/status.h"
#include "pack/selection.h"
#include "server/request_router.h"
#include "server/scheduler.h"
#include "server/serving_context.h"
#include "skillpack/v1/inference.pb.h"

namespace skillpack {

// A request turned into what the scheduler runs.
struct PreparedGeneration {
  GenerationRequest gen;
  std::vector<PackSelection> packs;  // what runs: the request's, or the router's
  double compose_seconds = 0;
  bool routed = false;  // AUTO with a router loaded
  RoutedRequest route;  // when routed
};

// Whether `skills` asks for the router (AUTO, or the mode left unset).
bool IsAutoSkills(const v1::Skills& skills);

// The prompt's tokens of a GenerateRequest or RouteRequest (same input oneof),
// after the request_id and size checks that need no tokenizer.
StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& req, const ServingContext& ctx);
StatusOr<std::vector<int32_t>> PromptTokens(const v1::RouteRequest& req, const ServingContext& ctx);

// The routing policy of an AUTO request: the server's default with the
// request's overrides. INVALID_ARGUMENT naming the field for a bad override.
StatusOr<RoutingPolicy> RoutingPolicyFor(const v1::Skills& skills, const RoutingPolicy& server_default);

// Validates, tokenizes, routes (AUTO) and composes: everything before the
// scheduler. UNAVAILABLE once the server drains.
StatusOr<PreparedGeneration> PrepareGeneration(const ServingContext& ctx, const v1::GenerateRequest& req);

// What a blocking transport (the OpenAI HTTP API: a civetweb thread per
// connection) does while its request runs. Called on the transport's own
// thread (the one that called AwaitGeneration), never concurrently. The gRPC
// Inference service blocks no thread: gRPC tells it when its client leaves,
// and it follows the request through RequestState's listener.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  // Whether the client is still there; kNone when it is, else why it is not
  // (kClient: it left; kDeadline: its deadline passed). Asked each time the
  // request has news (new output, or its end), and at least every CheckEvery().
  virtual CancelCause ClientGone() = 0;
  // How long AwaitGeneration waits for news before it asks ClientGone anyway:
  // for a transport that can see its client leave while nothing is written
  // (a socket's hang-up). A non-streamed request has no news until its end;
  // without this it would run to the end for a client that left.
  virtual absl::Duration CheckEvery() { return absl::InfiniteDuration(); }
  // Streams only: one chunk of new output while the request runs. Returns
  // kNone when delivered, else why it could not be.
  virtual CancelCause Deliver(StreamChunk chunk) = 0;
};

// The outcome of AwaitGeneration.
struct GenerationResult {
  GenerationOutput output;
  // Streams only: the last chunk of output, held back so that the transport
  // can send it with the summary (absent when the last step added nothing).
  std::optional<StreamChunk> last_chunk;
};

// Submits `p` to the scheduler, counting it in the per-pack request metric.
// RESOURCE_EXHAUSTED when the scheduler is full, UNAVAILABLE once it drains
// (Scheduler::Submit). A transport that must commit to a response before the
// output comes (an HTTP stream's status line) submits first, then awaits.
StatusOr<std::shared_ptr<RequestState>> SubmitGeneration(const ServingContext& ctx, const PreparedGeneration& p,
                                                         absl::Time deadline, bool stream);

// Waits for a submitted request: every chunk but the last goes to
// sink->Deliver while it runs (streams), and the request is cancelled as soon
// as the sink reports its client gone. Returns the final output, or the
// status of a request that did not finish on its own: the engine's error,
// DEADLINE_EXCEEDED, UNAVAILABLE for a shutdown, CANCELLED for a client that
// left.
StatusOr<GenerationResult> AwaitGeneration(const ServingContext& ctx, const std::shared_ptr<RequestState>& state,
                                           bool stream, GenerationSink* sink);

// The outcome of a request that finished (RequestState::Poll or Wait
// returned true): its output, or the status of a request that did not finish
// on its own, as AwaitGeneration returns them. `last_chunk`: a stream's last
// chunk, not yet delivered, to go with the summary.
StatusOr<GenerationResult> FinishedGeneration(const RequestState& state, std::optional<StreamChunk> last_chunk);

// SubmitGeneration, then AwaitGeneration.
StatusOr<GenerationResult> RunGeneration(const ServingContext& ctx, const PreparedGeneration& p, absl::Time deadline,
                                         bool stream, GenerationSink* sink);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SUBMISSION_H_
