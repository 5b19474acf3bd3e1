// Collectives among the P ranks of a label-sharded run (DESIGN.md 11, issue 9): the output layer
// is split by label groups over P ranks, h is shared, and the gradient of h (and of anything
// replicated) is summed over the ranks.
//
// One interface, three engines:
//   InProcessGroup (include/haste/shard/in_process.hpp): P ranks as threads of one process on
//     host memory, summing in rank order, so results never depend on thread timing. The CPU
//     backend's sharded path, and what CI tests sharding with.
//   TcpGroup (include/haste/shard/tcp_group.hpp): one rank per process, on host memory, through
//     TCP connections to rank 0, summing in rank order like InProcessGroup (so P processes give
//     the numbers of P in-process shards); the CPU backend's multi-process path.
//   NcclCommunicator (include/haste/cuda/nccl_communicator.hpp, CUDA builds): one GPU per rank,
//     buffers in that GPU's memory, every call enqueued on the rank's stream.
// Every rank must make the same calls in the same order with the same counts (as with MPI and
// NCCL); the spans' sizes are checked against `count` on every call.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace haste::shard {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;  // P

  // recv [P * n] = the n values of `send` of every rank, rank r's at offset r * n.
  virtual void all_gather(std::span<const float> send, std::span<float> recv) = 0;
  // recv [n] = the sum over ranks of their send [P * n] at offset rank() * n.
  virtual void reduce_scatter(std::span<const float> send, std::span<float> recv) = 0;
  // data = the sum over ranks of data, in place.
  virtual void all_reduce(std::span<float> data) = 0;
  virtual void all_reduce(std::span<double> data) = 0;
  // data = rank 0's data, on every rank (bit for bit: no arithmetic).
  virtual void broadcast(std::span<float> data) = 0;
};

// Communicator::all_gather of values of another type (ids, doubles, hashes), bit for bit: they
// cross as the floats that spell their bytes. Every engine's all-gather only copies (no
// arithmetic, over TCP as over NCCL), so the values arrive exactly, whatever float their bytes
// spell (NaN or denormal patterns included).
template <typename T>
void all_gather_bits(Communicator& comm, std::span<const T> send, std::span<T> recv) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % sizeof(float) == 0);
  constexpr size_t kFloats = sizeof(T) / sizeof(float);
  std::vector<float> out(send.size() * kFloats), in(recv.size() * kFloats);
  if (!send.empty()) std::memcpy(out.data(), send.data(), send.size_bytes());
  comm.all_gather(out, in);
  if (!recv.empty()) std::memcpy(recv.data(), in.data(), recv.size_bytes());
}

}  // namespace haste::shard
