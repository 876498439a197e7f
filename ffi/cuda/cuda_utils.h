// CUDA helpers for the handlers: error conversion and grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "common/ffi_utils.h"

namespace jax_fp4::cuda {

inline ffi::Error LaunchStatus(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string("jax_fp4.") + op + ": CUDA error: " +
                              cudaGetErrorString(err));
}

// An attribute of the current device, read once per device (at most 64), at least 1.
template <cudaDeviceAttr kAttribute>
inline int CachedDeviceAttribute() {
  static int values[64] = {0};
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= 64) device = 0;
  if (values[device] == 0) {
    int value = 0;
    cudaDeviceGetAttribute(&value, kAttribute, device);
    values[device] = std::max(1, value);
  }
  return values[device];
}

inline int SmCount() { return CachedDeviceAttribute<cudaDevAttrMultiProcessorCount>(); }
inline int ComputeMajor() { return CachedDeviceAttribute<cudaDevAttrComputeCapabilityMajor>(); }

constexpr int kThreads = 256;

// Launches `kernel`, with programmatic dependent launch (PDL) when `pdl` is set and the GPU
// has it (sm_90+): the kernel may start while the previous one on the stream finishes, and
// waits for it in WaitForPreviousGrid() before reading memory.
template <typename... Params, typename... Args>
void LaunchMaybePdl(void (*kernel)(Params...), int grid, int block, cudaStream_t stream,
                    bool pdl, Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(block);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdl && ComputeMajor() >= 9 ? 1 : 0;
  cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// The device side of PDL (no-ops below sm_90 and when launched without it): wait until the
// previous grid on the stream has finished and its writes are visible; let the next grid
// launch once this one has issued its work.
__device__ __forceinline__ void WaitForPreviousGrid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void AllowNextGrid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Stores 32 bytes per thread (`lo`, `hi`) at dst[2 * i], dst[2 * i + 1] for consecutive i
// across a warp, lane parity equal to i's parity. Stored as is, each 16-byte store
// instruction would half-fill 32 sectors; lane pairs swap halves first, so each instruction
// writes 16 whole sectors: even lanes write both `lo`s of the pair, odd lanes both `hi`s.
// Measured on an H100 (benchmarks/experiments/bandwidth_mix.cu): 79% -> 100% of a copy
// kernel for a 1:2 read:write mix, 94% -> 101% for 2:1. Every lane of the warp must call it
// (a shuffle); `pair_complete` says both lanes of the pair hold an item, `valid` this lane.
__device__ __forceinline__ void StorePairSwapped32(uint4* __restrict__ dst, uint32_t i, uint4 lo,
                                                   uint4 hi, bool pair_complete, bool valid) {
  const bool odd = threadIdx.x & 1;
  const uint4 send = odd ? lo : hi;
  uint4 recv;
  recv.x = __shfl_xor_sync(0xFFFFFFFFu, send.x, 1);
  recv.y = __shfl_xor_sync(0xFFFFFFFFu, send.y, 1);
  recv.z = __shfl_xor_sync(0xFFFFFFFFu, send.z, 1);
  recv.w = __shfl_xor_sync(0xFFFFFFFFu, send.w, 1);
  if (pair_complete) {
    // even: lo at 2i, the partner's lo at 2i + 2; odd: the partner's hi at 2i - 1, hi at 2i + 1
    uint4* first = dst + (int64_t{2} * i - (odd ? 1 : 0));
    first[0] = odd ? recv : lo;
    first[2] = odd ? hi : recv;
  } else if (valid) {
    dst[int64_t{2} * i] = lo;
    dst[int64_t{2} * i + 1] = hi;
  }
}

// Division of 32-bit dividends by a run-time constant without the GPU's long integer divide
// (Granlund-Montgomery: a 33-bit multiplier whose top bit is folded into an add, built on the
// host): five integer instructions, exact for every n < 2^32.
struct FastDiv32 {
  uint32_t divisor = 1, mul = 0, shift = 0;

  static FastDiv32 Make(int64_t d) {
    FastDiv32 f;
    f.divisor = static_cast<uint32_t>(d < 1 ? 1 : d);
    if (f.divisor == 1) return f;
    uint32_t l = 0;
    while ((uint64_t{1} << l) < f.divisor) ++l;  // ceil(log2 d), 1..32
    f.mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - f.divisor)) /
                                  f.divisor + 1);
    f.shift = l - 1;
    return f;
  }
  __host__ __device__ __forceinline__ uint32_t Div(uint32_t n) const {
    if (divisor == 1) return n;
#if defined(__CUDA_ARCH__)
    const uint32_t t = __umulhi(n, mul);
#else
    const uint32_t t = static_cast<uint32_t>((uint64_t{n} * mul) >> 32);
#endif
    return (t + ((n - t) >> 1)) >> shift;
  }
};

// Blocks for a grid-stride loop over `items`: enough to cover them, at most what stays
// resident (8 blocks of 256 threads per SM), at least one.
inline int GridFor(int64_t items, int threads = kThreads) {
  const int64_t needed = (items + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{SmCount()} * 8)));
}

// Resident blocks of kThreads per SM for `kernel` with `dynamic_smem` bytes of shared memory
// (at least 1), asked of the runtime once per kernel, size and device: the handlers launch
// the same few kernels over and over, and the query costs microseconds of host time.
inline int BlocksPerSm(const void* kernel, int dynamic_smem) {
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, int>, int> cache;
  int device = 0;
  cudaGetDevice(&device);
  const auto key = std::make_tuple(kernel, dynamic_smem, device);
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, dynamic_smem) !=
          cudaSuccess ||
      per_sm < 1)
    per_sm = 1;
  cache.emplace(key, per_sm);
  return per_sm;
}

// Grid and block size of a grid-stride kernel whose threads take `per_thread` items a trip,
// or one item a trip when `single` (see ShapeForKernel).
struct LaunchShape {
  int grid, threads;
  bool single;
};

// Large problems (at least one full wave of kThreads blocks with `per_thread` items each):
// blocks of kThreads, at most one full wave of what fits on the GPU at once (registers
// decide), so grid-strided blocks never wait for a second wave. Smaller problems take one
// item per thread (`single`: more threads in flight, a shorter serial chain per thread), and
// problems too small to give every multiprocessor a full block (decode shapes) get blocks of
// fewer threads, down to one warp, so that more multiprocessors share the work. `min_threads`
// raises the grid for work that is not per item (the padding rows of a scale buffer).
template <typename Kernel>
LaunchShape ShapeForKernel(Kernel kernel, int64_t items, int per_thread, int64_t min_threads = 0,
                           int dynamic_smem = 0) {
  const int per_sm = BlocksPerSm(reinterpret_cast<const void*>(kernel), dynamic_smem);
  const int64_t sms = SmCount();
  const int64_t wave_threads = sms * per_sm * kThreads;
  const bool single = (items + per_thread - 1) / per_thread < wave_threads;
  const int64_t threads_needed =
      std::max<int64_t>(single ? items : (items + per_thread - 1) / per_thread, min_threads);
  int threads = kThreads;
  if (threads_needed < sms * kThreads)
    threads = static_cast<int>(std::clamp<int64_t>(threads_needed / sms / 32 * 32, 32, kThreads));
  const int64_t grid = (threads_needed + threads - 1) / threads;
  const int64_t resident = wave_threads / threads;
  return {static_cast<int>(std::max<int64_t>(1, std::min(grid, resident))), threads, single};
}

}  // namespace jax_fp4::cuda
