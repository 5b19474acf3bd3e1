// The sharded run's collectives on GPUs through NCCL (include/haste/shard/communicator.hpp):
// one rank per GPU, buffers in that GPU's memory, every collective enqueued on the rank's own
// stream (asynchronous: synchronize() or later work on the stream sees the result).
//
// Two ways to build the ranks:
//   for_devices: one process drives N GPUs (ncclCommInitAll), one thread per GPU calls its
//     rank's collectives (haste train --gpus N).
//   from_environment: one process per GPU, on one host or several; rank and world size from
//     the launcher's variables (include/haste/shard/launch.hpp), NCCL's unique id shared
//     through a file every process sees.
// Both set NCCL_NVLS_ENABLE=0 first unless the user set it (NVLink multicast stays off).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <filesystem>
#include <haste/shard/communicator.hpp>
#include <memory>
#include <span>
#include <vector>

namespace haste::cuda {

class NcclCommunicator final : public shard::Communicator {
 public:
  // Rank i on GPU devices[i]; each rank gets a new non-blocking stream on its device.
  static std::vector<std::unique_ptr<NcclCommunicator>> for_devices(std::span<const int> devices);
  // This process's rank of a multi-process run, on GPU LaunchRank::local_rank. Rank 0 creates
  // the unique id and writes it to `id_file`; the others wait up to `timeout` for it.
  static std::unique_ptr<NcclCommunicator> from_environment(const std::filesystem::path& id_file,
                                                            std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  void all_gather(std::span<const float> send, std::span<float> recv) override;
  void reduce_scatter(std::span<const float> send, std::span<float> recv) override;
  void all_reduce(std::span<float> data) override;
  void all_reduce(std::span<double> data) override;
  void broadcast(std::span<float> data) override;

  int device() const;
  cudaStream_t stream() const;
  // Waits for every collective enqueued so far.
  void synchronize() const;
  // Ends the communicator's pending and future collectives with an error (ncclCommAbort), so
  // that the other ranks' threads do not wait forever for a rank that failed. Any thread may
  // call it; the communicator is unusable afterwards.
  void abort();

 private:
  struct Impl;
  explicit NcclCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The collectives of an NcclCommunicator's ranks on host memory: each call copies the host
// spans to the rank's GPU, runs the collective on its stream, waits, and copies the result
// back. For the few host-side collectives of a multi-process GPU run (the evaluation's top-k
// lists, the replicated encoder at an epoch's end, the checkpoint's agreement), not for steps.
class HostStagedCommunicator final : public shard::Communicator {
 public:
  // `nccl` must outlive every collective of this one; the staging buffer is freed on its GPU
  // even after `nccl` is gone (the multi-process trainer's ranks end before their host group).
  explicit HostStagedCommunicator(NcclCommunicator& nccl);
  ~HostStagedCommunicator() override;

  int rank() const override;
  int size() const override;
  void all_gather(std::span<const float> send, std::span<float> recv) override;
  void reduce_scatter(std::span<const float> send, std::span<float> recv) override;
  void all_reduce(std::span<float> data) override;
  void all_reduce(std::span<double> data) override;
  void broadcast(std::span<float> data) override;

 private:
  // Device space for `bytes` (grown as needed, kept between calls), with the rank's GPU current.
  void* staging(size_t bytes);
  template <typename T, typename Run>
  void staged(std::span<const T> send, std::span<T> recv, const Run& run);

  NcclCommunicator& nccl_;
  int device_;  // nccl_'s GPU, kept for the destructor
  void* buffer_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace haste::cuda
