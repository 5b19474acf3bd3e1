// CPU kernels of the group-shared fixed fan-in layer (see include/haste/group_shared.hpp).
//
// Per group the three products are small dense GEMMs on the gathered tile Hg = h[:, idx[G]]
// (DESIGN.md 3). Forward and backward-to-weights run one group per OpenMP iteration: the group
// owns its columns of z and its rows of dW, so nothing races, and the gathered tile (batch
// rows in chunks of kBatchTile) is built once and reused by all g labels of the group.
// Backward-to-inputs scatters into shared features of dh, so it is parallel over batch rows
// instead (see group_shared_backward_inputs).
#include <haste/error.hpp>
#include <haste/group_shared.hpp>

#include <omp.h>

#include <algorithm>
#include <limits>

#include "cpu/vector_ops.hpp"

namespace haste {
namespace {

// Rows of the gathered tile: kBatchTile * k values stay in L1/L2 while g labels reuse them.
constexpr int64_t kBatchTile = 64;

// Below this many multiply-adds (B * L_tail * k) a kernel runs on the calling thread: waking a
// thread team costs microseconds (milliseconds on a loaded machine), more than the work.
constexpr int64_t kMinParallelWork = int64_t{1} << 14;

bool worth_parallel(const GroupSharedShape& shape, int64_t B) {
  return B * shape.labels() * shape.k >= kMinParallelWork;
}

void check_size(const char* function, const char* name, size_t size, int64_t expected,
                const char* formula) {
  check(static_cast<int64_t>(size) == expected, "{}: {} has {} elements, expected {} = {}",
        function, name, size, formula, expected);
}

template <typename T>
void check_layer(const char* function, const GroupSharedView<T>& layer, int64_t B,
                 bool needs_weights) {
  const GroupSharedShape& s = layer.shape;
  s.validate();
  check(B >= 0, "{}: batch size B = {} is negative", function, B);
  check_size(function, "indices", layer.indices.size(), s.G * s.k, "G * k");
  if (needs_weights) {
    check_size(function, "weights", layer.weights.size(), s.labels() * s.k, "L_tail * k");
    check_size(function, "bias", layer.bias.size(), s.labels(), "L_tail");
  }
  validate_group_indices(s, layer.indices);
}

// Copies rows [b0, b0 + rows) of h, restricted to a group's k features, into `tile` [rows, k].
template <typename T>
void gather_tile(const T* h, int64_t d, int64_t b0, int64_t rows, const int32_t* group_indices,
                 int64_t k, T* tile) {
  for (int64_t r = 0; r < rows; ++r) cpu::gather(h + (b0 + r) * d, group_indices, tile + r * k, k);
}

// The loop forward and backward-to-weights share: groups spread over threads (a group owns its
// outputs), and per group the batch in chunks of kBatchTile rows, each gathered once into a
// thread-local tile Hg [rows, k]. Calls start_group(group), then tile_body(group, b0, rows, hg)
// for every chunk.
template <typename T, typename StartGroup, typename TileBody>
void for_each_gathered_tile(const GroupSharedView<T>& layer, int64_t B, const T* h,
                            StartGroup&& start_group, TileBody&& tile_body) {
  const int64_t k = layer.shape.k;
#pragma omp parallel if (worth_parallel(layer.shape, B))
  {
    std::vector<T> tile(kBatchTile * k);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < layer.shape.G; ++group) {
      start_group(group);
      const int32_t* group_indices = layer.indices.data() + group * k;
      for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
        const int64_t rows = std::min(kBatchTile, B - b0);
        gather_tile(h, layer.shape.d, b0, rows, group_indices, k, tile.data());
        tile_body(group, b0, rows, static_cast<const T*>(tile.data()));
      }
    }
  }
}

// Small dense products on one group's tile (row strides: hg and w k, z and dz ldz). Each
// blocks four batch rows or four labels together, so one loaded vector feeds four multiply-adds.

// z[r, l] = bias[l] + dot(hg[r], w[l]) for r < rows, l < g: Zg = Hg Wg^T + bias.
template <typename T>
void tile_forward(const T* hg, int64_t rows, const T* w, const T* bias, int64_t g, int64_t k, T* z,
                  int64_t ldz) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* h4 = hg + r * k;
    for (int64_t l = 0; l < g; ++l) {
      T sums[4];
      cpu::dot4(h4, h4 + k, h4 + 2 * k, h4 + 3 * k, w + l * k, k, sums);
      for (int64_t i = 0; i < 4; ++i) z[(r + i) * ldz + l] = bias[l] + sums[i];
    }
  }
  for (; r < rows; ++r) {
    for (int64_t l = 0; l < g; ++l) z[r * ldz + l] = bias[l] + cpu::dot(hg + r * k, w + l * k, k);
  }
}

