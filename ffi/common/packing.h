// Bit packing (SPEC 5.18/5.19): eight booleans per byte, MSB-first ("big") or LSB-first.
#pragma once

#include <cstdint>

#include "common/formats.h"

namespace jax_fp4 {

// Packs up to 8 elements starting at `x` (non-zero = 1); missing elements are 0 bits.
JAX_FP4_HD uint8_t PackByte(const uint8_t* x, int64_t count, bool little) {
  uint32_t byte = 0;
  for (int64_t i = 0; i < 8 && i < count; ++i)
    byte |= static_cast<uint32_t>(x[i] != 0) << (little ? i : 7 - i);
  return static_cast<uint8_t>(byte);
}

JAX_FP4_HD int64_t CeilDiv8(int64_t n) { return (n + 7) >> 3; }

// Segment [begin, end) of a length-n input with malformed bounds clamped, so a bad indptr can
// never make a kernel read or write out of bounds (FlashInfer does not check, SPEC 7.13).
JAX_FP4_HD void ClampSegment(int64_t n, int64_t& begin, int64_t& end) {
  begin = begin < 0 ? 0 : (begin > n ? n : begin);
  end = end < begin ? begin : (end > n ? n : end);
}

}  // namespace jax_fp4
