// `haste train`: trains a model from a config file and flags, and writes the run's outputs
// (metrics.json and plot.png after every epoch, the checkpoint after every `checkpoint_every`)
// into --out.
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <haste/checkpoint.hpp>
#include <haste/config_file.hpp>
#include <haste/dataset.hpp>
#include <haste/dataset_split.hpp>
#include <haste/error.hpp>
#include <haste/progress.hpp>
#include <haste/shard/launch.hpp>
#include <haste/trainer.hpp>
#include <haste/trainer_device.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_common.hpp"
#include "commands.hpp"
#include "training_log.hpp"

namespace haste::cli {
namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  fs::path train;
  std::optional<fs::path> train_labels;
  std::optional<fs::path> test;
  std::optional<fs::path> test_labels;
  double valid_fraction = 0;
  std::optional<fs::path> config;
  fs::path out;
  bool resume = false;
  std::optional<fs::path> vocabulary;
  std::optional<int> stop_after;
  bool quiet = false;
  bool no_cache = false;
  std::string device = "auto";

  // Flags that override the config file (only when given).
  std::optional<int> epochs;
  std::optional<int64_t> batch_size;
  std::optional<double> lr;
  std::optional<std::string> optimizer;
  std::optional<std::vector<int64_t>> hidden;
  std::optional<int64_t> group_size;
  std::optional<int64_t> fan_in;
  std::optional<double> head_fraction;
  std::optional<std::string> output;
  std::optional<std::string> dst;
  std::optional<uint64_t> seed;
  std::optional<int> threads;
  std::optional<int> shards;
  std::optional<int> gpus;

  // A multi-process run (launcher variables set, see multi_process_rank).
  std::optional<fs::path> rendezvous;
  double rank_timeout = 300;
};

// This process's rank when a launcher started it (HASTE_RANK/HASTE_WORLD_SIZE, torchrun's
// RANK/WORLD_SIZE, Open MPI's OMPI_COMM_WORLD_*): then every process is one rank of a
// label-sharded run, even a world of 1 (the multi-process path on one process). None without
// those variables, or when --shards/--gpus ask for one process's own ranks.
std::optional<shard::LaunchRank> multi_process_rank(const TrainArgs& args) {
  const shard::LaunchRank launch = shard::launch_rank_from_environment();
  if (launch.source.empty()) return std::nullopt;
  if (args.shards || args.gpus) {
    check(launch.world_size == 1,
          "train: --shards and --gpus split the labels over one process's ranks, but {} says "
          "this is rank {} of {} processes: drop them (under a launcher each process is one "
          "rank, and the world size is the shard count)",
          launch.source, launch.rank, launch.world_size);
    return std::nullopt;
  }
  return launch;
}

// Ranks other than 0 print nothing to stdout (the tables and progress are rank 0's); their
// errors still reach stderr.
void silence_stdout() {
  std::fflush(stdout);
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDOUT_FILENO);
    ::close(null);
  }
}

void apply_overrides(const TrainArgs& args, RunConfig& config) {
  ModelConfig& m = config.model;
  TrainConfig& t = config.train;
  if (args.epochs) t.epochs = *args.epochs;
  if (args.batch_size) t.batch_size = *args.batch_size;
  if (args.lr) t.optimizer.lr = *args.lr;
  if (args.optimizer) t.optimizer.kind = parse_optimizer_kind(*args.optimizer);
  if (args.hidden) m.hidden = *args.hidden;
  if (args.group_size) m.group_size = *args.group_size;
  if (args.fan_in) m.fan_in = *args.fan_in;
  if (args.head_fraction) {
    m.head_rule = HeadRule::fraction;
    m.head_fraction = *args.head_fraction;
  }
  if (args.output) m.output = parse_output_kind(*args.output);
  if (args.dst) {
    t.dst.enabled = *args.dst != "off";
    if (t.dst.enabled) t.dst.regrow = parse_dst_regrow(*args.dst);
  }
  if (args.seed) m.seed = t.seed = *args.seed;
  if (args.threads) t.threads = *args.threads;
  if (args.shards) t.shards = *args.shards;
  if (args.gpus) t.shards = *args.gpus;
  t.show_progress = !args.quiet;
  m.validate();
  t.validate();
}

