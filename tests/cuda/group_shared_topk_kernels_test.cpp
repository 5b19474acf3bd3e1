// Fused top-k inference (TopKGpu) against a CPU reference: the CPU group-shared forward in
// double on bf16-rounded inputs plus the head's logits and bias, then a full sort per row (ties
// to the lower model id). Fresh random inputs per case, outputs poisoned first. Scores are
// fp32 sums of exact bf16 products on both sides, so they agree far inside the bf16 bound of
// METHOD.md (1e-3 relative is used); label sets must be equal except among labels whose scores
// tie with the k-th within that bound. Padding slots get a huge bias, so predicting one fails.
// GPU cases skip without a GPU; the argument checks run everywhere.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/group_shared_topk.hpp>
#include <haste/group_shared.hpp>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using test_util::round_to_bf16;
using test_util::transpose;

// A random output layer and batch, on the host (reference) and the device.
struct Problem {
  int64_t B, H, tail_labels;
  GroupSharedShape shape;
  std::vector<double> scores;     // [B, H + tail_labels] by model id: the reference logits
  std::vector<int32_t> original;  // model id -> original id
  DeviceBuffer<int32_t> indices, label_map;
  DeviceBuffer<bf16> weights, h_t, head_logits;
  DeviceBuffer<float> bias, head_bias;

  // Padding slots (tail_labels .. G*g) get bias 100: far above every real logit.
  Problem(int64_t B_, int64_t d, int64_t G, int64_t g, int64_t k, int64_t padding, int64_t H_,
          uint64_t seed, double weight_scale = 1.0)
      : B(B_), H(H_), tail_labels(G * g - padding), shape{d, G, g, k} {
    test_util::RandomTensors random(seed);
    const int64_t L_tail = shape.labels(), L = H + tail_labels;
    std::vector<int32_t> host_indices =
        G > 0 ? random.group_indices(G, d, k) : std::vector<int32_t>{};
    std::vector<double> h = random.tensor<double>(B * d);
    std::vector<double> w = random.tensor<double>(L_tail * k, -weight_scale, weight_scale);
    std::vector<double> b = random.tensor<double>(L_tail);
    for (int64_t s = tail_labels; s < L_tail; ++s) b[s] = 100.0;
    std::vector<double> head = random.tensor<double>(B * H, -3.0, 3.0);
    std::vector<double> head_b = random.tensor<double>(H);
    round_to_bf16(h);
    std::vector<double> ht = transpose(h, B, d);
    const std::vector<bf16> ht_bf16 = round_to_bf16(ht), w_bf16 = round_to_bf16(w),
                            head_bf16 = round_to_bf16(head);
    std::vector<float> b_f(b.begin(), b.end()), head_b_f(head_b.begin(), head_b.end());

    std::vector<double> z(B * L_tail);
    group_shared_forward<double>({shape, host_indices, w, b}, B, h, z);
    scores.resize(B * L);
    for (int64_t r = 0; r < B; ++r) {
      for (int64_t j = 0; j < H; ++j)
        scores[r * L + j] = static_cast<double>(static_cast<float>(head[r * H + j]) + head_b_f[j]);
      for (int64_t s = 0; s < tail_labels; ++s) scores[r * L + H + s] = z[r * L_tail + s];
    }
    original.resize(L);
    std::iota(original.begin(), original.end(), 0);
    for (int64_t i = L - 1; i > 0; --i) std::swap(original[i], original[random.below(i + 1)]);

    indices = DeviceBuffer<int32_t>(host_indices);
    label_map = DeviceBuffer<int32_t>(original);
    weights = DeviceBuffer<bf16>(w_bf16);
    h_t = DeviceBuffer<bf16>(ht_bf16);
    head_logits = DeviceBuffer<bf16>(head_bf16);
    bias = DeviceBuffer<float>(b_f);
    head_bias = DeviceBuffer<float>(head_b_f);
  }

  int64_t labels() const { return H + tail_labels; }

  cuda::TopKInputs inputs(bool mapped) const {
    cuda::TopKInputs in;
    in.B = B;
    in.H = H;
    in.head_logits = head_logits.data();
    in.head_ld = H;
    in.head_bias = head_bias.data();
    in.tail = {shape, indices.data(), weights.data(), bias.data()};
    in.tail_labels = tail_labels;
    in.hT = h_t.data();
    in.label_map = mapped ? label_map.data() : nullptr;
    return in;
  }

