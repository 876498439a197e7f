// CPU handlers of the block quantizers (fp4_quantize: NVFP4 and MXFP4; mxfp8_quantize).
// Rows are split across threads; each block calls the shared recipe of common/block_scale.h.
#include <cstring>
#include <type_traits>

#include "common/block_scale.h"
#include "common/ffi_utils.h"
#include "common/sf_layout.h"
#include "cpu/isa.h"
#include "cpu/simd_formats.h"
#include "handlers.h"

#if JAX_FP4_CPU_AVX2
#include <immintrin.h>
#endif

namespace jax_fp4::cpu {
namespace {

// AbsMax over a block (SPEC 4.1: NaN ignored unless every element is NaN) on the float bits,
// branch-free so the compiler vectorizes it: |x| bits order like the values (as signed
// integers too, being below 2^31), NaN bits are above the infinity's and count as -1.
template <int kN>
float BlockAbsMax(const float (&v)[kN]) {
  int32_t max_bits = -1;
  for (int i = 0; i < kN; ++i) {
    const int32_t a = static_cast<int32_t>(FloatBits(v[i]) & kAbsMask);
    const int32_t number = a <= static_cast<int32_t>(kInfBits) ? a : -1;
    max_bits = number > max_bits ? number : max_bits;
  }
  return BitsFloat(max_bits >= 0 ? static_cast<uint32_t>(max_bits) : kNoMaxBits);
}

// One block's element codes. Separate loops over restrict pointers so that the compiler
// vectorizes the (branch-free) shared encoders.
template <typename Q>
void EncodeBlockFp4(const float* __restrict v, float out_scale, uint8_t* __restrict out) {
  uint8_t c[Q::kSfVec];
  for (int i = 0; i < Q::kSfVec; ++i) c[i] = static_cast<uint8_t>(Q::EncodeOneFp4(v[i], out_scale));
  for (int i = 0; i < Q::kSfVec / 2; ++i) out[i] = static_cast<uint8_t>(c[2 * i] | (c[2 * i + 1] << 4));
}

template <typename Q>
void EncodeBlockFp8(const float* __restrict v, float out_scale, uint8_t* __restrict out) {
  for (int i = 0; i < Q::kSfVec; ++i) out[i] = static_cast<uint8_t>(Q::EncodeOne(v[i], out_scale));
}

template <InputType kType>
float LoadInput(const void* base, int64_t i) {
  if constexpr (kType == InputType::kF16) return HalfToFloat(static_cast<const uint16_t*>(base)[i]);
  if constexpr (kType == InputType::kBf16) return Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  if constexpr (kType == InputType::kE4m3) return DecodeE4M3(static_cast<const uint8_t*>(base)[i]);
  if constexpr (kType == InputType::kF32) return static_cast<const float*>(base)[i];
}

// Software prefetch of the input a few blocks ahead: the row loop is short per block and
// otherwise waits for its loads (measured on a 2-core Xeon VM). Past a row's end it touches
// the next row, or nothing (prefetches do not fault).
template <InputType kType>
const void* InputAt(const void* base, int64_t i) {
  const size_t size = kType == InputType::kE4m3 ? 1 : kType == InputType::kF32 ? 4 : 2;
  return static_cast<const char*>(base) + static_cast<size_t>(i) * size;
}

template <InputType kType>
void PrefetchInput(const void* base, int64_t i) {
  __builtin_prefetch(InputAt<kType>(base, i));
}
constexpr int kPrefetchBlocks = 16;

#if JAX_FP4_CPU_AVX2
// Loads kVecs x 16 bfloat16 or float16 elements into `h` and returns their largest |x| as
// float32 bits (kInfBits or more when one is inf or NaN): an integer max over |x| bits, which
// order like the values; phminposuw finds the smallest of 8 lanes, here of the complements.
template <InputType kType, int kVecs>
__attribute__((target("avx2,f16c"))) inline uint32_t Load16AbsMax(const void* in,
                                                                  __m256i (&h)[kVecs]) {
  const __m256i abs_mask = _mm256_set1_epi16(0x7FFF);
  __m256i m = _mm256_setzero_si256();
  for (int i = 0; i < kVecs; ++i) {
    h[i] = _mm256_loadu_si256(static_cast<const __m256i*>(in) + i);
    m = _mm256_max_epi16(m, _mm256_and_si256(h[i], abs_mask));
  }
  const __m128i m8 = _mm_max_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  const __m128i smallest_complement = _mm_minpos_epu16(_mm_xor_si128(m8, _mm_set1_epi16(-1)));
  const uint32_t lane = ~static_cast<uint32_t>(_mm_cvtsi128_si32(smallest_complement)) & 0xFFFFu;
  return kType == InputType::kBf16 ? lane << 16 : FloatBits(HalfToFloat(lane));
}

// Eight bfloat16 or float16 values as float32, exactly.
template <InputType kType>
__attribute__((target("avx2,f16c"))) inline __m256 Widen16(__m128i h) {
  if constexpr (kType == InputType::kBf16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  else
    return _mm256_cvtph_ps(h);
}

// One whole MXFP8 block of bfloat16, float16 or float32 input: the 32 E4M3 codes, and the
// UE8M0 byte as the return value, or -1 (nothing written) for a block the scalar path must
// take: one with inf or NaN (NaN codes and the all-NaN scale), or with a scale of 2^116 or
// more (code < 12), under which a subnormal input (flushed by the recipe) could reach a
// non-zero code.
// The block maximum is an integer max over |x| bits; the elements, widened to float32 in
// order, give the codes, packed 32 -> 16 -> 8 bits with their signs packed the same way, so
// that one lane permute puts the 32 bytes in order.
template <InputType kType>
__attribute__((target("avx2,f16c"))) inline int QuantizeMxfp8BlockAvx2(const void* in,
                                                                      uint8_t* out) {
  __m256 x[4];
  uint32_t max_bits;
  if constexpr (kType == InputType::kF32) {
    const float* p = static_cast<const float*>(in);
    for (int i = 0; i < 4; ++i) x[i] = _mm256_loadu_ps(p + 8 * i);
    const __m256i abs_mask = _mm256_set1_epi32(kAbsMask);
    __m256i m = _mm256_and_si256(_mm256_castps_si256(x[0]), abs_mask);
    for (int i = 1; i < 4; ++i)
      m = _mm256_max_epi32(m, _mm256_and_si256(_mm256_castps_si256(x[i]), abs_mask));
    __m128i m4 = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0x4E));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0xB1));
    max_bits = static_cast<uint32_t>(_mm_cvtsi128_si32(m4));
  } else {
    __m256i h[2];
    max_bits = Load16AbsMax<kType>(in, h);
    for (int i = 0; i < 2; ++i) {
      x[2 * i] = Widen16<kType>(_mm256_castsi256_si128(h[i]));
      x[2 * i + 1] = Widen16<kType>(_mm256_extracti128_si256(h[i], 1));
    }
  }
  // Packing interleaves the 128-bit lanes: codes 0-3, 8-11, 16-19, 24-27 | 4-7, 12-15, ...
  const __m256i signs = _mm256_packs_epi16(
      _mm256_packs_epi32(_mm256_castps_si256(x[0]), _mm256_castps_si256(x[1])),
      _mm256_packs_epi32(_mm256_castps_si256(x[2]), _mm256_castps_si256(x[3])));
  const __m256i permute = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  if (max_bits >= kInfBits) return -1;
  const BlockScale bs = BlockQuantizer<Recipe::kMxfp8, false>{}.Scale(BitsFloat(max_bits));
  if (bs.code < 12u) return -1;
  const __m256 scale = _mm256_set1_ps(bs.out_scale);
  const __m256i codes = _mm256_packus_epi16(
      _mm256_packus_epi32(E4m3MagnitudesAvx2(x[0], scale), E4m3MagnitudesAvx2(x[1], scale)),
      _mm256_packus_epi32(E4m3MagnitudesAvx2(x[2], scale), E4m3MagnitudesAvx2(x[3], scale)));
  const __m256i signed_codes =
      _mm256_or_si256(codes, _mm256_and_si256(signs, _mm256_set1_epi8(static_cast<char>(0x80))));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_permutevar8x32_epi32(signed_codes, permute));
  return static_cast<int>(bs.code);
}

