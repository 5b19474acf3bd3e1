// Runs the `haste` CLI built with the tests (HASTE_CLI) as a child process, for end-to-end tests
// of commands. Returns its exit code, its own peak memory (from wait4, so other children and
// the test process itself do not count) and what it wrote to stdout and stderr.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace haste::test_util {

struct CliResult {
  int exit_code = -1;
  int64_t max_rss_kib = 0;
  std::string error_output;
  std::string output;
};

inline std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), HASTE_CLI);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const std::string prefix = "haste-cli-" + std::to_string(::getpid());
  std::filesystem::path stderr_file =
      std::filesystem::temp_directory_path() / (prefix + "-stderr.txt");
  std::filesystem::path stdout_file =
      std::filesystem::temp_directory_path() / (prefix + "-stdout.txt");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CliResult result;
  pid_t pid = 0;
  int spawned = posix_spawn(&pid, HASTE_CLI, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    ADD_FAILURE() << "cannot run " << HASTE_CLI;
    return result;
  }
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid || !WIFEXITED(status)) {
    ADD_FAILURE() << HASTE_CLI << " did not exit normally";
  } else {
    result.exit_code = WEXITSTATUS(status);
  }
  result.max_rss_kib = usage.ru_maxrss;
  result.error_output = read_text_file(stderr_file);
  result.output = read_text_file(stdout_file);
  std::filesystem::remove(stderr_file);
  std::filesystem::remove(stdout_file);
  return result;
}

}  // namespace haste::test_util
