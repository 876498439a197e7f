// The bandwidth an op can reach for its mix of reads and writes, without any format math.
//
// A copy moves half of its bytes each way; the dequantizers write ~88% of theirs, MXFP8
// quantize writes 33%, NVFP4 quantize 22%. If DRAM writes are slower than reads, a
// write-heavy op cannot reach 90% of a copy whatever its arithmetic. This measures, with
// CUDA events (median of 30 calls, buffers of 1 GiB or more), a copy and streaming kernels
// of the same read:write mixes, with plain, streaming (.cs) and bulk (TMA) stores.
//
// Build and run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90a benchmarks/experiments/bandwidth_mix.cu -o /tmp/bwmix && /tmp/bwmix
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#define CHECK(x)                                                                  \
  do {                                                                            \
    cudaError_t e = (x);                                                          \
    if (e != cudaSuccess) {                                                       \
      std::printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e));      \
      std::exit(1);                                                               \
    }                                                                             \
  } while (0)

enum class Store { kPlain, kStreaming };

template <Store S>
__device__ __forceinline__ void Put(uint4* p, uint4 v) {
  if constexpr (S == Store::kPlain) {
    *p = v;
  } else {
    __stcs(p, v);
  }
}

// Each thread reads `kRead` uint4 and writes `kWrite` uint4, each direction coalesced across
// the warp (lane-contiguous 512 B per warp instruction), grid-stride over units of work.
template <int kRead, int kWrite, Store S>
__global__ void __launch_bounds__(256) MixKernel(const uint4* __restrict__ src,
                                                 uint4* __restrict__ dst, int64_t units) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w * 32 < units; w += warps) {
    const int64_t unit = w * 32 + lane;
    if (unit >= units) break;
    uint4 acc = make_uint4(unit, 0, 0, 0);
    const int64_t rbase = w * 32 * kRead + lane;
#pragma unroll
    for (int r = 0; r < kRead; ++r) {
      const uint4 v = __ldcs(src + rbase + 32 * r);
      acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
    }
    const int64_t wbase = w * 32 * kWrite + lane;
#pragma unroll
    for (int k = 0; k < kWrite; ++k) {
      Put<S>(dst + wbase + 32 * k, make_uint4(acc.x + k, acc.y, acc.z, acc.w));
    }
  }
}

// Per-thread contiguous stores (a thread writes kWrite adjacent uint4: the dequantizers' store
// pattern of 8 float32 per thread is kWrite = 2).
template <int kRead, int kWrite>
__global__ void __launch_bounds__(256) MixThreadContiguous(const uint4* __restrict__ src,
                                                           uint4* __restrict__ dst, int64_t units) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units; u += stride) {
    uint4 acc = make_uint4(u, 0, 0, 0);
#pragma unroll
    for (int r = 0; r < kRead; ++r) {
      const uint4 v = __ldcs(src + u * kRead + r);
      acc.x ^= v.x; acc.y ^= v.y;
    }
#pragma unroll
    for (int k = 0; k < kWrite; ++k) dst[u * kWrite + k] = make_uint4(acc.x + k, acc.y, 0, 0);
  }
}

// Two 16-byte stores per thread into the warp's 1 KB of output per trip, in one of three
// address patterns: 0 = a thread's 32 bytes adjacent (the f32 dequantizers' and MXFP8
// quantize's pattern; each store instruction half-fills 32 sectors), 1 = lane pairs
// swapped so each instruction fills 16 whole sectors over 1 KB, 2 = lane-contiguous
// (each instruction 512 contiguous bytes).
template <int kRead, int kPattern>
__global__ void __launch_bounds__(256) PairStores(const uint4* __restrict__ src,
                                                  uint4* __restrict__ dst, int64_t warps_total) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  int c0, c1;
  if (kPattern == 0) { c0 = 2 * lane; c1 = 2 * lane + 1; }
  else if (kPattern == 1) { c0 = 4 * (lane >> 1) + (lane & 1); c1 = c0 + 2; }
  else { c0 = lane; c1 = lane + 32; }
  for (int64_t w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w < warps_total; w += warps) {
    uint4 acc = make_uint4(w, lane, 0, 0);
#pragma unroll
    for (int r = 0; r < kRead; ++r) {
      const uint4 v = __ldcs(src + w * 32 * kRead + 32 * r + lane);
      acc.x ^= v.x; acc.y ^= v.y;
    }
    dst[w * 64 + c0] = acc;
    dst[w * 64 + c1] = make_uint4(acc.y, acc.x, 1, 2);
  }
}

