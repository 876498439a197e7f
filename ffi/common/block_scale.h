// The block recipes of SPEC 4: from a block's maximum and its row's global scale to a scale
// byte and the factor that maps elements onto the E2M1 / E4M3 grid. One copy for CPU and CUDA.
#pragma once

#include <cstdint>

#include "common/formats.h"

namespace jax_fp4 {

// Which block recipe a quantizer runs; the attribute values the Python side passes.
enum class Recipe : int64_t {
  kNvfp4 = 0,       // E4M3 scales, 16-element blocks, fast math (4.2)
  kNvfp4Exact = 1,  // TransformerEngine-compatible exact mode (4.3)
  kMxfp4 = 2,       // UE8M0 scales, 32-element blocks (4.5)
  kMxfp8 = 3,       // UE8M0 scales, E4M3 elements (4.7)
};

// How a row's global scale argument is read (SPEC 4.8).
enum class ScaleMode : int64_t {
  kEncode = 0,    // S itself (fp4_quantize's default)
  kInverse = 1,   // 1/S (is_global_scale_inversed)
  kKvDecode = 2,  // the decode scale g of nvfp4_kv_quantize
};

struct BlockScale {
  uint32_t code;    // the scale byte
  float out_scale;  // elements are encoded from Mul(x, out_scale)
};

// Block maximum (4.1) with fmaxf semantics: NaN operands are ignored unless every one is
// NaN (then the maximum is NaN, as FlashInfer's half-precision max gives); +-inf is the
// largest value. Start a reduction from kNoMax.
constexpr uint32_t kNoMaxBits = 0x7FC00000u;  // quiet NaN: "no element seen yet"

JAX_FP4_HD float AbsMax(float running, float x) {
#if defined(__CUDA_ARCH__)
  // One FMNMX with an |x| operand. Built with -ftz it may return 0 for a subnormal maximum;
  // every user flushes the maximum (Ftz) before use, so the result is the same.
  return fmaxf(running, fabsf(x));
#endif
  const float a = BitsFloat(FloatBits(x) & kAbsMask);
  if (IsNan(a)) return running;
  return IsNan(running) || a > running ? a : running;
}

// MXFP8 clamp (4.7 step 7): fminf/fmaxf semantics, so a NaN product becomes +448.
JAX_FP4_HD float ClampPm448(float y) {
#if defined(__CUDA_ARCH__)
  if (IsNan(y)) return 448.0f;
  return y > 448.0f ? 448.0f : (y < -448.0f ? -448.0f : y);
#else
  // The same on the bits, which the host compiler vectorizes (float compares it does not).
  const uint32_t u = FloatBits(y), mag = u & kAbsMask;
  const uint32_t clamped = mag > 0x43E00000u ? (u & kSignMask) | 0x43E00000u : u;
  return BitsFloat(mag > kInfBits ? 0x43E00000u : clamped);
#endif
}

// Breaks the compiler's view of a value without changing it. ptxas folds rcp(rcp(x)) into x
// (SPEC 1.5); XOR with a zero it cannot see keeps the inverse-scale double reciprocal genuine.
JAX_FP4_HD float Opaque(float x, uint32_t runtime_zero) {
  return BitsFloat(FloatBits(x) ^ runtime_zero);
}

// FlashInfer's optional NVFP4 "4over6" recipe (SPEC 4.4), as the bit field the Python side
// passes: bit 0 on, bit 1 MSE (else MAE), bit 2 error in fast math, bit 3 E4M3 max 256.
struct FourOverSix {
  bool on = false, mse = false, err_fast_math = false, e4m3_256 = false;
  JAX_FP4_HD static FourOverSix FromBits(int64_t bits) {
    return {(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0};
  }
};

// Per-row state of the FP4/FP8 quantizers: the encode scale S and what derives from it.
// kInputFp8 selects the FP8-input path of 4.6, which rescales elements into fp16 first.
template <Recipe kRecipe, bool kInputFp8>
struct BlockQuantizer {
  static constexpr int kSfVec = (kRecipe == Recipe::kNvfp4 || kRecipe == Recipe::kNvfp4Exact)
                                    ? 16 : 32;
  static constexpr bool kFp4Out = kRecipe != Recipe::kMxfp8;
  static constexpr bool kUsesGlobalScale =
      kRecipe == Recipe::kNvfp4 || kRecipe == Recipe::kNvfp4Exact || kInputFp8;