// The 16 bfloat16 or float16 elements of `h`, in order, as 8 bytes of packed E2M1 codes
// (SPEC 2.1: the lower-index element in the low nibble) of each element times `scale`.
template <InputType kType>
__attribute__((target("avx2,f16c"))) inline void EncodeFp4x16Avx2(__m256i h, __m256 scale,
                                                                 uint8_t* out) {
  const __m256 x0 = Widen16<kType>(_mm256_castsi256_si128(h));
  const __m256 x1 = Widen16<kType>(_mm256_extracti128_si256(h, 1));
  // 16-bit codes; packing interleaves the 128-bit lanes, the 64-bit permute restores order.
  const __m256i codes = _mm256_permute4x64_epi64(
      _mm256_packus_epi32(E2M1CodesAvx2(x0, scale), E2M1CodesAvx2(x1, scale)), 0xD8);
  // Each 32-bit lane holds codes 2k and 2k + 1 at bits 0 and 16: their byte at bits 0-7.
  const __m256i pairs = _mm256_or_si256(codes, _mm256_srli_epi32(codes, 12));
  const __m256i low_bytes = _mm256_shuffle_epi8(
      pairs, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                              0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out),
                   _mm_unpacklo_epi32(_mm256_castsi256_si128(low_bytes),
                                      _mm256_extracti128_si256(low_bytes, 1)));
}