// Loads: kL 16-byte loads per thread, a thread's bytes adjacent (the quantizers' pattern:
// NVFP4 bf16 kL = 2, MXFP4/MXFP8 bf16 kL = 4) or lane-contiguous, then one 8-byte (kL = 2)
// or 16-byte (kL = 4) lane-contiguous store: NVFP4's and MXFP4's read:write mixes.
template <int kL, bool kAdjacent>
__global__ void __launch_bounds__(256) LoadPattern(const uint4* __restrict__ src,
                                                   uint4* __restrict__ dst, int64_t warps_total) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w < warps_total; w += warps) {
    uint4 acc = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int r = 0; r < kL; ++r) {
      const uint4 v = src[w * 32 * kL + (kAdjacent ? lane * kL + r : 32 * r + lane)];
      acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
    }
    if constexpr (kL == 2)
      reinterpret_cast<uint2*>(dst)[w * 32 + lane] = make_uint2(acc.x ^ acc.z, acc.y ^ acc.w);
    else
      dst[w * 32 + lane] = acc;
  }
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define HAVE_BULK 1
#endif

// Write-only through the bulk copy engine: each block fills 16 KB of shared memory once and
// bulk-stores it over its share of the output.
__global__ void __launch_bounds__(256) BulkWrite(uint4* __restrict__ dst, int64_t units) {
#ifdef HAVE_BULK
  constexpr int kTile = 16384;
  __shared__ alignas(128) uint4 tile[kTile / 16];
  for (int i = threadIdx.x; i < kTile / 16; i += blockDim.x) tile[i] = make_uint4(i, 1, 2, 3);
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncthreads();
  if (threadIdx.x == 0) {
    const int64_t tiles = units * 16 / kTile;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
      asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(
                       reinterpret_cast<char*>(dst) + t * kTile),
                   "r"(static_cast<uint32_t>(__cvta_generic_to_shared(tile))), "r"(kTile)
                   : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      asm volatile("cp.async.bulk.wait_group.read 4;" ::: "memory");
    }
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
  }
#endif
}

