// The GPU encoder's sparse input layer and its whole step, side by side in one run (issue 6):
//   bag       our embedding-bag kernel: x W_0 + b_0, relu (CSR rows x [F, d] fp32)
//   cusparse  cuSPARSE CSR SpMM of the same product (no bias or activation), default algorithm
//   encoder   EncoderGpu (one sparse layer of width d, dropout 0.1): fwd (bag + h + hT),
//             bwd (output gradient + touched rows + dW_0 on them + db_0), fwd_bwd
//   uploader  BatchUploader: one batch's host gather + copy, not overlapped (upload)
// Rows are random tf-idf-like rows with a fixed number of distinct features each; several
// batches rotate so that repeated runs do not hit the same W_0 rows in L2 (W_0 exceeds L2).
// Floors: bag bytes = nnz x d x 4 (W_0 rows read) + B x d x 4 (written).
//
//   encoder_bench [--runs N] [--commit SHA] [--results DIR]
//
// Prints a table and writes DIR/encoder-<device>-<yyyymmdd>.json (DESIGN.md 12).
#include <cusparse.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/encoder_launch.hpp"

namespace fs = std::filesystem;
using haste::cuda::DeviceBuffer;

namespace {

constexpr int64_t kBatch = 256, kFeatures = 100000;
constexpr int kRotate = 4;  // batches cycled through the timed runs
constexpr int64_t kLabelsPerRow = 5;

struct Row {
  int64_t d, nnz_per_row;
  std::string impl, op;
  double median_ms = 0, p10_ms = 0, p90_ms = 0, bytes = 0;
  int runs = 0;
  std::string error;
};

// Warm-up, then `runs` calls of work(i) between two events each (setup(i), when given, runs
// before the first event: untimed); median and 10th / 90th percentiles.
void time_into(Row& row, int runs, cudaStream_t stream, const std::function<void(int)>& work,
               const std::function<void(int)>& setup = {}) {
  cudaEvent_t start{}, stop{};
  HASTE_CUDA_CHECK(cudaEventCreate(&start));
  HASTE_CUDA_CHECK(cudaEventCreate(&stop));
  constexpr int kWarmup = 3;
  std::vector<double> ms;
  for (int i = 0; i < kWarmup + runs; ++i) {
    if (setup) setup(i);
    HASTE_CUDA_CHECK(cudaEventRecord(start, stream));
    work(i);
    HASTE_CUDA_CHECK(cudaEventRecord(stop, stream));
    HASTE_CUDA_CHECK(cudaEventSynchronize(stop));
    float elapsed = 0;
    HASTE_CUDA_CHECK(cudaEventElapsedTime(&elapsed, start, stop));
    if (i >= kWarmup) ms.push_back(elapsed);
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[static_cast<size_t>(q * (ms.size() - 1) + 0.5)]; };
  row.median_ms = at(0.5);
  row.p10_ms = at(0.1);
  row.p90_ms = at(0.9);
  row.runs = runs;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// kBatch rows of `nnz` distinct random features with values in (0, 1].
haste::CsrMatrix random_rows(int64_t nnz, std::mt19937_64& engine) {
  haste::CsrMatrix x;
  x.cols = kFeatures;
  std::uniform_real_distribution<float> value(0.05f, 1.0f);
  std::vector<int32_t> indices;
  std::vector<float> values(nnz);
  for (int64_t b = 0; b < kBatch; ++b) {
    indices.clear();
    while (static_cast<int64_t>(indices.size()) < nnz) {
      indices.push_back(static_cast<int32_t>(engine() % kFeatures));
      if (static_cast<int64_t>(indices.size()) == nnz) {
        std::sort(indices.begin(), indices.end());
        indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
      }
    }
    for (float& v : values) v = value(engine);
    x.append_row(indices, values);
  }
  return x;
}

// One batch on the device, for both our kernels (int64 offsets) and cuSPARSE (int32 offsets).
struct DeviceRows {
  DeviceBuffer<int64_t> indptr;
  DeviceBuffer<int32_t> indptr32, indices;
  DeviceBuffer<float> values;
  haste::cuda::DeviceBatch batch;

  explicit DeviceRows(const haste::CsrMatrix& x)
      : indptr(x.indptr),
        indptr32(std::vector<int32_t>(x.indptr.begin(), x.indptr.end())),
        indices(x.indices),
        values(x.values) {
    batch.rows = batch.B = kBatch;
    batch.input_cols = kFeatures;
    batch.input_indptr = indptr.data();
    batch.input_indices = indices.data();
    batch.input_values = values.data();
    batch.input_nnz = x.nnz();
  }
};

void fill_random(DeviceBuffer<float>& buffer, std::mt19937_64& engine, float scale) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<float> host(buffer.size());
  for (float& v : host) v = uniform(engine);
  buffer.upload(host);
}

void bench_shape(int64_t d, int64_t nnz, int runs, cusparseHandle_t cusparse, cudaStream_t stream,
                 std::vector<Row>& rows) {
  std::mt19937_64 engine(static_cast<uint64_t>(d * 1000 + nnz));
  std::vector<haste::CsrMatrix> host_batches;
  std::vector<DeviceRows> batches;
  for (int i = 0; i < kRotate; ++i) {
    host_batches.push_back(random_rows(nnz, engine));
    batches.emplace_back(host_batches.back());
  }
  haste::cuda::EncoderGpu encoder({true, kFeatures, {d}, haste::Activation::relu, 0.1}, kBatch);
  encoder.reserve_nonzeros(kBatch * nnz);
  auto parameters = encoder.parameters();
  DeviceBuffer<float> weight(kFeatures * d), bias(d), out(kBatch * d), dh(kBatch * d);
  fill_random(weight, engine, 0.01f);
  fill_random(bias, engine, 0.1f);
  fill_random(dh, engine, 1.0f);
  HASTE_CUDA_CHECK(cudaMemcpy(parameters[0].value, weight.data(), weight.size() * sizeof(float),
                              cudaMemcpyDeviceToDevice));
  HASTE_CUDA_CHECK(cudaMemcpy(parameters[1].value, bias.data(), bias.size() * sizeof(float),
                              cudaMemcpyDeviceToDevice));
  const double bag_bytes = 4.0 * static_cast<double>(kBatch * nnz * d + kBatch * d);

  auto row = [&](const std::string& impl, const std::string& op, double bytes) -> Row& {
    Row& r = rows.emplace_back();
    r.d = d;
    r.nnz_per_row = nnz;
    r.impl = impl;
    r.op = op;
    r.bytes = bytes;
    return r;
  };
  time_into(row("bag", "fwd", bag_bytes), runs, stream, [&](int i) {
    const auto& b = batches[i % kRotate].batch;
    HASTE_CUDA_CHECK(haste::cuda::launch_embedding_bag(b.input_indptr, b.input_indices,
                                                       b.input_values, weight.data(), bias.data(),
                                                       kBatch, d, false, out.data(), stream));
  });

  Row& sparse_row = row("cusparse", "fwd", bag_bytes);
  try {
    std::vector<cusparseSpMatDescr_t> matrices(kRotate);
    cusparseDnMatDescr_t w_desc{}, out_desc{};
    HASTE_CUDA_CHECK(cusparseSetStream(cusparse, stream));
    for (int i = 0; i < kRotate; ++i) {
      DeviceRows& b = batches[i];
      HASTE_CUDA_CHECK(cusparseCreateCsr(&matrices[i], kBatch, kFeatures, b.batch.input_nnz,
                                         b.indptr32.data(), b.indices.data(), b.values.data(),
                                         CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
                                         CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
    }
    HASTE_CUDA_CHECK(cusparseCreateDnMat(&w_desc, kFeatures, d, d, weight.data(), CUDA_R_32F,
                                         CUSPARSE_ORDER_ROW));
    HASTE_CUDA_CHECK(
        cusparseCreateDnMat(&out_desc, kBatch, d, d, out.data(), CUDA_R_32F, CUSPARSE_ORDER_ROW));
    const float one = 1.0f, zero = 0.0f;
    const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
    size_t bytes = 0;
    HASTE_CUDA_CHECK(cusparseSpMM_bufferSize(cusparse, op, op, &one, matrices[0], w_desc, &zero,
                                             out_desc, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT,
                                             &bytes));
    DeviceBuffer<uint8_t> workspace(std::max<size_t>(bytes, 1));
    time_into(sparse_row, runs, stream, [&](int i) {
      HASTE_CUDA_CHECK(cusparseSpMM(cusparse, op, op, &one, matrices[i % kRotate], w_desc, &zero,
                                    out_desc, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT,
                                    workspace.data()));
    });
    for (auto m : matrices) cusparseDestroySpMat(m);
    cusparseDestroyDnMat(w_desc);
    cusparseDestroyDnMat(out_desc);
  } catch (const std::exception& e) {
    sparse_row.error = e.what();
  }

  auto forward = [&](int i) { encoder.forward(batches[i % kRotate].batch, i, stream); };
  auto backward = [&](int i) {
    HASTE_CUDA_CHECK(cudaMemcpyAsync(encoder.dh(), dh.data(), dh.size() * sizeof(float),
                                     cudaMemcpyDeviceToDevice, stream));
    encoder.backward(batches[i % kRotate].batch, stream);
  };
  time_into(row("encoder", "fwd", bag_bytes), runs, stream, forward);
  // A batch's upload without overlap: host gather into pinned memory + copy (with 5 labels per
  // row), from stage() to the end of the copy.
  haste::cuda::BatchUploader uploader;
  std::vector<int64_t> all_rows(kBatch);
  std::iota(all_rows.begin(), all_rows.end(), 0);
  const haste::CsrMatrix labels = random_rows(kLabelsPerRow, engine);
  const double upload_bytes = 8.0 * kBatch * (nnz + kLabelsPerRow);
  time_into(row("uploader", "upload", upload_bytes), runs, stream, [&](int i) {
    uploader.stage({&host_batches[i % kRotate], nullptr, all_rows}, &labels);
    uploader.acquire(stream);
  });
  // The backward of batch i needs its forward first: that runs untimed.
  time_into(row("encoder", "bwd", 0), runs, stream, backward, forward);
  time_into(row("encoder", "fwd_bwd", 0), runs, stream, [&](int i) {
    forward(i);
    backward(i);
  });
}

std::string today(const char* format) {
  std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, format, std::localtime(&now));
  return buffer;
}

}  // namespace

int main(int argc, char** argv) try {
  int runs = 100;
  std::string commit = "unknown";
  fs::path results = fs::path(HASTE_SOURCE_DIR) / "bench/results";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    haste::check(i + 1 < argc, "usage: encoder_bench [--runs N] [--commit SHA] [--results DIR]");
    const std::string value = argv[++i];
    if (arg == "--runs")
      runs = std::stoi(value);
    else if (arg == "--commit")
      commit = value;
    else if (arg == "--results")
      results = value;
    else
      haste::fail("usage: encoder_bench [--runs N] [--commit SHA] [--results DIR]");
  }
  cudaDeviceProp prop{};
  HASTE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cusparseHandle_t cusparse{};
  HASTE_CUDA_CHECK(cusparseCreate(&cusparse));
  cudaStream_t stream{};
  HASTE_CUDA_CHECK(cudaStreamCreate(&stream));
  std::vector<Row> rows;
  for (int64_t d : {256, 768}) {
    for (int64_t nnz : {50, 200, 500}) bench_shape(d, nnz, runs, cusparse, stream, rows);
  }