// One whole NVFP4 (kSfVec 16) or MXFP4 (32) block of bfloat16 or float16 input: its packed
// codes, and the scale byte from `block_scale(amax)` as the return value, or -1 (nothing
// written) for a block the scalar path must take: one with inf or NaN, or whose output scale
// is subnormal or 2^124 or more (or inf, NaN), where flushing a subnormal input or product to
// zero (SPEC 1.2) could change a code: below 2^124 a subnormal bfloat16 input's product stays
// under 0.25 (code 0 with its sign, as the flushed one gives), and a product that is
// subnormal encodes the same. (float16 has no float32-subnormal values.)
template <int kSfVec, InputType kType, typename BlockScaleOf>
__attribute__((target("avx2,f16c"))) inline int QuantizeFp4BlockAvx2(
    const void* in, const BlockScaleOf& block_scale, uint8_t* out) {
  constexpr int kVecs = kSfVec / 16;
  __m256i h[kVecs];
  const uint32_t max_bits = Load16AbsMax<kType>(in, h);
  if (max_bits >= kInfBits) return -1;  // inf or NaN
  const BlockScale bs = block_scale(BitsFloat(max_bits));
  const uint32_t scale_mag = FloatBits(bs.out_scale) & kAbsMask;
  if (scale_mag >= 0x7D800000u || (scale_mag != 0 && scale_mag < 0x00800000u)) return -1;
  const __m256 scale = _mm256_set1_ps(bs.out_scale);
  for (int i = 0; i < kVecs; ++i) EncodeFp4x16Avx2<kType>(h[i], scale, out + 8 * i);
  return static_cast<int>(bs.code);
}
#endif

// Shapes of one quantizer call: `batch` independent [rows, cols] inputs, each quantized into
// rows of `padded_cols` (>= cols, the MXFP8 alignment) and one scale buffer of `sf_size` bytes.
struct QuantizeShape {
  int64_t batch, rows, cols, padded_cols, layout, sf_size;
  int64_t global_scales_per_batch;  // 1 or rows (row-wise global scale, SPEC 4.2.3)
  ScaleMode scale_mode;
  const uint8_t* row_mask;          // null, or [batch, rows]: 0 writes a zero row
  float* per_token_scale;           // non-null: per-token NVFP4 (4.2.2), [batch, rows]
  FourOverSix four_over_six;        // NVFP4 16-bit input only
};