struct Data {
  Dataset train;
  std::optional<Dataset> test;
  std::string test_name;
};

Data read_data(const TrainArgs& args, uint64_t seed) {
  ReadOptions options;
  options.use_cache = !args.no_cache;
  options.show_progress = !args.quiet;
  Data data{read_dataset(args.train, args.train_labels, options), std::nullopt, ""};
  if (args.test) {
    data.test = read_dataset(*args.test, args.test_labels, options);
    data.test_name = args.test->string();
    check(data.test->num_labels() <= data.train.num_labels() &&
              data.test->num_features() <= data.train.num_features(),
          "{} has {} features and {} labels but the training set only {} and {}: both must use "
          "one feature and label space",
          data.test_name, data.test->num_features(), data.test->num_labels(),
          data.train.num_features(), data.train.num_labels());
    data.test->labels.cols = data.train.num_labels();
    if (data.test->dense.cols == 0) data.test->features.cols = data.train.features.cols;
  } else if (args.valid_fraction > 0) {
    DatasetSplit split = split_dataset(data.train, args.valid_fraction, seed);
    data.train = std::move(split.train);
    data.test = std::move(split.test);
    data.test_name =
        fmt::format("{:.0f}% of the training rows held out", 100 * args.valid_fraction);
  }
  return data;
}

void print_dataset(const char* role, const Dataset& data) {
  const double labels_per_row =
      static_cast<double>(data.labels.nnz()) / std::max<int64_t>(data.num_points(), 1);
  fmt::print("{:<6} {:>10} rows {:>10} {} features {:>10} labels {:>6.2f} labels/row\n", role,
             data.num_points(), data.num_features(), data.dense.cols > 0 ? "dense" : "sparse",
             data.num_labels(), labels_per_row);
}

void print_model_size(const ModelSize& size, int64_t optimizer_bytes) {
  std::string parts;
  for (const auto& [name, bytes] : size.parts()) {
    parts += fmt::format("{}{} {}B", parts.empty() ? "" : ", ", name, human_count(bytes));
  }
  fmt::print("model  {}B: {}; optimizer state {}B; output layer {}B\n",
             human_count(size.total_bytes()), parts, human_count(optimizer_bytes),
             human_count(size.output_layer_bytes()));
}

void print_epoch_header(bool with_metrics) {
  fmt::print("{:>5} {:>9} {:>9} {:>8} {:>8}", "epoch", "loss", "lr", "train_s", "ex/s");
  if (with_metrics)
    fmt::print(" {:>6} {:>6} {:>6} {:>7} {:>6} {:>6}", "P@1", "P@3", "P@5", "nDCG@5", "PSP@1",
               "PSP@5");
  fmt::print("\n");
}

void print_epoch(const EpochReport& r) {
  fmt::print("{:>5} {:>9.5f} {:>9.2e} {:>8.1f} {:>8.0f}", r.epoch, r.mean_loss, r.learning_rate,
             r.train_seconds, r.examples_per_second);
  if (r.metrics) {
    const MetricReport& m = *r.metrics;
    fmt::print(" {:>6.2f} {:>6.2f} {:>6.2f} {:>7.2f} {:>6.2f} {:>6.2f}", 100 * m.precision[0],
               100 * m.precision[2], 100 * m.precision[4], 100 * m.ndcg[4], 100 * m.psp[0],
               100 * m.psp[4]);
  }
  fmt::print("\n");
  std::fflush(stdout);
}

