// In-process ranks: threads, a barrier that can be aborted, and collectives summed in rank order
// (see include/haste/shard/in_process.hpp).
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <haste/error.hpp>
#include <haste/shard/in_process.hpp>
#include <mutex>
#include <thread>
#include <vector>

namespace haste::shard {
namespace {

// Thrown in the ranks still waiting when another rank failed; run() reports the failure itself.
struct GroupAborted : Error {
  GroupAborted() : Error("shard: another rank of the in-process group failed") {}
};

// std::barrier cannot be released early: a rank that throws would leave the others waiting
// forever. This one can.
class AbortableBarrier {
 public:
  explicit AbortableBarrier(int count) : count_(count) {}

  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    if (aborted_) throw GroupAborted();
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      released_.notify_all();
      return;
    }
    released_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation) throw GroupAborted();
  }

  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    released_.notify_all();
  }

  void reset() {
    std::lock_guard lock(mutex_);
    aborted_ = false;
    arrived_ = 0;
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int count_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

// Rank `rank`'s share [begin, end) of n elements.
std::pair<size_t, size_t> share(size_t n, int rank, int ranks) {
  const size_t per = (n + static_cast<size_t>(ranks) - 1) / static_cast<size_t>(ranks);
  const size_t begin = std::min(n, per * static_cast<size_t>(rank));
  return {begin, std::min(n, begin + per)};
}

}  // namespace

struct InProcessGroup::Shared {
  explicit Shared(int ranks) : size(ranks), barrier(ranks), posted(ranks) {}

  // What a rank hands to a collective: its buffers, as bytes.
  struct Posted {
    const void* send = nullptr;
    void* recv = nullptr;
    size_t send_size = 0, recv_size = 0;
  };

  // Publishes rank `rank`'s buffers and waits until every rank has; checks that all agree.
  void post(int rank, const void* send, size_t send_size, void* recv, size_t recv_size,
            const char* what) {
    posted[rank] = {send, recv, send_size, recv_size};
    barrier.arrive_and_wait();
    for (int r = 0; r < size; ++r) {
      check(posted[r].send_size == send_size && posted[r].recv_size == recv_size,
            "shard: {} with {} -> {} values on rank {} but {} -> {} on rank {}", what, send_size,
            recv_size, rank, posted[r].send_size, posted[r].recv_size, r);
    }
  }

  template <typename T>
  const T* send_of(int r) const {
    return static_cast<const T*>(posted[r].send);
  }
  template <typename T>
  T* recv_of(int r) const {
    return static_cast<T*>(posted[r].recv);
  }

  template <typename T>
  void all_reduce(int rank, std::span<T> data) {
    post(rank, data.data(), data.size(), data.data(), data.size(), "all_reduce");
    // Each rank sums its share of the elements over all ranks and writes the sum everywhere:
    // no element is read or written by two threads.
    const auto [begin, end] = share(data.size(), rank, size);
    for (size_t i = begin; i < end; ++i) {
      T sum = recv_of<T>(0)[i];
      for (int r = 1; r < size; ++r) sum += recv_of<T>(r)[i];
      for (int r = 0; r < size; ++r) recv_of<T>(r)[i] = sum;
    }
    barrier.arrive_and_wait();
  }

  void all_gather(int rank, std::span<const float> send, std::span<float> recv) {
    check(recv.size() == send.size() * static_cast<size_t>(size),
          "shard: all_gather of {} values into {} (need {} ranks x {})", send.size(), recv.size(),
          size, send.size());
    post(rank, send.data(), send.size(), recv.data(), recv.size(), "all_gather");
    for (int r = 0; r < size; ++r) {
      float* to = recv.data() + static_cast<size_t>(r) * send.size();
      // In place (send inside recv at this rank's offset) needs no copy of its own part.
      if (to != send_of<float>(r)) std::memcpy(to, send_of<float>(r), send.size() * sizeof(float));
    }
    barrier.arrive_and_wait();
  }

  void reduce_scatter(int rank, std::span<const float> send, std::span<float> recv) {
    check(send.size() == recv.size() * static_cast<size_t>(size),
          "shard: reduce_scatter of {} values into {} (need {} ranks x {})", send.size(),
          recv.size(), size, recv.size());
    post(rank, send.data(), send.size(), recv.data(), recv.size(), "reduce_scatter");
    const size_t offset = static_cast<size_t>(rank) * recv.size();
    for (size_t i = 0; i < recv.size(); ++i) {
      float sum = send_of<float>(0)[offset + i];
      for (int r = 1; r < size; ++r) sum += send_of<float>(r)[offset + i];
      recv[i] = sum;
    }
    barrier.arrive_and_wait();
  }

  void broadcast(int rank, std::span<float> data) {
    post(rank, data.data(), data.size(), data.data(), data.size(), "broadcast");
    if (rank != 0) std::memcpy(data.data(), send_of<float>(0), data.size() * sizeof(float));
    barrier.arrive_and_wait();
  }

  int size;
  AbortableBarrier barrier;
  std::vector<Posted> posted;
};

class InProcessGroup::RankCommunicator final : public Communicator {
 public:
  RankCommunicator(Shared& shared, int rank) : shared_(shared), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return shared_.size; }
  void all_gather(std::span<const float> send, std::span<float> recv) override {
    shared_.all_gather(rank_, send, recv);
  }
  void reduce_scatter(std::span<const float> send, std::span<float> recv) override {
    shared_.reduce_scatter(rank_, send, recv);
  }
  void all_reduce(std::span<float> data) override { shared_.all_reduce(rank_, data); }
  void all_reduce(std::span<double> data) override { shared_.all_reduce(rank_, data); }
  void broadcast(std::span<float> data) override { shared_.broadcast(rank_, data); }

 private:
  Shared& shared_;
  int rank_;
};

InProcessGroup::InProcessGroup(int size) {
  check(size >= 1, "shard: {} shards; need at least 1", size);
  shared_ = std::make_unique<Shared>(size);
}

InProcessGroup::InProcessGroup(InProcessGroup&&) noexcept = default;
InProcessGroup& InProcessGroup::operator=(InProcessGroup&&) noexcept = default;
InProcessGroup::~InProcessGroup() = default;

int InProcessGroup::size() const { return shared_->size; }

void InProcessGroup::run(const std::function<void(Communicator&)>& work) {
  const int P = shared_->size;
  // The ranks share the cores the caller's OpenMP setting allows, instead of each taking all.
  const int caller_threads = omp_get_max_threads();
  const int threads_per_rank = std::max(1, caller_threads / P);
  std::vector<std::exception_ptr> failures(P);
  auto run_rank = [&](int r) {
    omp_set_num_threads(threads_per_rank);
    RankCommunicator communicator(*shared_, r);
    try {
      work(communicator);
    } catch (const GroupAborted&) {
      // Another rank failed first; its exception is the one to report.
    } catch (...) {
      failures[r] = std::current_exception();
      shared_->barrier.abort();
    }
  };
  // Rank 0 runs on the calling thread (one shard starts no thread), the others on their own.
  std::vector<std::thread> threads;
  threads.reserve(P - 1);
  for (int r = 1; r < P; ++r) threads.emplace_back(run_rank, r);
  run_rank(0);
  omp_set_num_threads(caller_threads);
  for (std::thread& thread : threads) thread.join();
  shared_->barrier.reset();
  for (const std::exception_ptr& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }
}

}  // namespace haste::shard
