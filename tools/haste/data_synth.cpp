// PLACEHOLDER: replaced by the real command.
#include "commands.hpp"
namespace haste::cli {
void add_data_synth(CLI::App& data) { (void)data; }
}  // namespace haste::cli
