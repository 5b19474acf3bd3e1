// The collectives of a multi-process run on host memory (include/haste/shard/communicator.hpp):
// `haste train` under torchrun or mpirun without GPUs, and what CI tests the multi-process mode
// with. One process per rank, on one host or several; every rank i > 0 holds one TCP connection
// to rank 0.
//
// A star through rank 0: every collective sends the ranks' data to rank 0, which adds them in
// rank order (x0 + x1 + ... + x(P-1), element by element, as InProcessGroup does) and sends the
// result back. Results therefore never depend on timing or on the network, and P processes
// compute bit for bit what `--shards P` computes in one process (same build, same thread
// count). Rank 0 moves P times the data: fine for the CPU path and for tests; the GPU path's
// collectives are NCCL's.
//
// Meeting (TcpRendezvous): rank 0 listens, the others connect to it. Its address comes from the
// environment (HASTE_MASTER_ADDR/HASTE_MASTER_PORT, else MASTER_ADDR/MASTER_PORT as torchrun
// sets them), or rank 0 listens on any free port and publishes "host port" in an address file
// (share_through_file; every rank must see the file). A rank that reads a stale file left by a
// crashed run reads it again until rank 0 has replaced it; rank 0 removes the file once every
// rank has joined.
//
// Failures end in a haste::Error naming this rank, the peer and what failed, never in a hang: a
// peer that exits (or is killed) closes its connection, which its partner sees at once; a rank
// that never starts, or a peer that stops answering, runs into the join or collective timeout.
// Every rank checks that the others make the same call with the same count. Byte order and
// float format must agree (same architecture on every host).
#pragma once

#include <chrono>
#include <filesystem>
#include <haste/shard/communicator.hpp>
#include <haste/shard/launch.hpp>
#include <memory>
#include <string>

namespace haste::shard {

struct TcpRendezvous {
  std::string host;  // rank 0's host name or address; "" with an address file: gethostname()
  int port = 0;      // rank 0's port; 0: any free one, published through address_file
  std::filesystem::path address_file;

  std::string describe() const;
};

// HASTE_MASTER_ADDR/HASTE_MASTER_PORT, else MASTER_ADDR/MASTER_PORT (torchrun; under torchrun's
// agent store, TORCHELASTIC_USE_AGENT_STORE=True, torchrun itself listens on MASTER_PORT, so
// MASTER_PORT + 1 is taken), else the address file `address_file` (port 0). Throws naming the
// variables when none is set and `address_file` is empty, or when a port is not a number.
TcpRendezvous tcp_rendezvous_from_environment(const std::filesystem::path& address_file,
                                              const EnvironmentLookup& lookup = {});

struct TcpTimeouts {
  // How long rank 0 waits for every other rank to connect, and the others for rank 0 to
  // listen (its address file to appear).
  std::chrono::milliseconds join{std::chrono::minutes(5)};
  // How long one collective may wait for a peer's data (the ranks' work between collectives
  // must fit: they do the same work, so this is mostly their skew).
  std::chrono::milliseconds collective{std::chrono::minutes(10)};
};

class TcpGroup final : public Communicator {
 public:
  // This process's rank `launch.rank` of `launch.world_size` (1: no connections at all).
  static std::unique_ptr<TcpGroup> connect(const LaunchRank& launch, const TcpRendezvous& where,
                                           const TcpTimeouts& timeouts = {});
  ~TcpGroup() override;
  TcpGroup(const TcpGroup&) = delete;
  TcpGroup& operator=(const TcpGroup&) = delete;

  int rank() const override;
  int size() const override;
  void all_gather(std::span<const float> send, std::span<float> recv) override;
  void reduce_scatter(std::span<const float> send, std::span<float> recv) override;
  void all_reduce(std::span<float> data) override;
  void all_reduce(std::span<double> data) override;
  void broadcast(std::span<float> data) override;

 private:
  struct Impl;
  explicit TcpGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace haste::shard
