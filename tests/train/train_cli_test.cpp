// End to end: `haste train` -> checkpoint, metrics.json, plot.png; `haste predict` -> a
// prediction file that `haste eval` scores exactly as the trainer did; --resume; bad inputs.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <haste/checkpoint.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util/run_cli.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::read_text_file;
using test_util::run_cli;

// A small model and a DST interval short enough that DST runs within the test's few steps.
constexpr char kConfig[] = R"([model]
hidden = [32]
group_size = 8
fan_in = 16

[train]
epochs = 2
batch_size = 64
threads = 2

[train.optimizer]
lr = 0.01
decay = "cosine"

[train.dst]
interval = 5
)";

class TrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("haste-train-cli-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_EQ(run_cli({"data", "synth", "--rows", "1200", "--features", "300", "--labels", "96",
                       "--cluster-size", "8", "--test-rows", "300", "--out", train().string(),
                       "--test-out", test().string(), "--quiet"})
                  .exit_code,
              0);
    std::ofstream(config()) << kConfig;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static fs::path train() { return *dir_ / "train.txt"; }
  static fs::path test() { return *dir_ / "test.txt"; }
  static fs::path config() { return *dir_ / "small.toml"; }

  // Trains into `out` with the small config and any extra flags; returns the CLI's result.
  static test_util::CliResult train_into(const fs::path& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"train",    train().string(),  "--test", test().string(),
                                     "--config", config().string(), "--out",  out.string(),
                                     "--quiet",  "--no-cache"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }

  static nlohmann::json read_json(const fs::path& file) {
    return nlohmann::json::parse(read_text_file(file));
  }

  static fs::path* dir_;
};

fs::path* TrainCliTest::dir_ = nullptr;

