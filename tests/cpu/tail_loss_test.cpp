// BCE-with-logits for a tail block against the textbook formula, at extreme logits, and with
// targets that belong to other blocks or to padding labels.
#include <haste/error.hpp>
#include <haste/tail_loss.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using haste::test_util::expect_error;
using haste::test_util::poisoned;
using haste::test_util::RandomTensors;

// -(y log s + (1 - y) log(1 - s)) with s = sigmoid(z), in long double: fine for moderate z.
long double textbook_bce(long double z, long double y) {
  long double s = 1.0L / (1.0L + std::exp(-z));
  return -(y * std::log(s) + (1.0L - y) * std::log(1.0L - s));
}

// Target value of target column `column` in row `row`, 0 when absent.
double target_at(const CsrMatrix& targets, int64_t row, int64_t column) {
  for (int64_t i = targets.indptr[row]; i < targets.indptr[row + 1]; ++i) {
    if (targets.indices[i] == column) return targets.has_values() ? targets.values[i] : 1.0;
  }
  return 0.0;
}

template <typename T>
void check_against_textbook(bool soft) {
  const int64_t B = 7, L = 23, head = 5, padding = 2, after = 4;
  RandomTensors random(soft ? 2 : 1);
  const std::vector<T> z = random.tensor<T>(B * L, -8.0, 8.0);
  // Columns: head labels, this block's real labels, then labels of another block; the block's
  // padding columns have no target column at all.
  const CsrMatrix targets = random.sparse_targets(B, head + L - padding + after, 0.3, soft);
  const TailLabelRange range{head, L - padding};

  std::vector<T> dz = poisoned<T>(B * L);
  const double loss = bce_with_logits_tail<T>(B, L, z, targets, range, dz);

  long double want_loss = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) {
      if (l >= range.count) {
        EXPECT_EQ(dz[b * L + l], T(0)) << "padding label " << l;
        continue;
      }
      const double y = target_at(targets, b, head + l);
      const long double zl = z[b * L + l];
      want_loss += textbook_bce(zl, y);
      const double want_dz = static_cast<double>((1.0L / (1.0L + std::exp(-zl)) - y) / B);
      EXPECT_NEAR(dz[b * L + l], want_dz, 4 * std::numeric_limits<T>::epsilon() / B)
          << "row " << b << " label " << l;
    }
  }
  want_loss /= B;
  EXPECT_NEAR(loss, static_cast<double>(want_loss),
              16 * std::numeric_limits<T>::epsilon() * static_cast<double>(want_loss));
}

TEST(TailLoss, MatchesTextbookFormulaFloat) { check_against_textbook<float>(false); }
TEST(TailLoss, MatchesTextbookFormulaDouble) { check_against_textbook<double>(false); }
TEST(TailLoss, SoftTargetsMatchTextbookFormula) {
  check_against_textbook<float>(true);
  check_against_textbook<double>(true);
}

TEST(TailLoss, StableAtExtremeLogits) {
  // Row 0 has target label 1 and 3; logits far beyond where exp overflows in float.
  const int64_t B = 1, L = 4;
  CsrMatrix targets;
  targets.cols = L;
  targets.append_row(std::vector<int32_t>{1, 3}, {});
  const std::vector<float> z{1e4f, -1e4f, -1e4f, 30.0f};
  std::vector<float> dz = poisoned<float>(B * L);
  const double loss = bce_with_logits_tail<float>(B, L, z, targets, {0, L}, dz);
  // Wrong with confidence costs |z|; right with confidence costs nothing; y = 1 at z = 30
  // costs log1p(exp(-30)).
  EXPECT_NEAR(loss, 1e4 + 1e4 + std::log1p(std::exp(-30.0)), 1e-3);
  EXPECT_EQ(dz[0], 1.0f);
  EXPECT_EQ(dz[1], -1.0f);
  EXPECT_EQ(dz[2], 0.0f);
  // sigmoid(30) rounds to 1 in float, yet the gradient keeps its relative precision.
  EXPECT_NEAR(dz[3], -std::exp(-30.0), 1e-6 * std::exp(-30.0));
}

TEST(TailLoss, EmptyBatchAndEmptyBlock) {
  CsrMatrix none;
  none.cols = 10;
  std::vector<float> empty;
  EXPECT_EQ(bce_with_logits_tail<float>(0, 5, empty, none, {0, 5}, empty), 0.0);
  none.append_row({}, {});
  EXPECT_EQ(bce_with_logits_tail<float>(1, 0, empty, none, {3, 0}, empty), 0.0);
}

TEST(TailLoss, RejectsMismatchedInputs) {
  RandomTensors random(3);
  const CsrMatrix targets = random.sparse_targets(2, 6, 0.5);
  const std::vector<float> z(2 * 4);
  std::vector<float> dz(2 * 4), short_dz(3);
  expect_error(
      [&] {
        bce_with_logits_tail<float>(3, 4, z, targets, {0, 4}, dz);
      },
      "z has 8 elements, expected B * L_tail = 12");
  expect_error(
      [&] {
        bce_with_logits_tail<float>(2, 4, z, targets, {0, 4}, short_dz);
      },
      "dz has 3 elements");
  const CsrMatrix three_rows = random.sparse_targets(3, 6, 0.5);
  expect_error(
      [&] {
        bce_with_logits_tail<float>(2, 4, z, three_rows, {0, 4}, dz);
      },
      "targets have 3 rows");
  expect_error(
      [&] {
        bce_with_logits_tail<float>(2, 4, z, targets, {3, 4}, dz);
      },
      "label range [3, 7) goes past the targets' 6 columns");
  expect_error([&] { bce_with_logits_tail<float>(2, 4, z, targets, {0, 5}, dz); }, "5 real labels");
  expect_error([&] { bce_with_logits_tail<float>(2, 4, z, targets, {-1, 4}, dz); }, "starts at -1");
  CsrMatrix bad_values = targets;
  bad_values.values.assign(1, 0.5f);
  expect_error(
      [&] {
        bce_with_logits_tail<float>(2, 4, z, bad_values, {0, 4}, dz);
      },
      "1 values for");
}

}  // namespace
}  // namespace haste
