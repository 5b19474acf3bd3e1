// The record of a `haste train` run: after every epoch, metrics.json (config, data, model size
// and one entry per epoch) and plot.png (P@1/3/5 per epoch) are rewritten in the output
// directory, atomically, so a run killed at any moment leaves readable files behind.
#pragma once

#include <filesystem>
#include <haste/trainer.hpp>
#include <nlohmann/json.hpp>

namespace haste::cli {

inline constexpr char kMetricsFileName[] = "metrics.json";
inline constexpr char kPlotFileName[] = "plot.png";

class TrainingLog {
 public:
  // `run` describes the run (config, data, model size); it is kept as is in metrics.json.
  TrainingLog(std::filesystem::path directory, nlohmann::ordered_json run);

  // Takes over the first `epochs_done` epochs of an earlier metrics.json (when resuming).
  void keep_earlier_epochs(int epochs_done);
  // Records an epoch and rewrites metrics.json and plot.png.
  void add(const EpochReport& report, int64_t output_layer_bytes);

  const nlohmann::ordered_json& epochs() const { return epochs_; }

 private:
  void write() const;

  std::filesystem::path directory_;
  nlohmann::ordered_json run_;
  nlohmann::ordered_json epochs_ = nlohmann::ordered_json::array();
};

}  // namespace haste::cli