nlohmann::ordered_json describe_run(const RunConfig& config, const TrainArgs& args,
                                    const Data& data, const ModelSize& size,
                                    int64_t optimizer_state_bytes) {
  nlohmann::ordered_json sizes;
  for (const auto& [name, bytes] : size.parts()) sizes[name] = bytes;
  sizes["output_layer_bytes"] = size.output_layer_bytes();
  sizes["output_layer_state_bytes"] = optimizer_state_bytes;
  return {{"config", {{"model", config.model.to_json()}, {"train", config.train.to_json()}}},
          {"data",
           {{"train", args.train.string()},
            {"train_rows", data.train.num_points()},
            {"test", data.test_name},
            {"test_rows", data.test ? data.test->num_points() : 0},
            {"features", data.train.num_features()},
            {"labels", data.train.num_labels()}}},
          {"model_size", sizes},
          {"output_layer_bytes", size.output_layer_bytes() + optimizer_state_bytes}};
}

// Temporary files of a run that was killed while writing (AtomicOutput's "<name>.tmp.<pid>").
// A run owns its output directory, so any such file there is stale.
void remove_stale_temporaries(const fs::path& directory) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    for (const char* output :
         {kCheckpointFileName, kShardIndexFileName, kMetricsFileName, kPlotFileName}) {
      if (name.starts_with(std::string(output) + ".tmp.")) fs::remove(entry.path(), ec);
    }
    // A sharded checkpoint's shard files (model-step<S>-shard<r>-of<P>.safetensors).
    if (name.starts_with("model-step") && name.find(".safetensors.tmp.") != std::string::npos) {
      fs::remove(entry.path(), ec);
    }
  }
}

// Thrown from the epoch callback to end a run early (--stop-after) once its checkpoint is saved.
struct StopTraining {};

