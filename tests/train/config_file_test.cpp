#include <gtest/gtest.h>

#include <haste/config_file.hpp>
#include <nlohmann/json.hpp>

#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::expect_error;

TEST(ConfigFile, ReadsEveryTableIntoTheSettings) {
  RunConfig config = parse_run_config(R"(
[model]
hidden = [256, 128]
output = "dense"
group_size = 16

[train]
epochs = 7
seed = 3

[train.optimizer]
kind = "sgd"
lr = 0.5
decay = "linear"

[train.dst]
regrow = "gradient"
interval = 50
)",
                                      "test.toml");
  EXPECT_EQ(config.model.hidden, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(config.model.output, OutputKind::dense);
  EXPECT_EQ(config.model.group_size, 16);
  EXPECT_EQ(config.model.fan_in, ModelConfig{}.fan_in);  // absent keys keep their defaults
  EXPECT_EQ(config.train.epochs, 7);
  EXPECT_EQ(config.train.seed, 3u);
  EXPECT_EQ(config.train.optimizer.kind, OptimizerKind::sgd);
  EXPECT_DOUBLE_EQ(config.train.optimizer.lr, 0.5);
  EXPECT_EQ(config.train.optimizer.schedule.decay, LrDecay::linear);
  EXPECT_EQ(config.train.dst.regrow, DstRegrow::gradient);
  EXPECT_EQ(config.train.dst.interval, 50);
}

TEST(ConfigFile, EmptyFileGivesTheDefaults) {
  RunConfig config = parse_run_config("", "empty.toml");
  EXPECT_EQ(config.model.to_json(), ModelConfig{}.to_json());
  EXPECT_EQ(config.train.to_json(), TrainConfig{}.to_json());
}

TEST(ConfigFile, ErrorsNameTheFileLineAndKey) {
  expect_error([] { parse_run_config("[model]\nhiden = [3]\n", "a.toml"); },
               "a.toml:2: unknown key 'hiden' in [model] (known keys: ");
  expect_error([] { parse_run_config("[train.optimizer]\n\nlearning_rate = 1\n", "b.toml"); },
               "b.toml:3: unknown key 'learning_rate' in [train.optimizer]");
  expect_error([] { parse_run_config("[trian]\nepochs = 1\n", "c.toml"); },
               "c.toml:1: unknown key 'trian' in the file");
  expect_error([] { parse_run_config("[model]\nfan_in = \"many\"\n", "d.toml"); },
               "d.toml: [model]: ");
  expect_error([] { parse_run_config("[model]\noutput = \"sparse\"\n", "e.toml"); }, "'sparse'");
  expect_error([] { parse_run_config("[train]\nepochs = 0\n", "f.toml"); }, "f.toml: [train]");
  expect_error([] { parse_run_config("[train\n", "g.toml"); }, "g.toml:1: not valid TOML");
  expect_error([] { parse_run_config("train = 3\n", "h.toml"); }, "[train] must be a table");
  expect_error([] { load_run_config("/nonexistent/x.toml"); }, "/nonexistent/x.toml");
}

}  // namespace
}  // namespace haste
