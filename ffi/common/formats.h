// E2M1 / E4M3 / UE8M0 encode-decode and FlashInfer's device float32 arithmetic, shared by the
// CPU handlers (plain C++) and the CUDA kernels (nvcc). Spec: SPEC.md sections 1 and 2.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define JAX_FP4_HD __host__ __device__ __forceinline__
#else
#define JAX_FP4_HD inline
#endif

namespace jax_fp4 {

JAX_FP4_HD uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

JAX_FP4_HD float BitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

constexpr uint32_t kSignMask = 0x80000000u;
constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;
constexpr uint32_t kFltMaxBits = 0x7F7FFFFFu;
constexpr uint32_t kRcp6Bits = 0x3E2AAAABu;    // rcp(6) == RN(1/6) (SPEC 1.2)
constexpr uint32_t kRcp448Bits = 0x3B124925u;  // rcp(448) == RN(1/448)

JAX_FP4_HD bool IsNan(float x) { return (FloatBits(x) & kAbsMask) > kInfBits; }

// Subnormal -> zero of the same sign: what -use_fast_math does to every device float32 value.
JAX_FP4_HD float Ftz(float x) {
  uint32_t u = FloatBits(x);
  return (u & kInfBits) == 0 ? BitsFloat(u & kSignMask) : x;
}

// ---- Device arithmetic (SPEC 1.2): flush operands and results, round to nearest even. ----
// On the GPU these are the .ftz instructions themselves; inline PTX keeps the compiler from
// contracting them into FMAs whatever the build flags are.
JAX_FP4_HD float Mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("mul.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return Ftz(Ftz(a) * Ftz(b));
#endif
}

JAX_FP4_HD float Add(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("add.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return Ftz(Ftz(a) + Ftz(b));
#endif
}

JAX_FP4_HD float Sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("sub.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return Ftz(Ftz(a) - Ftz(b));
#endif
}

JAX_FP4_HD float Div(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("div.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return Ftz(Ftz(a) / Ftz(b));
#endif
}

// IEEE float32 product with subnormals kept: FlashInfer's host code (`hmul`, SPEC 1.2).
JAX_FP4_HD float HostMul(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a * b;  // the CPU handlers run with FTZ/DAZ cleared (ScopedIeeeFloat)
#endif
}

// Host copy of the 2^23-bit table of SPEC 1.4: bit m set where rcp.approx.ftz.f32 of a float
// with mantissa field m is not the correctly rounded reciprocal. Set once at import.
inline const uint32_t* g_rcp_mismatch_table = nullptr;

// rcp.approx.ftz.f32 (SPEC 1.4). The host emulates it bit for bit with the table.
JAX_FP4_HD float Rcp(float x) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  x = Ftz(x);
  const uint32_t u = FloatBits(x);
  const uint32_t sign = u & kSignMask;
  const uint32_t mag = u & kAbsMask;
  if (mag > kInfBits) return x;                         // NaN
  if (mag == 0) return BitsFloat(sign | kInfBits);      // +-0 -> +-inf
  if (mag == kInfBits) return BitsFloat(sign);          // +-inf -> +-0
  float r = 1.0f / x;                                   // IEEE, round to nearest even
  const uint32_t m = u & 0x7FFFFFu;
  if ((g_rcp_mismatch_table[m >> 5] >> (m & 31)) & 1u) {
    // The hardware returns the other float that brackets 1/x. The product of two 24-bit
    // mantissas is exact in double, so this comparison is exact.
    // r and x share their sign, so prod > 0.
    const double prod = static_cast<double>(r) * static_cast<double>(x);
    uint32_t rb = FloatBits(r);
    if (prod < 1.0) rb += 1;       // |r| below |1/x|: one ulp up in magnitude
    else if (prod > 1.0) rb -= 1;  // above: one ulp down
    r = BitsFloat(rb);
  }
  return Ftz(r);
#endif
}

// ---- E2M1 (SPEC 2.1) ----

// Round-to-nearest-even on the E2M1 grid with saturation; NaN -> +6 (code 7). One float add
// does the rounding, so the GPU spends ~10 instructions per element (it runs this 16 times per
// NVFP4 block): after saturating y to [-6, 6], the sum |y| + 2^(e+22), with e = max(0,
// exponent of |y|), keeps |y| rounded to its grid step (0.5 below 2, 1 below 4, 2 up to 6)
// in its low mantissa bits, and its exponent field gives the binade's first code. The result
// carries a constant bias (kE2m1CodeBias) so that a packed word subtracts it once.
// Equal to the threshold table of SPEC 2.1 on all 2^32 inputs (tests/cpp/e2m1_exhaustive.cc).
constexpr uint32_t kE2m1CodeBias = 298u;  // 2 * (127 + 22): (sum bits >> 22) at |y| < 2

JAX_FP4_HD uint32_t E2M1CodePlusBias(float y) {
#if defined(__CUDA_ARCH__)
  const float c = fmaxf(fminf(y, 6.0f), -6.0f);  // min/max return the number beside a NaN
#else
  const float below = y < 6.0f ? y : 6.0f;       // NaN (signaling too) compares false: +6
  const float c = below > -6.0f ? below : -6.0f;
#endif
  const uint32_t bits = FloatBits(c);
  uint32_t magic = (bits & kInfBits) + (22u << 23);
  magic = magic > 0x4A800000u ? magic : 0x4A800000u;  // at least 2^22: step 0.5 below 2
#if defined(__CUDA_ARCH__)
  const float magnitude = fabsf(c);  // an operand modifier of the add
#else
  const float magnitude = BitsFloat(bits & kAbsMask);
#endif
  const uint32_t sum = FloatBits(magnitude + BitsFloat(magic));
  return (sum & 7u) + (sum >> 22) + ((bits >> 31) << 3);
}

JAX_FP4_HD uint32_t EncodeE2M1(float y) { return E2M1CodePlusBias(y) - kE2m1CodeBias; }

#if defined(__CUDA_ARCH__)
// E2M1CodePlusBias(y) << 4i added to `word`, with the integer work on the multiply-add pipe
// (sm_90's integer/logic pipe was the quantizers' limit): the sum minus the magic is the
// rounded step count, a high multiply is the >> 22, and the sign bit of c * 0 (+-0:
// c is finite after saturation) reaches bit 4i + 3 through a high multiply by 2^(4i+4) + 1
// (not a power of two, so it stays a multiply).
// `kSaturate` false skips the clamp to [-6, 6]: only for finite |y| <= 6.5, where the add
// still rounds to the grid (and 6.5 to 6), used by blocks that ruled out NaN and overflow.
// `kSign` false leaves the sign bits to the caller.
template <int kIndex, bool kSaturate = true, bool kSign = true>
__device__ __forceinline__ void E2M1AddCode(uint32_t& word, float y) {
  const float c = kSaturate ? fmaxf(fminf(y, 6.0f), -6.0f) : y;
  uint32_t magic = (FloatBits(c) & kInfBits) + (22u << 23);
  magic = magic > 0x4A800000u ? magic : 0x4A800000u;
  const uint32_t sum = FloatBits(fabsf(c) + BitsFloat(magic));
  uint32_t code;
  // hi(sum * 1025) == sum >> 22: the extra sum only adds to the low word, which stays
  // below 2^32 (sum < 2^31 and its low 22 bits are under 8).
  asm("mad.hi.u32 %0, %1, 1025, %2;" : "=r"(code) : "r"(sum), "r"(sum - magic));
  word += code << (4 * kIndex);
  if constexpr (!kSign) return;
  const uint32_t sign = FloatBits(Mul(c, 0.0f));
  if constexpr (kIndex < 7) {
    asm("mad.hi.u32 %0, %1, %2, %0;" : "+r"(word) : "r"(sign), "n"((1u << (4 * kIndex + 4)) + 1u));
  } else {
    word += sign;
  }
}
#endif

// Eight E2M1 codes in a word, element i in bits 4i..4i+3 (so the lower-index element of each
// byte is in its low nibble, SPEC 2.1 packing).
JAX_FP4_HD uint32_t EncodeE2M1x8(const float* y) {
#if defined(__CUDA_ARCH__) && (defined(__CUDA_ARCH_FEAT_SM100_ALL) || \
                               defined(__CUDA_ARCH_FEAT_SM120_ALL))
  // Blackwell has the conversion in hardware (same bits as the formula above).
  uint32_t word = 0;
  for (int i = 0; i < 8; i += 2) {
    uint16_t r;
    asm("{\n .reg .b8 t;\n cvt.rn.satfinite.e2m1x2.f32 t, %1, %2;\n cvt.u16.u8 %0, t;\n}"
        : "=h"(r)
        : "f"(y[i + 1]), "f"(y[i]));
    word |= static_cast<uint32_t>(r) << (4 * i);
  }
  return word;
#elif defined(__CUDA_ARCH__)
  uint32_t word = 0u - kE2m1CodeBias * 0x11111111u;
  E2M1AddCode<0>(word, y[0]);
  E2M1AddCode<1>(word, y[1]);
  E2M1AddCode<2>(word, y[2]);
  E2M1AddCode<3>(word, y[3]);
  E2M1AddCode<4>(word, y[4]);
  E2M1AddCode<5>(word, y[5]);
  E2M1AddCode<6>(word, y[6]);
  E2M1AddCode<7>(word, y[7]);
  return word;
#else
  uint32_t word = 0u - kE2m1CodeBias * 0x11111111u;  // the eight biases, subtracted once
  for (int i = 0; i < 8; ++i) word += E2M1CodePlusBias(y[i]) << (4 * i);
  return word;
#endif
}

// E2M1 codes of |y| (sign bits clear), for finite |y| <= 6.5: a block that knows its signs
// (those of its inputs) adds them itself.
JAX_FP4_HD uint32_t EncodeE2M1x8Magnitudes(const float* y) {
#if defined(__CUDA_ARCH__) && !(defined(__CUDA_ARCH_FEAT_SM100_ALL) || \
                                defined(__CUDA_ARCH_FEAT_SM120_ALL))
  uint32_t word = 0u - kE2m1CodeBias * 0x11111111u;
  E2M1AddCode<0, false, false>(word, y[0]);
  E2M1AddCode<1, false, false>(word, y[1]);
  E2M1AddCode<2, false, false>(word, y[2]);
  E2M1AddCode<3, false, false>(word, y[3]);
  E2M1AddCode<4, false, false>(word, y[4]);
  E2M1AddCode<5, false, false>(word, y[5]);
  E2M1AddCode<6, false, false>(word, y[6]);
  E2M1AddCode<7, false, false>(word, y[7]);
  return word;
#else
  return EncodeE2M1x8(y) & 0x77777777u;
#endif
}

