#include <gtest/gtest.h>

#include <cmath>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <vector>

#include "test_util/csr_builder.hpp"

namespace haste {
namespace {

// Three training rows, four features, four labels (label 3 never occurs):
//   row 0: f0 = 3, f1 = 4        -> unit (0.6, 0.8, 0, 0)     labels {0, 1}
//   row 1: f2 = 2                -> unit (0, 0, 1, 0)         labels {1}
//   row 2: f1 = 1, f3 = 1        -> unit (0, r, 0, r)         labels {0, 2}, r = 1/sqrt(2)
CsrMatrix tiny_features() {
  return test::csr_with_values(4, {{{0, 3.f}, {1, 4.f}}, {{2, 2.f}}, {{1, 1.f}, {3, 1.f}}});
}
CsrMatrix tiny_labels() { return test::csr_pattern(4, {{0, 1}, {1}, {0, 2}}); }

// The hand-computed PIFA vectors, dense (4 labels x 4 features).
std::vector<std::vector<double>> tiny_expected() {
  const double r = 1 / std::sqrt(2.0);
  // label 0 = row 0 + row 2 = (0.6, 0.8 + r, 0, r)
  const double norm0 = std::sqrt(0.36 + (0.8 + r) * (0.8 + r) + 0.5);
  // label 1 = row 0 + row 1 = (0.6, 0.8, 1, 0), norm sqrt(2)
  return {{0.6 / norm0, (0.8 + r) / norm0, 0, r / norm0},
          {0.6 * r, 0.8 * r, r, 0},
          {0, r, 0, r},
          {0, 0, 0, 0}};
}

TEST(Pifa, SparseMatchesHandComputedVectors) {
  const CsrMatrix vectors = pifa_label_vectors(tiny_features(), tiny_labels());
  ASSERT_EQ(vectors.rows, 4);
  ASSERT_EQ(vectors.cols, 4);
  const auto expected = tiny_expected();
  for (int64_t label = 0; label < 4; ++label) {
    std::vector<double> dense(4, 0.0);
    auto indices = vectors.row_indices(label);
    for (size_t j = 0; j < indices.size(); ++j) {
      if (j > 0) {
        EXPECT_LT(indices[j - 1], indices[j]) << "indices must be sorted";
      }
      dense[indices[j]] = vectors.row_values(label)[j];
    }
    for (int f = 0; f < 4; ++f) {
      EXPECT_NEAR(dense[f], expected[label][f], 1e-6) << label << "," << f;
    }
  }
  EXPECT_EQ(vectors.row_indices(3).size(), 0u) << "a label without positives has an empty row";
  EXPECT_EQ(vectors.row_indices(2).size(), 2u) << "only the features the label uses are stored";
}

TEST(Pifa, DenseMatchesHandComputedVectors) {
  const CsrMatrix sparse = tiny_features();
  DenseMatrix features{3, 4, std::vector<float>(12, 0.f)};
  for (int64_t row = 0; row < 3; ++row) {
    for (size_t j = 0; j < sparse.row_indices(row).size(); ++j) {
      features.data[row * 4 + sparse.row_indices(row)[j]] = sparse.row_values(row)[j];
    }
  }
  const DenseMatrix vectors = pifa_label_vectors(features, tiny_labels());
  ASSERT_EQ(vectors.rows, 4);
  ASSERT_EQ(vectors.cols, 4);
  const auto expected = tiny_expected();
  for (int64_t label = 0; label < 4; ++label) {
    for (int f = 0; f < 4; ++f) {
      EXPECT_NEAR(vectors.row(label)[f], expected[label][f], 1e-6) << label << "," << f;
    }
  }
}

TEST(Pifa, LabelValuesAreIgnored) {
  CsrMatrix labels = tiny_labels();
  labels.values.assign(labels.indices.size(), 7.f);
  const CsrMatrix with_values = pifa_label_vectors(tiny_features(), labels);
  const CsrMatrix pattern = pifa_label_vectors(tiny_features(), tiny_labels());
  EXPECT_EQ(with_values.indices, pattern.indices);
  EXPECT_EQ(with_values.values, pattern.values);
}

TEST(Pifa, RejectsBadInputs) {
  const CsrMatrix short_labels = test::csr_pattern(4, {{0}});
  EXPECT_THROW(pifa_label_vectors(tiny_features(), short_labels), Error);

  CsrMatrix bad_label = tiny_labels();
  bad_label.indices[0] = 9;
  EXPECT_THROW(pifa_label_vectors(tiny_features(), bad_label), Error);

  CsrMatrix bad_feature = tiny_features();
  bad_feature.indices[0] = 4;
  EXPECT_THROW(pifa_label_vectors(bad_feature, tiny_labels()), Error);

  CsrMatrix nan_feature = tiny_features();
  nan_feature.values[2] = std::nanf("");
  EXPECT_THROW(pifa_label_vectors(nan_feature, tiny_labels()), Error);
}

TEST(Pifa, ManyLabelsSpanSeveralChunks) {
  // 1000 labels, label l on rows l and l + 1 of 1001 rows with one feature each: label l's
  // vector is the unit vector over features {l, l + 1}. Checks the chunked assembly.
  const int64_t L = 1000;
  CsrMatrix features, labels;
  features.cols = L + 1;
  labels.cols = L;
  for (int32_t row = 0; row <= L; ++row) {
    const int32_t f = row;
    const float v = 2.f;
    features.append_row({&f, 1}, {&v, 1});
    std::vector<int32_t> row_labels;
    if (row > 0) row_labels.push_back(row - 1);
    if (row < L) row_labels.push_back(row);
    labels.append_row(row_labels, {});
  }
  const CsrMatrix vectors = pifa_label_vectors(features, labels);
  ASSERT_EQ(vectors.rows, L);
  for (int32_t label = 0; label < L; ++label) {
    ASSERT_EQ(vectors.row_indices(label).size(), 2u);
    EXPECT_EQ(vectors.row_indices(label)[0], label);
    EXPECT_EQ(vectors.row_indices(label)[1], label + 1);
    EXPECT_NEAR(vectors.row_values(label)[0], 1 / std::sqrt(2.0), 1e-6);
  }
}

}  // namespace
}  // namespace haste