  nlohmann::ordered_json json = {{"bench", "encoder"},
                                 {"device", prop.name},
                                 {"commit", commit},
                                 {"date", today("%Y-%m-%d")},
                                 {"command", fmt::format("encoder_bench --runs {}", runs)},
                                 {"rows", nlohmann::ordered_json::array()}};
  fmt::print("\n{:>5} {:>8} {:>9} {:>8} {:>9} {:>8} {:>10}\n", "d", "nnz/row", "impl", "op", "ms",
             "GB/s", "x cusparse");
  for (const Row& r : rows) {
    nlohmann::ordered_json entry = {
        {"shape", {{"B", kBatch}, {"F", kFeatures}, {"d", r.d}, {"nnz_per_row", r.nnz_per_row}}},
        {"impl", r.impl},
        {"op", r.op}};
    if (!r.error.empty()) {
      entry["error"] = r.error;
      fmt::print("{:>5} {:>8} {:>9} {:>8} error: {}\n", r.d, r.nnz_per_row, r.impl, r.op, r.error);
    } else {
      double cusparse_ms = 0;
      for (const Row& o : rows) {
        if (o.impl == "cusparse" && o.d == r.d && o.nnz_per_row == r.nnz_per_row && o.error.empty())
          cusparse_ms = o.median_ms;
      }
      const double gbps = r.bytes / (r.median_ms * 1e6);
      const double ratio = r.op == "fwd" && cusparse_ms > 0 ? r.median_ms / cusparse_ms : 0;
      entry.update({{"median_ms", r.median_ms},
                    {"p10_ms", r.p10_ms},
                    {"p90_ms", r.p90_ms},
                    {"runs", r.runs},
                    {"gbps", gbps},
                    {"time_over_cusparse", ratio}});
      fmt::print("{:>5} {:>8} {:>9} {:>8} {:>9.4f} {:>8.0f} {:>10.2f}\n", r.d, r.nnz_per_row,
                 r.impl, r.op, r.median_ms, gbps, ratio);
    }
    json["rows"].push_back(entry);
  }
  std::string device = prop.name;
  for (auto& ch : device)
    ch = std::isalnum(static_cast<unsigned char>(ch)) ? std::tolower(ch) : '-';
  fs::create_directories(results);
  const fs::path out = results / fmt::format("encoder-{}-{}.json", device, today("%Y%m%d"));
  std::ofstream(out) << json.dump(2) << "\n";
  fmt::print("\nwrote {}\n", out.string());
  cusparseDestroy(cusparse);
  cudaStreamDestroy(stream);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "encoder_bench: {}\n", e.what());
  return 1;
}
