// Tile helpers shared by the CUDA kernels, so that kernels read like the math: asynchronous
// copies into swizzled shared-memory tiles, ldmatrix fragment loads and the bf16 tensor-core
// product mma.sync.m16n8k16 (fp32 accumulate), plus the (g, k) dispatch and launch sizing.
//
// Fragment layouts are PTX's for m16n8k16: lane t holds A[t/4 (+8)][2(t%4) (+1) (+8)],
// B[2(t%4) (+1) (+8)][t/4] and C[t/4 (+8)][2(t%4) (+1)]. ldmatrix gives exactly these when each
// 8x8 matrix is stored with the fragment's pairs contiguous (plain) or transposed (.trans).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace haste::cuda {

using bf16 = __nv_bfloat16;

constexpr int kWarpSize = 32;

struct FragA {
  uint32_t r[4] = {0, 0, 0, 0};  // 16x16 bf16
};
struct FragB {
  uint32_t r[2] = {0, 0};  // 16x8 bf16
};
struct FragC {
  float r[4] = {0.f, 0.f, 0.f, 0.f};  // 16x8 fp32
};

__device__ inline uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global -> shared copy that bypasses registers (and L1).
__device__ inline void copy_async_16(uint32_t shared, const void* global) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared), "l"(global));
}
__device__ inline void commit_async_copies() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `kPending` committed copy groups are still in flight.
template <int kPending>
__device__ inline void wait_async_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ inline void load_matrix_x1(uint32_t& r0, uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(address));
}
__device__ inline void load_matrix_x2(uint32_t& r0, uint32_t& r1, uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(address));
}
__device__ inline void load_matrix_x2_trans(uint32_t& r0, uint32_t& r1, uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(address));
}
__device__ inline void load_matrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ inline void load_matrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// Stores four (x4) or two (x2) 8x8 bf16 matrices, each held as in a C fragment packed to bf16
// pairs (lane t: row t / 4, columns 2 (t % 4) and + 1); lane 8j + i gives the address of row i
// of matrix j.
__device__ inline void store_matrix_x4(uint32_t address, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(address),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}
__device__ inline void store_matrix_x2(uint32_t address, uint32_t r0, uint32_t r1) {
  asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1, %2};\n" ::"r"(address), "r"(r0),
               "r"(r1)
               : "memory");
}

// c += a * b on the tensor cores.
__device__ inline void mma(FragC& c, const FragA& a, const FragB& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c.r[0]), "+f"(c.r[1]), "+f"(c.r[2]), "+f"(c.r[3])
      : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
}

// A row-major bf16 tile in shared memory whose rows are kChunks 16-byte chunks (8 values).
// Chunks are XOR-swizzled within each 128-byte span, so the 8 rows one ldmatrix reads at the
// same column land in 8 different bank groups (without it, rows 128 bytes apart would all hit
// the same 4 banks). Rows chosen at random (gathered features) still conflict by chance.
template <int kChunks>
struct SwizzledTile {
  static_assert(kChunks >= 1 && (kChunks & (kChunks - 1)) == 0, "chunks must be a power of 2");
  static constexpr int kRowsPer128Bytes = kChunks >= 8 ? 1 : 8 / kChunks;
  static constexpr int kRowBytes = kChunks * 16;

  bf16* base;

  __device__ static int swizzled_chunk(int row, int chunk) {
    if constexpr (kChunks >= 8)
      return chunk ^ (row & 7);
    else
      return chunk ^ ((row / kRowsPer128Bytes) & (kChunks - 1));
  }
  // Bytes from the tile's start to (row, chunk).
  __device__ static uint32_t chunk_offset(int row, int chunk) {
    return static_cast<uint32_t>(row * kRowBytes + swizzled_chunk(row, chunk) * 16);
  }
  __device__ bf16* chunk_pointer(int row, int chunk) const {
    return base + chunk_offset(row, chunk) / 2;
  }
  __device__ uint32_t chunk_address(int row, int chunk) const {
    return shared_address(chunk_pointer(row, chunk));
  }
  // The address of (row0 + row, chunk) for row0 a multiple of 8: the swizzle repeats every 8
  // rows, so row0 is a plain offset and the rest can stay out of loops over row0.
  __device__ uint32_t chunk_address(int row0, int row, int chunk) const {
    return chunk_address(row, chunk) + static_cast<uint32_t>(row0) * kRowBytes;
  }
  __device__ bf16 at(int row, int column) const {
    return chunk_pointer(row, column / 8)[column % 8];
  }
};