JAX_FP4_HD float DecodeE2M1(uint32_t code) {
  // Magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6: the top 16 bits of each float32, four to a
  // 64-bit constant (a register select, not an indexed array the GPU would put in memory).
  constexpr uint64_t kLow = 0x3FC03F803F000000ull, kHigh = 0x40C0408040404000ull;
  const uint32_t c = code & 7u;
  const uint32_t top = static_cast<uint32_t>(((c < 4 ? kLow : kHigh) >> (16 * (c & 3u))) & 0xFFFFu);
  return BitsFloat((top << 16) | ((code & 8u) << 28));
}

// Eight E2M1 codes (element i in bits 4i..4i+3 of `codes`), each decoded as DecodeE2M1 does.
// On the GPU, byte permutes look up the two top bytes of four magnitudes at once (PRMT takes
// a 3-bit byte index per output byte; an index with its top bit set replicates the chosen
// byte's sign bit, giving the zero low bytes): ~3 instructions per element instead of ~10.
JAX_FP4_HD void DecodeE2M1x8(uint32_t codes, float (&out)[8]) {
#if defined(__CUDA_ARCH__)
  const uint32_t magnitudes = codes & 0x77777777u;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t sel = magnitudes >> (16 * h);
    uint32_t top, second;  // byte k: top / second byte of code 4h + k's magnitude
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(top) : "r"(0x3F3F3F00u), "r"(0x40404040u), "r"(sel));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(second) : "r"(0xC0800000u), "r"(0xC0804000u), "r"(sel));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int i = 4 * h + k;
      // bytes 3, 2: top_k, second_k; bytes 1, 0: top_k's sign bit (clear) replicated
      const uint32_t pick = ((4u + k) << 12) | (uint32_t(k) << 8) | ((12u + k) << 4) | (12u + k);
      uint32_t bits;
      asm("prmt.b32 %0, %1, %2, %3;" : "=r"(bits) : "r"(second), "r"(top), "r"(pick));
      out[i] = BitsFloat(bits | ((codes << (28 - 4 * i)) & kSignMask));
    }
  }
