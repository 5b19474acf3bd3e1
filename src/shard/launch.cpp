// Rank from the environment and the file-based id exchange (see include/haste/shard/launch.hpp).
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <haste/error.hpp>
#include <haste/shard/launch.hpp>
#include <iterator>
#include <string_view>
#include <thread>

#include "data/text_io.hpp"

namespace haste::shard {
namespace {

struct VariableFamily {
  const char* rank;
  const char* world_size;
  const char* local_rank;
};

constexpr std::array<VariableFamily, 3> kFamilies{{
    {"HASTE_RANK", "HASTE_WORLD_SIZE", "HASTE_LOCAL_RANK"},
    {"RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
}};

int parse_count(const char* name, const char* text) {
  int value = 0;
  const std::string_view view(text);
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
  check(error == std::errc() && end == view.data() + view.size() && value >= 0,
        "environment: {}='{}' is not a non-negative integer", name, text);
  return value;
}

}  // namespace

LaunchRank launch_rank_from_environment(const EnvironmentLookup& lookup) {
  auto get = [&](const char* name) -> const char* {
    const char* value = lookup ? lookup(name) : std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
  };
  for (const VariableFamily& family : kFamilies) {
    const char* rank = get(family.rank);
    const char* world = get(family.world_size);
    if (rank == nullptr || world == nullptr) continue;
    LaunchRank launch;
    launch.rank = parse_count(family.rank, rank);
    launch.world_size = parse_count(family.world_size, world);
    const char* local = get(family.local_rank);
    launch.local_rank = local != nullptr ? parse_count(family.local_rank, local) : launch.rank;
    launch.source = fmt::format("{}/{}", family.rank, family.world_size);
    check(launch.world_size >= 1 && launch.rank < launch.world_size,
          "environment: {}={} is not a rank of {}={}", family.rank, launch.rank, family.world_size,
          launch.world_size);
    return launch;
  }
  return {};
}

std::vector<uint8_t> share_through_file(const std::filesystem::path& path, int rank,
                                        std::span<const uint8_t> bytes, size_t size,
                                        std::chrono::milliseconds timeout) {
  if (rank == 0) {
    check(bytes.size() == size, "shard: {} bytes to share, expected {}", bytes.size(), size);
    AtomicOutput output(path);
    output.write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    output.commit();
    return {bytes.begin(), bytes.end()};
  }
  // The rename makes the file appear whole, so its size tells a complete file from none.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    std::error_code ec;
    if (std::filesystem::file_size(path, ec) == size && !ec) {
      std::ifstream in(path, std::ios::binary);
      std::vector<uint8_t> out(size);
      in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(size));
      if (in.gcount() == static_cast<std::streamsize>(size)) return out;
    }
    check(std::chrono::steady_clock::now() < deadline,
          "shard: rank {} waited {} ms for rank 0 to write {} ({} bytes); start rank 0 with the "
          "same --rendezvous file, on a file system every rank sees",
          rank, timeout.count(), path.string(), size);
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(100));
  }
}

void disable_nvlink_multicast_unless_set() { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); }

}  // namespace haste::shard
