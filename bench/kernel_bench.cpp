// Output-layer kernels on the GPU, side by side in one run (issue 5, DESIGN.md 8 and 12):
//   gsff              our group-shared kernels (fwd, bwd_dw, bwd_dh, bwd = both)
//   gsff_fused        our fused training kernel (fused: fwd + BCE loss + dZ + dW + dh, with
//                     kTargetsPerRow positive labels per row), beside dense fwd_bwd
//   ffi               our standard fixed fan-in kernels (g = 1), same L and k
//   cusparse          CSR SpMM with the same sparsity (L x d, k nonzeros per row, bf16): fwd
//                     and bwd_dh; bwd_dw as SDDMM (dz^T h sampled at W's pattern, fp32)
//   dense_bottleneck  the FLOPs-matched dense layer [B, k] x [k, L] through cuBLAS (bf16 in,
//                     fp32 accumulate): the forward GEMM and the two GEMMs of its backward
//   gsff_topk         fused top-k inference (op topk, top_k 5 and 100) beside gsff_fwd_topk:
//                     our forward writing z, then our per-row top-k on the materialised z
// Every row is the median of many runs timed with CUDA events, after warm-up. Inputs are
// random (a random block replicated over each buffer: never zeros), and the weights exceed L2.
//
//   kernel_bench [--shapes B,d,L,k,g;...] [--runs N] [--commit SHA] [--results DIR]
//                [--ops fwd,topk,...] [--name NAME]
//
// Prints a table and writes DIR/<NAME, default kernels>-<device>-<yyyymmdd>.json (DESIGN.md
// 12); --ops keeps only the rows of the listed ops.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cusparse.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/cuda/group_shared_fused.hpp>
#include <haste/cuda/group_shared_topk.hpp>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/event_timer.hpp"

namespace fs = std::filesystem;
using haste::cuda::bf16;
using haste::cuda::DeviceBuffer;
using haste::cuda::EventTimer;
using haste::cuda::Timing;