void run_train(const TrainArgs& args) {
  const std::optional<shard::LaunchRank> launch = multi_process_rank(args);
  const bool lead = !launch || launch->rank == 0;  // prints, logs and cleans up
  if (!lead) silence_stdout();
  std::optional<Checkpoint> checkpoint;
  RunConfig config = args.config ? load_run_config(*args.config) : RunConfig{};
  if (args.resume) {
    check(has_checkpoint(args.out),
          "--resume: {} holds no checkpoint ({} or {}); train without --resume to start a run "
          "there",
          args.out.string(), kCheckpointFileName, kShardIndexFileName);
    checkpoint.emplace(args.out);
    // The stored settings define the run; only its length, threads and verbosity may change.
    config = {checkpoint->model_config(), checkpoint->train_config()};
    if (args.epochs) config.train.epochs = *args.epochs;
    if (args.threads) config.train.threads = *args.threads;
    if (args.shards) config.train.shards = *args.shards;
    if (args.gpus) config.train.shards = *args.gpus;
    config.train.show_progress = !args.quiet;
  } else {
    if (has_checkpoint(args.out) && lead) {
      fmt::print(stderr,
                 "note: starting afresh over the checkpoint in {} (use --resume to "
                 "continue that run)\n",
                 args.out.string());
    }
    apply_overrides(args, config);
  }
  if (launch) {
    config.train.shards = launch->world_size;
    config.train.show_progress = lead && !args.quiet;
  }

  Data data = naming_memory_use(fmt::format("reading the data ({})", args.train.string()),
                                [&] { return read_data(args, config.train.seed); });
  print_dataset("train", data.train);
  if (data.test) print_dataset("test", *data.test);

  std::optional<Featurizer> featurizer;
  if (args.vocabulary)
    featurizer = Featurizer::load(*args.vocabulary);
  else if (checkpoint)
    featurizer = checkpoint->featurizer();

  Model model = naming_memory_use(
      fmt::format("building the model (hidden {}, {} input features, {} labels)",
                  config.model.hidden, data.train.num_features(), data.train.num_labels()),
      [&] {
        return checkpoint ? checkpoint->load_model() : Model::build(config.model, data.train);
      });
  Trainer trainer = naming_memory_use("allocating the optimizer state",
                                      [&] { return Trainer(config.train, model); });
  if (checkpoint) {
    checkpoint->restore_training(trainer);
    fmt::print("resuming {} after epoch {} (step {})\n", args.out.string(),
               trainer.state().epochs_done, trainer.state().steps_done);
  }
  const ModelSize size = model.size();
  print_model_size(size, trainer.optimizer().state_bytes());
  const int64_t output_layer_bytes =
      size.output_layer_bytes() + trainer.optimizer().output_layer_state_bytes();

  fs::create_directories(args.out);
  std::optional<TrainingLog> log;
  if (lead) {
    remove_stale_temporaries(args.out);
    log.emplace(args.out, describe_run(config, args, data, size,
                                       trainer.optimizer().output_layer_state_bytes()));
    if (checkpoint) log->keep_earlier_epochs(trainer.state().epochs_done);
  }
  print_epoch_header(data.test.has_value());
  const Dataset* test = data.test ? &*data.test : nullptr;
  const Featurizer* vocabulary = featurizer ? &*featurizer : nullptr;
  // The end of an epoch; `group` is a multi-process run's (each rank writes its checkpoint
  // shard), null for one process.
  auto end_epoch = [&](const EpochReport& report, shard::Communicator* group) {
    print_epoch(report);
    // The log first: a kill between the two leaves a log one epoch ahead of the checkpoint,
    // which --resume trims, rather than a log missing an epoch the checkpoint has.
    if (log) log->add(report, output_layer_bytes);
    const bool stop = args.stop_after && report.epoch >= *args.stop_after;
    // The same on every rank of a multi-process run: the epoch and the settings.
    const bool save = stop || report.epoch == config.train.epochs ||
                      report.epoch % config.train.checkpoint_every == 0;
    if (save && group != nullptr) {
      save_run_checkpoint(args.out, model, *group, &trainer, vocabulary);
    } else if (save) {
      save_run_checkpoint(args.out, model, config.train.shards, &trainer, vocabulary);
    }
    if (stop) throw StopTraining{};
  };
  try {
    naming_memory_use("training", [&] {
      const TrainDevice device = parse_train_device(args.device);
      if (launch) {
        MultiProcessRun run{
            *launch, args.rendezvous.value_or(fs::path()),
            std::chrono::milliseconds(static_cast<int64_t>(1000 * args.rank_timeout))};
        fit_multi_process(device, run, trainer, model, data.train, test,
                          [&](const EpochReport& report, shard::Communicator& group) {
                            end_epoch(report, &group);
                          });
      } else {
        fit_on_device(
            device, trainer, model, data.train, test,
            [&](const EpochReport& report) { end_epoch(report, nullptr); }, args.gpus.value_or(0));
      }
    });
  } catch (const StopTraining&) {
    fmt::print("stopped after epoch {} of {}; continue with --resume\n",
               trainer.state().epochs_done, config.train.epochs);
  }
  fmt::print("wrote {}, {} and {} in {}\n",
             config.train.shards > 1 ? kShardIndexFileName : kCheckpointFileName, kMetricsFileName,
             test ? kPlotFileName : "no plot (no test set)", args.out.string());
}

}  // namespace

