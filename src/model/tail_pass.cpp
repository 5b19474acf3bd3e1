// The tail's group-by-group GEMM pass on the CPU (see tail_pass.hpp).
#include "model/tail_pass.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "cpu/fast_math.hpp"
#include "cpu/vector_ops.hpp"
#include "model/blas.hpp"

namespace haste::model {
namespace {

using blas::Op;

// Hg [B, k] = h[:, idx] for one group (rows of h have stride d).
void gather_group(std::span<const float> h, int64_t B, int64_t d, const int32_t* idx, int64_t k,
                  float* hg) {
  for (int64_t b = 0; b < B; ++b) cpu::gather(h.data() + b * d, idx, hg + b * k, k);
}

// Zg [B, g] (row stride ldz) = Hg Wg^T, without the bias.
void group_products(const GroupSharedView<float>& tail, int64_t group, int64_t B, const float* hg,
                    float* zg, int64_t ldz) {
  const int64_t g = tail.shape.g, k = tail.shape.k;
  blas::gemm_serial(Op::none, Op::transpose, B, g, k, 1.0f, hg, k,
                    tail.weights.data() + group * g * k, k, 0.0f, zg, ldz);
}

}  // namespace

HASTE_VECTOR_CLONES double bce_block_in_place(float* z, int64_t rows, int64_t cols, int64_t ldz,
                                              int64_t real_cols, const float* bias,
                                              std::span<const BlockPositive> positives,
                                              float scale) {
  // The loss is linear in y: every real label as a negative, softplus(z), minus z at the
  // positives, which are read before z is overwritten. The row loop is written for `omp simd`
  // (no libm calls, no branches): it is the engine's hottest loop after the GEMMs.
  double loss = 0;
  for (const BlockPositive& p : positives) loss -= z[p.row * ldz + p.column] + bias[p.column];
  for (int64_t r = 0; r < rows; ++r) {
    float* row = z + r * ldz;
    float row_loss = 0;
#pragma omp simd reduction(+ : row_loss)
    for (int64_t c = 0; c < real_cols; ++c) {
      const float v = row[c] + bias[c];
      const float e = cpu::exp_nonpositive(-std::abs(v));
      row_loss += std::max(v, 0.0f) + cpu::log1p_unit(e);
      // sigmoid(v) = 1 / (1 + e) for v >= 0, e / (1 + e) below: a select between values, not
      // between expressions, so that the loop stays branch-free.
      row[c] = (v >= 0 ? 1.0f : e) / (1.0f + e) * scale;
    }
    std::fill(row + real_cols, row + cols, 0.0f);
    loss += row_loss;
  }
  for (const BlockPositive& p : positives) z[p.row * ldz + p.column] -= scale;
  return loss;
}

void TailPass::logits(const GroupSharedView<float>& tail, int64_t B, std::span<const float> h,
                      std::span<float> z) {
  const GroupSharedShape& s = tail.shape;
#pragma omp parallel
  {
    std::vector<float> hg(B * s.k);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      gather_group(h, B, s.d, tail.indices.data() + group * s.k, s.k, hg.data());
      float* zg = z.data() + group * s.g;
      group_products(tail, group, B, hg.data(), zg, s.labels());
      const float* bias = tail.bias.data() + group * s.g;
      for (int64_t b = 0; b < B; ++b) cpu::axpy(1.0f, bias, zg + b * s.labels(), s.g);
    }
  }
}

void TailPass::collect_positives(const CsrMatrix& targets, int64_t first_label, int64_t real_labels,
                                 int64_t g, int64_t G) {
  // Counting sort of the batch's tail positives by group.
  group_offsets_.assign(G + 1, 0);
  auto for_each_tail_target = [&](auto&& visit) {
    for (int64_t b = 0; b < targets.rows; ++b) {
      for (int32_t label : targets.row_indices(b)) {
        const int64_t slot = label - first_label;
        if (slot >= 0 && slot < real_labels) visit(b, slot);
      }
    }
  };
  for_each_tail_target([&](int64_t, int64_t slot) { ++group_offsets_[slot / g + 1]; });
  for (int64_t group = 0; group < G; ++group) group_offsets_[group + 1] += group_offsets_[group];
  positives_.resize(group_offsets_[G]);
  std::vector<int64_t> next(group_offsets_.begin(), group_offsets_.end() - 1);
  for_each_tail_target([&](int64_t b, int64_t slot) {
    positives_[next[slot / g]++] = {static_cast<int32_t>(b), static_cast<int32_t>(slot % g)};
  });
}

double TailPass::step(const GroupSharedView<float>& tail, int64_t B, std::span<const float> h,
                      const CsrMatrix& targets, int64_t first_label, int64_t real_labels,
                      std::span<float> dweights, std::span<float> dbias, std::span<float> dh,
                      std::span<float> dz, int64_t ldz) {
  const GroupSharedShape& s = tail.shape;
  const int64_t g = s.g, k = s.k, d = s.d;
  collect_positives(targets, first_label, real_labels, g, s.G);
  group_loss_.assign(s.G, 0.0);
  // One zeroed copy of dh per thread that may join (a team can be smaller than asked for).
  const int threads = omp_get_max_threads();
  thread_dh_.resize(threads);
  for (std::vector<float>& copy : thread_dh_) copy.assign(B * d, 0.0f);
  const float scale = 1.0f / static_cast<float>(B);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float>& my_dh = thread_dh_[omp_get_thread_num()];
    std::vector<float> hg(B * k), zg(B * g), dhg(B * k);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      const int32_t* idx = tail.indices.data() + group * k;
      const float* wg = tail.weights.data() + group * g * k;
      gather_group(h, B, d, idx, k, hg.data());
      group_products(tail, group, B, hg.data(), zg.data(), g);
      const std::span<const BlockPositive> positives(
          positives_.data() + group_offsets_[group],
          static_cast<size_t>(group_offsets_[group + 1] - group_offsets_[group]));
      const int64_t real = std::clamp<int64_t>(real_labels - group * g, 0, g);
      group_loss_[group] = bce_block_in_place(zg.data(), B, g, g, real,
                                              tail.bias.data() + group * g, positives, scale);
      // zg now holds dZg.
      blas::gemm_serial(Op::transpose, Op::none, g, k, B, 1.0f, zg.data(), g, hg.data(), k, 0.0f,
                        dweights.data() + group * g * k, k);
      float* db = dbias.data() + group * g;
      std::fill_n(db, g, 0.0f);
      for (int64_t b = 0; b < B; ++b) cpu::axpy(1.0f, zg.data() + b * g, db, g);
      blas::gemm_serial(Op::none, Op::none, B, k, g, 1.0f, zg.data(), g, wg, k, 0.0f, dhg.data(),
                        k);
      for (int64_t b = 0; b < B; ++b) {
        cpu::scatter_add(dhg.data() + b * k, idx, my_dh.data() + b * d, k);
      }
      if (!dz.empty()) {
        for (int64_t b = 0; b < B; ++b) {
          std::copy_n(zg.data() + b * g, g, dz.data() + b * ldz + group * g);
        }
      }
    }
    // Sum the threads' copies into dh: each thread owns a stretch of dh and adds the copies
    // in thread order.
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int t = 0; t < threads; ++t) {
        cpu::axpy(1.0f, thread_dh_[t].data() + b * d, dh.data() + b * d, d);
      }
    }
  }
  double loss = 0;
  for (double l : group_loss_) loss += l;
  return loss / static_cast<double>(B);
}

}  // namespace haste::model
