// Data-parallel collectives for the trainer on torch's c10d: a TCPStore for
// rendezvous (rank 0 hosts it) and a ProcessGroupGloo (CPU tensors). With
// world_size 1 no store or group is created and every collective is a no-op.
#ifndef SKILLPACK_TRAINER_DISTRIBUTED_H_
#define SKILLPACK_TRAINER_DISTRIBUTED_H_

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/status.h"

namespace skillpack {

struct DistributedConfig {
  int rank = 0;
  int world_size = 1;
  std::string store_host = "127.0.0.1";  // where rank 0's TCPStore listens
  int store_port = 29500;
  // Address this rank's Gloo transport binds to; empty: loopback when
  // store_host is a loopback address, else this machine's hostname.
  std::string bind_host;
  double timeout_seconds = 120;
  std::string backend = "gloo";  // only "gloo" in this build (CPU libtorch)
};

// INVALID_ARGUMENT naming the field: rank outside [0, world_size), world_size < 1,
// port outside [1, 65535], non-positive timeout, unknown backend.
Status ValidateDistributedConfig(const DistributedConfig& c);

class Communicator {
 public:
  // Connects to the group (blocks until every rank has joined or the timeout
  // passes: DEADLINE_EXCEEDED / UNAVAILABLE then).
  static StatusOr<std::unique_ptr<Communicator>> Create(const DistributedConfig& config);
  virtual ~Communicator();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // Sums `tensors` (CPU, float32 or float64) over all ranks, in place. All
  // ranks must pass tensors of the same shapes in the same order.
  Status AllReduceSum(std::vector<at::Tensor>& tensors);
  // Copies rank `root`'s `tensors` into every rank's, in place.
  Status Broadcast(std::vector<at::Tensor>& tensors, int root);
  Status Barrier();

 private:
  struct Impl;
  Communicator(int rank, int world_size, std::unique_ptr<Impl> impl);
  int rank_ = 0;
  int world_size_ = 1;
  std::unique_ptr<Impl> impl_;  // null when world_size == 1
};

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_DISTRIBUTED_H_
