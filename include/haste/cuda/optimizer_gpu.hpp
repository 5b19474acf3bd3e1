// The optimizers of include/haste/optimizer.hpp on the GPU (issue 6, DESIGN.md 8): AdamW and SGD
// with momentum, the same OptimizerConfig and arithmetic (AdamW's divisions by a fast one: a few
// ulp apart), on device parameters that are
//   fp32 (the encoder), or
//   bf16 with STOCHASTIC ROUNDING (the output layer: no fp32 master copy, the reference
//   implementation's choice): w_new = SR(w + update), where SR rounds the fp32 result up or down
//   to a neighbouring bf16 value with probabilities that make it unbiased, E[SR(x)] = x. Plain
//   rounding would drop every update smaller than half a bf16 ulp of w (2^-9 relative).
// Optimizer state (Adam m, v; SGD momentum) is always fp32, gradients fp32 or bf16.
//
// Per parameter, dense (every element) or LAZY ROW-SPARSE (the sparse input layer, as on the
// CPU): only rows listed in a device int32 array take a step, with their state; the row count
// may live on the device (no host sync), the launch covers `max_rows` and extra threads exit.
// AdamW's decoupled weight decay still scales every row (fp32 parameters only), as on the CPU.
//
// The stochastic-rounding draws come from a counter-based hash of (seed, step, parameter, element):
// a run is reproducible and no RNG state is stored.
//
// Use (one OptimizerGpu per model, state owned here, parameters owned by the caller):
//   OptimizerGpu opt(config);
//   int w = opt.add("tail.weight", {L, k});          // state allocated, zero
//   each step:  opt.begin_step(lr);                   // step count + bias corrections
//               opt.update(w, weights, grads, stream);           // dense
//               opt.update_rows(e, table, row_grads, rows, count, max_rows, stream);  // lazy
// Every call is asynchronous on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/optimizer_update.hpp>
#include <haste/group_shared.hpp>
#include <haste/optimizer.hpp>
#include <string>
#include <vector>

namespace haste::cuda {

// Owns the fp32 state of a set of device parameters and the step counter (see the top).
class OptimizerGpu {
 public:
  // `seed` feeds the stochastic rounding of bf16 parameters.
  explicit OptimizerGpu(const OptimizerConfig& config, uint64_t seed = 0);

  // Registers a parameter by name (Model::parameters() naming) and shape; its state starts at
  // zero. Returns its handle for update() / update_rows().
  int add(const std::string& name, const std::vector<int64_t>& shape);

  // Starts step steps_taken() + 1 at learning rate `lr` (host scalars only, no device work).
  void begin_step(double lr);

  // The updates of the current step (begin_step first). Dense: every element of the parameter;
  // rows: see optimizer_update_rows (the parameter is [rows, width] as registered).
  template <typename T, typename Grad>
  void update(int handle, T* value, const Grad* grad, cudaStream_t stream);
  template <typename T, typename Grad>
  void update_rows(int handle, T* value, const Grad* grad, const int32_t* rows,
                   const int32_t* row_count, int64_t max_rows, cudaStream_t stream);

  // The current step's update of a bf16 parameter, for a kernel that applies it as it
  // computes the gradient (include/haste/cuda/optimizer_update.hpp). Replaces update() of
  // that parameter for this step.
  InKernelUpdate in_kernel_update(int handle);

  // DST: moves the tail's state (the parameter named "tail.weight") with its slots.
  void remap_tail_slots(const GroupSharedShape& shape, const int32_t* source, cudaStream_t stream);

  // Checkpoints and CPU <-> GPU moves: the CPU Optimizer's state tensors (same names) copied
  // into / out of this one, with the step counter. Every registered parameter must be there
  // with the same shape; CPU state of other parameters is left alone. Synchronous.
  // A label shard's optimizer holds rows of the CPU's tensors: `first_row(name)` says where its
  // parameter `name` starts there (the other dimensions must agree).
  using FirstRow = std::function<int64_t(const std::string& name)>;
  void upload(Optimizer& cpu, const FirstRow& first_row = {});
  void download(Optimizer& cpu, const FirstRow& first_row = {}) const;

  int64_t steps_taken() const { return step_; }
  void set_steps_taken(int64_t steps) { step_ = steps; }
  int64_t state_bytes() const;  // all registered parameters
  // State bytes of registered parameters whose name starts with `prefix` (e.g. "head.").
  int64_t state_bytes(const std::string& prefix) const;
  const OptimizerConfig& config() const { return config_; }

 private:
  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    int64_t numel = 0;
    DeviceBuffer<float> first, second;
    OptimizerStateDevice state() { return {first.data(), second.data()}; }
  };
  Slot& slot(int handle);
  void copy_state(Optimizer& cpu, cudaMemcpyKind direction, const FirstRow& first_row) const;

  OptimizerConfig config_;
  uint64_t seed_;
  int64_t step_ = 0;
  UpdateScalars scalars_;
  std::vector<Slot> slots_;
};

}  // namespace haste::cuda