template <Recipe kRecipe, bool kInputFp8, InputType kType>
void QuantizeRows(const void* x, const float* global_scale, uint8_t* codes, uint8_t* scales,
                  const QuantizeShape& s) {
  using Q = BlockQuantizer<kRecipe, kInputFp8>;
  constexpr int kSfVec = Q::kSfVec;
  const int64_t blocks = s.padded_cols / kSfVec;
  const int64_t code_row_bytes = Q::kFp4Out ? s.padded_cols / 2 : s.padded_cols;
  const SfAddressing addr = SfAddressing::Make(s.layout, blocks);
  // Zero first: padding rows/columns of swizzled buffers must read 0 (SPEC 3.4).
  std::memset(scales, 0, static_cast<size_t>(s.batch * s.sf_size));
  // `use_avx2`: std::true_type only where QuantizeMxfp8BlockAvx2 applies (see ParallelRows in isa.h).
  const auto rows = [&](auto use_avx2, int64_t begin, int64_t end) {
    float v[kSfVec];
    float out_scale_memo[256];  // NVFP4: output scale by scale byte, for the current row
    for (int64_t row = begin; row < end; ++row) {
      uint64_t out_scale_known[4] = {0, 0, 0, 0};
      const int64_t b = row / s.rows, r = row % s.rows;
      const int64_t in_row = row * s.cols;
      uint8_t* out = codes + row * code_row_bytes;
      if (s.row_mask && !s.row_mask[row]) {  // masked rows: zeros (FlashInfer: uninitialised)
        std::memset(out, 0, static_cast<size_t>(code_row_bytes));
        if (s.per_token_scale) s.per_token_scale[row] = 0.0f;
        continue;
      }
      Q q;
      q.four_over_six = s.four_over_six;
      const float gs = global_scale ? global_scale[b * s.global_scales_per_batch +
                                                   (s.global_scales_per_batch == 1 ? 0 : r)]
                                    : 1.0f;
      if (s.per_token_scale) {
        float row_amax = BitsFloat(kNoMaxBits);
        for (int64_t col = 0; col < s.cols; ++col)
          row_amax = AbsMax(row_amax, LoadInput<kType>(x, in_row + col));
        s.per_token_scale[row] = q.InitPerTokenRow(row_amax, gs);
      } else if constexpr (Q::kUsesGlobalScale) {
        q.InitRow(gs, s.scale_mode, 0u);
      }
      // A block's scale from its maximum.
      const auto block_scale = [&](float amax) {
        if constexpr (kRecipe == Recipe::kNvfp4 && !kInputFp8) {
          // The output scale depends on the scale byte alone: one rcp per distinct byte of
          // the row instead of one per block (the rcp emulation reads a 1 MB table).
          const float a = Ftz(amax);
          BlockScale bs{q.Nvfp4Code(a), 0.0f};
          if (a != 0.0f) {
            const uint32_t c = bs.code & 0xFFu;
            if (!((out_scale_known[c >> 6] >> (c & 63)) & 1u)) {
              out_scale_memo[c] = q.Nvfp4OutScale(c);
              out_scale_known[c >> 6] |= uint64_t{1} << (c & 63);
            }
            bs.out_scale = out_scale_memo[c];
          }
          return bs;
        } else {
          return q.Scale(amax);
        }
      };
      for (int64_t j = 0; j < blocks; ++j) {
        if ((j + 1) * kSfVec <= s.cols) {  // a whole block of input: no per-element test
          PrefetchInput<kType>(x, in_row + (j + kPrefetchBlocks) * kSfVec);
#if JAX_FP4_CPU_AVX2
          if constexpr (decltype(use_avx2)::value) {
            const void* block_in = InputAt<kType>(x, in_row + j * kSfVec);
            int code;
            if constexpr (Q::kFp4Out)
              code = QuantizeFp4BlockAvx2<kSfVec, kType>(block_in, block_scale,
                                                         out + j * kSfVec / 2);
            else
              code = QuantizeMxfp8BlockAvx2<kType>(block_in, out + j * kSfVec);
            if (code >= 0) {
              scales[b * s.sf_size + addr.Offset(r, j)] = static_cast<uint8_t>(code);
              continue;
            }
          }
#endif
          for (int i = 0; i < kSfVec; ++i)
            v[i] = q.Prepare(LoadInput<kType>(x, in_row + j * kSfVec + i));
        } else {  // MXFP8 alignment padding: zeros past the input
          for (int i = 0; i < kSfVec; ++i) {
            const int64_t col = j * kSfVec + i;
            v[i] = col < s.cols ? q.Prepare(LoadInput<kType>(x, in_row + col)) : 0.0f;
          }
        }
        const float amax = BlockAbsMax(v);
        if constexpr (kSfVec == 16 && Q::kFp4Out && !kInputFp8) {
          if (q.four_over_six.on) {
            uint32_t c[16];
            scales[b * s.sf_size + addr.Offset(r, j)] =
                static_cast<uint8_t>(q.ScaleFourOverSix(v, amax, c));
            for (int i = 0; i < 16; i += 2)
              out[(j * 16 + i) / 2] = static_cast<uint8_t>(c[i] | (c[i + 1] << 4));
            continue;
          }
        }
        const BlockScale bs = block_scale(amax);
        scales[b * s.sf_size + addr.Offset(r, j)] = static_cast<uint8_t>(bs.code);
        if constexpr (Q::kFp4Out) {
          EncodeBlockFp4<Q>(v, bs.out_scale, out + j * kSfVec / 2);
        } else {
          EncodeBlockFp8<Q>(v, bs.out_scale, out + j * kSfVec);
        }
      }
    }
  };
  // Hand-written AVX2 blocks for bfloat16 and float16 input, and float32 (MXFP8); calls with
  // 4over6 keep the scalar path.
  constexpr bool kHasAvx2Path =
      !kInputFp8 && (kType == InputType::kBf16 || kType == InputType::kF16 ||
                     (kRecipe == Recipe::kMxfp8 && kType == InputType::kF32));
  ParallelRows<kHasAvx2Path>(s.batch * s.rows,
                             std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, s.cols)),
                             !s.four_over_six.on, rows);
}