  // Runs top-k into poisoned outputs; returns model ids (mapped back when `mapped`) and scores.
  std::pair<std::vector<int32_t>, std::vector<float>> run(cuda::TopKGpu& topk, bool mapped) const {
    const int k = topk.k();
    DeviceBuffer<float> out_scores(B * k);
    DeviceBuffer<int32_t> out_labels(B * k);
    out_scores.fill_bytes(0xff);
    out_labels.fill_bytes(0x7f);
    topk.run(inputs(mapped), out_scores.data(), out_labels.data(), nullptr);
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<int32_t> ids = out_labels.download();
    if (mapped) {
      std::vector<int32_t> model_of(original.size());
      for (size_t m = 0; m < original.size(); ++m) model_of[original[m]] = static_cast<int32_t>(m);
      for (auto& id : ids) {
        if (id >= 0 && id < static_cast<int32_t>(model_of.size()))
          id = model_of[id];
        else if (id != -1)
          id = -2;  // not a label id at all
      }
    }
    return {ids, out_scores.download()};
  }

  // The checks of the file comment, row by row.
  void expect_matches(const std::vector<int32_t>& ids, const std::vector<float>& got, int k) const {
    const int64_t L = labels();
    for (int64_t r = 0; r < B; ++r) {
      std::vector<int64_t> order(L);
      std::iota(order.begin(), order.end(), 0);
      const double* row = scores.data() + r * L;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return row[a] > row[b]; });
      const int64_t real = std::min<int64_t>(k, L);
      const double kth = row[order[real - 1]];
      const double tol = 1e-3 * (1.0 + std::abs(kth));
      std::set<int32_t> seen;
      for (int i = 0; i < k; ++i) {
        const int32_t id = ids[r * k + i];
        const float score = got[r * k + i];
        if (i >= real) {
          EXPECT_EQ(id, -1) << "row " << r << " rank " << i << ": only " << L << " labels";
          EXPECT_TRUE(std::isinf(score) && score < 0) << "row " << r << " rank " << i;
          continue;
        }
        ASSERT_TRUE(id >= 0 && id < L) << "row " << r << " rank " << i << ": label " << id
                                       << " is not a real label (padding or unwritten)";
        EXPECT_TRUE(seen.insert(id).second) << "row " << r << ": label " << id << " twice";
        EXPECT_NEAR(score, row[id], 1e-3 * (1.0 + std::abs(row[id])))
            << "row " << r << " rank " << i << ": score is not the label's logit";
        EXPECT_NEAR(score, row[order[i]], 1e-3 * (1.0 + std::abs(row[order[i]])))
            << "row " << r << " rank " << i << ": not the i-th best score";
        if (i > 0) {
          EXPECT_LE(score, got[r * k + i - 1]) << "row " << r << ": not best first";
        }
      }
      for (int64_t i = 0; i < real; ++i) {
        if (row[order[i]] > kth + 2 * tol) {
          EXPECT_TRUE(seen.count(static_cast<int32_t>(order[i])))
              << "row " << r << ": label " << order[i] << " (score " << row[order[i]] << ", k-th "
              << kth << ") is missing";
        }
      }
    }
  }
};

// (g, fan-in k, B, d, G, padding, H, top k)
using Case = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;

class GroupSharedTopK : public ::testing::TestWithParam<Case> {};

