// Helpers for the FFI handlers: shape splitting, error messages, the host float mode and a
// small parallel-for for the CPU handlers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace jax_fp4 {

namespace ffi = xla::ffi;

// Leading dims split into (batch, rows, last): the first `num_batch_dims` dims are batch
// (vmap'd axes, each with its own scale matrix), the remaining leading dims are rows.
struct Dims3 {
  int64_t batch = 1, rows = 1, last = 0;
};

inline Dims3 SplitDims(ffi::Span<const int64_t> dims, int64_t num_batch_dims) {
  Dims3 d;
  const int64_t rank = static_cast<int64_t>(dims.size());
  d.last = rank > 0 ? dims[rank - 1] : 1;
  for (int64_t i = 0; i < rank - 1; ++i) (i < num_batch_dims ? d.batch : d.rows) *= dims[i];
  return d;
}

inline ffi::Error InvalidArgument(const std::string& op, const std::string& what) {
  return ffi::Error::InvalidArgument("jax_fp4." + op + ": " + what);
}

// The dequantizers' input checks, the same in the CPU and CUDA handlers: E4M3 codes come as
// bytes or as float8_e4m3fn (no bitcast, which XLA:CPU compiles to a copy), FP4 codes as
// bytes, `code_row` codes to a row; each batch entry has `sf_size` scale bytes and one
// global scale.
inline ffi::Error CheckDequantizeInputs(const char* op, const Dims3& d, const ffi::AnyBuffer& codes,
                                        int64_t code_row, int64_t scale_bytes, int64_t sf_size,
                                        int64_t global_scales) {
  if (codes.element_type() != ffi::U8 &&
      !(codes.element_type() == ffi::F8E4M3FN && code_row == d.last))
    return InvalidArgument(op, "codes must be uint8 (or float8_e4m3fn for E4M3 codes)");
  if (static_cast<int64_t>(codes.element_count()) != d.batch * d.rows * code_row ||
      scale_bytes != d.batch * sf_size || global_scales != d.batch)
    return InvalidArgument(op, "input sizes do not match the output");
  return ffi::Error::Success();
}

// XLA:CPU runs computations with flush-to-zero and denormals-are-zero set. The handlers'
// results must not depend on that: the device recipes flush explicitly, and FlashInfer's host
// functions need IEEE subnormals. So every handler runs with both modes cleared.
class ScopedIeeeFloat {
 public:
  ScopedIeeeFloat() {
#if defined(__x86_64__) || defined(_M_X64)
    saved_ = _mm_getcsr();
    _mm_setcsr(saved_ & ~(0x8000u | 0x0040u));  // FTZ, DAZ
#elif defined(__aarch64__)
    uint64_t fpcr;
    asm volatile("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    asm volatile("msr fpcr, %0" ::"r"(fpcr & ~(uint64_t{1} << 24)));  // FZ
#endif
  }
  ~ScopedIeeeFloat() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_setcsr(static_cast<unsigned>(saved_));
#elif defined(__aarch64__)
    asm volatile("msr fpcr, %0" ::"r"(saved_));
#endif
  }
  ScopedIeeeFloat(const ScopedIeeeFloat&) = delete;
  ScopedIeeeFloat& operator=(const ScopedIeeeFloat&) = delete;

 private:
  uint64_t saved_ = 0;
};

// Runs fn(begin, end) over [0, n) on up to hardware_concurrency threads, each chunk at least
// `grain` items, with the IEEE float mode set in every thread. Small inputs stay on the caller.
template <typename Fn>
void ParallelFor(int64_t n, int64_t grain, Fn&& fn) {
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t chunks = std::min<int64_t>(hw, grain > 0 ? n / grain : 1);
  if (chunks <= 1) {
    ScopedIeeeFloat ieee;
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(chunks - 1);
  const int64_t step = (n + chunks - 1) / chunks;
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t begin = c * step, end = std::min(n, begin + step);
    if (begin >= end) break;
    workers.emplace_back([&fn, begin, end] {
      ScopedIeeeFloat ieee;
      fn(begin, end);
    });
  }
  {
    ScopedIeeeFloat ieee;
    fn(int64_t{0}, std::min(n, step));
  }
  for (auto& w : workers) w.join();
}

}  // namespace jax_fp4
