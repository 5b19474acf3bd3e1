// PLACEHOLDER: replaced by the real command.
#include "commands.hpp"
namespace haste::cli {
void add_eval(CLI::App& app) { (void)app; }
}  // namespace haste::cli