  float encode_scale = 1.0f;  // S
  float decode = 1.0f;        // rcp(S) (fast) or div(1, S) (exact)
  float fp8_prescale = 6.0f;  // mul(6, rcp(S)), FP8 input only
  float row_amax = 0.0f;      // per-token rows only: enters the 4over6 error (SPEC 4.4)
  FourOverSix four_over_six;

  // `global_scale` is what the caller passed for this row; `mode` says how to read it.
  JAX_FP4_HD void InitRow(float global_scale, ScaleMode mode, uint32_t runtime_zero) {
    if constexpr (!kUsesGlobalScale) return;
    if constexpr (kRecipe == Recipe::kNvfp4Exact && !kInputFp8) {
      encode_scale = mode == ScaleMode::kInverse ? Div(1.0f, global_scale) : global_scale;
      decode = Div(1.0f, encode_scale);
    } else if (mode == ScaleMode::kKvDecode) {
      // nvfp4_kv_quantize (5.13): the caller's scale g is the decode factor itself.
      encode_scale = Rcp(global_scale);
      decode = global_scale;
    } else {
      encode_scale = mode == ScaleMode::kInverse ? Rcp(global_scale) : global_scale;
      // With the inverse flag this is rcp(rcp(gs)), evaluated for real (4.2.1).
      decode = Rcp(Opaque(encode_scale, runtime_zero));
      fp8_prescale = Mul(6.0f, decode);
    }
  }

  // Per-token NVFP4 (4.2.2 fast, 4.3 exact): the row's own scale from its maximum `row_amax`
  // and the base scale `s_inv`. Returns the per-token scale p written for the row.
  JAX_FP4_HD float InitPerTokenRow(float amax_of_row, float s_inv) {
    const float ra = Ftz(amax_of_row);
    row_amax = ra;
    if (kRecipe == Recipe::kNvfp4Exact && four_over_six.on) {
      // 4over6 keeps a zero row's scale at 0 instead of FLT_MAX (SPEC 4.4).
      const float flt_max = BitsFloat(kFltMaxBits);
      float g = 0.0f;
      if (ra != 0.0f) {
        g = Div(Div(1.0f, s_inv), ra);
        g = g < flt_max ? g : flt_max;
        if (g == 0.0f) g = 1.0f;
      }
      encode_scale = g;
      decode = Div(1.0f, g);
      return g != 0.0f ? decode : 0.0f;
    }
    if constexpr (kRecipe == Recipe::kNvfp4Exact) {
      const float flt_max = BitsFloat(kFltMaxBits);
      float g = flt_max;
      if (ra != 0.0f) {
        g = Div(Div(1.0f, s_inv), ra);
        g = g < flt_max ? g : flt_max;
      }
      if (g == 0.0f) g = 1.0f;
      encode_scale = g;
      decode = Div(1.0f, g);
      return decode;
    } else {
      const float p = Mul(ra, s_inv);
      encode_scale = Rcp(p);
      decode = p;  // FlashInfer's compiled kernel folds rcp(rcp(p)) into p (SPEC 1.5)
      return p;
    }
  }

  // An element as the recipe sees it: FP8 inputs are rescaled and rounded to fp16 (4.6).
  JAX_FP4_HD float Prepare(float x) const {
    if constexpr (kInputFp8) return HalfToFloat(FloatToHalf(Mul(x, fp8_prescale)));
    return x;
  }

