// TcpGroup: ranks as threads of this test, each with its own group over loopback TCP (as
// separate processes would), against InProcessGroup bit for bit; the rendezvous variables; and
// failures (a rank that never joins, a peer that goes away, mismatched calls, a stale address
// file) as errors within the timeouts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <haste/error.hpp>
#include <haste/shard/in_process.hpp>
#include <haste/shard/tcp_group.hpp>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace haste::shard {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

fs::path fresh_file(const std::string& name) {
  const fs::path file =
      fs::temp_directory_path() / ("haste-tcp-" + std::to_string(::getpid()) + "-" + name);
  fs::remove(file);
  return file;
}

// Runs `work(group)` on P threads, each rank with its own TcpGroup met through `file`; returns
// each rank's error message ("" when it succeeded).
std::vector<std::string> run_ranks(int P, const fs::path& file,
                                   const std::function<void(Communicator&)>& work,
                                   TcpTimeouts timeouts = {milliseconds(10000),
                                                           milliseconds(10000)}) {
  std::vector<std::string> errors(P);
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r) {
    threads.emplace_back([&, r] {
      try {
        TcpRendezvous where;
        where.host = "127.0.0.1";
        where.address_file = file;
        auto group = TcpGroup::connect({r, P, r, "test"}, where, timeouts);
        work(*group);
      } catch (const Error& e) {
        errors[r] = e.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return errors;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(n);
  for (float& x : out) x = normal(rng) * 1e3f;  // sums that round
  return out;
}

// Every collective of P ranks, rank r's inputs drawn from seed r; each rank's outputs appended.
void all_collectives(Communicator& comm, std::vector<float>& out, std::vector<double>& out_double) {
  const int P = comm.size(), r = comm.rank();
  const size_t n = 300001;  // more than one of TcpGroup's 1 MB chunks, and odd
  std::vector<float> data = random_floats(n, 10 + r);
  comm.all_reduce(data);
  out.insert(out.end(), data.begin(), data.end());
  std::vector<double> doubles(1000);
  for (size_t i = 0; i < doubles.size(); ++i) doubles[i] = 1.0 / (1.0 + r + static_cast<double>(i));
  comm.all_reduce(doubles);
  out_double = doubles;
  const std::vector<float> mine = random_floats(777, 20 + r);
  std::vector<float> gathered(mine.size() * P);
  comm.all_gather(mine, gathered);
  out.insert(out.end(), gathered.begin(), gathered.end());
  const std::vector<float> parts = random_floats(513 * P, 30 + r);
  std::vector<float> part(513);
  comm.reduce_scatter(parts, part);
  out.insert(out.end(), part.begin(), part.end());
  std::vector<float> shared = random_floats(999, 40 + r);
  comm.broadcast(shared);
  out.insert(out.end(), shared.begin(), shared.end());
}

TEST(TcpGroup, CollectivesMatchTheInProcessGroupBitForBit) {
  for (const int P : {1, 2, 3}) {
    std::vector<std::vector<float>> tcp(P), local(P);
    std::vector<std::vector<double>> tcp_double(P), local_double(P);
    const std::vector<std::string> errors =
        run_ranks(P, fresh_file("collectives" + std::to_string(P)), [&](Communicator& comm) {
          all_collectives(comm, tcp[comm.rank()], tcp_double[comm.rank()]);
        });
    for (const std::string& error : errors) ASSERT_EQ(error, "");
    InProcessGroup(P).run([&](Communicator& comm) {
      all_collectives(comm, local[comm.rank()], local_double[comm.rank()]);
    });
    for (int r = 0; r < P; ++r) {
      ASSERT_EQ(tcp[r].size(), local[r].size());
      EXPECT_EQ(0, std::memcmp(tcp[r].data(), local[r].data(), tcp[r].size() * sizeof(float)))
          << "P = " << P << ", rank " << r;
      EXPECT_EQ(tcp_double[r], local_double[r]);
    }
  }
}

TEST(TcpGroup, RendezvousFromTheEnvironment) {
  using Env = std::map<std::string, std::string>;
  auto from = [](const Env& env, const fs::path& file = {}) {
    return tcp_rendezvous_from_environment(file, [&](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  TcpRendezvous where = from({{"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(where.host, "node0");
  EXPECT_EQ(where.port, 29500);
  // torchrun's agent listens on MASTER_PORT itself.
  where = from({{"MASTER_ADDR", "node0"},
                {"MASTER_PORT", "29500"},
                {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  EXPECT_EQ(where.port, 29501);
  where = from({{"MASTER_ADDR", "node0"},
                {"MASTER_PORT", "29500"},
                {"HASTE_MASTER_ADDR", "node1"},
                {"HASTE_MASTER_PORT", "4000"}});
  EXPECT_EQ(where.host, "node1");
  EXPECT_EQ(where.port, 4000);
  where = from({}, "/shared/run1.addr");
  EXPECT_EQ(where.port, 0);
  EXPECT_EQ(where.address_file, "/shared/run1.addr");
  EXPECT_THROW(from({}), Error);
  EXPECT_THROW(from({{"MASTER_ADDR", "node0"}, {"MASTER_PORT", "http"}}), Error);
  EXPECT_THROW(from({{"MASTER_PORT", "29500"}}), Error);
}

TEST(TcpGroup, ARankThatNeverJoinsIsAnErrorAfterTheJoinTimeout) {
  const auto start = std::chrono::steady_clock::now();
  TcpRendezvous where;
  where.address_file = fresh_file("alone");
  try {
    TcpGroup::connect({0, 3, 0, "test"}, where, {milliseconds(300), milliseconds(300)});
    FAIL() << "rank 0 formed a group alone";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ranks 1, 2 to connect"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(fs::exists(where.address_file));
}

// A stale address file (a crashed run's, naming a port nobody listens on) does not stop the
// ranks from meeting: they read the file again until rank 0 has replaced it.
TEST(TcpGroup, AStaleAddressFileIsReadAgain) {
  const fs::path file = fresh_file("stale");
  {
    std::string record = "haste-tcp 127.0.0.1 1\n";
    record.resize(256, ' ');
    std::ofstream(file) << record;
  }
  std::vector<std::string> errors(2);
  std::thread rank1([&] {
    try {
      TcpRendezvous where;
      where.address_file = file;
      auto group =
          TcpGroup::connect({1, 2, 1, "test"}, where, {milliseconds(10000), milliseconds(10000)});
      float x[1] = {2.0f};
      group->all_reduce(std::span<float>(x));
      if (x[0] != 3.0f) errors[1] = "wrong sum";
    } catch (const Error& e) {
      errors[1] = e.what();
    }
  });
  std::this_thread::sleep_for(milliseconds(300));  // rank 1 is retrying the stale address
  try {
    TcpRendezvous where;
    where.address_file = file;
    where.host = "127.0.0.1";
    auto group =
        TcpGroup::connect({0, 2, 0, "test"}, where, {milliseconds(10000), milliseconds(10000)});
    float x[1] = {1.0f};
    group->all_reduce(std::span<float>(x));
    if (x[0] != 3.0f) errors[0] = "wrong sum";
  } catch (const Error& e) {
    errors[0] = e.what();
  }
  rank1.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(TcpGroup, APeerThatLeavesIsAnErrorNamingIt) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> errors =
      run_ranks(2, fresh_file("leaves"), [](Communicator& comm) {
        if (comm.rank() == 1) return;  // its group closes: as if the process had ended
        std::vector<float> data(1000, 1.0f);
        comm.all_reduce(data);
      });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(errors[0].find("rank 0 of 2: receiving from rank 1 during all_reduce (float) of 1000 "
                           "values failed: the connection was closed"),
            std::string::npos)
      << errors[0];
  EXPECT_EQ(errors[1], "");
}

TEST(TcpGroup, APeerThatStopsAnsweringIsAnErrorAfterTheCollectiveTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> errors =
      run_ranks(2, fresh_file("stops"),
                [](Communicator& comm) {
                  if (comm.rank() == 1) {
                    std::this_thread::sleep_for(milliseconds(1500));
                    return;
                  }
                  double x[1] = {1.0};
                  comm.all_reduce(std::span<double>(x));
                },
                {milliseconds(10000), milliseconds(300)});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(errors[0].find("rank 1"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("timed out"), std::string::npos) << errors[0];
}

TEST(TcpGroup, MismatchedCallsAreAnErrorNamingBoth) {
  const std::vector<std::string> errors =
      run_ranks(2, fresh_file("mismatch"), [](Communicator& comm) {
        std::vector<float> data(comm.rank() == 0 ? 10 : 12);
        comm.all_reduce(data);
      });
  EXPECT_NE(errors[0].find("rank 1 called all_reduce (float) with 12 values where rank 0 called "
                           "all_reduce (float) with 10"),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1], "");  // rank 0 went away
}

}  // namespace
}  // namespace haste::shard
