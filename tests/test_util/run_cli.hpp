// Runs the `haste` CLI built with the tests (HASTE_CLI) as a child process, for end-to-end tests
// of commands. Returns its exit code, its own peak memory (from wait4, so other children and
// the test process itself do not count) and what it wrote to stdout and stderr. Optional resource
// limits simulate a full disk or too little memory for that one child.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
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

struct CliLimits {
  // RLIMIT_FSIZE: writes past this many bytes of a file fail with EFBIG, as on a full disk
  // (SIGXFSZ, which would kill the child instead, is ignored).
  rlim_t file_size = RLIM_INFINITY;
  // RLIMIT_AS: allocations that would grow the address space past this fail (std::bad_alloc).
  rlim_t address_space = RLIM_INFINITY;
};

inline CliResult run_cli(std::vector<std::string> args, const CliLimits& limits = {}) {
  args.insert(args.begin(), HASTE_CLI);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const std::string prefix = "haste-cli-" + std::to_string(::getpid());
  std::filesystem::path stderr_file =
      std::filesystem::temp_directory_path() / (prefix + "-stderr.txt");
  std::filesystem::path stdout_file =
      std::filesystem::temp_directory_path() / (prefix + "-stdout.txt");
  CliResult result;
  // fork + exec rather than posix_spawn, which cannot set resource limits. The child makes
  // only async-signal-safe calls before exec.
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;  // dup2 clears CLOEXEC
    if (::dup2(::open(stderr_file.c_str(), flags, 0644), STDERR_FILENO) < 0 ||
        ::dup2(::open(stdout_file.c_str(), flags, 0644), STDOUT_FILENO) < 0) {
      ::_exit(127);
    }
    const rlimit file_size{limits.file_size, limits.file_size};
    const rlimit address_space{limits.address_space, limits.address_space};
    if (limits.file_size != RLIM_INFINITY) {
      ::signal(SIGXFSZ, SIG_IGN);
      ::setrlimit(RLIMIT_FSIZE, &file_size);
    }
    if (limits.address_space != RLIM_INFINITY) ::setrlimit(RLIMIT_AS, &address_space);
    ::execve(HASTE_CLI, argv.data(), environ);
    ::_exit(127);
  }
  if (pid < 0) {
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

// A `haste` child started in the background with extra environment variables (`environment`,
// "NAME=value"; the launcher variables of the test's own environment are dropped), its stdout
// and stderr going to files: for the multi-process tests, which start several at once.
struct CliProcess {
  pid_t pid = -1;
  std::filesystem::path stdout_file, stderr_file;

  // Waits for the child; its exit code, or 128 + signal when a signal ended it.
  int wait() {
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string output() const { return read_text_file(stdout_file); }
  std::string error_output() const { return read_text_file(stderr_file); }
};

inline CliProcess start_cli(std::vector<std::string> args,
                            const std::vector<std::string>& environment,
                            const std::filesystem::path& output_prefix) {
  args.insert(args.begin(), HASTE_CLI);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> variables;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool launcher = false;
    for (const char* prefix : {"HASTE_RANK=", "HASTE_WORLD_SIZE=", "HASTE_LOCAL_RANK=", "RANK=",
                               "WORLD_SIZE=", "LOCAL_RANK=", "OMPI_COMM_WORLD_", "MASTER_ADDR=",
                               "MASTER_PORT=", "HASTE_MASTER_", "HASTE_RENDEZVOUS="}) {
      launcher = launcher || entry.starts_with(prefix);
    }
    if (!launcher) variables.emplace_back(entry);
  }
  variables.insert(variables.end(), environment.begin(), environment.end());
  std::vector<char*> envp;
  for (std::string& variable : variables) envp.push_back(variable.data());
  envp.push_back(nullptr);

  CliProcess process;
  process.stdout_file = output_prefix.string() + ".out";
  process.stderr_file = output_prefix.string() + ".err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, process.stdout_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, process.stderr_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (posix_spawn(&process.pid, HASTE_CLI, &actions, nullptr, argv.data(), envp.data()) != 0) {
    ADD_FAILURE() << "cannot start " << HASTE_CLI;
    process.pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  return process;
}

}  // namespace haste::test_util
