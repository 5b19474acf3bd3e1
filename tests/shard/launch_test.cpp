// Rank and world size from the launchers' variables, and the unique-id file exchange.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <haste/error.hpp>
#include <haste/shard/launch.hpp>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace haste::shard {
namespace {

using Env = std::map<std::string, std::string>;

LaunchRank from(const Env& env) {
  return launch_rank_from_environment([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(LaunchRank, SingleProcessWithoutVariables) {
  const LaunchRank launch = from({});
  EXPECT_EQ(launch.rank, 0);
  EXPECT_EQ(launch.world_size, 1);
  EXPECT_EQ(launch.local_rank, 0);
}

TEST(LaunchRank, OursFirstThenTorchrunThenOpenMpi) {
  const Env torchrun{{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}};
  LaunchRank launch = from(torchrun);
  EXPECT_EQ(launch.rank, 3);
  EXPECT_EQ(launch.world_size, 8);
  EXPECT_EQ(launch.local_rank, 1);
  EXPECT_EQ(launch.source, "RANK/WORLD_SIZE");

  Env both = torchrun;
  both["HASTE_RANK"] = "0";
  both["HASTE_WORLD_SIZE"] = "2";
  launch = from(both);
  EXPECT_EQ(launch.rank, 0);
  EXPECT_EQ(launch.world_size, 2);
  EXPECT_EQ(launch.local_rank, 0);  // no HASTE_LOCAL_RANK: the rank

  launch = from({{"OMPI_COMM_WORLD_RANK", "5"},
                 {"OMPI_COMM_WORLD_SIZE", "6"},
                 {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(launch.rank, 5);
  EXPECT_EQ(launch.world_size, 6);
  EXPECT_EQ(launch.local_rank, 1);

  // A family with only one of its two variables is skipped.
  launch = from({{"RANK", "1"}, {"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
  EXPECT_EQ(launch.rank, 2);
}

TEST(LaunchRank, BadValuesNameTheVariable) {
  try {
    from({{"RANK", "two"}, {"WORLD_SIZE", "4"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RANK='two'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(from({{"RANK", "4"}, {"WORLD_SIZE", "4"}}), Error);
  EXPECT_THROW(from({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), Error);
}

TEST(ShareThroughFile, OtherRanksReadWhatRankZeroWrites) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("haste_share_{}", getpid());
  std::filesystem::create_directories(dir);
  const auto path = dir / "nccl.id";
  std::filesystem::remove(path);
  const std::vector<uint8_t> id{1, 2, 3, 250, 0, 7};
  std::vector<std::vector<uint8_t>> seen(3);
  std::vector<std::thread> ranks;
  // Readers start first: they must wait for the file rather than fail.
  for (int r = 2; r >= 0; --r) {
    ranks.emplace_back([&, r] {
      seen[r] = share_through_file(
          path, r, r == 0 ? std::span<const uint8_t>(id) : std::span<const uint8_t>(), id.size(),
          std::chrono::seconds(10));
    });
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (std::thread& t : ranks) t.join();
  for (const auto& bytes : seen) EXPECT_EQ(bytes, id);
  std::filesystem::remove_all(dir);
}

TEST(ShareThroughFile, TimesOutNamingThePath) {
  const auto path = std::filesystem::temp_directory_path() / "haste_share_never_written.id";
  std::filesystem::remove(path);
  try {
    share_through_file(path, 1, {}, 8, std::chrono::milliseconds(30));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace haste::shard
