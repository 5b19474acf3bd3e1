// Group-shared fixed fan-in (GSFF) layer: the sparse tail of the output layer (DESIGN.md 3).
//
// The tail has G groups of g labels (L_tail = G * g). Group G reads k distinct, sorted features
// idx[G] of h; label l (in group l / g) has its own weights W[l, 0..k) and bias b[l]:
//   z[b, l] = b[l] + sum_j W[l, j] * h[b, idx[l / g][j]]
// Standard fixed fan-in is g = 1.
//
// These are the CPU kernels (fp32 engine, double for gradient checks) and the reference the
// CUDA kernels are tested against. Every tensor is a plain row-major array passed as a span:
//   h, dh        [B, d]
//   z, dz        [B, L_tail]
//   indices      [G, k]       int32, row G strictly increasing, in [0, d)
//   weights, dW  [L_tail, k]  label-major: group G's block is rows G*g .. G*g+g-1
//   bias, db     [L_tail]
// Sizes are checked on every call; a mismatch, a bad shape or a bad index throws haste::Error.
// T is float (the engine) or double (gradient checks); both are instantiated in the library.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace haste {

struct GroupSharedShape {
  int64_t d = 0;  // width of h (features the groups pick from)
  int64_t G = 0;  // groups (0 is allowed: an empty tail)
  int64_t g = 1;  // labels per group
  int64_t k = 0;  // fan-in: features per group

  int64_t labels() const { return G * g; }  // L_tail

  // Throws haste::Error unless d >= 1, 1 <= k <= d, g >= 1, G >= 0 and G * g * k fits.
  void validate() const;
};

// Throws haste::Error, naming the group and slot, unless `indices` is [G, k] with every row
// strictly increasing (sorted and distinct) and inside [0, d).
void validate_group_indices(const GroupSharedShape& shape, std::span<const int32_t> indices);

// A non-owning view of the layer's parameters: what the kernels read. Build it from any
// arrays, e.g. GroupSharedView<float>{shape, idx, w, b} with std::vectors.
template <typename T>
struct GroupSharedView {
  GroupSharedShape shape;
  std::span<const int32_t> indices;  // [G, k]
  std::span<const T> weights;        // [L_tail, k]
  std::span<const T> bias;           // [L_tail]
};

// Owning parameter storage. Weights and bias start at zero; indices start at 0..k-1 in every
// group (valid, but callers normally overwrite them with a label grouping's features).
template <typename T>
struct GroupSharedParams {
  GroupSharedShape shape;
  std::vector<int32_t> indices;
  std::vector<T> weights;
  std::vector<T> bias;

  explicit GroupSharedParams(const GroupSharedShape& shape);

  GroupSharedView<T> view() const { return {shape, indices, weights, bias}; }
  std::span<int32_t> group_indices(int64_t group) {
    return {indices.data() + group * shape.k, static_cast<size_t>(shape.k)};
  }
  std::span<T> label_weights(int64_t label) {
    return {weights.data() + label * shape.k, static_cast<size_t>(shape.k)};
  }
};

// Forward: z = the layer applied to h. Every element of z is overwritten.
template <typename T>
void group_shared_forward(const GroupSharedView<T>& layer, int64_t B, std::span<const T> h,
                          std::span<T> z);

// Backward to weights: dW[l, j] = sum_b dz[b, l] * h[b, idx[l / g][j]], db[l] = sum_b dz[b, l].
// dW and db are OVERWRITTEN (one batch's gradient; an optimizer consumes it before the next).
// Reads only the layer's shape and indices, not its weights.
template <typename T>
void group_shared_backward_weights(const GroupSharedView<T>& layer, int64_t B, std::span<const T> h,
                                   std::span<const T> dz, std::span<T> dweights,
                                   std::span<T> dbias);

// Backward to inputs: dh[b, idx[G][j]] += sum_{l in G} dz[b, l] * W[l, j].
// dh is ACCUMULATED INTO, not overwritten: the dense head (and other shards of the tail) add
// their share to the same dh, so the caller zeroes it once per step.
template <typename T>
void group_shared_backward_inputs(const GroupSharedView<T>& layer, int64_t B, std::span<const T> dz,
                                  std::span<T> dh);

}  // namespace haste