// Copies `rows` rows of `chunks` 16-byte chunks (chunks <= kChunks) into `tile`, row r coming
// from source_row(r); the whole block takes part, one chunk per thread at a time. For a tile
// copied once (a kernel's slice of h); per-stage copies work their addresses out once
// (gsff_tiling.cuh).
template <int kChunks, typename SourceRow>
__device__ void load_rows_async(const SwizzledTile<kChunks>& tile, int rows, int chunks,
                                SourceRow&& source_row) {
  for (int i = threadIdx.x; i < rows * chunks; i += blockDim.x) {
    const int row = i / chunks, chunk = i % chunks;
    copy_async_16(tile.chunk_address(row, chunk), source_row(row) + chunk * 8);
  }
}

__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}

// Adds the 4 bf16 values of an 8-byte piece to `sum`.
__device__ inline void add_bf16x4(float (&sum)[4], const uint2& piece) {
  const float2 low = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&piece.x));
  const float2 high = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&piece.y));
  sum[0] += low.x;
  sum[1] += low.y;
  sum[2] += high.x;
  sum[3] += high.y;
}
__device__ inline uint2 pack_bf16x4(const float (&values)[4]) {
  return make_uint2(pack_bf16x2(values[0], values[1]), pack_bf16x2(values[2], values[3]));
}

// Calls body(std::integral_constant<int, g>, std::integral_constant<int, k>) for the
// supported (g, k) (g in {8, 16, 32, 64}, k in {32, 64, 128}); returns cudaErrorInvalidValue
// for any other pair (the host API rejects those first).
template <typename Body>
cudaError_t dispatch_group_shape(int64_t g, int64_t k, Body&& body) {
  auto with_k = [&](auto g_constant) {
    switch (k) {
      case 32:
        return body(g_constant, std::integral_constant<int, 32>{});
      case 64:
        return body(g_constant, std::integral_constant<int, 64>{});
      case 128:
        return body(g_constant, std::integral_constant<int, 128>{});
      default:
        return cudaErrorInvalidValue;
    }
  };
  switch (g) {
    case 8:
      return with_k(std::integral_constant<int, 8>{});
    case 16:
      return with_k(std::integral_constant<int, 16>{});
    case 32:
      return with_k(std::integral_constant<int, 32>{});
    case 64:
      return with_k(std::integral_constant<int, 64>{});
    default:
      return cudaErrorInvalidValue;
  }
}

// Raises the kernel's dynamic shared-memory limit to `shared_bytes` and returns how many
// blocks of `threads` fit on one multiprocessor (0 if none) times the multiprocessor count:
// the size of a persistent grid.
template <typename Kernel>
cudaError_t resident_blocks(Kernel kernel, int threads, size_t shared_bytes, int& blocks) {
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(shared_bytes));
  if (status != cudaSuccess) return status;
  int device = 0, multiprocessors = 0, per_multiprocessor = 0;
  if ((status = cudaGetDevice(&device)) != cudaSuccess) return status;
  status = cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return status;
  status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, threads,
                                                         shared_bytes);
  if (status != cudaSuccess) return status;
  blocks = per_multiprocessor * multiprocessors;
  return blocks > 0 ? cudaSuccess : cudaErrorInvalidConfiguration;
}

__host__ __device__ constexpr int ceil_div(int64_t a, int64_t b) {
  return static_cast<int>((a + b - 1) / b);
}

}  // namespace haste::cuda
