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

// hT [d, B] = h^T for h [B, d]: a group's inputs are then whole rows of hT, which copy and add
// at vector width, where gathering from rows of h took one scalar load per value.
void transpose_input(std::span<const float> h, int64_t B, int64_t d, std::vector<float>& hT) {
  hT.resize(d * B);
  constexpr int64_t kBlock = 32;  // a block of both stays in L1
  for (int64_t b0 = 0; b0 < B; b0 += kBlock) {
    for (int64_t f0 = 0; f0 < d; f0 += kBlock) {
      for (int64_t b = b0; b < std::min(B, b0 + kBlock); ++b) {
        for (int64_t f = f0; f < std::min(d, f0 + kBlock); ++f) hT[f * B + b] = h[b * d + f];
      }
    }
  }
}

// Hg^T [k, B] = rows idx of hT [d, B].
void gather_group(const float* hT, int64_t B, const int32_t* idx, int64_t k, float* hgT) {
  for (int64_t j = 0; j < k; ++j) std::copy_n(hT + idx[j] * B, B, hgT + j * B);
}

// Zg [B, g] (row stride ldz) = Hg Wg^T = (Hg^T)^T Wg^T, without the bias.
void group_products(const GroupSharedView<float>& tail, int64_t group, int64_t B, const float* hgT,
                    float* zg, int64_t ldz) {
  const int64_t g = tail.shape.g, k = tail.shape.k;
  blas::gemm_serial(Op::transpose, Op::transpose, B, g, k, 1.0f, hgT, B,
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
  std::vector<float> hT;
  transpose_input(h, B, s.d, hT);
#pragma omp parallel
  {
    std::vector<float> hgT(s.k * B);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      gather_group(hT.data(), B, tail.indices.data() + group * s.k, s.k, hgT.data());
      float* zg = z.data() + group * s.g;
      group_products(tail, group, B, hgT.data(), zg, s.labels());
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
  transpose_input(h, B, d, hT_);
  // One zeroed copy of dh^T per thread that may join (a team can be smaller than asked for).
  const int threads = omp_get_max_threads();
  thread_dhT_.resize(threads);
  for (std::vector<float>& copy : thread_dhT_) copy.assign(d * B, 0.0f);
  const float scale = 1.0f / static_cast<float>(B);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float>& my_dhT = thread_dhT_[omp_get_thread_num()];
    std::vector<float> hgT(k * B), zg(B * g), dhgT(k * B);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      const int32_t* idx = tail.indices.data() + group * k;
      const float* wg = tail.weights.data() + group * g * k;
      gather_group(hT_.data(), B, idx, k, hgT.data());
      group_products(tail, group, B, hgT.data(), zg.data(), g);
      const std::span<const BlockPositive> positives(
          positives_.data() + group_offsets_[group],
          static_cast<size_t>(group_offsets_[group + 1] - group_offsets_[group]));
      const int64_t real = std::clamp<int64_t>(real_labels - group * g, 0, g);
      group_loss_[group] = bce_block_in_place(zg.data(), B, g, g, real,
                                              tail.bias.data() + group * g, positives, scale);
      // zg now holds dZg.
      blas::gemm_serial(Op::transpose, Op::transpose, g, k, B, 1.0f, zg.data(), g, hgT.data(), B,
                        0.0f, dweights.data() + group * g * k, k);
      float* db = dbias.data() + group * g;
      std::fill_n(db, g, 0.0f);
      for (int64_t b = 0; b < B; ++b) cpu::axpy(1.0f, zg.data() + b * g, db, g);
      // dHg^T [k, B] = Wg^T dZg^T, added into the rows idx of dh^T.
      blas::gemm_serial(Op::transpose, Op::transpose, k, B, g, 1.0f, wg, k, zg.data(), g, 0.0f,
                        dhgT.data(), B);
      for (int64_t j = 0; j < k; ++j) {
        cpu::axpy(1.0f, dhgT.data() + j * B, my_dhT.data() + idx[j] * B, B);
      }
      if (!dz.empty()) {
        for (int64_t b = 0; b < B; ++b) {
          std::copy_n(zg.data() + b * g, g, dz.data() + b * ldz + group * g);
        }
      }
    }
    // Sum the threads' copies into dh: each thread owns a stretch of dh's rows and adds the
    // copies in thread order.
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int t = 0; t < threads; ++t) {
        const float* copy = thread_dhT_[t].data() + b;
        for (int64_t f = 0; f < d; ++f) dh[b * d + f] += copy[f * B];
      }
    }
  }
  double loss = 0;
  for (double l : group_loss_) loss += l;
  return loss / static_cast<double>(B);
}

}  // namespace haste::model
