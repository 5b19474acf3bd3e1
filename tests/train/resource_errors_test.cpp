// Resource errors end to end (issue 8, item 5): unreadable inputs, a full disk, too little memory
// and no GPU each give one clear message and a non-zero exit from `haste`, and leave no partial
// output behind: a file that existed before the failed write is unchanged, and no temporary file
// is left next to it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <haste/checkpoint.hpp>
#include <haste/config_file.hpp>
#include <string>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/run_cli.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::CliLimits;
using test_util::CliResult;
using test_util::read_text_file;
using test_util::run_cli;

// Small enough to train in a second; its checkpoint (~60 KB with the optimizer state) is larger
// than the file-size limit used for the full-disk tests.
constexpr char kConfig[] = R"([model]
hidden = [16]
group_size = 8
fan_in = 8

[train]
epochs = 1
batch_size = 64
threads = 1
)";

// The full-disk tests let a file grow to this many bytes: the outputs under test are larger,
// the CLI's own stdout and stderr are smaller.
constexpr rlim_t kDiskBytes = 8 << 10;

class ResourceErrorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("haste-resource-errors-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_EQ(run_cli({"data", "synth", "--rows", "400", "--features", "300", "--labels", "40",
                       "--cluster-size", "8", "--out", train().string(), "--quiet"})
                  .exit_code,
              0);
    std::ofstream(config()) << kConfig;
    ASSERT_EQ(train_into(*dir_ / "model").exit_code, 0);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static fs::path train() { return *dir_ / "train.txt"; }
  static fs::path config() { return *dir_ / "small.toml"; }
  static fs::path model() { return *dir_ / "model" / kCheckpointFileName; }

  static CliResult train_into(const fs::path& out, std::vector<std::string> extra = {},
                              const CliLimits& limits = {}) {
    std::vector<std::string> args = {"train", train().string(), "--config", config().string(),
                                     "--out", out.string(),     "--quiet",  "--no-cache"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args, limits);
  }

  // A fresh, empty folder for one test's outputs.
  static fs::path scratch(const std::string& name) {
    fs::path path = *dir_ / name;
    fs::remove_all(path);
    fs::create_directories(path);
    return path;
  }

  // Names of the files in `folder` that hold "tmp" (AtomicOutput's "<name>.tmp.<pid>").
  static std::vector<std::string> temporaries(const fs::path& folder) {
    std::vector<std::string> names;
    for (const auto& entry : fs::recursive_directory_iterator(folder)) {
      const std::string name = entry.path().filename().string();
      if (name.find(".tmp") != std::string::npos) names.push_back(name);
    }
    return names;
  }

  // Failed with `message` on stderr: a haste::Error ("haste: error: ...", exit code 1) or a
  // check of the command line parser (exit code 105 for a bad file argument).
  static void expect_failure(const CliResult& result, const std::string& message) {
    EXPECT_NE(result.exit_code, 0) << result.error_output;
    EXPECT_NE(result.error_output.find(message), std::string::npos) << result.error_output;
  }

  static fs::path* dir_;
};

fs::path* ResourceErrorsTest::dir_ = nullptr;

TEST_F(ResourceErrorsTest, DirectoryGivenAsAnInputFile) {
  const fs::path folder = scratch("folder-input");
  const fs::path out = *dir_ / "never-written";
  expect_failure(run_cli({"train", folder.string(), "--out", out.string(), "--quiet"}),
                 "TRAIN: File is actually a directory: " + folder.string());
  expect_failure(run_cli({"data", "stats", folder.string()}), "is a directory");
  expect_failure(run_cli({"data", "convert", folder.string(), "--out", (out / "x.txt").string()}),
                 "is a directory");
  expect_failure(train_into(out, {"--config", folder.string()}),
                 "--config: File is actually a directory");
  // The library checks too, for callers without the CLI's flag checks: an ifstream reads a
  // directory as an empty file, so a run would have started silently with the defaults.
  test_util::expect_error([&] { load_run_config(folder); },
                          folder.string() + ": is a directory, expected a file");
  expect_failure(
      run_cli({"predict", folder.string(), train().string(), "--out", (out / "pred.txt").string()}),
      "no such file");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ResourceErrorsTest, MissingAndUnreadableInputFiles) {
  const fs::path missing = *dir_ / "missing.txt";
  expect_failure(run_cli({"data", "stats", missing.string()}), missing.string() + ": no such file");
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their permissions";
  const fs::path locked = *dir_ / "locked.txt";
  fs::copy_file(train(), locked, fs::copy_options::overwrite_existing);
  fs::permissions(locked, fs::perms::none);
  expect_failure(run_cli({"data", "stats", locked.string()}),
                 locked.string() + ": cannot open: Permission denied");
}