template <Recipe kRecipe, bool kInputFp8>
ffi::Error DispatchInput(ffi::AnyBuffer x, const float* gs, uint8_t* codes, uint8_t* sf,
                         const QuantizeShape& s, const char* op) {
  const void* p = x.untyped_data();
  switch (x.element_type()) {
    case ffi::F16:
      if constexpr (!kInputFp8) QuantizeRows<kRecipe, false, InputType::kF16>(p, gs, codes, sf, s);
      return ffi::Error::Success();
    case ffi::BF16:
      if constexpr (!kInputFp8) QuantizeRows<kRecipe, false, InputType::kBf16>(p, gs, codes, sf, s);
      return ffi::Error::Success();
    case ffi::F8E4M3FN:
      if constexpr (kRecipe != Recipe::kMxfp8)
        QuantizeRows<kRecipe, true, InputType::kE4m3>(p, gs, codes, sf, s);
      return ffi::Error::Success();
    case ffi::F32:
      if constexpr (kRecipe == Recipe::kMxfp8) QuantizeRows<kRecipe, false, InputType::kF32>(p, gs, codes, sf, s);
      return ffi::Error::Success();
    default:
      return InvalidArgument(op, "unsupported input dtype");
  }
}

// x: [B..., M..., K] f16|bf16|f8e4m3fn; global_scale: f32 [B..., 1 or M] read per
// `scale_mode`; row_mask: u8 [B..., M] when `masked` (0 = write a zero row), else unused;
// codes: u8 [B..., M..., K/2] packed E2M1; scales: u8 [B..., buffer] in `layout`.
ffi::Error Fp4QuantizeCpuImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> global_scale,
                              ffi::Buffer<ffi::U8> row_mask, ffi::ResultBuffer<ffi::U8> codes,
                              ffi::ResultBuffer<ffi::U8> scales, int64_t sf_vec_size,
                              bool use_ue8m0, int64_t layout, int64_t scale_mode, bool exact,
                              int64_t four_over_six, bool masked, int64_t num_batch_dims) {
  constexpr const char* kOp = "fp4_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (!((sf_vec_size == 16 && !use_ue8m0) || (sf_vec_size == 32 && use_ue8m0)))
    return InvalidArgument(kOp, "only sf_vec_size 16 with E4M3 or 32 with UE8M0 scales");
  if (d.last % sf_vec_size != 0) return InvalidArgument(kOp, "K is not a multiple of sf_vec_size");
  QuantizeShape s{d.batch, d.rows, d.last, d.last, layout,
                  SfBufferSize(layout, d.rows, d.last / sf_vec_size), 0,
                  static_cast<ScaleMode>(scale_mode), nullptr, nullptr,
                  FourOverSix::FromBits(four_over_six)};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();  // nothing to write
  const int64_t n_gs = static_cast<int64_t>(global_scale.element_count());
  s.global_scales_per_batch = n_gs / d.batch;
  if (s.global_scales_per_batch * d.batch != n_gs ||
      (s.global_scales_per_batch != 1 && s.global_scales_per_batch != d.rows))
    return InvalidArgument(kOp, "global_scale must have 1 or M elements per batch");
  if (masked) {
    if (static_cast<int64_t>(row_mask.element_count()) != d.batch * d.rows)
      return InvalidArgument(kOp, "row_mask must have one byte per row");
    s.row_mask = row_mask.typed_data();
  }
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * d.last / 2 ||
      static_cast<int64_t>(scales->element_count()) != d.batch * s.sf_size)
    return InvalidArgument(kOp, "output sizes do not match the input");
  const float* gs = global_scale.typed_data();
  uint8_t* c = codes->typed_data();
  uint8_t* sf = scales->typed_data();
  const bool fp8 = x.element_type() == ffi::F8E4M3FN;
  if (sf_vec_size == 32)
    return fp8 ? DispatchInput<Recipe::kMxfp4, true>(x, gs, c, sf, s, kOp)
               : DispatchInput<Recipe::kMxfp4, false>(x, gs, c, sf, s, kOp);
  if (fp8) return DispatchInput<Recipe::kNvfp4, true>(x, gs, c, sf, s, kOp);
  return exact ? DispatchInput<Recipe::kNvfp4Exact, false>(x, gs, c, sf, s, kOp)
               : DispatchInput<Recipe::kNvfp4, false>(x, gs, c, sf, s, kOp);
}

