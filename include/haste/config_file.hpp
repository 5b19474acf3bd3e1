// Run configuration files (TOML) for `haste train`. Tables mirror the JSON of the settings
// structs, so a config file, a checkpoint's metadata and metrics.json use the same names:
//
//   [model]                      ModelConfig: hidden = [512], output = "haste", group_size = 32,
//   ... [train]                      TrainConfig: epochs, batch_size, seed, threads, ...
//   [train.optimizer]            OptimizerConfig: kind = "adamw", lr, warmup_fraction, decay, ...
//   [train.dst]                  DstConfig: enabled, fraction, interval, end, prune, regrow
//
// Missing keys keep their defaults. An unknown key is an error naming the file, the line and
// the known keys (a typo must never be silently ignored); a bad value is an error naming the
// file and the key.
#pragma once

#include <filesystem>
#include <haste/model.hpp>
#include <haste/trainer.hpp>
#include <string_view>

namespace haste {

struct RunConfig {
  ModelConfig model;
  TrainConfig train;
};

RunConfig load_run_config(const std::filesystem::path& file);
// The same from TOML text; `source` names it in error messages.
RunConfig parse_run_config(std::string_view toml_text, const std::filesystem::path& source);

}  // namespace haste