// A full disk while writing a checkpoint: training fails with the write's error, and the
// checkpoint of the previous run in that folder is still complete and loadable.
TEST_F(ResourceErrorsTest, FullDiskKeepsThePreviousCheckpoint) {
  const fs::path out = scratch("full-disk-train");
  ASSERT_EQ(train_into(out).exit_code, 0);
  const fs::path checkpoint = out / kCheckpointFileName;
  ASSERT_GT(fs::file_size(checkpoint), kDiskBytes);
  const std::string before = read_text_file(checkpoint);

  expect_failure(train_into(out, {"--seed", "7"}, {.file_size = kDiskBytes}),
                 "write failed: File too large");
  EXPECT_EQ(read_text_file(checkpoint), before);
  EXPECT_NO_THROW(Checkpoint(checkpoint).load_model());
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
}

TEST_F(ResourceErrorsTest, FullDiskKeepsThePreviousPredictions) {
  const fs::path out = scratch("full-disk-predict");
  const fs::path predictions = out / "pred.txt";
  std::ofstream(predictions) << "earlier predictions\n";
  expect_failure(run_cli({"predict", model().string(), train().string(), "--out",
                          predictions.string(), "-k", "5"},
                         {.file_size = kDiskBytes}),
                 predictions.string() + ": write failed: File too large");
  EXPECT_EQ(read_text_file(predictions), "earlier predictions\n");
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
}

TEST_F(ResourceErrorsTest, FullDiskLeavesNoPartialConvertedData) {
  const fs::path out = scratch("full-disk-convert");
  const fs::path features = out / "features.txt";
  const fs::path labels = out / "labels.txt";
  std::ofstream(features) << "earlier features\n";
  expect_failure(run_cli({"data", "convert", train().string(), "--out", features.string(),
                          "--out-labels", labels.string(), "--no-cache"},
                         {.file_size = kDiskBytes}),
                 "write failed: File too large");
  EXPECT_EQ(read_text_file(features), "earlier features\n");
  EXPECT_FALSE(fs::exists(labels));
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
}

// Too little memory for the model: the message names the step and the model's size, not only
// "std::bad_alloc", and nothing is written.
TEST_F(ResourceErrorsTest, OutOfMemoryNamesWhatWasAllocated) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: RLIMIT_AS cannot apply";
#else
  const fs::path out = *dir_ / "out-of-memory";
  // OpenBLAS starts one thread per core when the CLI loads, each with its own stack and
  // buffers: on a 16-core machine they alone overrun the limit below and OpenBLAS aborts before
  // main. One thread keeps this test about the model's allocations.
  ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
  // 300 features x 1M hidden units: 1.2 GB of encoder weights and as much for their gradients,
  // in a 1.5 GB address space.
  const CliResult result =
      train_into(out, {"--hidden", "1000000"}, {.address_space = 1536ull << 20});
  EXPECT_EQ(result.exit_code, 1);
  expect_failure(result,
                 "haste: error: out of memory while building the model (hidden [1000000], 300 "
                 "input features, 40 labels): free memory, or use a smaller model or data set");
  EXPECT_FALSE(fs::exists(out / kCheckpointFileName));
#endif
}

TEST_F(ResourceErrorsTest, NoGpu) {
  const CliResult device = run_cli({"device"});
  EXPECT_EQ(device.exit_code, 0) << device.error_output;
  EXPECT_NE(device.output.find("CUDA backend: "), std::string::npos) << device.output;
  if (device.output.find("GPUs: none") == std::string::npos) {
    GTEST_SKIP() << "this machine has a GPU";
  }
  EXPECT_NE(device.output.find("training runs on the CPU"), std::string::npos) << device.output;
  expect_failure(run_cli({"bench", "train", "--results", (*dir_ / "bench").string()}),
                 "bench train needs a GPU: ");
  EXPECT_FALSE(fs::exists(*dir_ / "bench"));
  const fs::path out = *dir_ / "no-gpu";
  expect_failure(train_into(out, {"--device", "cuda"}), "train --device cuda: ");
  EXPECT_FALSE(fs::exists(out / kCheckpointFileName));
}

}  // namespace
}  // namespace haste