template <typename F>
float MedianMs(F&& launch) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<float> ms;
  for (int i = 0; i < 30; ++i) {
    CHECK(cudaEventRecord(a));
    launch();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float t;
    CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CHECK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int main() {
  int sms;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs, L2 %d MB\n", prop.name, sms, prop.l2CacheSize >> 20);
  const size_t kBytes = size_t(1) << 31;  // 2 GiB per buffer
  uint4 *src, *dst;
  CHECK(cudaMalloc(&src, kBytes));
  CHECK(cudaMalloc(&dst, kBytes));
  CHECK(cudaMemset(src, 1, kBytes));
  CHECK(cudaMemset(dst, 0, kBytes));
  const int grid = sms * 8;
  double copy_gbps = 0;
  auto report = [&](const char* name, double read_bytes, double write_bytes, float ms) {
    const double gbps = (read_bytes + write_bytes) / (ms * 1e-3) / 1e9;
    if (copy_gbps == 0) copy_gbps = gbps;
    std::printf("%-44s read %5.1f%%  %8.1f us  %7.0f GB/s  %5.1f%% of copy\n", name,
                100 * read_bytes / (read_bytes + write_bytes), ms * 1e3, gbps,
                100 * gbps / copy_gbps);
  };
  // A units count that keeps every buffer within kBytes for the given mix.
#define RUN_MIX(R, W, S, NAME)                                                           \
  do {                                                                                 \
    const int64_t units = int64_t(kBytes / 16) / std::max(R, W) / 32 * 32;            \
    float ms = MedianMs([&] { MixKernel<R, W, S><<<grid, 256>>>(src, dst, units); }); \
    report(NAME, units * 16.0 * R, units * 16.0 * W, ms);                             \
  } while (0)
  RUN_MIX(1, 1, Store::kPlain, "copy kernel (1:1, warp-coalesced)");
  {
    float ms = MedianMs([&] { CHECK(cudaMemcpyAsync(dst, src, kBytes, cudaMemcpyDeviceToDevice)); });
    report("cudaMemcpyAsync D2D", kBytes, kBytes, ms);
  }
  RUN_MIX(1, 1, Store::kStreaming, "copy kernel, .cs stores");
  RUN_MIX(7, 2, Store::kPlain, "NVFP4-quantize-like (7:2)");
  RUN_MIX(2, 1, Store::kPlain, "MXFP8-quantize-like (2:1)");
  RUN_MIX(2, 1, Store::kStreaming, "MXFP8-quantize-like (2:1), .cs stores");
  RUN_MIX(1, 7, Store::kPlain, "dequantize-like (1:7)");
  RUN_MIX(1, 7, Store::kStreaming, "dequantize-like (1:7), .cs stores");
  RUN_MIX(1, 4, Store::kPlain, "MXFP8-dequantize-like (1:4)");
  RUN_MIX(1, 16, Store::kPlain, "write-heavy (1:16)");
  RUN_MIX(0, 1, Store::kPlain, "write-only kernel");
  RUN_MIX(0, 1, Store::kStreaming, "write-only kernel, .cs stores");
  {
    const int64_t units = int64_t(kBytes / 16) / 7;
    float ms = MedianMs([&] { MixThreadContiguous<1, 7><<<grid, 256>>>(src, dst, units); });
    report("dequantize-like (1:7), per-thread contiguous", units * 16.0, units * 16.0 * 7, ms);
  }
#define RUN_PAIRS(R, P, NAME)                                                              \
  do {                                                                                     \
    const int64_t warps_total = int64_t(kBytes / 16) / 64 / std::max(1, R / 2);            \
    float ms = MedianMs([&] { PairStores<R, P><<<grid, 256>>>(src, dst, warps_total); }); \
    report(NAME, warps_total * 512.0 * R, warps_total * 1024.0, ms);                      \
  } while (0)
  RUN_PAIRS(1, 0, "1:2, 32 B per thread adjacent");
  RUN_PAIRS(1, 1, "1:2, lane pairs swapped (whole sectors)");
  RUN_PAIRS(1, 2, "1:2, lane-contiguous");
  RUN_PAIRS(4, 0, "2:1, 32 B per thread adjacent (MXFP8 q)");
  RUN_PAIRS(4, 1, "2:1, lane pairs swapped (whole sectors)");
  RUN_PAIRS(4, 2, "2:1, lane-contiguous");
#define RUN_LOADS(L, A, NAME)                                                              \
  do {                                                                                     \
    const int64_t warps_total = int64_t(kBytes / 16) / 32 / L;                             \
    float ms = MedianMs([&] { LoadPattern<L, A><<<grid, 256>>>(src, dst, warps_total); }); \
    report(NAME, warps_total * 512.0 * L, warps_total * 32.0 * (L == 2 ? 8 : 16), ms);    \
  } while (0)
  RUN_LOADS(2, true, "NVFP4 q: 32 B per thread adjacent loads");
  RUN_LOADS(2, false, "NVFP4 q: lane-contiguous loads");
  RUN_LOADS(4, true, "MXFP4 q: 64 B per thread adjacent loads");
  RUN_LOADS(4, false, "MXFP4 q: lane-contiguous loads");
  {
    float ms = MedianMs([&] { CHECK(cudaMemsetAsync(dst, 0, kBytes)); });
    report("cudaMemsetAsync (write only)", 0, kBytes, ms);
  }
  {
    const int64_t units = kBytes / 16;
    float ms = MedianMs([&] { BulkWrite<<<sms * 2, 256>>>(dst, units); });
    report("bulk (TMA) stores from shared (write only)", 0, kBytes, ms);
  }
  CHECK(cudaDeviceSynchronize());
  return 0;
}