#else
  for (int i = 0; i < 8; ++i) out[i] = DecodeE2M1((codes >> (4 * i)) & 0xFu);
#endif
}

// ---- E4M3 "fn" (SPEC 2.2) ----

// Round-to-nearest-even with saturation to +-448 (what cvt.rn.satfinite.e4m3x2.f32 does;
// sm_89+ uses the instruction itself); NaN -> 0x7F whatever its sign.
// Branch-free, so the CPU handlers vectorize it: after saturating |x| to 448 (integer min on
// the bits, inf included), one float add rounds it to its E4M3 step. With E = max(exponent
// field of |x|, 121) (121: 2^-6, the subnormals' step 2^-9 continues below it), the magic
// 2^(E - 127 + 20) has an ulp of 2^(E - 127 - 3), the E4M3 step of that binade, so the sum's
// low bits hold k = |x| / step rounded to nearest even (8..16 for normals, a carry to 16
// being the next binade's first code; 0..8 below 2^-6), and code = k + 8 * (E - 121).
// Equal to the branchy encoder it replaced on all 2^32 inputs (tests/cpp/e4m3_exhaustive.cc).
JAX_FP4_HD uint32_t EncodeE4M3(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(x));
  return r & 0xFFu;
#endif
  const uint32_t u = FloatBits(x);
  const uint32_t mag = u & kAbsMask;
  const uint32_t sat = mag < 0x43E00000u ? mag : 0x43E00000u;  // 448
  const uint32_t exp_field = sat & kInfBits;
  const uint32_t magic = (exp_field > (121u << 23) ? exp_field : (121u << 23)) + (20u << 23);
  // sum = magic + k: bits 20..30 are magic's exponent field times 8, the rest is k.
  const uint32_t sum = FloatBits(BitsFloat(sat) + BitsFloat(magic));
  const uint32_t code = (sum & 0xFFFFFu) + (sum >> 20) - 8u * (121u + 20u);
  return mag > kInfBits ? 0x7Fu : ((u >> 24) & 0x80u) | code;
}

