// libFuzzer target: a router file image (router/router.h,
// docs/router-format.md). An accepted router must serialize back to a file
// that parses again and score a batch of features of its hidden size.
#include <cstddef>
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "router/router.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace skillpack;
  auto router = Router::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.router");
  if (!router.ok()) {
    fuzz::CheckRejection(router.status());
    return 0;
  }
  const RouterConfig& c = (*router)->config();
  FUZZ_CHECK(!c.labels.empty() && c.labels[0] == "none");
  FUZZ_CHECK(c.hidden_size > 0);
  StatusOr<std::string> bytes = (*router)->Serialize();
  FUZZ_CHECK(bytes.ok());
  auto again = Router::Parse(*bytes, "reserialized");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK((*again)->config().labels == c.labels);
  if (c.hidden_size <= 4096) {
    at::Tensor scores = (*router)->Scores(at::zeros({2, c.hidden_size}, at::kFloat));
    FUZZ_CHECK(scores.dim() == 2 && scores.size(0) == 2 && scores.size(1) == static_cast<int64_t>(c.labels.size()));
  }
  return 0;
}