// Per-token NVFP4 (SPEC 4.2.2 / 4.3): x: [B..., M, K] f16|bf16; s_inv: f32 [B..., 1];
// row_mask as above; codes, scales as fp4_quantize; per_token_scale: f32 [B..., M].
ffi::Error Nvfp4PerTokenQuantizeCpuImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> s_inv,
                                        ffi::Buffer<ffi::U8> row_mask,
                                        ffi::ResultBuffer<ffi::U8> codes,
                                        ffi::ResultBuffer<ffi::U8> scales,
                                        ffi::ResultBuffer<ffi::F32> per_token_scale,
                                        int64_t layout, bool exact, int64_t four_over_six,
                                        bool masked, int64_t num_batch_dims) {
  constexpr const char* kOp = "nvfp4_quantize(per_token_activation=True)";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 16 != 0) return InvalidArgument(kOp, "K is not a multiple of 16");
  QuantizeShape s{d.batch, d.rows, d.last, d.last, layout, SfBufferSize(layout, d.rows, d.last / 16),
                  1, ScaleMode::kEncode, nullptr, per_token_scale->typed_data(),
                  FourOverSix::FromBits(four_over_six)};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (static_cast<int64_t>(s_inv.element_count()) != d.batch)
    return InvalidArgument(kOp, "the global scale must have one element per batch");
  if (masked) {
    if (static_cast<int64_t>(row_mask.element_count()) != d.batch * d.rows)
      return InvalidArgument(kOp, "row_mask must have one byte per row");
    s.row_mask = row_mask.typed_data();
  }
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * d.last / 2 ||
      static_cast<int64_t>(scales->element_count()) != d.batch * s.sf_size ||
      static_cast<int64_t>(per_token_scale->element_count()) != d.batch * d.rows)
    return InvalidArgument(kOp, "output sizes do not match the input");
  if (x.element_type() != ffi::F16 && x.element_type() != ffi::BF16)
    return InvalidArgument(kOp, "input must be float16 or bfloat16");
  const float* gs = s_inv.typed_data();
  return exact ? DispatchInput<Recipe::kNvfp4Exact, false>(x, gs, codes->typed_data(),
                                                           scales->typed_data(), s, kOp)
               : DispatchInput<Recipe::kNvfp4, false>(x, gs, codes->typed_data(),
                                                      scales->typed_data(), s, kOp);
}

