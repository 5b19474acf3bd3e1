// Host side of the GPU group-shared layer: checks the shape once, then picks the kernel family
// (tensor-core group-shared kernels for g >= 8, the CUDA-core standard fixed fan-in kernels for
// g = 1) and turns a failed launch into haste::Error.
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/error.hpp>

#include "cuda/group_shared_launch.hpp"

namespace haste::cuda {
namespace {

constexpr int64_t kMaxBatch = 1024;
constexpr int64_t kMaxWidth = 1024;

GroupSharedArgs make_args(const GroupSharedDevice& layer, int64_t B) {
  check_supported(layer.shape, B);
  check(layer.indices != nullptr, "group-shared CUDA layer: indices pointer is null");
  GroupSharedArgs args;
  args.B = B;
  args.d = layer.shape.d;
  args.G = layer.shape.G;
  args.g = layer.shape.g;
  args.k = layer.shape.k;
  args.indices = layer.indices;
  args.weights = layer.weights;
  args.bias = layer.bias;
  return args;
}

using Launcher = cudaError_t (*)(const GroupSharedArgs&, cudaStream_t);

// Group-shared kernels for g > 1, the standard fixed fan-in kernels for g = 1.
void launch(const GroupSharedArgs& args, Launcher grouped, Launcher standard, cudaStream_t stream) {
  if (args.G == 0) return;
  HASTE_CUDA_CHECK((args.g > 1 ? grouped : standard)(args, stream));
}

}  // namespace

void check_supported(const GroupSharedShape& shape, int64_t B) {
  shape.validate();
  const int64_t g = shape.g, k = shape.k;
  check(g == 1 || g == 8 || g == 16 || g == 32 || g == 64,
        "group-shared CUDA layer: g = {} labels per group is not supported; use 1 (standard "
        "fixed fan-in), 8, 16, 32 or 64",
        g);
  check(k == 32 || k == 64 || k == 128,
        "group-shared CUDA layer: fan-in k = {} is not supported; use 32, 64 or 128", k);
  check(shape.d <= kMaxWidth, "group-shared CUDA layer: d = {} is wider than the supported {}",
        shape.d, kMaxWidth);
  check(B > 0 && B <= kMaxBatch && B % 16 == 0,
        "group-shared CUDA layer: batch size B = {} must be a multiple of 16 in [16, {}]; pad "
        "the batch with zero rows",
        B, kMaxBatch);
  check(shape.labels() * B < (int64_t{1} << 40) && shape.labels() * k < (int64_t{1} << 40),
        "group-shared CUDA layer: L_tail = {} is too large", shape.labels());
}

void group_shared_forward(const GroupSharedDevice& layer, int64_t B, const bf16* hT, bf16* z,
                          cudaStream_t stream) {
  GroupSharedArgs args = make_args(layer, B);
  args.hT = hT;
  args.z = z;
  launch(args, launch_gsff_forward, launch_ffi_forward, stream);
}

void group_shared_backward_weights(const GroupSharedDevice& layer, int64_t B, const bf16* hT,
                                   const bf16* dz, bf16* dweights, float* dbias,
                                   cudaStream_t stream) {
  GroupSharedArgs args = make_args(layer, B);
  args.hT = hT;
  args.dz = dz;
  args.dweights = dweights;
  args.dbias = dbias;
  launch(args, launch_gsff_backward_weights, launch_ffi_backward_weights, stream);
}

void group_shared_backward_inputs(const GroupSharedDevice& layer, int64_t B, const bf16* dz,
                                  float* dhT, cudaStream_t stream) {
  GroupSharedArgs args = make_args(layer, B);
  args.dz = dz;
  args.dhT = dhT;
  launch(args, launch_gsff_backward_inputs, launch_ffi_backward_inputs, stream);
}

}  // namespace haste::cuda