namespace {

// Positive labels per batch row in the fused benchmark (XMC rows have a handful).
constexpr int kTargetsPerRow = 5;

struct Shape {
  int64_t B, d, L, k, g;
  int64_t groups() const { return (L + g - 1) / g; }
  int64_t padded_labels() const { return groups() * g; }
  double flops() const { return 2.0 * static_cast<double>(B * padded_labels() * k); }
};

// Fills a device buffer with random values: one random block uploaded, then copied over the
// whole buffer (generating gigabytes on the host would dominate the run).
template <typename T>
void fill_random(DeviceBuffer<T>& buffer, std::mt19937_64& engine, float scale) {
  const size_t block = std::min<size_t>(buffer.size(), size_t{1} << 22);
  std::vector<T> host(block);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  for (auto& x : host) x = static_cast<T>(uniform(engine));
  for (size_t at = 0; at < buffer.size(); at += block) {
    const size_t n = std::min(block, buffer.size() - at);
    HASTE_CUDA_CHECK(
        cudaMemcpy(buffer.data() + at, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
}

// rows x k sorted distinct feature indices in [0, d): a block of random rows, replicated.
DeviceBuffer<int32_t> random_indices(int64_t rows, int64_t d, int64_t k, std::mt19937_64& engine) {
  const int64_t block_rows = std::min<int64_t>(rows, 1 << 16);
  std::vector<int32_t> pool(d), host(block_rows * k);
  std::iota(pool.begin(), pool.end(), 0);
  for (int64_t r = 0; r < block_rows; ++r) {
    for (int64_t j = 0; j < k; ++j) std::swap(pool[j], pool[j + engine() % (d - j)]);
    std::copy_n(pool.begin(), k, host.begin() + r * k);
    std::sort(host.begin() + r * k, host.begin() + (r + 1) * k);
  }
  DeviceBuffer<int32_t> out(rows * k);
  for (int64_t at = 0; at < rows; at += block_rows) {
    const int64_t n = std::min(block_rows, rows - at);
    HASTE_CUDA_CHECK(cudaMemcpy(out.data() + at * k, host.data(), n * k * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
  }
  return out;
}

struct Row {
  Shape shape;
  std::string impl, op;
  std::optional<Timing> timing;
  double bytes = 0;
  std::string error;
  int top_k = 0;  // op topk: labels kept per row
};

// --ops: the ops to measure (empty: all).
std::vector<std::string> selected_ops;

// Runs `work` and records a row, or the error that stopped it.
void measure(std::vector<Row>& rows, EventTimer& timer, const Shape& shape, std::string impl,
             std::string op, double bytes, int runs, const std::function<void()>& work) {
  if (!selected_ops.empty() &&
      std::find(selected_ops.begin(), selected_ops.end(), op) == selected_ops.end())
    return;
  Row row{shape, std::move(impl), std::move(op), std::nullopt, bytes, ""};
  try {
    row.timing = timer.time(runs, work);
  } catch (const std::exception& e) {
    row.error = e.what();
    cudaGetLastError();
  }
  rows.push_back(std::move(row));
}

// The fused training kernel at the shape, with kTargetsPerRow random positives per row. It
// reads W and hT and writes dW once; z and dz never reach memory.
void bench_fused(const Shape& s, const haste::cuda::GroupSharedDevice& layer,
                 const DeviceBuffer<bf16>& h_t, DeviceBuffer<bf16>& dweights,
                 DeviceBuffer<float>& dbias, DeviceBuffer<float>& dh_t, int runs, EventTimer& timer,
                 std::mt19937_64& engine, std::vector<Row>& rows) {
  const int64_t L = layer.shape.labels();
  std::vector<int64_t> indptr(s.B + 1);
  std::vector<int32_t> columns;
  for (int64_t b = 0; b < s.B; ++b) {
    std::vector<int32_t> row(kTargetsPerRow);
    for (auto& c : row) c = static_cast<int32_t>(engine() % L);
    std::sort(row.begin(), row.end());
    row.erase(std::unique(row.begin(), row.end()), row.end());
    columns.insert(columns.end(), row.begin(), row.end());
    indptr[b + 1] = static_cast<int64_t>(columns.size());
  }
  DeviceBuffer<int64_t> d_indptr(indptr);
  DeviceBuffer<int32_t> d_columns(columns);
  DeviceBuffer<double> loss(1);
  const haste::cuda::TailTargetsDevice targets{
      d_indptr.data(), d_columns.data(), nullptr, {0, s.L}};
  const double w_bytes = 2.0 * L * s.k;
  measure(rows, timer, s, "gsff_fused", "fused",
          2 * w_bytes + 4.0 * layer.shape.G * s.k + 8.0 * L + 2.0 * s.d * s.B, runs, [&] {
            haste::cuda::group_shared_fused_train(layer, s.B, s.B, h_t.data(), targets,
                                                  dweights.data(), dbias.data(), dh_t.data(),
                                                  loss.data(), nullptr);
          });
}

// Top-k inference over the tail (all L labels), k = 5 and 100: the fused kernel (z never
// written) against our forward writing z plus our per-row top-k over z as dense logits.
void bench_topk(const Shape& s, const haste::cuda::GroupSharedDevice& layer,
                const DeviceBuffer<bf16>& h_t, DeviceBuffer<bf16>& z, int runs, EventTimer& timer,
                std::vector<Row>& rows) {
  const int64_t L = layer.shape.labels();
  const double read_bytes = 2.0 * L * s.k + 4.0 * L + 4.0 * layer.shape.G * s.k + 2.0 * s.d * s.B;
  for (int top_k : {5, 100}) {
    haste::cuda::TopKGpu fused(top_k), unfused(top_k);
    DeviceBuffer<float> scores(s.B * top_k);
    DeviceBuffer<int32_t> labels(s.B * top_k);
    haste::cuda::TopKInputs tail;
    tail.B = s.B;
    tail.tail = layer;
    tail.tail_labels = s.L;
    tail.hT = h_t.data();
    haste::cuda::TopKInputs dense;
    dense.B = s.B;
    dense.H = s.L;
    dense.head_logits = z.data();
    dense.head_ld = L;
    auto time_topk = [&](const char* impl, double bytes, const std::function<void()>& work) {
      measure(rows, timer, s, impl, "topk", bytes, runs, work);
      if (!rows.empty() && rows.back().op == "topk") rows.back().top_k = top_k;
    };
    time_topk("gsff_topk", read_bytes,
              [&] { fused.run(tail, scores.data(), labels.data(), nullptr); });
    time_topk("gsff_fwd_topk", read_bytes + 4.0 * s.B * L, [&] {
      haste::cuda::group_shared_forward(layer, s.B, h_t.data(), z.data(), nullptr);
      unfused.run(dense, scores.data(), labels.data(), nullptr);
    });
  }
}

void bench_shape(const Shape& s, int runs, cublasHandle_t cublas, cusparseHandle_t cusparse,
                 std::vector<Row>& rows) {
  std::mt19937_64 engine(42);
  EventTimer timer;
  const int64_t B = s.B, d = s.d, L = s.padded_labels(), k = s.k;
  const double w_bytes = 2.0 * L * k, z_bytes = 2.0 * B * L, bias_bytes = 4.0 * L;

  DeviceBuffer<bf16> h_t(d * B), weights(L * k), z(B * L), dz(B * L), dweights(L * k);
  DeviceBuffer<float> bias(L), dbias(L), dh_t(d * B);
  fill_random(h_t, engine, 1.f);
  fill_random(weights, engine, 0.05f);
  fill_random(dz, engine, 0.01f);
  HASTE_CUDA_CHECK(cudaMemset(bias.data(), 0, L * sizeof(float)));
  HASTE_CUDA_CHECK(cudaMemset(dh_t.data(), 0, d * B * sizeof(float)));

  // Our kernels: group-shared (g) and standard fixed fan-in (g = 1) at the same L and k.
  for (int64_t g : {s.g, int64_t{1}}) {
    const haste::GroupSharedShape shape{d, L / g, g, k};
    DeviceBuffer<int32_t> indices = random_indices(shape.G, d, k, engine);
    const haste::cuda::GroupSharedDevice layer{shape, indices.data(), weights.data(), bias.data()};
    const std::string impl = g == 1 ? "ffi" : "gsff";
    const double index_bytes = 4.0 * shape.G * k;
    auto forward = [&] {
      haste::cuda::group_shared_forward(layer, B, h_t.data(), z.data(), nullptr);
    };
    auto backward_weights = [&] {
      haste::cuda::group_shared_backward_weights(layer, B, h_t.data(), dz.data(), dweights.data(),
                                                 dbias.data(), nullptr);
    };
    auto backward_inputs = [&] {
      haste::cuda::group_shared_backward_inputs(layer, B, dz.data(), dh_t.data(), nullptr);
    };
    const int kernel_runs = g == 1 ? std::max(5, runs / 10) : runs;
    measure(rows, timer, s, impl, "fwd", w_bytes + z_bytes + index_bytes + bias_bytes, kernel_runs,
            forward);
    measure(rows, timer, s, impl, "bwd_dw", z_bytes + w_bytes + index_bytes + bias_bytes,
            kernel_runs, backward_weights);
    measure(rows, timer, s, impl, "bwd_dh", z_bytes + w_bytes + index_bytes, kernel_runs,
            backward_inputs);
    measure(rows, timer, s, impl, "bwd", 2 * z_bytes + 2 * w_bytes + 2 * index_bytes, kernel_runs,
            [&] {
              backward_weights();
              backward_inputs();
            });
    if (g != 1) {
      bench_fused(s, layer, h_t, dweights, dbias, dh_t, runs, timer, engine, rows);
      bench_topk(s, layer, h_t, z, runs, timer, rows);
      continue;
    }

    // cuSPARSE CSR SpMM with the g = 1 sparsity: W [L, d] (k nonzeros per row) x hT [d, B].
    try {
      std::vector<int32_t> offsets(L + 1);
      for (int64_t l = 0; l <= L; ++l) offsets[l] = static_cast<int32_t>(l * k);
      DeviceBuffer<int32_t> row_offsets(offsets);
      cusparseSpMatDescr_t matrix{};
      cusparseDnMatDescr_t h_desc{}, z_desc{}, dz_desc{}, dh_desc{};
      HASTE_CUDA_CHECK(cusparseCreateCsr(&matrix, L, d, L * k, row_offsets.data(), indices.data(),
                                         weights.data(), CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
                                         CUSPARSE_INDEX_BASE_ZERO, CUDA_R_16BF));
      HASTE_CUDA_CHECK(
          cusparseCreateDnMat(&h_desc, d, B, B, h_t.data(), CUDA_R_16BF, CUSPARSE_ORDER_ROW));
      HASTE_CUDA_CHECK(
          cusparseCreateDnMat(&z_desc, L, B, B, z.data(), CUDA_R_16BF, CUSPARSE_ORDER_ROW));
      // dz [B, L] row-major is dz^T [L, B] column-major; dh^T [d, B] in bf16 (cuSPARSE wants
      // B and C of one type).
      DeviceBuffer<bf16> dh_bf16(d * B);
      HASTE_CUDA_CHECK(
          cusparseCreateDnMat(&dz_desc, L, B, L, dz.data(), CUDA_R_16BF, CUSPARSE_ORDER_COL));
      HASTE_CUDA_CHECK(
          cusparseCreateDnMat(&dh_desc, d, B, B, dh_bf16.data(), CUDA_R_16BF, CUSPARSE_ORDER_ROW));
      const float one = 1.f, zero = 0.f;
      auto spmm = [&](cusparseOperation_t op, cusparseDnMatDescr_t in, cusparseDnMatDescr_t out,
                      const char* name, double bytes) {
        size_t workspace_bytes = 0;
        HASTE_CUDA_CHECK(cusparseSpMM_bufferSize(cusparse, op, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                 &one, matrix, in, &zero, out, CUDA_R_32F,
                                                 CUSPARSE_SPMM_ALG_DEFAULT, &workspace_bytes));
        DeviceBuffer<uint8_t> workspace(std::max<size_t>(workspace_bytes, 1));
        measure(rows, timer, s, "cusparse", name, bytes, std::max(5, runs / 10), [&] {
          HASTE_CUDA_CHECK(cusparseSpMM(cusparse, op, CUSPARSE_OPERATION_NON_TRANSPOSE, &one,
                                        matrix, in, &zero, out, CUDA_R_32F,
                                        CUSPARSE_SPMM_ALG_DEFAULT, workspace.data()));
        });
      };
      spmm(CUSPARSE_OPERATION_NON_TRANSPOSE, h_desc, z_desc, "fwd",
           w_bytes + z_bytes + 4.0 * L * k);
      spmm(CUSPARSE_OPERATION_TRANSPOSE, dz_desc, dh_desc, "bwd_dh",
           w_bytes + z_bytes + 4.0 * L * k);
      // dW at W's pattern = dz^T [L, B] h [B, d] (SDDMM). cuSPARSE's SDDMM takes no bf16
      // ("type combination not supported", CUDA 13.0), so this one row runs on fp32 copies.
      try {
        DeviceBuffer<float> dz32(B * L), h32(d * B), dw32(L * k);
        fill_random(dz32, engine, 0.01f);
        fill_random(h32, engine, 1.f);
        cusparseSpMatDescr_t dw_matrix{};
        cusparseDnMatDescr_t dz32_desc{}, h32_desc{};
        HASTE_CUDA_CHECK(cusparseCreateCsr(
            &dw_matrix, L, d, L * k, row_offsets.data(), indices.data(), dw32.data(),
            CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
        HASTE_CUDA_CHECK(
            cusparseCreateDnMat(&dz32_desc, L, B, L, dz32.data(), CUDA_R_32F, CUSPARSE_ORDER_COL));
        // hT [d, B] row-major is h [B, d] column-major.
        HASTE_CUDA_CHECK(
            cusparseCreateDnMat(&h32_desc, B, d, B, h32.data(), CUDA_R_32F, CUSPARSE_ORDER_COL));
        const auto none = CUSPARSE_OPERATION_NON_TRANSPOSE;
        size_t workspace_bytes = 0;
        HASTE_CUDA_CHECK(cusparseSDDMM_bufferSize(cusparse, none, none, &one, dz32_desc, h32_desc,
                                                  &zero, dw_matrix, CUDA_R_32F,
                                                  CUSPARSE_SDDMM_ALG_DEFAULT, &workspace_bytes));
        DeviceBuffer<uint8_t> workspace(std::max<size_t>(workspace_bytes, 1));
        measure(rows, timer, s, "cusparse", "bwd_dw", 2 * (w_bytes + z_bytes) + 4.0 * L * k,
                std::max(5, runs / 10), [&] {
                  HASTE_CUDA_CHECK(cusparseSDDMM(cusparse, none, none, &one, dz32_desc, h32_desc,
                                                 &zero, dw_matrix, CUDA_R_32F,
                                                 CUSPARSE_SDDMM_ALG_DEFAULT, workspace.data()));
                });
        cusparseDestroyDnMat(dz32_desc);
        cusparseDestroyDnMat(h32_desc);
        cusparseDestroySpMat(dw_matrix);
      } catch (const std::exception& e) {
        rows.push_back({s, "cusparse", "bwd_dw", std::nullopt, 0, e.what()});
      }
      cusparseDestroyDnMat(h_desc);
      cusparseDestroyDnMat(z_desc);
      cusparseDestroyDnMat(dz_desc);
      cusparseDestroyDnMat(dh_desc);
      cusparseDestroySpMat(matrix);
    } catch (const std::exception& e) {
      rows.push_back({s, "cusparse", "fwd", std::nullopt, 0, e.what()});
    }
  }

  // FLOPs-matched dense bottleneck: x [B, k] and W [L, k] (row-major), cuBLAS column-major.
  DeviceBuffer<bf16> x(B * k), dx(B * k);
  fill_random(x, engine, 1.f);
  const float one = 1.f, zero = 0.f;
  auto gemm = [&](cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t kk,
                  const bf16* a, int64_t lda, const bf16* b, int64_t ldb, bf16* c, int64_t ldc) {
    HASTE_CUDA_CHECK(cublasGemmEx(cublas, op_a, op_b, m, n, kk, &one, a, CUDA_R_16BF, lda, b,
                                  CUDA_R_16BF, ldb, &zero, c, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
  };
  // z^T [L, B] = W [L, k] x^T [k, B]
  auto dense_forward = [&] {
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, L, B, k, weights.data(), k, x.data(), k, z.data(), L);
  };
  // dW^T [k, L] = x^T [k, B] dz [B, L]
  auto dense_backward_weights = [&] {
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, L, B, x.data(), k, dz.data(), L, dweights.data(), k);
  };
  // dx^T [k, B] = W^T [k, L] dz^T [L, B]
  auto dense_backward_inputs = [&] {
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, k, B, L, weights.data(), k, dz.data(), L, dx.data(), k);
  };
  measure(rows, timer, s, "dense_bottleneck", "fwd", w_bytes + z_bytes, runs, dense_forward);
  measure(rows, timer, s, "dense_bottleneck", "bwd_dw", w_bytes + z_bytes, runs,
          dense_backward_weights);
  measure(rows, timer, s, "dense_bottleneck", "bwd_dh", w_bytes + z_bytes, runs,
          dense_backward_inputs);
  measure(rows, timer, s, "dense_bottleneck", "bwd", 2 * w_bytes + 2 * z_bytes, runs, [&] {
    dense_backward_weights();
    dense_backward_inputs();
  });
  measure(rows, timer, s, "dense_bottleneck", "fwd_bwd", 3 * w_bytes + 3 * z_bytes, runs, [&] {
    dense_forward();
    dense_backward_weights();
    dense_backward_inputs();
  });
}

std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> shapes;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ';')) {
    Shape s{};
    haste::check(
        std::sscanf(item.c_str(), "%ld,%ld,%ld,%ld,%ld", &s.B, &s.d, &s.L, &s.k, &s.g) == 5,
        "kernel_bench: shape '{}' is not B,d,L,k,g", item);
    shapes.push_back(s);
  }
  return shapes;
}

std::string today(const char* format) {
  std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, format, std::localtime(&now));
  return buffer;
}

std::string slug(std::string name) {
  for (auto& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '-';
  return name;
}

double ops(const Row& row) {
  const double per_product = row.shape.flops();
  if (row.op == "fused" || row.op == "fwd_bwd") return 3 * per_product;
  return row.op == "bwd" ? 2 * per_product : per_product;
}

// The dense-bottleneck op a row is compared with: the fused kernel against dense fwd + bwd.
std::string dense_counterpart(const std::string& op) { return op == "fused" ? "fwd_bwd" : op; }

}  // namespace

int main(int argc, char** argv) try {
  std::string shapes_text = "256,768,670091,64,32;256,768,2812281,32,32;512,768,670091,128,64";
  int runs = 100;
  std::string commit = "unknown";
  fs::path results = fs::path(HASTE_SOURCE_DIR) / "bench/results";
  std::string name = "kernels", ops_text;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      haste::check(i + 1 < argc, "kernel_bench: {} needs a value", arg);
      return argv[++i];
    };
    if (arg == "--shapes")
      shapes_text = value();
    else if (arg == "--runs")
      runs = std::stoi(value());
    else if (arg == "--commit")
      commit = value();
    else if (arg == "--results")
      results = value();
    else if (arg == "--name")
      name = value();
    else if (arg == "--ops") {
      ops_text = value();
      std::stringstream list(ops_text);
      for (std::string op; std::getline(list, op, ',');) selected_ops.push_back(op);
    } else
      haste::fail(
          "usage: kernel_bench [--shapes B,d,L,k,g;...] [--runs N] [--commit SHA] [--results DIR] "
          "[--ops fwd,topk,...] [--name NAME]");
  }
  cudaDeviceProp prop{};
  HASTE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cublasHandle_t cublas{};
  cusparseHandle_t cusparse{};
  HASTE_CUDA_CHECK(cublasCreate(&cublas));
  HASTE_CUDA_CHECK(cusparseCreate(&cusparse));

  std::vector<Row> rows;
  for (const Shape& s : parse_shapes(shapes_text)) {
    fmt::print("shape B={} d={} L={} k={} g={} ...\n", s.B, s.d, s.L, s.k, s.g);
    std::fflush(stdout);
    bench_shape(s, runs, cublas, cusparse, rows);
  }

  auto dense_ms = [&](const Row& row) -> double {
    for (const Row& other : rows) {
      if (other.impl == "dense_bottleneck" && other.op == dense_counterpart(row.op) &&
          other.timing && other.shape.L == row.shape.L && other.shape.B == row.shape.B &&
          other.shape.k == row.shape.k && other.shape.g == row.shape.g)
        return other.timing->median_ms;
    }
    return 0;
  };
  nlohmann::ordered_json json = {
      {"bench", name},
      {"device", prop.name},
      {"commit", commit},
      {"date", today("%Y-%m-%d")},
      {"command", "kernel_bench --shapes '" + shapes_text + "' --runs " + std::to_string(runs) +
                      (ops_text.empty() ? "" : " --ops " + ops_text + " --name " + name)},
      {"rows", nlohmann::ordered_json::array()}};
  fmt::print("\n{:>28} {:>17} {:>7} {:>9} {:>8} {:>8} {:>10}\n", "shape B,d,L,k,g", "impl", "op",
             "ms", "TFLOP/s", "GB/s", "x dense");
  for (const Row& row : rows) {
    nlohmann::ordered_json entry = {{"shape",
                                     {{"B", row.shape.B},
                                      {"d", row.shape.d},
                                      {"L", row.shape.L},
                                      {"k", row.shape.k},
                                      {"g", row.shape.g}}},
                                    {"impl", row.impl},
                                    {"op", row.op}};
    if (row.top_k > 0) entry["top_k"] = row.top_k;
    const std::string op = row.top_k > 0 ? fmt::format("{}{}", row.op, row.top_k) : row.op;
    const std::string shape = fmt::format("{},{},{},{},{}", row.shape.B, row.shape.d, row.shape.L,
                                          row.shape.k, row.shape.g);
    if (!row.timing) {
      entry["error"] = row.error;
      fmt::print("{:>28} {:>17} {:>7} error: {}\n", shape, row.impl, op, row.error);
    } else {
      const Timing& t = *row.timing;
      const double tflops = ops(row) / (t.median_ms * 1e9);
      const double gbps = row.bytes / (t.median_ms * 1e6);
      const double dense = dense_ms(row);
      const double ratio = dense > 0 ? t.median_ms / dense : 0;
      entry.update({{"median_ms", t.median_ms},
                    {"p10_ms", t.p10_ms},
                    {"p90_ms", t.p90_ms},
                    {"runs", t.runs},
                    {"tflops", tflops},
                    {"gbps", gbps},
                    {"peak_mem_bytes", 0},
                    {"time_over_dense_bottleneck", ratio}});
      fmt::print("{:>28} {:>17} {:>7} {:>9.4f} {:>8.1f} {:>8.0f} {:>10.2f}\n", shape, row.impl, op,
                 t.median_ms, tflops, gbps, ratio);
    }
    json["rows"].push_back(entry);
  }
  fs::create_directories(results);
  const fs::path out =
      results / fmt::format("{}-{}-{}.json", name, slug(prop.name), today("%Y%m%d"));
  std::ofstream(out) << json.dump(2) << "\n";
  fmt::print("\nwrote {}\n", out.string());
  cublasDestroy(cublas);
  cusparseDestroy(cusparse);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "kernel_bench: {}\n", e.what());
  return 1;
}