// x: [B..., M..., K] f16|bf16|f32 -> codes: float8_e4m3fn [B..., M..., Kp],
// scales: u8 [B..., buffer] UE8M0 in `layout`; Kp = round_up(K, alignment).
ffi::Error Mxfp8QuantizeCpuImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> codes,
                                ffi::ResultBuffer<ffi::U8> scales, int64_t layout,
                                int64_t alignment, int64_t num_batch_dims) {
  constexpr const char* kOp = "mxfp8_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 32 != 0 || alignment <= 0 || alignment % 32 != 0)
    return InvalidArgument(kOp, "K and alignment must be multiples of 32");
  const int64_t kp = RoundUp(d.last, alignment);
  QuantizeShape s{d.batch, d.rows, d.last, kp, layout, SfBufferSize(layout, d.rows, kp / 32), 1,
                  ScaleMode::kEncode, nullptr, nullptr, FourOverSix{}};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (codes->element_type() != ffi::F8E4M3FN)
    return InvalidArgument(kOp, "codes must be float8_e4m3fn");
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * kp ||
      static_cast<int64_t>(scales->element_count()) != d.batch * s.sf_size)
    return InvalidArgument(kOp, "output sizes do not match the input");
  auto* code_bytes = static_cast<uint8_t*>(codes->untyped_data());
  return DispatchInput<Recipe::kMxfp8, false>(x, nullptr, code_bytes, scales->typed_data(), s,
                                              kOp);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Fp4QuantizeCpu, Fp4QuantizeCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()           // x
                                  .Arg<ffi::Buffer<ffi::F32>>()    // global_scale
                                  .Arg<ffi::Buffer<ffi::U8>>()     // row_mask
                                  .Ret<ffi::Buffer<ffi::U8>>()     // codes
                                  .Ret<ffi::Buffer<ffi::U8>>()     // scales
                                  .Attr<int64_t>("sf_vec_size")
                                  .Attr<bool>("use_ue8m0")
                                  .Attr<int64_t>("layout")
                                  .Attr<int64_t>("scale_mode")
                                  .Attr<bool>("exact")
                                  .Attr<int64_t>("four_over_six")
                                  .Attr<bool>("masked")
                                  .Attr<int64_t>("num_batch_dims"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(Nvfp4PerTokenQuantizeCpu, Nvfp4PerTokenQuantizeCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()           // x
                                  .Arg<ffi::Buffer<ffi::F32>>()    // s_inv
                                  .Arg<ffi::Buffer<ffi::U8>>()     // row_mask
                                  .Ret<ffi::Buffer<ffi::U8>>()     // codes
                                  .Ret<ffi::Buffer<ffi::U8>>()     // scales
                                  .Ret<ffi::Buffer<ffi::F32>>()    // per_token_scale
                                  .Attr<int64_t>("layout")
                                  .Attr<bool>("exact")
                                  .Attr<int64_t>("four_over_six")
                                  .Attr<bool>("masked")
                                  .Attr<int64_t>("num_batch_dims"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(Mxfp8QuantizeCpu, Mxfp8QuantizeCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()           // x
                                  .Ret<ffi::AnyBuffer>()           // codes
                                  .Ret<ffi::Buffer<ffi::U8>>()     // scales
                                  .Attr<int64_t>("layout")
                                  .Attr<int64_t>("alignment")
                                  .Attr<int64_t>("num_batch_dims"));

}  // namespace jax_fp4::cpu
