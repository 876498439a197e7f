// CUDA helpers for the handlers: error conversion and grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/ffi_utils.h"

namespace jax_fp4::cuda {

inline ffi::Error LaunchStatus(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string("jax_fp4.") + op + ": CUDA error: " +
                              cudaGetErrorString(err));
}

// Multiprocessor count of the current device (cached; at most 64 devices).
inline int SmCount() {
  static int counts[64] = {0};
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= 64) device = 0;
  if (counts[device] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    counts[device] = std::max(1, n);
  }
  return counts[device];
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `items`: enough to cover them, at most what stays
// resident (8 blocks of 256 threads per SM), at least one.
inline int GridFor(int64_t items, int threads = kThreads) {
  const int64_t needed = (items + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{SmCount()} * 8)));
}

}  // namespace jax_fp4::cuda
