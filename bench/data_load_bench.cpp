// Dataset load time: parsing XC text (as given, usually xz, and decompressed to plain text, the
// parser's own speed) against the binary cache. The issue asks for the cache to be >= 10x
// faster than parsing; this is where that is measured.
//
//   data_load_bench [FILE] [--runs N] [--commit SHA] [--results DIR]
//
// FILE defaults to the bundled data/debdeps/xc/debdeps_train.txt.xz. Prints a table and writes
// DIR/data-load-cpu-<yyyymmdd>.json (DIR defaults to bench/results in the source tree).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/text_io.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Timing {
  double median_ms = 0, p10_ms = 0, p90_ms = 0;
  int runs = 0;
};

// Runs `load` `runs` times and summarises the wall times.
Timing time_runs(int runs, const std::function<void()>& load) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto start = Clock::now();
    load();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[static_cast<size_t>(q * static_cast<double>(ms.size() - 1) + 0.5)];
  };
  return {at(0.5), at(0.1), at(0.9), runs};
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      std::string model = line.substr(line.find(':') + 1);
      model.erase(0, model.find_first_not_of(' '));
      return model;
    }
  }
  return "unknown";
}

std::string git_commit() {
  std::string command =
      fmt::format("git -C '{}' rev-parse --short HEAD 2>/dev/null", HASTE_SOURCE_DIR);
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[64];
    while (std::fgets(buffer, sizeof buffer, pipe)) out += buffer;
    ::pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

std::string today(const char* format) {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, format, std::localtime(&now));
  return text;
}

// Decompresses `file` to `plain` so the parser can be timed without the decompressor.
int64_t decompress_to(const fs::path& file, const fs::path& plain) {
  haste::CompressedInput input(file);
  std::ofstream out(plain, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  int64_t total = 0;
  while (size_t n = input.read(buffer.data(), buffer.size())) {
    out.write(buffer.data(), static_cast<std::streamsize>(n));
    total += static_cast<int64_t>(n);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path file = fs::path(HASTE_SOURCE_DIR) / "data/debdeps/xc/debdeps_train.txt.xz";
  fs::path results = fs::path(HASTE_SOURCE_DIR) / "bench/results";
  std::string commit;
  int runs = 10;
  std::string command = "data_load_bench";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    command += " " + arg;
    auto value = [&]() -> std::string {
      haste::check(i + 1 < argc, "{} needs a value", arg);
      command += std::string(" ") + argv[i + 1];
      return argv[++i];
    };
    if (arg == "--runs") {
      runs = std::max(1, std::stoi(value()));
    } else if (arg == "--commit") {
      commit = value();
    } else if (arg == "--results") {
      results = value();
    } else if (arg == "-h" || arg == "--help") {
      fmt::print("usage: data_load_bench [FILE] [--runs N] [--commit SHA] [--results DIR]\n");
      return 0;
    } else {
      file = arg;
    }
  }
  if (commit.empty()) commit = git_commit();

  fs::path scratch =
      fs::temp_directory_path() / fmt::format("haste-data-load-bench-{}", ::getpid());
  fs::create_directories(scratch);
  fs::path plain = scratch / "plain.txt";
  int64_t text_bytes = decompress_to(file, plain);

  haste::ReadOptions parse_only;
  parse_only.use_cache = false;
  parse_only.show_progress = false;
  haste::ReadOptions cached = parse_only;
  cached.use_cache = true;
  cached.cache_dir = scratch / "cache";

  haste::Dataset reference = haste::read_xc(file, cached);  // also writes the cache
  auto load = [&](const fs::path& path, const haste::ReadOptions& options) {
    return [&, path] {
      haste::Dataset data = haste::read_xc(path, options);
      haste::check(data.features.nnz() == reference.features.nnz(), "loads disagree");
    };
  };
  struct Row {
    const char* impl;
    const char* what;
    Timing timing;
  };
  std::vector<Row> rows = {
      {"text_parse", "parse text as given", time_runs(runs, load(file, parse_only))},
      {"text_parse_plain", "parse decompressed text", time_runs(runs, load(plain, parse_only))},
      {"binary_cache", "binary cache", time_runs(runs, load(file, cached))},
  };
  fs::remove_all(scratch);

  double text_mb = static_cast<double>(text_bytes) / 1e6;
  nlohmann::ordered_json json = {
      {"bench", "data-load"},
      {"device", "cpu: " + cpu_model()},
      {"commit", commit},
      {"date", today("%Y-%m-%d")},
      {"command", command},
      {"dataset", file.filename().string()},
      {"rows", nlohmann::ordered_json::array()},
  };
  fmt::print("{} ({:.1f} MB of text, {} rows, {} feature nonzeros), {} runs each\n", file.string(),
             text_mb, reference.num_points(), reference.features.nnz(), runs);
  fmt::print("{:<18} {:<26} {:>10} {:>10} {:>10} {:>10}\n", "impl", "what", "median ms", "p10 ms",
             "p90 ms", "text MB/s");
  for (const Row& row : rows) {
    double mb_per_s = text_mb / (row.timing.median_ms / 1e3);
    fmt::print("{:<18} {:<26} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.0f}\n", row.impl, row.what,
               row.timing.median_ms, row.timing.p10_ms, row.timing.p90_ms, mb_per_s);
    json["rows"].push_back({
        {"shape",
         {{"N", reference.num_points()},
          {"F", reference.num_features()},
          {"L", reference.num_labels()},
          {"nnz", reference.features.nnz()},
          {"text_bytes", text_bytes}}},
        {"impl", row.impl},
        {"op", "load"},
        {"median_ms", row.timing.median_ms},
        {"p10_ms", row.timing.p10_ms},
        {"p90_ms", row.timing.p90_ms},
        {"runs", row.timing.runs},
        {"gbps", mb_per_s / 1e3},  // of decompressed text
    });
  }
  double vs_text = rows[0].timing.median_ms / rows[2].timing.median_ms;
  double vs_plain = rows[1].timing.median_ms / rows[2].timing.median_ms;
  json["ratio"] = {{"binary_cache_speedup_vs_text_parse", vs_text},
                   {"binary_cache_speedup_vs_text_parse_plain", vs_plain}};
  fmt::print(
      "binary cache: {:.1f}x faster than parsing the file as given, {:.1f}x faster than "
      "parsing plain text\n",
      vs_text, vs_plain);

  fs::create_directories(results);
  fs::path out = results / fmt::format("data-load-cpu-{}.json", today("%Y%m%d"));
  std::ofstream(out) << json.dump(2) << "\n";
  fmt::print("wrote {}\n", out.string());
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "data_load_bench: error: {}\n", e.what());
  return 1;
}
