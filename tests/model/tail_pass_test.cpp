// The engine's group-by-group tail pass against the reference kernels (group_shared.hpp,
// tail_loss.hpp) on fresh random inputs, outputs poisoned first.
#include "model/tail_pass.hpp"

#include <gtest/gtest.h>

#include <haste/group_shared.hpp>
#include <haste/tail_loss.hpp>

#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using test_util::poisoned;

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_NEAR(a[i], b[i], 1e-4f + 1e-4f * std::abs(b[i])) << what << " [" << i << "]";
  }
}

TEST(TailPass, MatchesReferenceKernels) {
  test_util::RandomTensors random(5);
  const int64_t B = 37, d = 40, G = 9, g = 5, k = 12, first = 3, real = G * g - 3;
  GroupSharedParams<float> tail({d, G, g, k});
  tail.indices = random.group_indices(G, d, k);
  tail.weights = random.tensor<float>(G * g * k);
  tail.bias = random.tensor<float>(G * g, -3, 1);
  const std::vector<float> h = random.tensor<float>(B * d, -2, 2);
  CsrMatrix targets = random.sparse_targets(B, first + G * g, 0.1);

  std::vector<float> z(B * G * g), dz(B * G * g), dw(G * g * k), db(G * g), dh(B * d, 0.0f);
  group_shared_forward<float>(tail.view(), B, h, z);
  const double loss = bce_with_logits_tail<float>(B, G * g, z, targets, {first, real}, dz);
  group_shared_backward_weights<float>(tail.view(), B, h, dz, dw, db);
  group_shared_backward_inputs<float>(tail.view(), B, dz, dh);

  std::vector<float> z2 = poisoned<float>(B * G * g);
  model::TailPass::logits(tail.view(), B, h, z2);
  expect_close(z2, z, "logits");

  model::TailPass pass;
  std::vector<float> dz2 = poisoned<float>(B * G * g), dw2 = poisoned<float>(G * g * k),
                     db2 = poisoned<float>(G * g), dh2(B * d, 0.0f);
  const double loss2 =
      pass.step(tail.view(), B, h, targets, first, real, dw2, db2, dh2, dz2, G * g);
  EXPECT_NEAR(loss2, loss, 1e-4 * loss);
  expect_close(dz2, dz, "dz");
  expect_close(dw2, dw, "dW");
  expect_close(db2, db, "db");
  expect_close(dh2, dh, "dh");
}

}  // namespace
}  // namespace haste
