// NCCL ranks (see include/haste/cuda/nccl_communicator.hpp).
#include <nccl.h>

#include <atomic>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/nccl_communicator.hpp>
#include <haste/error.hpp>
#include <haste/shard/launch.hpp>

namespace haste::cuda {
namespace {

// NCCL's own CUDA calls may fail and be handled inside it (probing devices and peers), which
// leaves the runtime's last error set: read here after every NCCL call, so that the next kernel
// launch check reports only the launch.
void check_nccl(ncclResult_t status, const char* call, const char* file, int line) {
  cudaGetLastError();
  if (status != ncclSuccess) {
    fail("{}:{}: {} failed: {} ({})", file, line, call, ncclGetErrorString(status),
         ncclGetLastError(nullptr));
  }
}

#define HASTE_NCCL_CHECK(call) check_nccl((call), #call, __FILE__, __LINE__)

// For calls in destructors, which must not throw: only the runtime's last error is read.
void check_nccl_quietly(ncclResult_t) { cudaGetLastError(); }

// Makes `device` current for the rest of the scope, then restores the caller's device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    HASTE_CUDA_CHECK(cudaGetDevice(&previous_));
    HASTE_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0, rank = 0, size = 1;
  std::atomic<bool> aborted = false;

  void check_usable() const;

  ~Impl() {
    if (comm != nullptr && !aborted) check_nccl_quietly(ncclCommDestroy(comm));
    if (stream != nullptr) {
      cudaSetDevice(device);
      cudaStreamDestroy(stream);
    }
  }
};

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclCommunicator::~NcclCommunicator() = default;

std::vector<std::unique_ptr<NcclCommunicator>> NcclCommunicator::for_devices(
    std::span<const int> devices) {
  check(!devices.empty(), "nccl: no GPUs given");
  shard::disable_nvlink_multicast_unless_set();
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n);
  HASTE_NCCL_CHECK(ncclCommInitAll(comms.data(), n, devices.data()));
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  for (int r = 0; r < n; ++r) {
    auto impl = std::make_unique<Impl>();
    impl->comm = comms[r];
    impl->device = devices[r];
    impl->rank = r;
    impl->size = n;
    DeviceScope scope(devices[r]);
    HASTE_CUDA_CHECK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
    out.push_back(std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl))));
  }
  return out;
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::from_environment(
    const std::filesystem::path& id_file, std::chrono::milliseconds timeout) {
  shard::disable_nvlink_multicast_unless_set();
  const shard::LaunchRank launch = shard::launch_rank_from_environment();
  ncclUniqueId id{};
  if (launch.rank == 0) HASTE_NCCL_CHECK(ncclGetUniqueId(&id));
  const auto* id_bytes = reinterpret_cast<const uint8_t*>(id.internal);
  const std::vector<uint8_t> shared = shard::share_through_file(
      id_file, launch.rank, std::span(id_bytes, sizeof(id.internal)), sizeof(id.internal), timeout);
  std::copy(shared.begin(), shared.end(), reinterpret_cast<uint8_t*>(id.internal));

  auto impl = std::make_unique<Impl>();
  impl->device = launch.local_rank;
  impl->rank = launch.rank;
  impl->size = launch.world_size;
  HASTE_CUDA_CHECK(cudaSetDevice(impl->device));
  HASTE_CUDA_CHECK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  HASTE_NCCL_CHECK(ncclCommInitRank(&impl->comm, launch.world_size, id, launch.rank));
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl)));
}

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::size() const { return impl_->size; }
int NcclCommunicator::device() const { return impl_->device; }
cudaStream_t NcclCommunicator::stream() const { return impl_->stream; }

