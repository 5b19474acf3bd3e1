// Host side of the GPU optimizer (optimizer_gpu.hpp): checks, launch sizes, the rounding keys,
// and OptimizerGpu's state ownership and CPU <-> GPU state moves.
#include <algorithm>
#include <cmath>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/optimizer_gpu.hpp>
#include <haste/error.hpp>
#include <type_traits>
#include <utility>

#include "cuda/optimizer_launch.hpp"

namespace haste::cuda {
namespace {

// One key per (seed, step, parameter): elements then differ by their index.
uint64_t rounding_key(const UpdateScalars& s, uint32_t stream_id) {
  return mix64(s.seed ^ mix64(static_cast<uint64_t>(s.step) * 0x9e3779b97f4a7c15ull + stream_id));
}

// Enough blocks to fill the device several times over; the kernels stride over the rest.
unsigned blocks_for(int64_t n) {
  static const int blocks_per_device = [] {
    int device = 0, sms = 0;
    HASTE_CUDA_CHECK(cudaGetDevice(&device));
    HASTE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms * 16;
  }();
  return static_cast<unsigned>(std::max<int64_t>(
      1, std::min<int64_t>((n + kOptimizerThreads - 1) / kOptimizerThreads, blocks_per_device)));
}

void check_state(const UpdateScalars& s, OptimizerStateDevice state, const char* what) {
  check(state.first != nullptr && (s.kind == OptimizerKind::sgd || state.second != nullptr),
        "GPU optimizer ({}): state pointer is null (AdamW needs m and v, SGD the momentum)", what);
}

// The CPU optimizer's state tensor called `name`, or null.
NamedTensor<float>* find_state(std::vector<NamedTensor<float>>& tensors, const std::string& name) {
  for (NamedTensor<float>& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

}  // namespace

UpdateScalars UpdateScalars::of(const OptimizerConfig& config, double lr, int64_t step,
                                uint64_t seed) {
  check(step >= 1, "GPU optimizer: step {} must be >= 1 (the 1-based step being taken)", step);
  const auto t = static_cast<double>(step);
  return {
      .kind = config.kind,
      .lr = static_cast<float>(lr),
      .beta1 = static_cast<float>(config.beta1),
      .beta2 = static_cast<float>(config.beta2),
      .eps = static_cast<float>(config.eps),
      .weight_decay = static_cast<float>(config.weight_decay),
      .momentum = static_cast<float>(config.momentum),
      .inv_correction1 = static_cast<float>(1.0 / (1.0 - std::pow(config.beta1, t))),
      .inv_sqrt_correction2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(config.beta2, t))),
      .seed = seed,
      .step = step};
}

template <typename T, typename Grad>
void optimizer_update(const UpdateScalars& s, T* value, const Grad* grad,
                      OptimizerStateDevice state, int64_t n, uint32_t stream_id,
                      cudaStream_t stream) {
  if (n == 0) return;
  check(value != nullptr && grad != nullptr, "GPU optimizer: value or gradient pointer is null");
  check_state(s, state, "dense update");
  // The kernel loads kPack elements of each array at once: each pointer aligned to that size.
  for (const auto& [pointer, bytes] :
       {std::pair{static_cast<const void*>(value), sizeof(T)},
        std::pair{static_cast<const void*>(grad), sizeof(Grad)},
        std::pair{static_cast<const void*>(state.first), sizeof(float)},
        std::pair{static_cast<const void*>(state.second), sizeof(float)}}) {
    check(reinterpret_cast<uintptr_t>(pointer) % (bytes * kPack) == 0,
          "GPU optimizer: dense update of a pointer ({}) not aligned to {} bytes", pointer,
          bytes * kPack);
  }
  HASTE_CUDA_CHECK(launch_dense_update(s, value, grad, state, n, rounding_key(s, stream_id),
                                       blocks_for(n / kPack), stream));
}

template <typename T, typename Grad>
void optimizer_update_rows(const UpdateScalars& s, T* value, const Grad* grad,
                           OptimizerStateDevice state, int64_t width, const int32_t* rows,
                           const int32_t* row_count, int64_t max_rows, uint32_t stream_id,
                           cudaStream_t stream) {
  if (max_rows == 0 || width == 0) return;
  check(value != nullptr && grad != nullptr && rows != nullptr && row_count != nullptr,
        "GPU optimizer: value, gradient, rows or row-count pointer is null");
  check_state(s, state, "row update");
  HASTE_CUDA_CHECK(launch_row_update(s, value, grad, state, width, rows, row_count, max_rows,
                                     rounding_key(s, stream_id), blocks_for(max_rows * width),
                                     stream));
}

template <typename T>
void remap_tail_slots(const GroupSharedShape& shape, const int32_t* source, T* values,
                      cudaStream_t stream) {
  if (shape.G == 0) return;
  check(source != nullptr && values != nullptr, "GPU tail slot remap: a device pointer is null");
  check(shape.g * shape.k * static_cast<int64_t>(sizeof(T)) <= 48 * 1024,
        "GPU tail slot remap: g * k = {} slots of a group do not fit one block's shared memory",
        shape.g * shape.k);
  HASTE_CUDA_CHECK(launch_remap_slots(shape, source, values, stream));
}

// ---- OptimizerGpu ------------------------------------------------------------------------

OptimizerGpu::OptimizerGpu(const OptimizerConfig& config, uint64_t seed)
    : config_(config), seed_(seed) {
  config_.validate();
}

int OptimizerGpu::add(const std::string& name, const std::vector<int64_t>& shape) {
  Slot slot{name, shape, 1, {}, {}};
  for (int64_t extent : shape) slot.numel *= extent;
  slot.first = DeviceBuffer<float>(slot.numel);
  slot.first.fill_bytes(0);
  if (config_.kind == OptimizerKind::adamw) {
    slot.second = DeviceBuffer<float>(slot.numel);
    slot.second.fill_bytes(0);
  }
  slots_.push_back(std::move(slot));
  return static_cast<int>(slots_.size()) - 1;
}

OptimizerGpu::Slot& OptimizerGpu::slot(int handle) {
  check(handle >= 0 && handle < static_cast<int>(slots_.size()),
        "GPU optimizer: no parameter with handle {} ({} registered)", handle, slots_.size());
  check(step_ > 0 && scalars_.step == step_,
        "GPU optimizer: update before begin_step (call begin_step(lr) once per step)");
  return slots_[handle];
}

void OptimizerGpu::begin_step(double lr) {
  ++step_;
  scalars_ = UpdateScalars::of(config_, lr, step_, seed_);
}

template <typename T, typename Grad>
void OptimizerGpu::update(int handle, T* value, const Grad* grad, cudaStream_t stream) {
  Slot& s = slot(handle);
  optimizer_update(scalars_, value, grad, s.state(), s.numel, static_cast<uint32_t>(handle),
                   stream);
}

template <typename T, typename Grad>
void OptimizerGpu::update_rows(int handle, T* value, const Grad* grad, const int32_t* rows,
                               const int32_t* row_count, int64_t max_rows, cudaStream_t stream) {
  Slot& s = slot(handle);
  check(s.shape.size() == 2, "GPU optimizer: row update of '{}', which is not a matrix", s.name);
  // AdamW's decoupled decay shrinks every row, the touched rows' step runs without it (as on
  // the CPU: include/haste/optimizer.hpp).
  UpdateScalars step = scalars_;
  if (step.kind == OptimizerKind::adamw && step.weight_decay > 0) {
    if constexpr (std::is_same_v<T, float>) {
      HASTE_CUDA_CHECK(launch_scale(value, s.numel, 1.0f - step.lr * step.weight_decay,
                                    blocks_for(s.numel), stream));
      step.weight_decay = 0;
    } else {
      check(false,
            "GPU optimizer: '{}' is a bf16 row-sparse parameter, whose untouched rows' "
            "weight decay would need stochastic rounding (not supported)",
            s.name);
    }
  }
  optimizer_update_rows(step, value, grad, s.state(), s.shape[1], rows, row_count, max_rows,
                        static_cast<uint32_t>(handle), stream);
}

InKernelUpdate OptimizerGpu::in_kernel_update(int handle) {
  Slot& s = slot(handle);
  check_state(scalars_, s.state(), "in-kernel update");
  return {scalars_, s.state(), rounding_key(scalars_, static_cast<uint32_t>(handle))};
}

void OptimizerGpu::remap_tail_slots(const GroupSharedShape& shape, const int32_t* source,
                                    cudaStream_t stream) {
  for (Slot& s : slots_) {
    if (s.name != "tail.weight") continue;
    check(s.numel == shape.labels() * shape.k,
          "GPU optimizer: tail.weight state has {} elements, the tail shape G*g*k = {}", s.numel,
          shape.labels() * shape.k);
    for (DeviceBuffer<float>* state : {&s.first, &s.second}) {
      if (state->size() > 0) cuda::remap_tail_slots(shape, source, state->data(), stream);
    }
  }
}

void OptimizerGpu::copy_state(Optimizer& cpu, cudaMemcpyKind direction,
                              const FirstRow& first_row) const {
  check(cpu.config().kind == config_.kind,
        "GPU optimizer: the CPU optimizer is {}, this one {}: state cannot move",
        to_string(cpu.config().kind), to_string(config_.kind));
  std::vector<NamedTensor<float>> tensors = cpu.state_tensors();
  const std::string first = config_.kind == OptimizerKind::adamw ? "adam.m." : "sgd.momentum.";
  for (const Slot& s : slots_) {
    for (const auto& [prefix, buffer] :
         {std::pair{first, &s.first}, std::pair{std::string("adam.v."), &s.second}}) {
      if (buffer->size() == 0) continue;
      NamedTensor<float>* tensor = find_state(tensors, prefix + s.name);
      const int64_t row = first_row ? first_row(s.name) : 0;
      const bool fits = tensor != nullptr &&
                        (first_row ? !s.shape.empty() && tensor->shape.size() == s.shape.size() &&
                                         std::equal(s.shape.begin() + 1, s.shape.end(),
                                                    tensor->shape.begin() + 1) &&
                                         row >= 0 && row + s.shape[0] <= tensor->shape[0]
                                   : tensor->shape == s.shape);
      check(fits,
            "GPU optimizer: the CPU optimizer has no state '{}' holding the registered shape "
            "from row {}",
            prefix + s.name, row);
      // The device side is written only by upload(), which is not const.
      auto* device = const_cast<float*>(buffer->data());
      const int64_t row_size = s.shape.empty() || s.shape[0] == 0 ? 0 : s.numel / s.shape[0];
      float* host = tensor->data.data() + row * row_size;
      const bool to_device = direction == cudaMemcpyHostToDevice;
      HASTE_CUDA_CHECK(cudaMemcpy(to_device ? static_cast<void*>(device) : host,
                                  to_device ? static_cast<const void*>(host) : device,
                                  s.numel * sizeof(float), direction));
    }
  }
}

void OptimizerGpu::upload(Optimizer& cpu, const FirstRow& first_row) {
  copy_state(cpu, cudaMemcpyHostToDevice, first_row);
  step_ = cpu.steps_taken();
}

void OptimizerGpu::download(Optimizer& cpu, const FirstRow& first_row) const {
  copy_state(cpu, cudaMemcpyDeviceToHost, first_row);
  cpu.set_steps_taken(step_);
}

int64_t OptimizerGpu::state_bytes() const { return state_bytes(""); }

int64_t OptimizerGpu::state_bytes(const std::string& prefix) const {
  int64_t bytes = 0;
  for (const Slot& s : slots_) {
    if (s.name.starts_with(prefix)) {
      bytes += static_cast<int64_t>(s.first.size() + s.second.size()) * sizeof(float);
    }
  }
  return bytes;
}

#define HASTE_INSTANTIATE_UPDATE(T, Grad)                                                         \
  template void optimizer_update<T, Grad>(const UpdateScalars&, T*, const Grad*,                  \
                                          OptimizerStateDevice, int64_t, uint32_t, cudaStream_t); \
  template void optimizer_update_rows<T, Grad>(const UpdateScalars&, T*, const Grad*,             \
                                               OptimizerStateDevice, int64_t, const int32_t*,     \
                                               const int32_t*, int64_t, uint32_t, cudaStream_t);  \
  template void OptimizerGpu::update<T, Grad>(int, T*, const Grad*, cudaStream_t);                \
  template void OptimizerGpu::update_rows<T, Grad>(int, T*, const Grad*, const int32_t*,          \
                                                   const int32_t*, int64_t, cudaStream_t);
HASTE_INSTANTIATE_UPDATE(float, float)
HASTE_INSTANTIATE_UPDATE(bf16, bf16)
HASTE_INSTANTIATE_UPDATE(bf16, float)
#undef HASTE_INSTANTIATE_UPDATE
template void remap_tail_slots<float>(const GroupSharedShape&, const int32_t*, float*,
                                      cudaStream_t);
template void remap_tail_slots<bf16>(const GroupSharedShape&, const int32_t*, bf16*, cudaStream_t);

}  // namespace haste::cuda
