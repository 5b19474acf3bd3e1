// The in-process ranks' collectives against sums computed here, their rank-order determinism,
// and a failing rank that must not hang the others.
#include <gtest/gtest.h>

#include <haste/error.hpp>
#include <haste/shard/in_process.hpp>
#include <numeric>
#include <vector>

namespace haste::shard {
namespace {

// A value that differs per rank and element, with enough digits for summation order to show.
float value(int rank, size_t i) {
  return 1.0f / static_cast<float>(3 + rank * 7 + i) + 1e4f * rank;
}

TEST(InProcessGroup, AllReduceSumsInRankOrderOnEveryRank) {
  for (int P : {1, 2, 3, 4}) {
    InProcessGroup group(P);
    const size_t n = 37;
    std::vector<std::vector<float>> data(P, std::vector<float>(n));
    std::vector<std::vector<double>> doubles(P, std::vector<double>(n));
    group.run([&](Communicator& comm) {
      EXPECT_EQ(comm.size(), P);
      for (size_t i = 0; i < n; ++i) {
        data[comm.rank()][i] = value(comm.rank(), i);
        doubles[comm.rank()][i] = value(comm.rank(), i);
      }
      comm.all_reduce(data[comm.rank()]);
      comm.all_reduce(doubles[comm.rank()]);
    });
    for (size_t i = 0; i < n; ++i) {
      float sum = value(0, i);
      double dsum = value(0, i);
      for (int r = 1; r < P; ++r) {
        sum += value(r, i);
        dsum += value(r, i);
      }
      for (int r = 0; r < P; ++r) {
        EXPECT_EQ(data[r][i], sum) << "P " << P << " rank " << r << " element " << i;
        EXPECT_EQ(doubles[r][i], dsum);
      }
    }
  }
}

TEST(InProcessGroup, AllGatherAndReduceScatter) {
  const int P = 3;
  const size_t n = 5;
  InProcessGroup group(P);
  std::vector<std::vector<float>> gathered(P, std::vector<float>(P * n));
  std::vector<std::vector<float>> in_place(P, std::vector<float>(P * n, -1.0f));
  std::vector<std::vector<float>> scattered(P, std::vector<float>(n));
  group.run([&](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> mine(n), all(P * n);
    for (size_t i = 0; i < n; ++i) mine[i] = value(r, i);
    comm.all_gather(mine, gathered[r]);
    std::copy(mine.begin(), mine.end(), in_place[r].begin() + r * n);
    comm.all_gather(std::span<const float>(in_place[r]).subspan(r * n, n), in_place[r]);
    for (size_t i = 0; i < P * n; ++i) all[i] = value(r, i);
    comm.reduce_scatter(all, scattered[r]);
  });
  for (int r = 0; r < P; ++r) {
    for (int q = 0; q < P; ++q) {
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(gathered[r][q * n + i], value(q, i));
        EXPECT_EQ(in_place[r][q * n + i], value(q, i));
      }
    }
    for (size_t i = 0; i < n; ++i) {
      float sum = value(0, r * n + i);
      for (int q = 1; q < P; ++q) sum += value(q, r * n + i);
      EXPECT_EQ(scattered[r][i], sum);
    }
  }
}

TEST(InProcessGroup, AFailingRankReleasesTheOthersAndItsErrorIsReported) {
  InProcessGroup group(3);
  try {
    group.run([](Communicator& comm) {
      std::vector<float> data(4, 1.0f);
      if (comm.rank() == 1) fail("rank 1 broke");
      comm.all_reduce(data);
    });
    FAIL() << "expected an exception";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "rank 1 broke");
  }
  // The group is usable again.
  std::vector<float> sums(3);
  group.run([&](Communicator& comm) {
    std::vector<float> data{1.0f};
    comm.all_reduce(data);
    sums[comm.rank()] = data[0];
  });
  EXPECT_EQ(sums, std::vector<float>(3, 3.0f));
}

TEST(InProcessGroup, MismatchedCountsAreAnError) {
  InProcessGroup group(2);
  EXPECT_THROW(group.run([](Communicator& comm) {
    std::vector<float> data(comm.rank() == 0 ? 3 : 4);
    comm.all_reduce(data);
  }),
               Error);
}

}  // namespace
}  // namespace haste::shard