void add_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model on an XC data set. Settings come from a TOML config file (--config) and "
      "flags, which override it. After every epoch, --out DIR receives the checkpoint "
      "(model.safetensors), metrics.json and plot.png (P@1/3/5 per epoch)");
  cmd->add_option("TRAIN", args->train,
                  "Training set: an XC single file, or the features of a split pair (text or .npy)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("TRAIN_LABELS", args->train_labels, "Labels of a split-format training set")
      ->check(CLI::ExistingFile);
  auto* test = cmd->add_option("--test", args->test, "Test set evaluated after every epoch")
                   ->check(CLI::ExistingFile);
  cmd->add_option("--test-labels", args->test_labels, "Labels of a split-format test set")
      ->check(CLI::ExistingFile)
      ->needs(test);
  cmd->add_option("--valid-fraction", args->valid_fraction,
                  "Without --test: hold out this fraction of the training rows (seeded) and "
                  "evaluate on it")
      ->check(CLI::Range(0.0, 0.9))
      ->excludes(test);
  cmd->add_option("--config,-c", args->config, "TOML config file ([model], [train], ...)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", args->out, "Output directory")->required();
  cmd->add_flag("--resume", args->resume,
                "Continue the run whose checkpoint is in --out (its stored settings apply; "
                "--epochs may extend it)");
  cmd->add_option("--stop-after", args->stop_after,
                  "End this invocation after that epoch (its checkpoint saved), e.g. to fit a "
                  "time slot; --resume continues exactly where it stopped")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--vocabulary", args->vocabulary,
                  "Featurizer vocabulary (haste data featurize --save-vocab) to store in the "
                  "checkpoint, so `haste predict --raw` can take text")
      ->check(CLI::ExistingFile);
  cmd->add_option("--epochs", args->epochs, "Epochs")->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", args->batch_size, "Rows per batch")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", args->lr, "Base learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--optimizer", args->optimizer, "adamw or sgd");
  cmd->add_option("--hidden", args->hidden, "Encoder widths, e.g. --hidden 512 (last one is d)");
  cmd->add_option("--group-size,-g", args->group_size, "Labels per tail group (g)");
  cmd->add_option("--fan-in,-k", args->fan_in, "Tail fan-in (k)");
  cmd->add_option("--head-fraction", args->head_fraction, "Fraction of labels in the dense head");
  cmd->add_option("--output", args->output,
                  "haste (dense head + group-shared tail) or dense (the baseline)");
  cmd->add_option("--dst", args->dst,
                  "Dynamic sparse training: off, random (SET) or gradient (RigL) regrowth");
  cmd->add_option("--seed", args->seed, "Seed of the model and of training");
  cmd->add_option("--threads", args->threads, "CPU threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--shards", args->shards,
                  "Split the output layer's labels over N in-process ranks on the CPU (the "
                  "sharded path of DESIGN.md 11; same results as 1 within summation noise)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gpus", args->gpus,
                  "Train label-sharded on GPUs 0..N-1 of this machine through NCCL (one thread "
                  "and stream per GPU; the checkpoint is sharded N ways)")
      ->check(CLI::PositiveNumber)
      ->excludes("--shards");
  cmd->add_option("--rendezvous", args->rendezvous,
                  "Multi-process runs (one process per rank, started by torchrun, mpirun or with "
                  "HASTE_RANK/HASTE_WORLD_SIZE): the file through which the ranks meet, on a file "
                  "system all see, fresh for each run. CPU: rank 0 writes its TCP address there "
                  "unless MASTER_ADDR/MASTER_PORT give it; --device cuda: rank 0 writes NCCL's id "
                  "there. Default: $HASTE_RENDEZVOUS")
      ->envname("HASTE_RENDEZVOUS");
  cmd->add_option("--rank-timeout", args->rank_timeout,
                  "Multi-process runs: seconds a rank waits for the others to join, and for a "
                  "peer's data in any one exchange, before it stops with an error")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", args->quiet, "No progress bars");
  cmd->add_flag("--no-cache", args->no_cache, "Do not use or write the binary data cache");
  cmd->add_option("--device", args->device,
                  "cpu, cuda (every step on the GPU) or auto (the GPU when present and the "
                  "model's shapes suit it)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  cmd->footer(
      "Example:\n"
      "  haste train data/debdeps/xc/debdeps_train.txt.xz --test "
      "data/debdeps/xc/debdeps_test.txt.xz \\\n"
      "      --config configs/debdeps.toml --out runs/debdeps\n"
      "  haste train ... --out runs/debdeps --resume --epochs 8   # continue, longer\n"
      "See docs/cli.md for the config file's keys.");
  cmd->callback([args] { run_train(*args); });
}

}  // namespace haste::cli
