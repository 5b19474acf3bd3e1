#include "training_log.hpp"

#include <cmath>
#include <fstream>
#include <haste/error.hpp>
#include <haste/plot.hpp>
#include <limits>
#include <sstream>

#include "data/text_io.hpp"

namespace haste::cli {
namespace fs = std::filesystem;

TrainingLog::TrainingLog(fs::path directory, nlohmann::ordered_json run)
    : directory_(std::move(directory)), run_(std::move(run)) {}

void TrainingLog::keep_earlier_epochs(int epochs_done) {
  const fs::path file = directory_ / kMetricsFileName;
  std::ifstream in(file);
  if (!in) return;  // the checkpoint outlived its log: start the log afresh
  std::ostringstream text;
  text << in.rdbuf();
  auto earlier = nlohmann::ordered_json::parse(text.str(), nullptr, false);
  check(!earlier.is_discarded() && earlier.contains("epochs") && earlier["epochs"].is_array(),
        "{}: not a metrics file written by haste train; move it away to resume", file.string());
  for (const auto& epoch : earlier["epochs"]) {
    if (epoch.value("epoch", 0) <= epochs_done) epochs_.push_back(epoch);
  }
}

void TrainingLog::add(const EpochReport& report, int64_t output_layer_bytes) {
  nlohmann::ordered_json entry = {{"epoch", report.epoch},
                                  {"step", report.step},
                                  {"loss", report.mean_loss},
                                  {"learning_rate", report.learning_rate},
                                  {"seconds", report.train_seconds},
                                  {"examples_per_second", report.examples_per_second},
                                  {"eval_seconds", report.eval_seconds},
                                  {"dst_changed_slots", report.dst_changed_slots},
                                  {"output_layer_bytes", output_layer_bytes}};
  if (report.metrics) {
    nlohmann::ordered_json metrics;
    for (const auto& [name, value] : report.metrics->named_values()) metrics[name] = value;
    entry["metrics"] = metrics;
  }
  epochs_.push_back(entry);
  write();
}

void TrainingLog::write() const {
  nlohmann::ordered_json out = run_;
  out["epochs"] = epochs_;
  AtomicOutput json(directory_ / kMetricsFileName);
  json.write(out.dump(2));
  json.write("\n");
  json.commit();

  LinePlot plot;
  plot.title = "P@k per epoch";
  plot.x_label = "epoch";
  plot.y_label = "%";
  const uint32_t colors[] = {0x1f77b4, 0xff7f0e, 0x2ca02c};
  const char* names[] = {"P@1", "P@3", "P@5"};
  for (int i = 0; i < 3; ++i) plot.series.push_back({names[i], {}, colors[i]});
  bool any_metrics = false;
  for (const auto& epoch : epochs_) {
    plot.x.push_back(epoch["epoch"].get<double>());
    for (auto& series : plot.series) {
      double value = std::numeric_limits<double>::quiet_NaN();
      if (epoch.contains("metrics") && epoch["metrics"].contains(series.name)) {
        value = 100 * epoch["metrics"][series.name].get<double>();
        any_metrics = true;
      }
      series.values.push_back(value);
    }
  }
  if (any_metrics) write_line_plot_png(plot, directory_ / kPlotFileName);
}

}  // namespace haste::cli
