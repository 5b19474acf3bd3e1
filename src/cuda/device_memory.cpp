// The per-GPU ledger of DeviceBuffer allocations (include/haste/cuda/device_memory.hpp). Atomic:
// the ranks of a multi-GPU run allocate from their own threads.
#include <array>
#include <atomic>
#include <haste/cuda/device_memory.hpp>
#include <haste/error.hpp>

namespace haste::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct Ledger {
  std::atomic<int64_t> current{0}, peak{0};
};

Ledger& ledger(int device) {
  static std::array<Ledger, kMaxDevices> ledgers;
  check(device >= 0 && device < kMaxDevices, "device memory ledger: device {} out of range [0, {})",
        device, kMaxDevices);
  return ledgers[device];
}

}  // namespace

DeviceMemoryUse device_memory_use(int device) {
  const Ledger& l = ledger(device);
  return {l.current.load(), l.peak.load()};
}

void reset_peak_device_memory(int device) {
  Ledger& l = ledger(device);
  l.peak.store(l.current.load());
}

void note_device_allocation(int device, int64_t bytes) {
  Ledger& l = ledger(device);
  const int64_t now = l.current.fetch_add(bytes) + bytes;
  int64_t peak = l.peak.load();
  while (now > peak && !l.peak.compare_exchange_weak(peak, now)) {
  }
}

void note_device_free(int device, int64_t bytes) { ledger(device).current.fetch_sub(bytes); }

}  // namespace haste::cuda
