// The CPU handlers' AVX2 versions of the shared format math of common/formats.h: the same
// float operations on 8 lanes (the magic add that rounds, the clamps), so the same bits.
// tests/cpp/e2m1_exhaustive.cc and e4m3_exhaustive.cc compare the encoders with the scalar
// ones on every float32 bit pattern, and the E4M3 decoder on every code.
#pragma once

#include "common/formats.h"
#include "cpu/target.h"

#if JAX_FP4_CPU_AVX2
#include <immintrin.h>

namespace jax_fp4::cpu {

// E4M3 magnitude codes of 8 finite floats times a power of two `scale` (or 0): EncodeE4M3's
// magic add, 8 lanes at a time. No flush to zero: the caller keeps blocks whose scale could
// lift a subnormal input to a non-zero code off this path, and a subnormal product encodes to
// 0 like the flushed one. Signs are added after packing.
__attribute__((target("avx2"))) inline __m256i E4m3MagnitudesAvx2(__m256 x, __m256 scale) {
  const __m256i y = _mm256_castps_si256(_mm256_mul_ps(x, scale));
  const __m256i saturated = _mm256_min_epu32(_mm256_and_si256(y, _mm256_set1_epi32(kAbsMask)),
                                             _mm256_set1_epi32(0x43E00000));  // 448
  const __m256i magic = _mm256_max_epu32(
      _mm256_add_epi32(_mm256_and_si256(saturated, _mm256_set1_epi32(kInfBits)),
                       _mm256_set1_epi32(20 << 23)),
      _mm256_set1_epi32((121 + 20) << 23));
  const __m256i sum = _mm256_castps_si256(
      _mm256_add_ps(_mm256_castsi256_ps(saturated), _mm256_castsi256_ps(magic)));
  return _mm256_add_epi32(_mm256_and_si256(sum, _mm256_set1_epi32(0xFFFFF)),
                          _mm256_sub_epi32(_mm256_srli_epi32(sum, 20),
                                           _mm256_set1_epi32(8 * (121 + 20))));
}

// E2M1 codes of the 8 products x * scale, one per 32-bit lane: E2M1CodePlusBias (the clamp,
// the magic add, the sign) minus its bias, on 8 lanes. The products are not flushed to zero;
// the caller's guard on the scale makes that give the flushed product's code.
__attribute__((target("avx2"))) inline __m256i E2M1CodesAvx2(__m256 x, __m256 scale) {
  // min_ps returns its second operand beside a NaN: NaN products (none reach here) -> +6.
  const __m256 c = _mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(x, scale), _mm256_set1_ps(6.0f)),
                                 _mm256_set1_ps(-6.0f));
  const __m256i bits = _mm256_castps_si256(c);
  const __m256i magic = _mm256_max_epu32(
      _mm256_add_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(kInfBits)),
                       _mm256_set1_epi32(22 << 23)),
      _mm256_set1_epi32(0x4A800000));
  const __m256i sum = _mm256_castps_si256(_mm256_add_ps(
      _mm256_castsi256_ps(_mm256_and_si256(bits, _mm256_set1_epi32(kAbsMask))),
      _mm256_castsi256_ps(magic)));
  const __m256i code_plus_bias = _mm256_add_epi32(
      _mm256_add_epi32(_mm256_and_si256(sum, _mm256_set1_epi32(7)), _mm256_srli_epi32(sum, 22)),
      _mm256_and_si256(_mm256_srli_epi32(bits, 28), _mm256_set1_epi32(8)));
  return _mm256_sub_epi32(code_plus_bias, _mm256_set1_epi32(kE2m1CodeBias));
}

// 8 E4M3 elements times the block's host-math scale (scale * global scale), the same bits as
// HostMul(DecodeE4M3(code), scale). E4M3's exponent and mantissa bits, moved to float32's
// places, are the magnitude times 2^-120 (a float32 subnormal for E4M3 subnormals, which the
// handlers keep: DAZ is off), so one exact multiply by 2^120 decodes them.
__attribute__((target("avx2"))) inline __m256 DecodeE4m3x8Avx2(const uint8_t* codes,
                                                                 __m256 scale) {
  const __m256i code =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
  const __m256i magnitude = _mm256_and_si256(code, _mm256_set1_epi32(0x7F));
  const __m256 unsigned_value = _mm256_mul_ps(
      _mm256_castsi256_ps(_mm256_slli_epi32(magnitude, 20)), _mm256_set1_ps(0x1p120f));
  const __m256 sign = _mm256_castsi256_ps(_mm256_and_si256(
      _mm256_slli_epi32(code, 24), _mm256_set1_epi32(static_cast<int>(kSignMask))));
  const __m256 is_nan =
      _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7F)));
  const __m256 value = _mm256_blendv_ps(_mm256_or_ps(unsigned_value, sign),
                                        _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), is_nan);
  return _mm256_mul_ps(value, scale);
}

}  // namespace jax_fp4::cpu
#endif  // JAX_FP4_CPU_AVX2
