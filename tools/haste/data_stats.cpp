// PLACEHOLDER: replaced by the real command.
#include "commands.hpp"
namespace haste::cli {
void add_data_stats(CLI::App& data) { (void)data; }
}  // namespace haste::cli