  // `amax` is the block maximum of Prepare()d elements.
  JAX_FP4_HD BlockScale Scale(float amax) const {
    const float a = Ftz(amax);
    if constexpr (kInputFp8) {  // 4.6
      const float v = Mul(encode_scale, Mul(a, BitsFloat(kRcp6Bits)));
      uint32_t code;
      float narrow;
      if constexpr (kSfVec == 16) {
        code = EncodeE4M3(v);
        narrow = DecodeE4M3(code);
      } else {
        code = EncodeUe8m0(v);
        narrow = code == 255u ? BitsFloat(0x7FC00000u) : Ftz(DecodeUe8m0Bits(code));
      }
      return {code, v != 0.0f ? Mul(encode_scale, Rcp(narrow)) : 0.0f};
    } else if constexpr (kRecipe == Recipe::kNvfp4) {  // 4.2
      const uint32_t code = Nvfp4Code(a);
      return {code, a != 0.0f ? Nvfp4OutScale(code) : 0.0f};
    } else if constexpr (kRecipe == Recipe::kNvfp4Exact) {  // 4.3
      constexpr float kOneSixth = 1.0f / 6.0f;
      const float sf = a != 0.0f ? Mul(a, Mul(encode_scale, kOneSixth)) : 0.0f;
      const uint32_t code = EncodeE4M3(sf);
      float os = 0.0f;
      if (a != 0.0f) {
        os = Div(1.0f, Mul(DecodeE4M3(code), decode));
        const float flt_max = BitsFloat(kFltMaxBits);
        os = os < flt_max ? os : flt_max;  // fminf: NaN (S = 0) also becomes FLT_MAX
      }
      return {code, os};
    } else if constexpr (kRecipe == Recipe::kMxfp4) {  // 4.5
      const uint32_t code = EncodeUe8m0(Mul(a, BitsFloat(kRcp6Bits)));
      return {code, Ue8m0InverseScale(code)};
    } else {  // kMxfp8, 4.7: rcp of the device value; an all-NaN block's code 255 gives NaN
      const uint32_t code = EncodeUe8m0(Mul(a, BitsFloat(kRcp448Bits)));
      return {code, code == 255u ? BitsFloat(0x7FC00000u) : Ue8m0InverseScale(code)};
    }
  }

  // Eight FP4 codes in a word, element i in bits 4i..4i+3 (FP4 recipes).
  JAX_FP4_HD static uint32_t Encode8(const float* x, float out_scale) {
    float y[8];
    for (int i = 0; i < 8; ++i) y[i] = Mul(x[i], out_scale);
    return EncodeE2M1x8(y);
  }

  // One E2M1 code (FP4 recipes): Encode8's element i is EncodeOneFp4(x[i], out_scale) << 4i.
  JAX_FP4_HD static uint32_t EncodeOneFp4(float x, float out_scale) {
    return EncodeE2M1(Mul(x, out_scale));
  }

  // Encode8 without the sign bits, for a block whose products are known finite with
  // |x * out_scale| <= 6.5 (their signs are the inputs' then: out_scale >= 0).
  JAX_FP4_HD static uint32_t Encode8Magnitudes(const float* x, float out_scale) {
    float y[8];
    for (int i = 0; i < 8; ++i) y[i] = Mul(x[i], out_scale);
    return EncodeE2M1x8Magnitudes(y);
  }

  // One E4M3 byte (MXFP8).
  JAX_FP4_HD static uint32_t EncodeOne(float x, float out_scale) {
#if defined(__CUDA_ARCH__)
    return EncodeE4M3(ClampPm448(Mul(x, out_scale)));
#else
    // The same without the clamp, which the encoder's saturation makes redundant but for
    // NaN (tests/cpp/e4m3_exhaustive.cc checks this on all inputs): fewer vector operations.
    const float y = Mul(x, out_scale);
    const uint32_t code = EncodeE4M3(y);
    return IsNan(y) ? 0x7Eu : code;
#endif
  }

  // The two halves of the fast NVFP4 scale (4.2) for a flushed, non-zero block maximum `a`:
  // the scale byte, and the output scale, which depends on the byte alone (the CPU handler
  // memoizes it per row: a row has at most 126 distinct positive scale bytes).
  JAX_FP4_HD uint32_t Nvfp4Code(float a) const {
    return EncodeE4M3(Mul(encode_scale, Mul(a, BitsFloat(kRcp6Bits))));
  }
  JAX_FP4_HD float Nvfp4OutScale(uint32_t code) const {
    return Rcp(Mul(DecodeE4M3(code), decode));
  }

  // Two E4M3 bytes in one 16-bit value, the lower-index element low (MXFP8).
  JAX_FP4_HD static uint32_t EncodePairE4M3(float lo, float hi, float out_scale) {
    return EncodeE4M3x2(ClampPm448(Mul(lo, out_scale)), ClampPm448(Mul(hi, out_scale)));
  }