// dw[l] += sum_r dz[r, l] * hg[r] and db[l] += sum_r dz[r, l]: dWg += dZg^T Hg.
template <typename T>
void tile_backward_weights(const T* hg, int64_t rows, const T* dz, int64_t ldz, int64_t g,
                           int64_t k, T* dw, T* db) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* h4 = hg + r * k;
    for (int64_t l = 0; l < g; ++l) {
      const T a[4] = {dz[r * ldz + l], dz[(r + 1) * ldz + l], dz[(r + 2) * ldz + l],
                      dz[(r + 3) * ldz + l]};
      db[l] += (a[0] + a[1]) + (a[2] + a[3]);
      cpu::axpy4(a, h4, h4 + k, h4 + 2 * k, h4 + 3 * k, dw + l * k, k);
    }
  }
  for (; r < rows; ++r) {
    for (int64_t l = 0; l < g; ++l) {
      db[l] += dz[r * ldz + l];
      cpu::axpy(dz[r * ldz + l], hg + r * k, dw + l * k, k);
    }
  }
}

// out = sum_l dz_row[l] * w[l]: one row of dZg Wg, the group's share of a row of dh.
template <typename T>
void row_backward_inputs(const T* dz_row, const T* w, int64_t g, int64_t k, T* out) {
  std::fill_n(out, k, T(0));
  int64_t l = 0;
  for (; l + 4 <= g; l += 4) {
    const T* w4 = w + l * k;
    cpu::axpy4(dz_row + l, w4, w4 + k, w4 + 2 * k, w4 + 3 * k, out, k);
  }
  for (; l < g; ++l) cpu::axpy(dz_row[l], w + l * k, out, k);
}

}  // namespace

void GroupSharedShape::validate() const {
  check(d >= 1, "group-shared layer: d = {} must be at least 1", d);
  check(g >= 1, "group-shared layer: g = {} labels per group must be at least 1", g);
  check(G >= 0, "group-shared layer: G = {} groups must not be negative", G);
  check(k >= 1 && k <= d, "group-shared layer: fan-in k = {} must be in [1, d = {}]", k, d);
  check(d <= std::numeric_limits<int32_t>::max(),
        "group-shared layer: d = {} does not fit the int32 feature indices", d);
  int64_t labels = 0, weights = 0;
  check(!__builtin_mul_overflow(G, g, &labels) && !__builtin_mul_overflow(labels, k, &weights),
        "group-shared layer: G * g * k = {} * {} * {} overflows int64", G, g, k);
}

void validate_group_indices(const GroupSharedShape& shape, std::span<const int32_t> indices) {
  shape.validate();
  check_size("group-shared layer", "indices", indices.size(), shape.G * shape.k, "G * k");
  for (int64_t group = 0; group < shape.G; ++group) {
    const int32_t* row = indices.data() + group * shape.k;
    for (int64_t j = 0; j < shape.k; ++j) {
      check(row[j] >= 0 && row[j] < shape.d,
            "group-shared layer: group {} slot {} has feature index {}, outside [0, d = {})", group,
            j, row[j], shape.d);
      check(j == 0 || row[j - 1] < row[j],
            "group-shared layer: group {} feature indices must be sorted and distinct, but "
            "slot {} has {} after {}",
            group, j, row[j], row[j - 1]);
    }
  }
}

template <typename T>
GroupSharedParams<T>::GroupSharedParams(const GroupSharedShape& shape_in) : shape(shape_in) {
  shape.validate();
  indices.resize(shape.G * shape.k);
  for (int64_t group = 0; group < shape.G; ++group) {
    for (int64_t j = 0; j < shape.k; ++j) indices[group * shape.k + j] = static_cast<int32_t>(j);
  }
  weights.assign(shape.labels() * shape.k, T(0));
  bias.assign(shape.labels(), T(0));
}

template <typename T>
void group_shared_forward(const GroupSharedView<T>& layer, int64_t B, std::span<const T> h,
                          std::span<T> z) {
  constexpr const char* kFunction = "group_shared_forward";
  check_layer(kFunction, layer, B, /*needs_weights=*/true);
  const int64_t d = layer.shape.d, g = layer.shape.g, k = layer.shape.k;
  const int64_t L = layer.shape.labels();
  check_size(kFunction, "h", h.size(), B * d, "B * d");
  check_size(kFunction, "z", z.size(), B * L, "B * L_tail");

  for_each_gathered_tile(
      layer, B, h.data(), [](int64_t) {},
      [&](int64_t group, int64_t b0, int64_t rows, const T* hg) {
        tile_forward(hg, rows, layer.weights.data() + group * g * k, layer.bias.data() + group * g,
                     g, k, z.data() + b0 * L + group * g, L);
      });
}

