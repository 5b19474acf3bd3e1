// P ranks of a sharded run as P threads of one process (the CPU backend's shards): a
// Communicator per rank over host memory, and run() to start one thread per rank.
//
// Each collective is two barriers: every rank publishes its buffers, waits for the others, then
// computes its 1/P share of the result from every rank's buffer and waits again before
// returning (so no buffer is touched while a peer still reads it). Sums run over the ranks in
// rank order (0, 1, ..., P-1) whichever thread computes them, so a sharded run is reproducible
// bit for bit.
//
// A rank that throws aborts the group: ranks waiting in a collective throw too, and run()
// rethrows the first rank's own exception once every thread has ended.
#pragma once

#include <functional>
#include <haste/shard/communicator.hpp>
#include <memory>

namespace haste::shard {

class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  InProcessGroup(InProcessGroup&&) noexcept;
  InProcessGroup& operator=(InProcessGroup&&) noexcept;
  ~InProcessGroup();

  int size() const;
  // Runs `work(communicator of rank r)` for every rank r, rank 0 on the calling thread and the
  // others on threads of their own, and waits for all. Each rank gets 1/P of the caller's
  // OpenMP threads. A group runs one run() at a time.
  void run(const std::function<void(Communicator&)>& work);

 private:
  struct Shared;
  class RankCommunicator;
  std::unique_ptr<Shared> shared_;
};

}  // namespace haste::shard