// Two E4M3 bytes, the lower-index element in the low byte. sm_89+ converts in hardware
// (bit-identical to EncodeE4M3 on all 2^32 inputs, SPEC 2.2).
JAX_FP4_HD uint32_t EncodeE4M3x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return EncodeE4M3(lo) | (EncodeE4M3(hi) << 8);
#endif
}

JAX_FP4_HD float DecodeE4M3(uint32_t code) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  // Hardware: E4M3 -> f16 -> f32, both exact; NaN gets the canonical payload below.
  uint32_t pair;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(pair) : "h"(static_cast<uint16_t>(code & 0xFFu)));
  float value;
  asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(static_cast<uint16_t>(pair)));
  return (code & 0x7Fu) == 0x7Fu ? BitsFloat(0x7FC00000u) : value;
#endif
  const uint32_t sign = (code & 0x80u) << 24;
  const uint32_t exp = (code >> 3) & 0xFu;
  const uint32_t man = code & 7u;
  if ((code & 0x7Fu) == 0x7Fu) return BitsFloat(0x7FC00000u);
  if (exp == 0) {
    // m * 2^-9 is a normal float32 (or zero): build it exactly.
    return BitsFloat(sign | FloatBits(static_cast<float>(man) * 0.001953125f));
  }
  return BitsFloat(sign | ((exp + 120u) << 23) | (man << 20));
}

