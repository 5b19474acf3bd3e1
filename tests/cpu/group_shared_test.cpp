// The group-shared fixed fan-in CPU kernels against plain loops over the definition, finite
// differences of scalar losses, and bad shapes and indices.
#include <haste/error.hpp>
#include <haste/group_shared.hpp>
#include <haste/tail_loss.hpp>

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using haste::test_util::convert;
using haste::test_util::expect_error;
using haste::test_util::poisoned;
using haste::test_util::RandomTensors;

struct Case {
  int64_t B, d, G, g, k;
};

std::string describe(const Case& c) {
  return fmt::format("B={} d={} G={} g={} k={}", c.B, c.d, c.G, c.g, c.k);
}

// One random layer and its inputs, all in double but exactly representable in float.
struct Problem {
  Case c;
  GroupSharedShape shape;
  std::vector<int32_t> indices;
  std::vector<double> weights, bias, h, dz, dh_initial;

  Problem(const Case& c_in, uint64_t seed) : c(c_in), shape{c.d, c.G, c.g, c.k} {
    RandomTensors random(seed);
    indices = random.group_indices(c.G, c.d, c.k);
    weights = random.tensor<double>(shape.labels() * c.k);
    bias = random.tensor<double>(shape.labels());
    h = random.tensor<double>(c.B * c.d);
    dz = random.tensor<double>(c.B * shape.labels());
    dh_initial = random.tensor<double>(c.B * c.d);
  }
};

// The definitions of DESIGN.md 3 as loops over (b, l, j). Beside each result it keeps the sum
// of the absolute values of its terms, which bounds the rounding error of any summation order.
struct Expected {
  std::vector<double> value, magnitude;
};

struct NaiveResults {
  Expected z, dweights, dbias, dh;
};

NaiveResults naive(const Problem& p) {
  const auto [B, d, G, g, k] = p.c;
  const int64_t L = G * g;
  NaiveResults out;
  auto init = [](Expected& e, int64_t n) {
    e.value.assign(n, 0.0);
    e.magnitude.assign(n, 0.0);
  };
  init(out.z, B * L);
  init(out.dweights, L * k);
  init(out.dbias, L);
  init(out.dh, B * d);
  out.dh.value = p.dh_initial;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) {
      const int32_t* idx = p.indices.data() + (l / g) * k;
      const double dz = p.dz[b * L + l];
      out.z.value[b * L + l] = p.bias[l];
      out.z.magnitude[b * L + l] = std::abs(p.bias[l]);
      out.dbias.value[l] += dz;
      out.dbias.magnitude[l] += std::abs(dz);
      for (int64_t j = 0; j < k; ++j) {
        const double h = p.h[b * d + idx[j]], w = p.weights[l * k + j];
        out.z.value[b * L + l] += w * h;
        out.z.magnitude[b * L + l] += std::abs(w * h);
        out.dweights.value[l * k + j] += dz * h;
        out.dweights.magnitude[l * k + j] += std::abs(dz * h);
        out.dh.value[b * d + idx[j]] += dz * w;
        out.dh.magnitude[b * d + idx[j]] += std::abs(dz * w);
      }
    }
  }
  for (int64_t i = 0; i < B * d; ++i) out.dh.magnitude[i] += std::abs(p.dh_initial[i]);
  return out;
}

// Any summation order is within n * eps * magnitude; random rounding stays far below that,
// so 16 * eps is tight for double and still catches a single wrong term in float.
template <typename T>
void expect_close(const std::vector<T>& got, const Expected& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.value.size()) << what;
  const double tolerance = 16 * std::numeric_limits<T>::epsilon();
  int reported = 0;
  for (size_t i = 0; i < got.size() && reported < 5; ++i) {
    const double error = std::abs(static_cast<double>(got[i]) - want.value[i]);
    if (!(error <= tolerance * (want.magnitude[i] + 1e-30))) {
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", expected " << want.value[i]
                    << " (magnitude " << want.magnitude[i] << ")";
      ++reported;
    }
  }
}

template <typename T>
struct KernelResults {
  std::vector<T> z, dweights, dbias, dh;
};