TEST_P(GroupSharedTopK, MatchesTheCpuReference) {
  HASTE_REQUIRE_GPU();
  const auto [g, fan_in, B, d, G, padding, H, k] = GetParam();
  const Problem p(B, d, G, g, fan_in, padding, H,
                  static_cast<uint64_t>(g * 7919 + fan_in * 104729 + B * 31 + G * 3 + H + k));
  cuda::TopKGpu topk(k);
  for (bool mapped : {false, true}) {
    SCOPED_TRACE(mapped ? "label map" : "model ids");
    const auto [ids, scores] = p.run(topk, mapped);
    p.expect_matches(ids, scores, k);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupSharedTopK,
    ::testing::Values(Case{8, 32, 16, 77, 45, 3, 0, 5},         // tail only, small groups
                      Case{8, 128, 80, 300, 600, 0, 40, 100},   // many stages, k = 100
                      Case{16, 64, 37, 129, 230, 5, 0, 17},     // B not a multiple of 8 (scalar h)
                      Case{32, 64, 150, 768, 300, 7, 9000, 5},  // 3 batch tiles, 2 head chunks
                      Case{32, 32, 64, 200, 700, 0, 33, 128},   // k at the maximum
                      Case{64, 128, 24, 256, 90, 63, 0, 100},   // one real label in the last group
                      Case{64, 32, 200, 100, 50, 1, 0, 1},      // k = 1
                      Case{8, 64, 16, 64, 1, 3, 0, 10},         // 5 labels, k = 10: -1 padded
                      Case{32, 64, 48, 96, 0, 0, 1000, 20}));   // head only (no tail)

// Equal logits everywhere (zero weights, equal biases): ties go to the lower model id, so the
// answer is exactly model ids 0..k-1 in order.
TEST(GroupSharedTopKTies, RankTheLowerModelIdFirst) {
  HASTE_REQUIRE_GPU();
  Problem p(40, 64, 200, 32, 64, 4, 0, 99, 0.0);
  std::vector<float> equal(p.shape.labels(), 0.5f);
  for (int64_t s = p.tail_labels; s < p.shape.labels(); ++s) equal[s] = 100.f;
  p.bias.upload(equal);
  cuda::TopKGpu topk(30);
  const auto [ids, scores] = p.run(topk, false);
  for (int64_t r = 0; r < p.B; ++r) {
    for (int i = 0; i < 30; ++i) {
      EXPECT_EQ(ids[r * 30 + i], i) << "row " << r;
      EXPECT_EQ(scores[r * 30 + i], 0.5f) << "row " << r;
    }
  }
}

// One object, a large problem then a smaller one with another k-independent shape: the
// workspace is reused and nothing of the first run leaks into the second.
TEST(GroupSharedTopKWorkspace, IsReusedAcrossProblems) {
  HASTE_REQUIRE_GPU();
  cuda::TopKGpu topk(7);
  const Problem large(256, 128, 400, 16, 32, 2, 100, 5), small(20, 40, 30, 8, 32, 1, 0, 6);
  const auto first = large.run(topk, true);
  large.expect_matches(first.first, first.second, 7);
  const size_t bytes = topk.workspace_bytes();
  const auto second = small.run(topk, true);
  small.expect_matches(second.first, second.second, 7);
  EXPECT_EQ(topk.workspace_bytes(), bytes);
}

// Argument checks: host-only, so they run in CI without a GPU.
TEST(GroupSharedTopKApi, RejectsBadArgumentsBeforeAnyLaunch) {
  using test_util::expect_error;
  expect_error([] { cuda::TopKGpu topk(0); }, "k = 0");
  expect_error([] { cuda::TopKGpu topk(cuda::kMaxTopK + 1); }, "must be in [1, 128]");

  const bf16* some_bf16 = reinterpret_cast<const bf16*>(64);
  const int32_t* some_int = reinterpret_cast<const int32_t*>(64);
  const float* some_float = reinterpret_cast<const float*>(64);
  auto tail = [&](int64_t g, int64_t k, int64_t d) {
    cuda::TopKInputs in;
    in.B = 33;
    in.tail = {{d, 10, g, k}, some_int, some_bf16, some_float};
    in.tail_labels = 10 * g;
    in.hT = some_bf16;
    return in;
  };
  cuda::check_topk_inputs(tail(32, 64, 768), 5);
  expect_error([&] { cuda::check_topk_inputs(tail(1, 64, 768), 5); }, "g = 1");
  expect_error([&] { cuda::check_topk_inputs(tail(4, 64, 768), 5); }, "g = 4");
  expect_error([&] { cuda::check_topk_inputs(tail(32, 48, 768), 5); }, "k = 48");
  expect_error([&] { cuda::check_topk_inputs(tail(32, 64, 2048), 5); }, "d = 2048");
  expect_error([&] { cuda::check_topk_inputs(tail(32, 64, 768), 200); }, "k = 200");
  auto rejects = [&](auto change, const std::string& needle) {
    cuda::TopKInputs in = tail(32, 64, 768);
    change(in);
    expect_error([&] { cuda::check_topk_inputs(in, 5); }, needle);
  };
  rejects([](cuda::TopKInputs& in) { in.tail_labels = 321; }, "tail_labels = 321");
  rejects([](cuda::TopKInputs& in) { in.hT = nullptr; }, "one is null");
  rejects([](cuda::TopKInputs& in) { in.B = 0; }, "B = 0");
  rejects(
      [](cuda::TopKInputs& in) {
        in.H = 100;
        in.head_ld = 100;
      },
      "head_logits is null");
  rejects(
      [&](cuda::TopKInputs& in) {
        in.H = 100;
        in.head_logits = some_bf16;
        in.head_ld = 99;
      },
      "head_ld = 99");
  rejects([](cuda::TopKInputs& in) { in.tail_labels = 0; }, "nothing to rank");
  expect_error(
      [&] {
        cuda::TopKGpu topk(5);
        topk.run(tail(32, 64, 768), nullptr, nullptr, nullptr);
      },
      "must not be null");
}

}  // namespace
}  // namespace haste