// ---- UE8M0 (SPEC 2.3) ----

// Smallest power of two >= |x| (round toward +inf), saturating at 2^127; NaN -> 255.
JAX_FP4_HD uint32_t EncodeUe8m0(float x) {
  const uint32_t mag = FloatBits(x) & kAbsMask;
  if (mag > kInfBits) return 255u;
  const uint32_t bf16 = (mag + 0xFFFFu) >> 16;  // round up to bfloat16
  uint32_t exp = bf16 >> 7;
  if ((bf16 & 0x7Fu) != 0 && bf16 > 0x0040u && bf16 < 0x7F80u) exp += 1;
  return exp == 255u ? 254u : exp;
}

// Bit-pattern decoding `c << 23`: 0 -> +0.0, 255 -> +inf (the dequantizers of SPEC 5.6/5.9).
JAX_FP4_HD float DecodeUe8m0Bits(uint32_t code) { return BitsFloat((code & 0xFFu) << 23); }

// Host-value decoding: 0 -> 2^-127 (a subnormal, kept), 255 -> NaN (mxfp4_dequantize_host).
JAX_FP4_HD float DecodeUe8m0Host(uint32_t code) {
  if (code == 255u) return BitsFloat(0x7FC00000u);
  if (code == 0u) return BitsFloat(0x00400000u);
  return BitsFloat(code << 23);
}

// 2^(127 - code) for 1 <= code <= 253; 0 for code 0 and for 254, whose 2^-127 the device
// flushes. This is both `rcp(device value)` of MXFP8 (4.7) and the MXFP4 output scale (4.5).
JAX_FP4_HD float Ue8m0InverseScale(uint32_t code) {
  return (code == 0u || code >= 254u) ? 0.0f : BitsFloat((254u - code) << 23);
}

// ---- 16-bit and FP8 inputs, widened exactly (SPEC 1.3) ----

JAX_FP4_HD float Bf16ToFloat(uint16_t h) { return BitsFloat(static_cast<uint32_t>(h) << 16); }

JAX_FP4_HD float HalfToFloat(uint16_t h) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1Fu) return BitsFloat(sign | kInfBits | (man << 13));
  if (exp != 0) return BitsFloat(sign | ((exp + 112u) << 23) | (man << 13));
  // fp16 subnormal: man * 2^-24, exact in float32.
  return BitsFloat(sign | FloatBits(static_cast<float>(man) * 5.9604644775390625e-8f));
#endif
}

// float32 -> fp16, round to nearest even, overflow to inf (__float2half_rn, SPEC 2.4).
JAX_FP4_HD uint16_t FloatToHalf(float f) {
#if defined(__CUDA_ARCH__)
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  const uint32_t u = FloatBits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t mag = u & kAbsMask;
  if (mag > kInfBits) return static_cast<uint16_t>(sign | 0x7E00u);
  if (mag >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504
  const uint32_t exp = mag >> 23;
  if (exp >= 113) {  // normal fp16
    const uint32_t rounded = (mag + 0xFFFu + ((mag >> 13) & 1u)) >> 13;
    return static_cast<uint16_t>(sign | (rounded - (112u << 10)));
  }
  if (exp < 102) return static_cast<uint16_t>(sign);  // below half of the smallest subnormal
  const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // fp16 subnormal step 2^-24
  uint32_t q = significand >> shift;
  const uint32_t rem = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) q += 1;
  return static_cast<uint16_t>(sign | q);
#endif
}

// float32 -> bfloat16, round to nearest even (__float2bfloat16_rn), NaN stays NaN.
JAX_FP4_HD uint16_t FloatToBf16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & kAbsMask) > kInfBits) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Input element types, as the FFI hands them to us (16-bit floats are raw uint16_t).
enum class InputType : int { kF16, kBf16, kE4m3, kF32 };

}  // namespace jax_fp4
