#include "trainer/distributed.h"

#include <chrono>
#include <map>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace skillpack {

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::chrono::milliseconds timeout{0};
};

Status ValidateDistributedConfig(const DistributedConfig& c) {
  if (c.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size must be >= 1, got ", c.world_size));
  }
  if (c.rank < 0 || c.rank >= c.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank must be in [0, world_size=", c.world_size, "), got ", c.rank));
  }
  if (c.store_port < 1 || c.store_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store_port must be in [1, 65535], got ", c.store_port));
  }
  if (!(c.timeout_seconds > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("timeout_seconds must be > 0, got ", c.timeout_seconds));
  }
  if (c.backend != "gloo") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", c.backend, "' is not available (this build has CPU libtorch: use \"gloo\")"));
  }
  if (c.store_host.empty()) return absl::InvalidArgumentError("store_host must not be empty");
  return absl::OkStatus();
}

Communicator::Communicator(int rank, int world_size, std::unique_ptr<Impl> impl)
    : rank_(rank), world_size_(world_size), impl_(std::move(impl)) {}

Communicator::~Communicator() = default;

StatusOr<std::unique_ptr<Communicator>> Communicator::Create(const DistributedConfig& config) {
  RETURN_IF_ERROR(ValidateDistributedConfig(config));
  if (config.world_size == 1) {
    return std::unique_ptr<Communicator>(new Communicator(0, 1, nullptr));
  }
  auto impl = std::make_unique<Impl>();
  impl->timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_seconds * 1000));
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(config.store_port);
    opts.isServer = config.rank == 0;
    opts.numWorkers = static_cast<size_t>(config.world_size);
    opts.waitWorkers = true;
    opts.timeout = impl->timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(config.store_host, opts);
    auto gloo_opts = c10d::ProcessGroupGloo::Options::create(impl->timeout);
    std::string bind = config.bind_host;
    const bool loopback =
        config.store_host == "127.0.0.1" || config.store_host == "localhost" || config.store_host == "::1";
    if (bind.empty() && loopback) bind = "127.0.0.1";
    gloo_opts->devices.push_back(bind.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                              : c10d::ProcessGroupGloo::createDeviceForHostname(bind));
    gloo_opts->threads = 1;
    impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, config.rank, config.world_size, gloo_opts);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("joining the process group (rank ", config.rank, " of ",
                                               config.world_size, ", store ", config.store_host, ":", config.store_port,
                                               "): ", e.what()));
  }
  return std::unique_ptr<Communicator>(new Communicator(config.rank, config.world_size, std::move(impl)));
}

Status Communicator::AllReduceSum(std::vector<at::Tensor>& tensors) {
  if (impl_ == nullptr || tensors.empty()) return absl::OkStatus();
  try {
    // Gloo reduces a list of same-shaped tensors as one; pack each dtype's
    // tensors into one flat buffer, reduce it, and copy the sums back.
    std::map<at::ScalarType, std::vector<size_t>> by_dtype;
    for (size_t i = 0; i < tensors.size(); ++i) by_dtype[tensors[i].scalar_type()].push_back(i);
    for (const auto& [dtype, indices] : by_dtype) {
      std::vector<at::Tensor> flat;
      for (size_t i : indices) flat.push_back(tensors[i].reshape({-1}));
      std::vector<at::Tensor> buffer = {at::cat(flat)};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      opts.timeout = impl_->timeout;
      impl_->group->allreduce(buffer, opts)->wait(impl_->timeout);
      int64_t offset = 0;
      for (size_t i : indices) {
        const int64_t n = tensors[i].numel();
        tensors[i].copy_(buffer[0].narrow(0, offset, n).view(tensors[i].sizes()));
        offset += n;
      }
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("allreduce failed: ", e.what()));
  }
  return absl::OkStatus();
}

Status Communicator::Broadcast(std::vector<at::Tensor>& tensors, int root) {
  if (impl_ == nullptr || tensors.empty()) return absl::OkStatus();
  try {
    for (at::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.timeout = impl_->timeout;
      impl_->group->broadcast(one, opts)->wait(impl_->timeout);
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("broadcast failed: ", e.what()));
  }
  return absl::OkStatus();
}

Status Communicator::Barrier() {
  if (impl_ == nullptr) return absl::OkStatus();
  try {
    c10d::BarrierOptions opts;
    opts.timeout = impl_->timeout;
    impl_->group->barrier(opts)->wait(impl_->timeout);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("barrier failed: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
