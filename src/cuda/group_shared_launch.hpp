// What the host API (group_shared_cuda.cpp) hands to the kernel files: one argument block and
// one launcher per kernel. Plain C++ so that both g++ and nvcc read it; the launchers assume a
// shape that check_supported accepted and return the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/cuda/group_shared_fused.hpp>

namespace haste::cuda {

struct GroupSharedArgs {
  int64_t B = 0, d = 0, G = 0, g = 0, k = 0;
  const int32_t* indices = nullptr;
  const bf16* weights = nullptr;
  const float* bias = nullptr;
  const bf16* hT = nullptr;
  const bf16* dz = nullptr;
  bf16* z = nullptr;
  bf16* dweights = nullptr;
  float* dbias = nullptr;
  float* dhT = nullptr;
};

// Group-shared kernels (g >= 8, tensor cores): src/cuda/gsff_*.cu.
cudaError_t launch_gsff_forward(const GroupSharedArgs& args, cudaStream_t stream);
cudaError_t launch_gsff_backward_weights(const GroupSharedArgs& args, cudaStream_t stream);
cudaError_t launch_gsff_backward_inputs(const GroupSharedArgs& args, cudaStream_t stream);

// The fused training kernel (src/cuda/gsff_fused_train.cu) takes at most kFusedTrainRows
// batch rows per launch (one thread-block cluster of 32-row blocks); the host splits larger
// batches and lets every launch after the first add to dweights. Every launch adds to dbias,
// which the host clears first.
struct FusedTrainArgs {
  GroupSharedArgs layer;    // layer.B is the whole batch: the row stride of hT and dhT
  int64_t batch_begin = 0;  // rows batch_begin .. + batch_rows (a multiple of 16) of the batch
  int batch_rows = 0;
  // Rows of the whole batch from real_rows on pad it to a multiple of 16 (their h is 0): they
  // get dZ = 0 and no loss, and the loss is a mean over the real rows.
  int64_t real_rows = 0;
  float inv_batch = 0.f;    // 1 / real_rows
  bool accumulate = false;  // add to dweights instead of overwriting them
  // Non-null: update these weights (layer.weights) with `update` instead of writing dweights
  // (one launch for the whole batch, accumulate false).
  bf16* updated_weights = nullptr;
  InKernelUpdate update;
  TailTargetsDevice targets;
  double* loss = nullptr;
};
cudaError_t launch_gsff_fused_train(const FusedTrainArgs& args, cudaStream_t stream);
// Dynamic shared memory the fused training kernel needs at this (g, k, d).
size_t gsff_fused_train_shared_bytes(int64_t g, int64_t k, int64_t d);

// Standard fixed fan-in kernels (g = 1, CUDA cores): src/cuda/ffi_kernels.cu.
cudaError_t launch_ffi_forward(const GroupSharedArgs& args, cudaStream_t stream);
cudaError_t launch_ffi_backward_weights(const GroupSharedArgs& args, cudaStream_t stream);
cudaError_t launch_ffi_backward_inputs(const GroupSharedArgs& args, cudaStream_t stream);

}  // namespace haste::cuda
