// `haste train` as several processes, one rank each (issue 9), on the CPU through TcpGroup:
// started as a launcher would (HASTE_RANK/HASTE_WORLD_SIZE with a rendezvous file, or
// torchrun's RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT), P processes train exactly what
// `--shards P` trains in one process (same losses, metrics and checkpoint files, bit for bit),
// DST included, and a rank that dies or never starts stops the others with a clear error
// within the timeout.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <haste/checkpoint.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util/run_cli.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::CliProcess;
using test_util::read_text_file;
using test_util::run_cli;
using test_util::start_cli;

// One thread per process, so that P processes and `--shards P` add in the same order.
constexpr char kConfig[] = R"([model]
hidden = [32]
group_size = 8
fan_in = 16

[train]
epochs = 2
batch_size = 64
threads = 1

[train.optimizer]
lr = 0.01
decay = "cosine"
)";

// DST every 4 of the 38 steps (the global prune rule, over the whole run), for `--dst`.
constexpr char kDstConfig[] = R"(
[train.dst]
interval = 4
fraction = 0.3
end = 1.0
)";

// A port nobody listens on right now (the kernel's pick; free again once closed).
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(s);
  return ntohs(address.sin_port);
}

class MultiProcessCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("haste-multi-process-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_EQ(run_cli({"data", "synth", "--rows", "1200", "--features", "300", "--labels", "96",
                       "--cluster-size", "8", "--test-rows", "300", "--out", train().string(),
                       "--test-out", test().string(), "--quiet"})
                  .exit_code,
              0);
    std::ofstream(config()) << kConfig;
    std::ofstream(dst_config()) << kConfig << kDstConfig;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static fs::path train() { return *dir_ / "train.txt"; }
  static fs::path test() { return *dir_ / "test.txt"; }
  static fs::path config() { return *dir_ / "small.toml"; }
  static fs::path dst_config() { return *dir_ / "small-dst.toml"; }

  static std::vector<std::string> train_args(const fs::path& out,
                                             std::vector<std::string> extra = {},
                                             const fs::path& config_file = config()) {
    std::vector<std::string> args = {"train",    train().string(),     "--test",   test().string(),
                                     "--config", config_file.string(), "--out",    out.string(),
                                     "--quiet",  "--no-cache",         "--device", "cpu"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Starts rank r of `environments.size()` with environment `environments[r]`.
  static std::vector<CliProcess> start_ranks(
      const fs::path& out, const std::vector<std::vector<std::string>>& environments,
      const std::vector<std::string>& extra = {}, const fs::path& config_file = config()) {
    std::vector<CliProcess> ranks;
    for (size_t r = 0; r < environments.size(); ++r) {
      ranks.push_back(start_cli(train_args(out, extra, config_file), environments[r],
                                out.string() + "-rank" + std::to_string(r)));
    }
    return ranks;
  }

  // HASTE_RANK/HASTE_WORLD_SIZE for P ranks, meeting through a rendezvous file.
  static std::vector<std::vector<std::string>> haste_ranks(int P) {
    std::vector<std::vector<std::string>> environments;
    for (int r = 0; r < P; ++r) {
      environments.push_back(
          {"HASTE_RANK=" + std::to_string(r), "HASTE_WORLD_SIZE=" + std::to_string(P)});
    }
    return environments;
  }

  static nlohmann::json read_json(const fs::path& file) {
    return nlohmann::json::parse(read_text_file(file));
  }

  // The run in `got` is the run in `want`, bit for bit: losses, metrics, checkpoint files.
  static void expect_identical_runs(const fs::path& got, const fs::path& want) {
    const nlohmann::json a = read_json(want / "metrics.json"), b = read_json(got / "metrics.json");
    ASSERT_EQ(b["epochs"].size(), a["epochs"].size());
    for (size_t e = 0; e < a["epochs"].size(); ++e) {
      EXPECT_EQ(b["epochs"][e]["loss"], a["epochs"][e]["loss"]) << "epoch " << e + 1;
      EXPECT_EQ(b["epochs"][e]["metrics"], a["epochs"][e]["metrics"]) << "epoch " << e + 1;
      EXPECT_EQ(b["epochs"][e]["dst_changed_slots"], a["epochs"][e]["dst_changed_slots"])
          << "epoch " << e + 1;
    }
    EXPECT_EQ(b["config"]["train"]["shards"], a["config"]["train"]["shards"]);
    const nlohmann::json index = read_json(want / kShardIndexFileName);
    EXPECT_EQ(read_json(got / kShardIndexFileName), index);
    for (const auto& file : index["files"]) {
      EXPECT_EQ(read_text_file(got / file.get<std::string>()),
                read_text_file(want / file.get<std::string>()))
          << file;
    }
  }

  static fs::path* dir_;
};

fs::path* MultiProcessCliTest::dir_ = nullptr;

TEST_F(MultiProcessCliTest, TwoProcessesTrainWhatTwoInProcessShardsTrain) {
  const fs::path one = *dir_ / "unsharded", shards = *dir_ / "shards2", procs = *dir_ / "procs2";
  ASSERT_EQ(run_cli(train_args(one)).exit_code, 0);
  const test_util::CliResult in_process = run_cli(train_args(shards, {"--shards", "2"}));
  ASSERT_EQ(in_process.exit_code, 0) << in_process.error_output;

  const auto start = std::chrono::steady_clock::now();
  std::vector<CliProcess> ranks =
      start_ranks(procs, haste_ranks(2), {"--rendezvous", (*dir_ / "meet2").string()});
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].wait(), 0) << "rank " << r << ": " << ranks[r].error_output();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  // Rank 0 prints the table, the others nothing; the rendezvous file is gone.
  EXPECT_NE(ranks[0].output().find("P@1"), std::string::npos) << ranks[0].output();
  EXPECT_NE(ranks[0].output().find("over 2 processes"), std::string::npos) << ranks[0].output();
  EXPECT_EQ(ranks[1].output(), "");
  EXPECT_FALSE(fs::exists(*dir_ / "meet2"));
  expect_identical_runs(procs, shards);

  // Within summation noise of the unsharded run, and the checkpoint loads on one process.
  const nlohmann::json a = read_json(one / "metrics.json"), b = read_json(procs / "metrics.json");
  for (size_t e = 0; e < a["epochs"].size(); ++e) {
    EXPECT_NEAR(b["epochs"][e]["loss"].get<double>(), a["epochs"][e]["loss"].get<double>(),
                1e-4 * a["epochs"][e]["loss"].get<double>());
    for (const char* key : {"P@1", "P@5"}) {
      EXPECT_NEAR(b["epochs"][e]["metrics"][key].get<double>(),
                  a["epochs"][e]["metrics"][key].get<double>(), 0.005)
          << key;
    }
  }
  const fs::path predictions = *dir_ / "procs2-pred.txt";
  test_util::CliResult run = run_cli(
      {"predict", procs.string(), test().string(), "-o", predictions.string(), "--no-cache"});
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  run = run_cli({"eval", "--pred", predictions.string(), "--truth", test().string(), "--train",
                 train().string(), "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  const nlohmann::json evaluated = nlohmann::json::parse(run.output);
  for (const auto& [name, value] : b["epochs"].back()["metrics"].items()) {
    EXPECT_NEAR(evaluated[name].get<double>(), value.get<double>(), 1e-9) << name;
  }
}

// DST on label shards in separate processes (each rank rewires its own groups, the global prune
// rule's scores all-gathered): the same run as `--shards 2` in one process, which rewires the
// whole host model, for random (SET) and gradient (RigL) regrowth.
TEST_F(MultiProcessCliTest, TwoProcessesRunDstAsTwoInProcessShardsDo) {
  for (const std::string regrow : {"random", "gradient"}) {
    SCOPED_TRACE("--dst " + regrow);
    const fs::path shards = *dir_ / ("dst-shards2-" + regrow),
                   procs = *dir_ / ("dst-procs2-" + regrow);
    const test_util::CliResult in_process =
        run_cli(train_args(shards, {"--shards", "2", "--dst", regrow}, dst_config()));
    ASSERT_EQ(in_process.exit_code, 0) << in_process.error_output;
    std::vector<CliProcess> ranks = start_ranks(
        procs, haste_ranks(2),
        {"--rendezvous", (*dir_ / ("meet-dst-" + regrow)).string(), "--dst", regrow}, dst_config());
    for (size_t r = 0; r < ranks.size(); ++r) {
      ASSERT_EQ(ranks[r].wait(), 0) << "rank " << r << ": " << ranks[r].error_output();
    }
    expect_identical_runs(procs, shards);
    // DST did run, on both epochs, over both ranks' groups.
    const nlohmann::json log = read_json(procs / "metrics.json");
    EXPECT_EQ(log["config"]["train"]["dst"]["regrow"], regrow);
    for (const auto& epoch : log["epochs"]) {
      EXPECT_GT(epoch["dst_changed_slots"].get<int64_t>(), 0) << epoch;
    }
  }
}

// Three ranks as torchrun starts them: RANK/WORLD_SIZE/LOCAL_RANK and rank 0's address in
// MASTER_ADDR/MASTER_PORT (no file). Resuming from their checkpoint in one process continues it.
TEST_F(MultiProcessCliTest, ThreeTorchrunStyleProcessesTrainWhatThreeShardsTrain) {
  const fs::path shards = *dir_ / "shards3", procs = *dir_ / "procs3";
  const test_util::CliResult in_process = run_cli(train_args(shards, {"--shards", "3"}));
  ASSERT_EQ(in_process.exit_code, 0) << in_process.error_output;

  const std::string port = std::to_string(free_port());
  std::vector<std::vector<std::string>> environments;
  for (int r = 0; r < 3; ++r) {
    environments.push_back({"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                            "WORLD_SIZE=3", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port});
  }
  std::vector<CliProcess> ranks = start_ranks(procs, environments);
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].wait(), 0) << "rank " << r << ": " << ranks[r].error_output();
  }
  EXPECT_NE(ranks[0].output().find("over 3 processes (RANK/WORLD_SIZE)"), std::string::npos)
      << ranks[0].output();
  expect_identical_runs(procs, shards);

  const test_util::CliResult resumed =
      run_cli(train_args(procs, {"--resume", "--epochs", "3", "--shards", "1"}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.error_output;
  EXPECT_EQ(read_json(procs / "metrics.json")["epochs"].size(), 3u);
}

// Rank 1 never starts: rank 0 gives up after --rank-timeout, naming the missing rank; a rank
// whose rank 0 never starts gives up too. Neither leaves a checkpoint.
TEST_F(MultiProcessCliTest, ARankThatNeverStartsIsAClearErrorWithinTheTimeout) {
  const fs::path out = *dir_ / "alone";
  const auto start = std::chrono::steady_clock::now();
  std::vector<CliProcess> rank0 =
      start_ranks(out, {haste_ranks(2)[0]},
                  {"--rendezvous", (*dir_ / "meet-alone").string(), "--rank-timeout", "1"});
  const int code = rank0[0].wait();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  EXPECT_NE(code, 0);
  const std::string error = rank0[0].error_output();
  EXPECT_NE(error.find("rank 0 of 2 waited 1 s"), std::string::npos) << error;
  EXPECT_NE(error.find("for rank 1 to connect"), std::string::npos) << error;
  EXPECT_FALSE(has_checkpoint(out));
  EXPECT_FALSE(fs::exists(*dir_ / "meet-alone"));

  const fs::path port_out = *dir_ / "alone-port";
  std::vector<CliProcess> rank1 = start_ranks(port_out,
                                              {{"RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                                "MASTER_PORT=" + std::to_string(free_port())}},
                                              {"--rank-timeout", "1"});
  EXPECT_NE(rank1[0].wait(), 0);
  const std::string error1 = rank1[0].error_output();
  EXPECT_NE(error1.find("rank 1 of 2 could not join rank 0 at 127.0.0.1:"), std::string::npos)
      << error1;
  EXPECT_FALSE(has_checkpoint(port_out));
}

// Rank 1 is killed in the middle of the run: rank 0 notices at its next exchange and stops with
// an error naming rank 1, at once (not after the timeout).
TEST_F(MultiProcessCliTest, AKilledRankStopsTheOthersWithAClearError) {
  const fs::path out = *dir_ / "killed";
  std::vector<CliProcess> ranks = start_ranks(out, haste_ranks(2),
                                              {"--rendezvous", (*dir_ / "meet-killed").string(),
                                               "--epochs", "2000", "--rank-timeout", "60"});
  // Once rank 0 has logged an epoch, both are training.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(out / "metrics.json") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(fs::exists(out / "metrics.json")) << ranks[0].error_output();
  ::kill(ranks[1].pid, SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  EXPECT_EQ(ranks[1].wait(), 128 + SIGKILL);
  const int code = ranks[0].wait();
  EXPECT_LT(std::chrono::steady_clock::now() - killed, std::chrono::seconds(10));
  EXPECT_NE(code, 0);
  const std::string error = ranks[0].error_output();
  EXPECT_NE(error.find("rank 0 of 2"), std::string::npos) << error;
  EXPECT_NE(error.find("rank 1"), std::string::npos) << error;
  EXPECT_NE(error.find("connection was closed"), std::string::npos) << error;
  // The last complete checkpoint still loads.
  if (has_checkpoint(out)) {
    EXPECT_NO_THROW(Checkpoint(out).load_model());
  }
}

// Ranks started with different data or settings refuse to train, naming the disagreement.
TEST_F(MultiProcessCliTest, RanksWithDifferentSettingsRefuseToTrain) {
  const fs::path out = *dir_ / "mismatch";
  std::vector<CliProcess> ranks;
  const std::vector<std::vector<std::string>> environments = haste_ranks(2);
  const std::string meet = (*dir_ / "meet-mismatch").string();
  ranks.push_back(start_cli(train_args(out, {"--rendezvous", meet, "--rank-timeout", "20"}),
                            environments[0], out.string() + "-rank0"));
  ranks.push_back(
      start_cli(train_args(out, {"--rendezvous", meet, "--rank-timeout", "20", "--lr", "0.02"}),
                environments[1], out.string() + "-rank1"));
  for (CliProcess& rank : ranks) {
    EXPECT_NE(rank.wait(), 0);
    EXPECT_NE(rank.error_output().find("another model, data or settings"), std::string::npos)
        << rank.error_output();
  }
}

}  // namespace
}  // namespace haste