void NcclCommunicator::synchronize() const {
  HASTE_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void NcclCommunicator::abort() {
  if (impl_->aborted.exchange(true)) return;
  ncclCommAbort(impl_->comm);
}

void NcclCommunicator::Impl::check_usable() const {
  check(!aborted, "nccl: rank {} was aborted because another rank failed", rank);
}

void NcclCommunicator::all_gather(std::span<const float> send, std::span<float> recv) {
  check(recv.size() == send.size() * static_cast<size_t>(impl_->size),
        "nccl: all_gather of {} values into {} (need {} ranks x {})", send.size(), recv.size(),
        impl_->size, send.size());
  impl_->check_usable();
  HASTE_NCCL_CHECK(
      ncclAllGather(send.data(), recv.data(), send.size(), ncclFloat, impl_->comm, impl_->stream));
}

void NcclCommunicator::reduce_scatter(std::span<const float> send, std::span<float> recv) {
  check(send.size() == recv.size() * static_cast<size_t>(impl_->size),
        "nccl: reduce_scatter of {} values into {} (need {} ranks x {})", send.size(), recv.size(),
        impl_->size, recv.size());
  impl_->check_usable();
  HASTE_NCCL_CHECK(ncclReduceScatter(send.data(), recv.data(), recv.size(), ncclFloat, ncclSum,
                                     impl_->comm, impl_->stream));
}

void NcclCommunicator::all_reduce(std::span<float> data) {
  impl_->check_usable();
  HASTE_NCCL_CHECK(ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat, ncclSum,
                                 impl_->comm, impl_->stream));
}

void NcclCommunicator::all_reduce(std::span<double> data) {
  impl_->check_usable();
  HASTE_NCCL_CHECK(ncclAllReduce(data.data(), data.data(), data.size(), ncclDouble, ncclSum,
                                 impl_->comm, impl_->stream));
}

void NcclCommunicator::broadcast(std::span<float> data) {
  impl_->check_usable();
  HASTE_NCCL_CHECK(ncclBroadcast(data.data(), data.data(), data.size(), ncclFloat, /*root=*/0,
                                 impl_->comm, impl_->stream));
}

HostStagedCommunicator::HostStagedCommunicator(NcclCommunicator& nccl)
    : nccl_(nccl), device_(nccl.device()) {}

HostStagedCommunicator::~HostStagedCommunicator() {
  if (buffer_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(buffer_);
  }
}

int HostStagedCommunicator::rank() const { return nccl_.rank(); }
int HostStagedCommunicator::size() const { return nccl_.size(); }

void* HostStagedCommunicator::staging(size_t bytes) {
  HASTE_CUDA_CHECK(cudaSetDevice(device_));
  if (bytes > capacity_) {
    if (buffer_ != nullptr) HASTE_CUDA_CHECK(cudaFree(buffer_));
    buffer_ = nullptr;
    HASTE_CUDA_CHECK(cudaMalloc(&buffer_, bytes));
    capacity_ = bytes;
  }
  return buffer_;
}

// `send` to the GPU, `run(device send, device recv)` on the rank's stream, the result back
// into `recv`. In place (all_reduce, broadcast) when both are one span.
template <typename T, typename Run>
void HostStagedCommunicator::staged(std::span<const T> send, std::span<T> recv, const Run& run) {
  const bool in_place = static_cast<const void*>(send.data()) == recv.data();
  auto* device_recv =
      static_cast<T*>(staging(recv.size_bytes() + (in_place ? 0 : send.size_bytes())));
  T* device_send = in_place ? device_recv : device_recv + recv.size();
  HASTE_CUDA_CHECK(cudaMemcpy(device_send, send.data(), send.size_bytes(), cudaMemcpyHostToDevice));
  run(std::span<T>(device_send, send.size()), std::span<T>(device_recv, recv.size()));
  nccl_.synchronize();
  HASTE_CUDA_CHECK(cudaMemcpy(recv.data(), device_recv, recv.size_bytes(), cudaMemcpyDeviceToHost));
}

void HostStagedCommunicator::all_gather(std::span<const float> send, std::span<float> recv) {
  staged<float>(send, recv, [&](auto in, auto out) { nccl_.all_gather(in, out); });
}

void HostStagedCommunicator::reduce_scatter(std::span<const float> send, std::span<float> recv) {
  staged<float>(send, recv, [&](auto in, auto out) { nccl_.reduce_scatter(in, out); });
}

void HostStagedCommunicator::all_reduce(std::span<float> data) {
  staged<float>(data, data, [&](auto, auto out) { nccl_.all_reduce(out); });
}

void HostStagedCommunicator::all_reduce(std::span<double> data) {
  staged<double>(data, data, [&](auto, auto out) { nccl_.all_reduce(out); });
}

void HostStagedCommunicator::broadcast(std::span<float> data) {
  staged<float>(data, data, [&](auto, auto out) { nccl_.broadcast(out); });
}

}  // namespace haste::cuda