template <typename T>
KernelResults<T> run_kernels(const Problem& p) {
  const std::vector<T> weights = convert<T>(p.weights), bias = convert<T>(p.bias);
  const std::vector<T> h = convert<T>(p.h), dz = convert<T>(p.dz);
  const GroupSharedView<T> layer{p.shape, p.indices, weights, bias};
  KernelResults<T> out;
  out.z = poisoned<T>(p.c.B * p.shape.labels());
  out.dweights = poisoned<T>(p.shape.labels() * p.c.k);
  out.dbias = poisoned<T>(p.shape.labels());
  out.dh = convert<T>(p.dh_initial);  // accumulated into, so it starts from values, not NaN
  group_shared_forward<T>(layer, p.c.B, h, out.z);
  group_shared_backward_weights<T>(layer, p.c.B, h, dz, out.dweights, out.dbias);
  group_shared_backward_inputs<T>(layer, p.c.B, dz, out.dh);
  return out;
}

const std::vector<Case> kCases = {
    {1, 8, 3, 1, 3},       // B = 1, g = 1 (standard fixed fan-in)
    {5, 7, 4, 3, 7},       // k = d: every group reads every feature
    {17, 33, 9, 5, 1},     // k = 1
    {70, 64, 13, 8, 16},   // B spans two gathered tiles of 64 rows
    {3, 1, 2, 2, 1},       // d = 1
    {130, 20, 1, 37, 20},  // one group holds all labels
    {65, 50, 40, 1, 10},   // g = 1 with many groups, tile remainder of one row
    {9, 200, 6, 4, 31},    // odd k, most features in no group (dh must stay untouched)
    {2, 300, 50, 4, 100},  // parallel, yet fewer batch rows than threads
    {0, 5, 2, 2, 3},       // empty batch
    {4, 5, 0, 2, 3},       // empty tail
};

template <typename T>
void check_against_naive(int threads) {
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c) + fmt::format(" threads={}", threads));
    Problem p(c, seed++);
    NaiveResults want = naive(p);
    KernelResults<T> got = run_kernels<T>(p);
    expect_close(got.z, want.z, "z");
    expect_close(got.dweights, want.dweights, "dW");
    expect_close(got.dbias, want.dbias, "db");
    expect_close(got.dh, want.dh, "dh");
  }
  omp_set_num_threads(saved_threads);
}

TEST(GroupSharedCpu, DoubleMatchesNaiveLoops) {
  for (int threads : {1, 3}) check_against_naive<double>(threads);
}

TEST(GroupSharedCpu, FloatMatchesNaiveLoops) {
  for (int threads : {1, 3}) check_against_naive<float>(threads);
}

TEST(GroupSharedCpu, FloatAgreesWithDouble) {
  Problem p({33, 48, 12, 6, 20}, 99);
  KernelResults<float> f = run_kernels<float>(p);
  KernelResults<double> d = run_kernels<double>(p);
  auto expect_agree = [](const std::vector<float>& a, const std::vector<double>& b,
                         const char* what) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::abs(b[i]))) << what << "[" << i << "]";
    }
  };
  expect_agree(f.z, d.z, "z");
  expect_agree(f.dweights, d.dweights, "dW");
  expect_agree(f.dbias, d.dbias, "db");
  expect_agree(f.dh, d.dh, "dh");
}

// Gradient of a scalar loss of z, checked by central differences in double.
// `loss` returns the loss of z and writes dloss/dz.
using LossOfZ = std::function<double(const std::vector<double>& z, std::vector<double>& dz)>;