  // 4over6 (SPEC 4.4) on a whole 16-element block: tries the scales that map the block
  // maximum to 6 and to 4 and keeps the one with the smaller error, summed in element
  // order. Writes the 16 E2M1 codes and returns the scale byte.
  JAX_FP4_HD uint32_t ScaleFourOverSix(const float (&x)[16], float amax,
                                       uint32_t (&codes)[16]) const {
    const float a = Ftz(amax);
    if (a == 0.0f) {  // zero block: scale 0 and code 0 for every element, -0 included
      for (int i = 0; i < 16; ++i) codes[i] = 0;
      return 0;
    }
    constexpr bool kExact = kRecipe == Recipe::kNvfp4Exact;
    const float s = encode_scale, g = decode;
    const float sf6 = kExact ? Mul(Div(a, 6.0f), s) : Mul(s, Mul(a, BitsFloat(kRcp6Bits)));
    const float sf4 = Mul(sf6, 1.5f);
    const uint32_t c4 = EncodeE4M3(sf4), c6 = EncodeE4M3(sf6);
    const float v4 = DecodeE4M3(c4), v6 = DecodeE4M3(c6);
    const float flt_max = BitsFloat(kFltMaxBits);
    float os4, os6;
    if constexpr (kExact) {
      os4 = Div(1.0f, Mul(v4, g));
      os4 = os4 < flt_max ? os4 : flt_max;
      os6 = Div(1.0f, Mul(v6, g));
      os6 = os6 < flt_max ? os6 : flt_max;
    } else {
      os4 = Rcp(Mul(v4, g));
      os6 = Rcp(Mul(v6, g));
    }
    float err4 = 0.0f, err6 = 0.0f;
    uint32_t q4[16], q6[16];
    for (int i = 0; i < 16; ++i) {
      q4[i] = EncodeE2M1(Mul(x[i], os4));
      q6[i] = EncodeE2M1(Mul(x[i], os6));
      err4 = Add(err4, FourOverSixTerm(DecodeE2M1(q4[i]) * v4, x[i], s, g));
      err6 = Add(err6, FourOverSixTerm(DecodeE2M1(q6[i]) * v6, x[i], s, g));
    }
    const bool pick4 = err4 < err6;
    for (int i = 0; i < 16; ++i) codes[i] = pick4 ? q4[i] : q6[i];
    return pick4 ? c4 : c6;
  }

  // One element's error term; `dv` = d4(code) * scale value, exact in float32.
  JAX_FP4_HD float FourOverSixTerm(float dv, float x, float s, float g) const {
    float d;
    if (four_over_six.err_fast_math) {
      d = Sub(dv, Mul(x, s));
    } else {
      const float deq = row_amax > 0.0f
                            // 6 * E4M3 max (448, or 256 with the option)
                            ? Div(Mul(dv, row_amax), four_over_six.e4m3_256 ? 1536.0f : 2688.0f)
                            : Mul(dv, g);
      d = Sub(deq, x);
    }
    return four_over_six.mse ? Mul(d, d) : BitsFloat(FloatBits(d) & kAbsMask);
  }
};

// ---- Dequantization (SPEC 5.6, 5.7, 5.9, 5.17): FlashInfer's host functions, IEEE math ----

enum class ElementFormat : int64_t { kE2m1 = 0, kE4m3 = 1 };
enum class ScaleFormat : int64_t {
  kE4m3 = 0,       // d8(b), times the global scale
  kUe8m0Bits = 1,  // bits(b << 23): 0 -> 0.0, 255 -> inf
  kUe8m0Host = 2,  // 0 -> 2^-127, 255 -> NaN
};

JAX_FP4_HD float DecodeScale(ScaleFormat format, uint32_t b) {
  switch (format) {
    case ScaleFormat::kE4m3: return DecodeE4M3(b);
    case ScaleFormat::kUe8m0Bits: return DecodeUe8m0Bits(b);
    default: return DecodeUe8m0Host(b);
  }
}

// `mxfp4_dequantize_host` decodes FP4 code 8 as +0.0 (SPEC 2.1), everything else as -0.0.
JAX_FP4_HD float DecodeElement(ElementFormat format, uint32_t code, bool plus_zero_code8) {
  if (format == ElementFormat::kE4m3) return DecodeE4M3(code);
  if (plus_zero_code8 && code == 8u) return 0.0f;
  return DecodeE2M1(code);
}

// One dequantized element. Host math (FlashInfer's host functions): hmul(e, hmul(s, g)), IEEE.
// Device math (nvfp4_kv_dequantize, SPEC 5.14): mul(mul(e, s), g) with flushing.
JAX_FP4_HD float DequantizeElement(float element, float scale, float global_scale,
                                   bool device_math) {
  return device_math ? Mul(Mul(element, scale), global_scale)
                     : HostMul(element, HostMul(scale, global_scale));
}

}  // namespace jax_fp4
