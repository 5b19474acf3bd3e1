// Hand-computed cases for every metric and the propensity model. The cross-check against an
// independent implementation (napkinXC) is tests/python/test_metrics_vs_napkinxc.py.
#include <gtest/gtest.h>

#include <cmath>
#include <haste/error.hpp>
#include <haste/metrics.hpp>
#include <limits>
#include <utility>

#include "test_util/csr_builder.hpp"

namespace haste {
namespace {

constexpr double kTolerance = 1e-12;

// Discount of rank r: 1 / log2(r + 1).
double discount(int rank) { return 1.0 / std::log2(rank + 1.0); }

Rankings rankings(int64_t cols, const std::vector<std::vector<int32_t>>& rows) {
  Rankings result;
  result.cols = cols;
  for (const auto& row : rows) result.append_row(row);
  return result;
}

void expect_all_near(const std::array<double, kMaxK>& actual,
                     const std::array<double, kMaxK>& expected) {
  for (int i = 0; i < kMaxK; ++i)
    EXPECT_NEAR(actual[i], expected[i], kTolerance) << "at k=" << i + 1;
}

TEST(JainPropensities, MatchTheFormulaOfJainEtAl) {
  // N = 100, A = 0.55, B = 1.5: C = (ln 100 - 1) * 2.5^0.55 = 5.96760...
  std::vector<int64_t> counts = {0, 1, 10, 100};
  std::vector<double> p = jain_propensities(counts, 100);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_NEAR(p[0], 0.17317032497262708, kTolerance);  // 1 / (1 + C * 1.5^-0.55)
  EXPECT_NEAR(p[1], 0.21714724095162588, kTolerance);
  EXPECT_NEAR(p[2], 0.3910173106040255, kTolerance);
  EXPECT_NEAR(p[3], 0.6802026944083869, kTolerance);
}

TEST(JainPropensities, UseTheGivenParameters) {
  std::vector<int64_t> counts = {3};
  EXPECT_NEAR(jain_propensities(counts, 1000, 0.5, 0.4)[0], 0.20872725081360902, kTolerance);
  EXPECT_NEAR(jain_propensities(counts, 1000, 0.6, 2.6)[0], 0.18076601328114503, kTolerance);
}

TEST(JainPropensities, FromATrainingLabelMatrixCountColumns) {
  CsrMatrix train = test::csr_pattern(3, {{0, 2}, {2}, {2}, {0}});
  EXPECT_EQ(label_counts(train), (std::vector<int64_t>{2, 0, 3}));
  std::vector<int64_t> counts = {2, 0, 3};
  EXPECT_EQ(jain_propensities(train, 0.6, 2.6), jain_propensities(counts, 4, 0.6, 2.6));
}

TEST(JainPropensities, RejectDegenerateInputs) {
  std::vector<int64_t> counts = {0};
  EXPECT_THROW(jain_propensities(counts, 0), Error);
  EXPECT_THROW(jain_propensities(counts, 1), Error);               // log N < 1 makes C negative
  EXPECT_THROW(jain_propensities(counts, 100, 0.55, 0.0), Error);  // N_l + B = 0
}

TEST(TopK, RanksByScoreAndBreaksTiesByLowerLabelId) {
  CsrMatrix scores =
      test::csr_with_values(6, {{{0, 0.5f}, {1, 0.9f}, {2, 0.9f}, {3, 0.1f}, {5, 0.9f}}});
  Rankings ranked = top_k(scores, 4);
  ASSERT_EQ(ranked.rows, 1);
  std::vector<int32_t> row(ranked.row(0).begin(), ranked.row(0).end());
  EXPECT_EQ(row, (std::vector<int32_t>{1, 2, 5, 0}));
  EXPECT_EQ(ranked.scores, (std::vector<float>{0.9f, 0.9f, 0.9f, 0.5f}));  // each label's score
}

TEST(Rankings, ScoresGoWithEveryRowOrWithNone) {
  Rankings scored;
  scored.append_row(std::vector<int32_t>{2, 0}, std::vector<float>{1.5f, -1.0f});
  scored.append_row({});  // an empty row fits either way
  EXPECT_TRUE(scored.has_scores());
  EXPECT_EQ(scored.row_scores(0)[1], -1.0f);
  EXPECT_THROW(scored.append_row(std::vector<int32_t>{1}), Error);
  Rankings bare;
  bare.append_row(std::vector<int32_t>{1});
  EXPECT_FALSE(bare.has_scores());
  EXPECT_TRUE(bare.row_scores(0).empty());
  EXPECT_THROW(bare.append_row(std::vector<int32_t>{1}, std::vector<float>{0.5f}), Error);
}

TEST(TopK, KeepsShortRowsWholeAndEmptyRowsEmpty) {
  CsrMatrix scores = test::csr_with_values(4, {{{3, -1.0f}, {1, 2.0f}}, {}});
  Rankings ranked = top_k(scores, 5);
  EXPECT_EQ(std::vector<int32_t>(ranked.row(0).begin(), ranked.row(0).end()),
            (std::vector<int32_t>{1, 3}));
  EXPECT_TRUE(ranked.row(1).empty());
}

TEST(TopK, RejectsNaNScores) {
  CsrMatrix scores = test::csr_with_values(2, {{{0, std::numeric_limits<float>::quiet_NaN()}}});
  EXPECT_THROW(top_k(scores), Error);
}

TEST(Evaluate, PrecisionAndNdcgOfOneRow) {
  // Truth {1, 3}; hits at ranks 1 and 3.
  MetricReport report = evaluate(rankings(5, {{3, 0, 1, 4, 2}}), test::csr_pattern(5, {{1, 3}}));
  EXPECT_EQ(report.rows, 1);
  expect_all_near(report.precision, {1.0, 1.0 / 2, 2.0 / 3, 2.0 / 4, 2.0 / 5});
  const double ideal = 1 + discount(2);  // two relevant labels
  expect_all_near(report.ndcg, {1.0, 1.0 / ideal, (1 + discount(3)) / ideal,
                                (1 + discount(3)) / ideal, (1 + discount(3)) / ideal});
  EXPECT_FALSE(report.has_propensity_scored);
}

TEST(Evaluate, ScoreMatrixIsRankedWithTiesToTheLowerId) {
  // Labels 1 and 2 tie for first; 1 wins, so truth {1} scores P@1 = 1 and truth {2} scores 0.
  CsrMatrix scores =
      test::csr_with_values(3, {{{0, 0.5f}, {1, 0.9f}, {2, 0.9f}}, {{1, 0.7f}, {2, 0.7f}}});
  MetricReport report = evaluate(scores, test::csr_pattern(3, {{1}, {2}}));
  EXPECT_NEAR(report.precision[0], 0.5, kTolerance);
  EXPECT_NEAR(report.precision[1], (1.0 / 2 + 1.0 / 2) / 2, kTolerance);
  EXPECT_NEAR(report.ndcg[1], (1.0 + discount(2)) / 2, kTolerance);
}

TEST(Evaluate, RowsWithFewerThanKPredictionsStillDivideByK) {
  MetricReport report = evaluate(rankings(4, {{1}}), test::csr_pattern(4, {{1, 2}}));
  expect_all_near(report.precision, {1.0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5});
  const double ideal2 = 1 + discount(2);
  expect_all_near(report.ndcg, {1.0, 1 / ideal2, 1 / ideal2, 1 / ideal2, 1 / ideal2});
}

TEST(Evaluate, NdcgNormalisesByTheTrueLabelCountWhenKIsLarger) {
  // One true label found at rank 2: the ideal DCG stays 1 for every k >= 1.
  MetricReport report = evaluate(rankings(4, {{0, 2, 3}}), test::csr_pattern(4, {{2}}));
  expect_all_near(report.ndcg, {0.0, discount(2), discount(2), discount(2), discount(2)});
  expect_all_near(report.precision, {0.0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5});
}

TEST(Evaluate, RowsWithNoTrueLabelsCountAsZeroButDoNotChangePsMetrics) {
  std::vector<double> propensities = {0.5, 0.25};
  MetricReport report =
      evaluate(rankings(2, {{0}, {0, 1}}), test::csr_pattern(2, {{0}, {}}), propensities);
  EXPECT_EQ(report.rows, 2);
  expect_all_near(report.precision, {0.5, 0.25, 1.0 / 6, 0.125, 0.1});
  expect_all_near(report.ndcg, {0.5, 0.5, 0.5, 0.5, 0.5});
  // Only row 0 adds to the PS sums, and it is perfect.
  expect_all_near(report.psp, {1, 1, 1, 1, 1});
  expect_all_near(report.psndcg, {1, 1, 1, 1, 1});
}

TEST(Evaluate, PsMetricsAreARatioOfSumsOverBestAchievable) {
  // Inverse propensities q = {2, 4, 1, 10}.
  std::vector<double> propensities = {0.5, 0.25, 1.0, 0.1};
  // Row 0: truth {0, 1, 2}, hits q=1 at rank 1 and q=2 at rank 2; best order is 4, 2, 1.
  // Row 1: truth {3}, hit q=10 at rank 1: perfect.
  MetricReport report =
      evaluate(rankings(4, {{2, 0, 3}, {3}}), test::csr_pattern(4, {{0, 1, 2}, {3}}), propensities);
  ASSERT_TRUE(report.has_propensity_scored);
  // PSP@1 = (1 + 10) / (4 + 10); a mean of per-row ratios would be (1/4 + 1) / 2 instead.
  EXPECT_NEAR(report.psp[0], 11.0 / 14, kTolerance);
  EXPECT_NEAR(report.psp[1], ((1 + 2) / 2.0 + 10 / 2.0) / ((4 + 2) / 2.0 + 10 / 2.0), kTolerance);
  EXPECT_NEAR(report.psp[2], ((1 + 2) / 3.0 + 10 / 3.0) / ((4 + 2 + 1) / 3.0 + 10 / 3.0),
              kTolerance);
  EXPECT_NEAR(report.psp[4], ((1 + 2) / 5.0 + 10 / 5.0) / ((4 + 2 + 1) / 5.0 + 10 / 5.0),
              kTolerance);
  // PSnDCG@k: each row's PSDCG divided by its unit-gain ideal DCG, then the ratio of sums.
  const double d2 = discount(2), d3 = discount(3);
  EXPECT_NEAR(report.psndcg[0], (1.0 + 10) / (4.0 + 10), kTolerance);
  const double ideal2 = 1 + d2, ideal3 = 1 + d2 + d3;
  EXPECT_NEAR(report.psndcg[1], ((1 + 2 * d2) / ideal2 + 10) / ((4 + 2 * d2) / ideal2 + 10),
              kTolerance);
  EXPECT_NEAR(report.psndcg[2],
              ((1 + 2 * d2) / ideal3 + 10) / ((4 + 2 * d2 + 1 * d3) / ideal3 + 10), kTolerance);
  EXPECT_NEAR(report.psndcg[4], report.psndcg[2], kTolerance);  // nothing changes after rank 3
}

TEST(Evaluate, PerfectPredictionsScoreOneOnPsMetrics) {
  std::vector<double> propensities = {0.9, 0.2, 0.5, 0.7};
  // Best first by inverse propensity: label 1 (5), 2 (2), 3, 0.
  MetricReport report = evaluate(rankings(4, {{1, 2, 3, 0}, {2, 0}}),
                                 test::csr_pattern(4, {{0, 1, 2, 3}, {0, 2}}), propensities);
  expect_all_near(report.psp, {1, 1, 1, 1, 1});
  expect_all_near(report.psndcg, {1, 1, 1, 1, 1});
  expect_all_near(report.ndcg, {1, 1, 1, 1, 1});
}

TEST(Evaluate, PsMetricsAreZeroWhenNoRowHasTrueLabels) {
  std::vector<double> propensities = {0.5, 0.5};
  MetricReport report = evaluate(rankings(2, {{0}}), test::csr_pattern(2, {{}}), propensities);
  expect_all_near(report.psp, {0, 0, 0, 0, 0});
  expect_all_near(report.precision, {0, 0, 0, 0, 0});
}

TEST(Evaluate, OnlyTheFirstFiveRankedLabelsCount) {
  MetricReport report = evaluate(rankings(7, {{0, 1, 2, 3, 4, 5}}), test::csr_pattern(7, {{5}}));
  expect_all_near(report.precision, {0, 0, 0, 0, 0});
}

TEST(Evaluate, NamedValuesUseTheReportNames) {
  MetricReport plain = evaluate(rankings(2, {{0}}), test::csr_pattern(2, {{0}}));
  auto names = plain.named_values();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names[0].first, "P@1");
  EXPECT_EQ(names[9].first, "nDCG@5");
  std::vector<double> propensities = {0.5, 0.5};
  auto scored =
      evaluate(rankings(2, {{0}}), test::csr_pattern(2, {{0}}), propensities).named_values();
  ASSERT_EQ(scored.size(), 20u);
  EXPECT_EQ(scored[10].first, "PSP@1");
  EXPECT_EQ(scored[19].first, "PSnDCG@5");
  EXPECT_DOUBLE_EQ(scored[19].second, 1.0);
}

// Expects a haste::Error whose message contains `needle`.
template <typename Call>
void expect_error(Call call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Evaluate, RejectsMismatchedOrOutOfRangeInputs) {
  CsrMatrix truth = test::csr_pattern(3, {{0}, {1}});
  expect_error([&] { evaluate(rankings(3, {{0}}), truth); }, "1 rows but the ground truth has 2");
  expect_error([&] { evaluate(rankings(4, {{0}, {1}}), truth); }, "over 4 labels");
  expect_error([&] { evaluate(rankings(3, {{0}, {3}}), truth); }, "prediction row 1 has label 3");
  expect_error([&] { evaluate(rankings(3, {{0}, {-1}}), truth); }, "has label -1");
  expect_error([&] { evaluate(rankings(3, {{0, 2, 0}, {1}}), truth); }, "ranks label 0 twice");
  expect_error(
      [&] {
        evaluate(rankings(3, {{0}, {1}}), test::csr_pattern(3, {{0}, {7}}));
      },
      "ground-truth row 1 has label 7");
  std::vector<double> two = {0.5, 0.5};
  expect_error([&] { evaluate(rankings(3, {{0}, {1}}), truth, two); }, "2 propensities for 3");
  std::vector<double> negative = {0.5, -0.5, 0.5};
  expect_error([&] { evaluate(rankings(3, {{0}, {1}}), truth, negative); }, "label 1 is -0.5");
  expect_error([&] { evaluate(rankings(3, {}), test::csr_pattern(3, {})); }, "no rows");
}

}  // namespace
}  // namespace haste