void check_gradients_by_finite_differences(const Case& c, uint64_t seed, const LossOfZ& loss) {
  Problem p(c, seed);
  const int64_t L = p.shape.labels();
  auto total_loss = [&](const std::vector<double>& weights, const std::vector<double>& bias,
                        const std::vector<double>& h) {
    std::vector<double> z = poisoned<double>(c.B * L), dz(c.B * L);
    group_shared_forward<double>({p.shape, p.indices, weights, bias}, c.B, h, z);
    return loss(z, dz);
  };

  // Analytic gradients through the kernels.
  const GroupSharedView<double> layer{p.shape, p.indices, p.weights, p.bias};
  std::vector<double> z = poisoned<double>(c.B * L), dz = poisoned<double>(c.B * L);
  group_shared_forward<double>(layer, c.B, p.h, z);
  loss(z, dz);
  std::vector<double> dweights = poisoned<double>(L * c.k), dbias = poisoned<double>(L);
  std::vector<double> dh(c.B * c.d, 0.0);
  group_shared_backward_weights<double>(layer, c.B, p.h, dz, dweights, dbias);
  group_shared_backward_inputs<double>(layer, c.B, dz, dh);

  constexpr double kStep = 1e-5, kTolerance = 1e-8;
  auto check_parameter = [&](std::vector<double>& x, const std::vector<double>& analytic,
                             const char* name) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double saved = x[i];
      x[i] = saved + kStep;
      const double up = total_loss(p.weights, p.bias, p.h);
      x[i] = saved - kStep;
      const double down = total_loss(p.weights, p.bias, p.h);
      x[i] = saved;
      const double numeric = (up - down) / (2 * kStep);
      ASSERT_NEAR(analytic[i], numeric, kTolerance * (1 + std::abs(numeric)))
          << name << "[" << i << "]";
    }
  };
  check_parameter(p.weights, dweights, "W");
  check_parameter(p.bias, dbias, "b");
  check_parameter(p.h, dh, "h");
}

const std::vector<Case> kGradientCases = {{3, 7, 3, 2, 4}, {2, 6, 3, 1, 6}, {4, 9, 2, 5, 1}};

TEST(GroupSharedCpu, GradientOfLinearLossMatchesFiniteDifferences) {
  uint64_t seed = 10;
  for (const Case& c : kGradientCases) {
    SCOPED_TRACE(describe(c));
    std::vector<double> r = RandomTensors(seed + 100).tensor<double>(c.B * c.G * c.g);
    check_gradients_by_finite_differences(
        c, seed++, [&](const std::vector<double>& z, std::vector<double>& dz) {
          double sum = 0;
          for (size_t i = 0; i < z.size(); ++i) sum += z[i] * r[i];
          dz = r;
          return sum;
        });
  }
}

TEST(GroupSharedCpu, GradientOfBceLossMatchesFiniteDifferences) {
  uint64_t seed = 20;
  for (const Case& c : kGradientCases) {
    SCOPED_TRACE(describe(c));
    const int64_t L = c.G * c.g;
    // Targets in model label ids: 3 head labels first, then the tail; the last tail label is
    // padding, so its weights must get a zero gradient.
    const int64_t head = 3;
    CsrMatrix targets = RandomTensors(seed + 100).sparse_targets(c.B, head + L, 0.4);
    const TailLabelRange range{head, L - 1};
    check_gradients_by_finite_differences(
        c, seed++, [&](const std::vector<double>& z, std::vector<double>& dz) {
          return bce_with_logits_tail<double>(c.B, L, z, targets, range, dz);
        });
  }
}

TEST(GroupSharedCpu, ParamsStartValidAndZero) {
  GroupSharedParams<float> params({.d = 10, .G = 3, .g = 2, .k = 4});
  EXPECT_NO_THROW(validate_group_indices(params.shape, params.indices));
  params.group_indices(1)[3] = 9;
  params.label_weights(5)[0] = 2.0f;
  std::vector<float> h(2 * 10, 1.0f), z = poisoned<float>(2 * 6);
  group_shared_forward<float>(params.view(), 2, h, z);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t l = 0; l < 6; ++l) EXPECT_EQ(z[b * 6 + l], l == 5 ? 2.0f : 0.0f);
  }
}

TEST(GroupSharedCpu, RejectsBadShapes) {
  expect_error([] { GroupSharedShape{.d = 4, .G = 2, .g = 1, .k = 5}.validate(); }, "k = 5");
  expect_error([] { GroupSharedShape{.d = 4, .G = 2, .g = 1, .k = 0}.validate(); }, "k = 0");
  expect_error([] { GroupSharedShape{.d = 4, .G = 2, .g = 0, .k = 2}.validate(); }, "g = 0");
  expect_error([] { GroupSharedShape{.d = 4, .G = -1, .g = 1, .k = 2}.validate(); }, "G = -1");
  expect_error([] { GroupSharedShape{.d = 0, .G = 1, .g = 1, .k = 0}.validate(); }, "d = 0");
  expect_error(
      [] { GroupSharedShape{.d = 8, .G = int64_t{1} << 40, .g = 1 << 20, .k = 8}.validate(); },
      "overflows");
  expect_error([] { GroupSharedParams<float>({.d = 3, .G = 1, .g = 1, .k = 4}); }, "k = 4");
}

