// Each subcommand family registers itself on the CLI11 app; main.cpp only wires them up.
// A command's callback throws haste::Error for anything the user must fix; main prints it.
#pragma once

#include <CLI/CLI.hpp>

namespace haste::cli {

void add_data_stats(CLI::App& data);      // data_stats.cpp
void add_data_convert(CLI::App& data);    // data_convert.cpp
void add_data_synth(CLI::App& data);      // data_synth.cpp
void add_data_featurize(CLI::App& data);  // data_featurize.cpp
void add_data_split(CLI::App& data);      // data_split.cpp
void add_eval(CLI::App& app);             // eval.cpp
void add_device(CLI::App& app);           // device.cpp
void add_train(CLI::App& app);            // train.cpp
void add_predict(CLI::App& app);          // predict.cpp
void add_inspect(CLI::App& app);          // inspect.cpp
void add_bench_train(CLI::App& bench);    // bench_train.cpp

}  // namespace haste::cli
