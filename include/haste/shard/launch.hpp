// Where this process stands in a multi-process sharded run (one process per GPU, possibly over
// several hosts), and how the processes agree on a shared secret (NCCL's unique id) without a
// network service of our own.
//
// The rank and world size come from the environment, so the usual launchers work unchanged:
//   HASTE_RANK, HASTE_WORLD_SIZE, HASTE_LOCAL_RANK      (ours, checked first)
//   RANK, WORLD_SIZE, LOCAL_RANK                         (torchrun, torch.distributed.launch)
//   OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK             (Open MPI's mpirun)
// The first family whose rank and world size are both set wins; a missing local rank is taken
// as the rank (one host). No family set: a single process (rank 0 of 1).
//
// The id travels through a file on a file system every process sees (a shared home or scratch
// directory): rank 0 writes it atomically (a temporary file renamed into place), the others
// wait for it. Use a fresh path for every run: a file left by an earlier run would be read as
// this run's.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace haste::shard {

struct LaunchRank {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // which of this host's GPUs to use
  std::string source;  // the variables it came from ("HASTE_RANK/HASTE_WORLD_SIZE", ...)
};

// Reads the variables through `lookup` (std::getenv by default; tests pass their own). Throws
// haste::Error naming the variable when a value is not a number or the rank is out of range.
using EnvironmentLookup = std::function<const char*(const char*)>;
LaunchRank launch_rank_from_environment(const EnvironmentLookup& lookup = {});

// Rank 0 writes `bytes` to `path` and returns them; every other rank waits up to `timeout` for
// the file to appear with exactly `size` bytes, and returns its contents. Throws haste::Error
// on a timeout (naming the path) or an unwritable path.
std::vector<uint8_t> share_through_file(const std::filesystem::path& path, int rank,
                                        std::span<const uint8_t> bytes, size_t size,
                                        std::chrono::milliseconds timeout);

// Sets NCCL_NVLS_ENABLE=0 unless the user set it: NVLink multicast can take a shared host's
// GPUs out of service (the device machines' rule), and the sharded path does not need it.
void disable_nvlink_multicast_unless_set();

}  // namespace haste::shard