TEST(GroupSharedCpu, RejectsBadIndices) {
  const GroupSharedShape shape{.d = 6, .G = 2, .g = 1, .k = 3};
  expect_error(
      [&] {
        validate_group_indices(shape, std::vector<int32_t>{0, 1, 2, 3, 5, 4});
      },
      "group 1 feature indices must be sorted and distinct, but slot 2 has 4 after 5");
  expect_error(
      [&] {
        validate_group_indices(shape, std::vector<int32_t>{0, 1, 1, 3, 4, 5});
      },
      "slot 2 has 1 after 1");
  expect_error(
      [&] {
        validate_group_indices(shape, std::vector<int32_t>{-1, 1, 2, 3, 4, 5});
      },
      "group 0 slot 0 has feature index -1");
  expect_error(
      [&] {
        validate_group_indices(shape, std::vector<int32_t>{0, 1, 2, 3, 4, 6});
      },
      "group 1 slot 2 has feature index 6, outside [0, d = 6)");
  expect_error(
      [&] {
        validate_group_indices(shape, std::vector<int32_t>{0, 1, 2});
      },
      "indices has 3 elements, expected G * k = 6");

  // The kernels validate too: a bad index must never become an out-of-bounds access.
  const std::vector<int32_t> bad{0, 1, 2, 3, 4, 6};
  const std::vector<float> w(2 * 3, 1.0f), b(2, 0.0f), h(6, 1.0f);
  std::vector<float> z(2), dz(2, 1.0f), dw(6), db(2), dh(6);
  const GroupSharedView<float> layer{shape, bad, w, b};
  expect_error([&] { group_shared_forward<float>(layer, 1, h, z); }, "feature index 6");
  expect_error([&] { group_shared_backward_weights<float>(layer, 1, h, dz, dw, db); },
               "feature index 6");
  expect_error([&] { group_shared_backward_inputs<float>(layer, 1, dz, dh); }, "feature index 6");
}

TEST(GroupSharedCpu, RejectsMismatchedArrays) {
  const GroupSharedShape shape{.d = 6, .G = 2, .g = 2, .k = 3};
  const std::vector<int32_t> idx{0, 1, 2, 3, 4, 5};
  const std::vector<float> w(4 * 3), b(4), h(2 * 6), dz(2 * 4);
  std::vector<float> z(2 * 4), dw(4 * 3), db(4), dh(2 * 6), short_out(3);
  const GroupSharedView<float> layer{shape, idx, w, b};
  expect_error([&] { group_shared_forward<float>(layer, 3, h, z); },
               "group_shared_forward: h has 12 elements, expected B * d = 18");
  expect_error([&] { group_shared_forward<float>(layer, 2, h, short_out); }, "z has 3 elements");
  expect_error(
      [&] {
        group_shared_forward<float>({shape, idx, w, short_out}, 2, h, z);
      },
      "bias has 3 elements, expected L_tail = 4");
  expect_error(
      [&] {
        group_shared_forward<float>({shape, idx, short_out, b}, 2, h, z);
      },
      "weights has 3 elements");
  expect_error([&] { group_shared_forward<float>(layer, -1, h, z); }, "B = -1");
  expect_error([&] { group_shared_backward_weights<float>(layer, 2, h, dz, short_out, db); },
               "dweights has 3 elements");
  expect_error([&] { group_shared_backward_weights<float>(layer, 2, h, dz, dw, short_out); },
               "dbias has 3 elements");
  expect_error([&] { group_shared_backward_inputs<float>(layer, 2, dz, short_out); },
               "dh has 3 elements");
  expect_error([&] { group_shared_backward_inputs<float>(layer, 2, short_out, dh); },
               "dz has 3 elements");
}

}  // namespace
}  // namespace haste