TEST_F(TrainCliTest, WritesCheckpointMetricsAndPlot) {
  const fs::path out = *dir_ / "run";
  auto result = train_into(out);
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  EXPECT_NE(result.output.find("P@1"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("labels/row"), std::string::npos) << result.output;

  Checkpoint checkpoint(out);
  EXPECT_TRUE(checkpoint.has_training_state());
  EXPECT_EQ(checkpoint.model_config().fan_in, 16);
  EXPECT_EQ(checkpoint.model_shape().num_labels, 96);

  nlohmann::json metrics = read_json(out / "metrics.json");
  ASSERT_EQ(metrics["epochs"].size(), 2u);
  EXPECT_EQ(metrics["config"]["train"]["optimizer"]["decay"], "cosine");
  for (const auto& epoch : metrics["epochs"]) {
    for (const char* key : {"P@1", "P@3", "P@5", "nDCG@5", "PSP@1"})
      EXPECT_TRUE(epoch["metrics"].contains(key)) << key;
    EXPECT_GT(epoch["seconds"].get<double>(), 0);
    EXPECT_GT(epoch["output_layer_bytes"].get<int64_t>(), 0);
  }
  // Planted clusters make the labels learnable: far above chance (5 labels of 96).
  EXPECT_GT(metrics["epochs"][1]["metrics"]["P@1"].get<double>(), 0.3);

  std::string png = read_text_file(out / "plot.png");
  ASSERT_GT(png.size(), 100u);
  EXPECT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();

  // Predictions scored by `haste eval` give exactly the trainer's last metrics.
  const fs::path predictions = *dir_ / "pred.txt";
  result =
      run_cli({"predict", out.string(), test().string(), "-o", predictions.string(), "--no-cache"});
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  result = run_cli({"eval", "--pred", predictions.string(), "--truth", test().string(), "--train",
                    train().string(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  nlohmann::json evaluated = nlohmann::json::parse(result.output);
  for (const auto& [name, value] : metrics["epochs"][1]["metrics"].items())
    EXPECT_NEAR(evaluated[name].get<double>(), value.get<double>(), 1e-9) << name;
}

// Starts `haste train` into `out` and SIGKILLs it after `milliseconds`.
void train_and_kill(std::vector<std::string> args, int milliseconds) {
  args.insert(args.begin(), HASTE_CLI);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, HASTE_CLI, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

// Resuming ends where an uninterrupted run ends, whether the first part stopped cleanly
// (--stop-after) or was SIGKILLed at a random moment, checkpointing included (issue 8): the
// last complete checkpoint always loads.
TEST_F(TrainCliTest, ResumeEndsWhereAnUninterruptedRunEnds) {
  const fs::path whole = *dir_ / "whole", stopped = *dir_ / "stopped", killed = *dir_ / "killed";
  ASSERT_EQ(train_into(whole).exit_code, 0);
  const nlohmann::json expected = read_json(whole / "metrics.json")["epochs"];
  ASSERT_EQ(expected.size(), 2u);

  auto first = train_into(stopped, {"--stop-after", "1"});
  ASSERT_EQ(first.exit_code, 0) << first.error_output;
  ASSERT_EQ(read_json(stopped / "metrics.json")["epochs"].size(), 1u);
  // The stored settings apply on --resume: no --config needed.
  auto second = run_cli({"train", train().string(), "--test", test().string(), "--out",
                         stopped.string(), "--resume", "--quiet", "--no-cache"});
  ASSERT_EQ(second.exit_code, 0) << second.error_output;

  std::mt19937 rng(std::random_device{}());
  const int delay = std::uniform_int_distribution<int>(50, 600)(rng);
  train_and_kill({"train", train().string(), "--test", test().string(), "--config",
                  config().string(), "--out", killed.string(), "--quiet", "--no-cache"},
                 delay);
  std::vector<std::string> resume;
  if (fs::exists(killed / "model.safetensors")) {
    Checkpoint checkpoint(killed);  // only complete files ever carry the final name
    EXPECT_NO_THROW(checkpoint.load_model());
    resume.push_back("--resume");
  }
  auto rest = train_into(killed, resume);
  ASSERT_EQ(rest.exit_code, 0) << "killed after " << delay << " ms: " << rest.error_output;

  for (const auto& entry : fs::directory_iterator(killed))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  for (const fs::path& out : {stopped, killed}) {
    nlohmann::json epochs = read_json(out / "metrics.json")["epochs"];
    ASSERT_EQ(epochs.size(), 2u) << out;
    EXPECT_EQ(epochs[1]["metrics"], expected[1]["metrics"]) << out << ", kill after " << delay;
    EXPECT_EQ(epochs[1]["loss"], expected[1]["loss"]) << out;
    EXPECT_EQ(epochs[1]["dst_changed_slots"], expected[1]["dst_changed_slots"]) << out;
  }
}

// `checkpoint_every` skips checkpoints between epochs but never the last epoch's: the run's
// checkpoint holds the finished model, and --resume of a finished run has nothing left to do.
TEST_F(TrainCliTest, CheckpointEveryKeepsTheLastEpoch) {
  std::string text = kConfig;
  text.replace(text.find("threads = 2\n"), 12, "threads = 2\ncheckpoint_every = 5\n");
  const fs::path sparse_config = *dir_ / "checkpoint-every.toml", out = *dir_ / "every";
  std::ofstream(sparse_config) << text;
  auto run = run_cli({"train", train().string(), "--test", test().string(), "--config",
                      sparse_config.string(), "--out", out.string(), "--quiet", "--no-cache"});
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  Checkpoint checkpoint(out);
  EXPECT_EQ(checkpoint.train_config().checkpoint_every, 5);
  const auto resumed = run_cli(
      {"train", train().string(), "--out", out.string(), "--resume", "--quiet", "--no-cache"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.error_output;
  EXPECT_EQ(read_json(out / "metrics.json")["epochs"].size(), 2u);

  std::ofstream(sparse_config) << text.replace(text.find("checkpoint_every = 5"), 20,
                                               "checkpoint_every = 0");
  const auto rejected = run_cli({"train", train().string(), "--config", sparse_config.string(),
                                 "--out", (*dir_ / "every-0").string(), "--quiet"});
  EXPECT_NE(rejected.exit_code, 0);
  EXPECT_NE(rejected.error_output.find("checkpoint_every"), std::string::npos)
      << rejected.error_output;
}

// `--shards 3` splits the output layer over three in-process ranks: the same run up to
// floating-point summation order (DESIGN.md 11).
TEST_F(TrainCliTest, ShardedRunMatchesUnshardedRun) {
  const fs::path one = *dir_ / "unsharded", three = *dir_ / "three-shards";
  ASSERT_EQ(train_into(one).exit_code, 0);
  const test_util::CliResult result = train_into(three, {"--shards", "3"});
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  const nlohmann::json expected = read_json(one / "metrics.json");
  const nlohmann::json sharded = read_json(three / "metrics.json");
  EXPECT_EQ(sharded["config"]["train"]["shards"], 3);
  ASSERT_EQ(sharded["epochs"].size(), expected["epochs"].size());
  for (size_t e = 0; e < expected["epochs"].size(); ++e) {
    const nlohmann::json &a = expected["epochs"][e], &b = sharded["epochs"][e];
    EXPECT_NEAR(b["loss"].get<double>(), a["loss"].get<double>(), 1e-4 * a["loss"].get<double>());
    for (const char* key : {"P@1", "P@5"}) {
      EXPECT_NEAR(b["metrics"][key].get<double>(), a["metrics"][key].get<double>(), 0.005) << key;
    }
  }
  // The sharded checkpoint (index + one file per shard) predicts like the unsharded one.
  EXPECT_TRUE(fs::exists(three / kShardIndexFileName));
  EXPECT_FALSE(fs::exists(three / kCheckpointFileName));
  std::vector<nlohmann::json> evaluated;
  for (const fs::path& out : {one, three}) {
    const fs::path file = out / "pred.txt";
    test_util::CliResult run =
        run_cli({"predict", out.string(), test().string(), "-o", file.string(), "--no-cache"});
    ASSERT_EQ(run.exit_code, 0) << run.error_output;
    run = run_cli({"eval", "--pred", file.string(), "--truth", test().string(), "--json"});
    ASSERT_EQ(run.exit_code, 0) << run.error_output;
    evaluated.push_back(nlohmann::json::parse(run.output));
  }
  for (const char* key : {"P@1", "P@5"}) {
    EXPECT_NEAR(evaluated[1][key].get<double>(), evaluated[0][key].get<double>(), 0.005) << key;
  }
}

TEST_F(TrainCliTest, CorruptCheckpointIsAClearError) {
  const fs::path out = *dir_ / "corrupt";
  ASSERT_EQ(train_into(out, {"--epochs", "1"}).exit_code, 0);
  const fs::path file = out / "model.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  auto result = run_cli(
      {"predict", out.string(), test().string(), "-o", (*dir_ / "p.txt").string(), "--no-cache"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.error_output.find("model.safetensors: not a valid safetensors file"),
            std::string::npos)
      << result.error_output;
  EXPECT_FALSE(fs::exists(*dir_ / "p.txt"));

  std::ofstream(file) << "not a checkpoint at all";
  result = train_into(out, {"--resume"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.error_output.find("not a valid safetensors file"), std::string::npos)
      << result.error_output;
}

TEST_F(TrainCliTest, UnknownConfigKeyNamesFileLineAndKey) {
  const fs::path bad = *dir_ / "bad.toml";
  std::ofstream(bad) << "[train]\nepochs = 1\nbatch_sise = 64\n";
  auto result = run_cli({"train", train().string(), "--config", bad.string(), "--out",
                         (*dir_ / "bad").string(), "--quiet"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.error_output.find("bad.toml:3: unknown key 'batch_sise' in [train]"),
            std::string::npos)
      << result.error_output;
  EXPECT_FALSE(fs::exists(*dir_ / "bad" / "model.safetensors"));
}

TEST_F(TrainCliTest, PredictsRawTextThroughTheSavedFeaturizer) {
  const fs::path jsonl = *dir_ / "text.jsonl";
  {
    std::ofstream out(jsonl);
    const char* topics[][2] = {{"compiler linker assembler", "0"},
                               {"kernel driver module", "1"},
                               {"python numpy scipy", "2"},
                               {"font glyph render", "3"}};
    for (int i = 0; i < 80; ++i) {
      const auto& topic = topics[i % 4];
      out << R"({"text": ")" << topic[0] << " common words " << i % 7 << R"(", "labels": [)"
          << topic[1] << "]}\n";
    }
  }
  const fs::path features = *dir_ / "text.txt", vocabulary = *dir_ / "vocab.json";
  ASSERT_EQ(run_cli({"data", "featurize", "--input", jsonl.string(), "--out", features.string(),
                     "--save-vocab", vocabulary.string(), "--min-df", "1"})
                .exit_code,
            0);
  const fs::path out = *dir_ / "text-run";
  auto result = run_cli({"train",        features.string(),
                         "--out",        out.string(),
                         "--vocabulary", vocabulary.string(),
                         "--hidden",     "16",
                         "-g",           "1",
                         "-k",           "8",
                         "--epochs",     "8",
                         "--batch-size", "16",
                         "--lr",         "0.05",
                         "--quiet",      "--no-cache"});
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  result = run_cli({"predict", out.string(), jsonl.string(), "--raw", "-k", "1", "-o",
                    (*dir_ / "text-pred.txt").string(), "--eval", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.error_output;
  EXPECT_GT(nlohmann::json::parse(result.output)["P@1"].get<double>(), 0.9) << result.output;
}

}  // namespace
}  // namespace haste