template <typename T>
void group_shared_backward_weights(const GroupSharedView<T>& layer, int64_t B, std::span<const T> h,
                                   std::span<const T> dz, std::span<T> dweights,
                                   std::span<T> dbias) {
  constexpr const char* kFunction = "group_shared_backward_weights";
  check_layer(kFunction, layer, B, /*needs_weights=*/false);
  const int64_t d = layer.shape.d, g = layer.shape.g, k = layer.shape.k;
  const int64_t L = layer.shape.labels();
  check_size(kFunction, "h", h.size(), B * d, "B * d");
  check_size(kFunction, "dz", dz.size(), B * L, "B * L_tail");
  check_size(kFunction, "dweights", dweights.size(), L * k, "L_tail * k");
  check_size(kFunction, "dbias", dbias.size(), L, "L_tail");

  // dW and db are overwritten: each group zeroes its own rows, then accumulates over the batch.
  for_each_gathered_tile(
      layer, B, h.data(),
      [&](int64_t group) {
        std::fill_n(dweights.data() + group * g * k, g * k, T(0));
        std::fill_n(dbias.data() + group * g, g, T(0));
      },
      [&](int64_t group, int64_t b0, int64_t rows, const T* hg) {
        tile_backward_weights(hg, rows, dz.data() + b0 * L + group * g, L, g, k,
                              dweights.data() + group * g * k, dbias.data() + group * g);
      });
}

// Parallel over batch rows: each thread owns a contiguous block of rows of dh, so the
// scatter-adds into features shared by many groups never race and need neither atomics nor
// per-thread copies of dh (which would cost threads * B * d memory and a reduction pass).
// Within its block a thread walks the groups in order, so each group's weights Wg (g * k
// values) are loaded once and stay in L1 while the thread runs over its rows; the weights are
// thus streamed once per thread. The cost: a batch smaller than the thread count leaves threads
// idle, which only matters for tiny batches.
template <typename T>
void group_shared_backward_inputs(const GroupSharedView<T>& layer, int64_t B, std::span<const T> dz,
                                  std::span<T> dh) {
  constexpr const char* kFunction = "group_shared_backward_inputs";
  check_layer(kFunction, layer, B, /*needs_weights=*/true);
  const int64_t d = layer.shape.d, G = layer.shape.G, g = layer.shape.g, k = layer.shape.k;
  const int64_t L = layer.shape.labels();
  check_size(kFunction, "dz", dz.size(), B * L, "B * L_tail");
  check_size(kFunction, "dh", dh.size(), B * d, "B * d");

#pragma omp parallel if (worth_parallel(layer.shape, B))
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t thread = omp_get_thread_num();
    const int64_t block = (B + threads - 1) / threads;
    const int64_t row_begin = std::min(B, thread * block);
    const int64_t row_end = std::min(B, row_begin + block);
    std::vector<T> dhg(k);  // one row of dZg Wg, before it is scattered into dh
    for (int64_t group = 0; group < G && row_begin < row_end; ++group) {
      const int32_t* group_indices = layer.indices.data() + group * k;
      const T* w = layer.weights.data() + group * g * k;
      for (int64_t b = row_begin; b < row_end; ++b) {
        row_backward_inputs(dz.data() + b * L + group * g, w, g, k, dhg.data());
        cpu::scatter_add(dhg.data(), group_indices, dh.data() + b * d, k);
      }
    }
  }
}

#define HASTE_INSTANTIATE_GROUP_SHARED(T)                                                       \
  template struct GroupSharedParams<T>;                                                         \
  template void group_shared_forward<T>(const GroupSharedView<T>&, int64_t, std::span<const T>, \
                                        std::span<T>);                                          \
  template void group_shared_backward_weights<T>(const GroupSharedView<T>&, int64_t,            \
                                                 std::span<const T>, std::span<const T>,        \
                                                 std::span<T>, std::span<T>);                   \
  template void group_shared_backward_inputs<T>(const GroupSharedView<T>&, int64_t,             \
                                                std::span<const T>, std::span<T>);

HASTE_INSTANTIATE_GROUP_SHARED(float)
HASTE_INSTANTIATE_GROUP_SHARED(double)

}  // namespace haste
