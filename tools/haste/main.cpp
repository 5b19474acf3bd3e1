// `haste`: the command-line front of the library. Parses flags, calls the library, and turns
// every haste::Error into one clear line and a non-zero exit code.
#include <haste/error.hpp>

#include "commands.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <new>

int main(int argc, char** argv) {
  CLI::App app{"HASTE: hardware-aware sparse training for extreme multi-label classification"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "haste 0.1.0");

  CLI::App* data = app.add_subcommand("data", "Inspect, convert, generate and featurize datasets");
  data->require_subcommand(1);
  haste::cli::add_data_stats(*data);
  haste::cli::add_data_convert(*data);
  haste::cli::add_data_synth(*data);
  haste::cli::add_data_featurize(*data);
  haste::cli::add_data_split(*data);
  haste::cli::add_eval(app);
  haste::cli::add_device(app);
  haste::cli::add_train(app);
  haste::cli::add_predict(app);
  haste::cli::add_inspect(app);
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks on this machine");
  bench->require_subcommand(1);
  haste::cli::add_bench_train(*bench);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const haste::Error& e) {
    fmt::print(stderr, "haste: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "haste: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "haste: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
