// CPU handler of the block dequantizers (e2m1_and_ufp8sf_scale_to_float, mxfp4_dequantize(_host),
// mxfp8_dequantize_host): element decode times scale decode, FlashInfer's host IEEE math.
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <cerrno>
#include <cstdint>
#include <type_traits>
#include <vector>

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

// Element values by code (16 E2M1 or 256 E4M3 codes), decoded once per call.
struct ElementTable {
  float value[256];
  ElementTable(ElementFormat elem, bool plus_zero_code8) {
    const int codes = elem == ElementFormat::kE2m1 ? 16 : 256;
    for (int c = 0; c < codes; ++c) value[c] = DecodeElement(elem, c, plus_zero_code8);
  }
};

// Faults in the pages holding [begin, begin + bytes) with one madvise(MADV_POPULATE_WRITE)
// instead of one page fault per page. XLA:CPU hands the handler freshly mapped output on
// every call (64 MB of float32 for a 4096x4096 matrix); on the 2-core KVM guest of the
// benchmarks faulting it in costs more than the decode, and this (per thread, just ahead of
// its stores) cuts that by ~40%. It changes no contents or settings; where the kernel lacks
// it (before Linux 5.14) it fails, leaving errno as it was, and the stores fault as before.
void PrefaultForWrite(void* begin, size_t bytes) {
#if defined(__linux__)
  if (bytes == 0) return;
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(begin) + bytes + page - 1) & ~(page - 1);
  const int saved_errno = errno;
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE);
  errno = saved_errno;
#else
  (void)begin;
  (void)bytes;
#endif
}

// Output bytes prefaulted at a time: small enough that they are still in L2 when written.
constexpr int64_t kPrefaultBytes = int64_t{256} << 10;

#if JAX_FP4_CPU_AVX2
// 16 E2M1 elements (8 code bytes, low nibble first) from the block's 16-entry table of
// finished outputs, with no per-element loads: vpermps picks by the code's low 3 bits from
// either half of the table, and the code's bit 3, shifted to the sign bit, blends the halves.
__attribute__((target("avx2"))) inline void DecodeE2m1x16Avx2(const uint8_t* codes,
                                                                __m256 table_low,
                                                                __m256 table_high, float* out) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  const __m128i nibble_mask = _mm_set1_epi8(0x0F);
  const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(bytes, nibble_mask),
                                            _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble_mask));
  for (int half = 0; half < 2; ++half) {
    const __m256i code = _mm256_cvtepu8_epi32(half ? _mm_srli_si128(nibbles, 8) : nibbles);
    const __m256 low = _mm256_permutevar8x32_ps(table_low, code);
    const __m256 high = _mm256_permutevar8x32_ps(table_high, code);
    _mm256_storeu_ps(out + 8 * half,
                     _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(code, 28))));
  }
}

// 16 E2M1 elements (8 code bytes, low nibble first) from the block's 16-entry table of
// finished 16-bit outputs (bfloat16 or float16 bits): the entries' low and high bytes become
// two 16-byte tables that pshufb indexes with the codes.
__attribute__((target("avx2"))) inline void DecodeE2m1x16Avx2(const uint8_t* codes,
                                                                __m128i low_bytes,
                                                                __m128i high_bytes,
                                                                uint16_t* out) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  const __m128i nibble_mask = _mm_set1_epi8(0x0F);
  const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(bytes, nibble_mask),
                                            _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble_mask));
  const __m128i low = _mm_shuffle_epi8(low_bytes, nibbles);
  const __m128i high = _mm_shuffle_epi8(high_bytes, nibbles);
  __m128i* dst = reinterpret_cast<__m128i*>(out);
  _mm_storeu_si128(dst, _mm_unpacklo_epi8(low, high));
  _mm_storeu_si128(dst + 1, _mm_unpackhi_epi8(low, high));
}

#endif

// The output element types, as the float32 result's conversion: float32 itself, or the bits
// of bfloat16 / float16 (round to nearest even; NaN stays NaN).
struct ToF32 {
  float operator()(float v) const { return v; }
};
struct ToBf16 {
  uint16_t operator()(float v) const { return FloatToBf16(v); }
};
struct ToF16 {
  uint16_t operator()(float v) const { return FloatToHalf(v); }
};

#if JAX_FP4_CPU_AVX2
// Eight float32 results stored as `Convert` gives them: FloatToBf16 on 8 lanes, or F16C's
// round-to-nearest-even conversion, whose bits are FloatToHalf's (NaN: the sign and 0x7E00;
// the only NaNs here carry no payload below float16's).
template <class Convert>
__attribute__((target("avx2,f16c"))) inline void Store8(__m256 v, void* out) {
  if constexpr (std::is_same_v<Convert, ToF32>) {
    _mm256_storeu_ps(static_cast<float*>(out), v);
  } else if constexpr (std::is_same_v<Convert, ToF16>) {
    _mm_storeu_si128(static_cast<__m128i*>(out),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(kAbsMask)),
                                              _mm256_set1_epi32(kInfBits));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)),
                         _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))),
        16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i bits = _mm256_blendv_epi8(rounded, quiet, is_nan);
    // 32 -> 16 bits interleaves the 128-bit lanes; the 64-bit permute restores order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0xD8);
    _mm_storeu_si128(static_cast<__m128i*>(out), _mm256_castsi256_si128(packed));
  }
}

// One block of `count` (a multiple of 16) elements; `table` as in DequantizeRows.
__attribute__((target("avx2"))) inline void DecodeE2m1BlockAvx2(const uint8_t* codes,
                                                                  int64_t count,
                                                                  const float* table, float* out) {
  const __m256 table_low = _mm256_loadu_ps(table), table_high = _mm256_loadu_ps(table + 8);
  for (int64_t i = 0; i < count; i += 16)
    DecodeE2m1x16Avx2(codes + i / 2, table_low, table_high, out + i);
}

__attribute__((target("avx2"))) inline void DecodeE2m1BlockAvx2(const uint8_t* codes,
                                                                  int64_t count,
                                                                  const uint16_t* table,
                                                                  uint16_t* out) {
  const __m128i byte_order =
      _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  // [low bytes of entries 0-7 | high bytes of 0-7], the same for entries 8-15
  const __m128i first = _mm_shuffle_epi8(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(table)), byte_order);
  const __m128i second = _mm_shuffle_epi8(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 8)), byte_order);
  const __m128i low_bytes = _mm_unpacklo_epi64(first, second);
  const __m128i high_bytes = _mm_unpackhi_epi64(first, second);
  for (int64_t i = 0; i < count; i += 16)
    DecodeE2m1x16Avx2(codes + i / 2, low_bytes, high_bytes, out + i);
}

template <class Convert, typename Out>
__attribute__((target("avx2,f16c"))) inline void DecodeE4m3BlockAvx2(const uint8_t* codes,
                                                                       int64_t count,
                                                                       float host_scale,
                                                                       Out* out) {
  const __m256 scale = _mm256_set1_ps(host_scale);
  for (int64_t i = 0; i < count; i += 8)
    Store8<Convert>(DecodeE4m3x8Avx2(codes + i, scale), out + i);
}
#endif

// `Out` is the output element (float, or uint16_t bits of bf16 / fp16), `convert` (ToF32,
// ToBf16 or ToF16) maps the float32 result to it. Each block decodes its scale once; E2M1
// blocks then fill a 16-entry table of finished outputs (same function, same bits) and look
// both nibbles of every code byte up in it; E4M3 blocks run a loop the compiler vectorizes.
// With AVX2 and whole 16-element groups, the lookups and the E4M3 host-math decode (and its
// conversion to 16 bits) are the explicit vector code above: the compiler's versions were
// scalar (E2M1, and float16 output) or ~5 instructions an element.
template <bool kDeviceMath, typename Out, typename Convert>
void DequantizeRows(const uint8_t* c, const uint8_t* sf, const float* gs, const Dims3& d,
                    int64_t sf_vec_size, int64_t layout, ElementFormat elem, ScaleFormat sfmt,
                    bool plus_zero_code8, Out* out, Convert convert) {
  const int64_t cols = d.last / sf_vec_size;
  const int64_t sf_size = SfBufferSize(layout, d.rows, cols);
  const int64_t code_row = elem == ElementFormat::kE2m1 ? d.last / 2 : d.last;
  const SfAddressing addr = SfAddressing::Make(layout, cols);
  const ElementTable element(elem, plus_zero_code8);
  const int64_t prefault_rows =
      std::max<int64_t>(1, kPrefaultBytes / (d.last * static_cast<int64_t>(sizeof(Out))));
  // E2M1 outputs depend on (scale byte, code) alone within a batch entry: with enough blocks
  // a thread fills all 256 x 16 of them once per entry (16 KB of float32, L1-resident) and
  // each block then reads its 16 instead of decoding its scale and multiplying 16 times.
  constexpr int64_t kBlockTableMinBlocks = 4096;
  // `use_avx2`: std::true_type only where the AVX2 block decoders apply (see ParallelRows in isa.h).
  // A block's 16 possible E2M1 outputs, by code, for its decoded scale and global scale.
  const auto fill_block_outputs = [&](float scale, float g, Out* outputs) {
    for (int k = 0; k < 16; ++k)
      outputs[k] = convert(DequantizeElement(element.value[k], scale, g, kDeviceMath));
  };
  const auto rows = [&](auto use_avx2, int64_t begin, int64_t end) {
    constexpr bool kAvx2 = decltype(use_avx2)::value;
    Out table[16];
    const bool use_block_table =
        elem == ElementFormat::kE2m1 && (end - begin) * cols >= kBlockTableMinBlocks;
    std::vector<Out> block_table(use_block_table ? 256 * 16 : 0);
    int64_t table_batch = -1;
    for (int64_t row = begin; row < end; ++row) {
      if ((row - begin) % prefault_rows == 0)
        PrefaultForWrite(out + row * d.last,
                         static_cast<size_t>(std::min(prefault_rows, end - row) * d.last) *
                             sizeof(Out));
      const int64_t b = row / d.rows, r = row % d.rows;
      const float g = gs[b];
      if (use_block_table && b != table_batch) {
        for (int s = 0; s < 256; ++s)
          fill_block_outputs(DecodeScale(sfmt, s), g, block_table.data() + 16 * s);
        table_batch = b;
      }
      const uint8_t* scale_row = sf + b * sf_size + addr.RowPart(r);
      const uint8_t* code_ptr = c + row * code_row;
      Out* out_ptr = out + row * d.last;
      for (int64_t j = 0; j < cols; ++j, out_ptr += sf_vec_size) {
        const uint32_t scale_byte = scale_row[addr.ColPart(j)];
        // The codes 1 KB ahead: the hardware prefetcher stops at each 4 KB page (an MXFP8
        // row of 4096 codes is one); worth ~1 ms of 13 for MXFP8. Prefetches do not fault.
        __builtin_prefetch(code_ptr + 1024);
        if (elem == ElementFormat::kE2m1) {
          const Out* block_outputs = table;
          if (use_block_table)
            block_outputs = block_table.data() + 16 * scale_byte;
          else
            fill_block_outputs(DecodeScale(sfmt, scale_byte), g, table);
#if JAX_FP4_CPU_AVX2
          if constexpr (kAvx2) {
            DecodeE2m1BlockAvx2(code_ptr, sf_vec_size, block_outputs, out_ptr);
            code_ptr += sf_vec_size / 2;
            continue;
          }
#endif
          for (int64_t i = 0; i < sf_vec_size / 2; ++i) {
            const uint32_t byte = code_ptr[i];
            out_ptr[2 * i] = block_outputs[byte & 0xFu];
            out_ptr[2 * i + 1] = block_outputs[byte >> 4];
          }
          code_ptr += sf_vec_size / 2;
        } else {
          const float scale = DecodeScale(sfmt, scale_byte);
#if JAX_FP4_CPU_AVX2
          if constexpr (kAvx2 && !kDeviceMath) {
            DecodeE4m3BlockAvx2<Convert>(code_ptr, sf_vec_size, HostMul(scale, g), out_ptr);
            code_ptr += sf_vec_size;
            continue;
          }
#endif
          for (int64_t i = 0; i < sf_vec_size; ++i)
            out_ptr[i] = convert(DequantizeElement(DecodeE4M3(code_ptr[i]), scale, g,
                                                   kDeviceMath));
          code_ptr += sf_vec_size;
        }
      }
    }
  };
  ParallelRows<true>(d.batch * d.rows, std::max<int64_t>(1, (1 << 16) / d.last),
                     sf_vec_size % 16 == 0, rows);
}

template <typename Out, typename Convert>
void DequantizeRows(const uint8_t* c, const uint8_t* sf, const float* gs, const Dims3& d,
                    int64_t sf_vec_size, int64_t layout, ElementFormat elem, ScaleFormat sfmt,
                    bool plus_zero_code8, bool device_math, Out* out, Convert convert) {
  if (device_math)
    DequantizeRows<true>(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, out,
                         convert);
  else
    DequantizeRows<false>(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, out,
                          convert);
}

// codes: u8 [B..., M, K/2] (E2M1, packed) or u8 | float8_e4m3fn [B..., M, K] (E4M3); scales:
// u8 [B..., N] with
// N the layout's buffer size for an [M, K/sf_vec_size] matrix; global_scale: f32 [B..., 1];
// out: f32 | bf16 | f16 [B..., M, K], see DequantizeElement for the arithmetic.
ffi::Error BlockDequantizeCpuImpl(ffi::AnyBuffer codes, ffi::Buffer<ffi::U8> scales,
                                  ffi::Buffer<ffi::F32> global_scale,
                                  ffi::Result<ffi::AnyBuffer> out, int64_t element_format,
                                  int64_t scale_format, int64_t sf_vec_size, int64_t layout,
                                  bool plus_zero_code8, bool device_math,
                                  int64_t num_batch_dims) {
  constexpr const char* kOp = "dequantize";
  const Dims3 d = SplitDims(out->dimensions(), num_batch_dims);
  if (sf_vec_size <= 0 || d.last % sf_vec_size != 0)
    return InvalidArgument(kOp, "K is not a multiple of sf_vec_size");
  const auto elem = static_cast<ElementFormat>(element_format);
  const auto sfmt = static_cast<ScaleFormat>(scale_format);
  const int64_t sf_size = SfBufferSize(layout, d.rows, d.last / sf_vec_size);
  const int64_t code_row = elem == ElementFormat::kE2m1 ? d.last / 2 : d.last;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (auto err = CheckDequantizeInputs(kOp, d, codes, code_row,
                                       static_cast<int64_t>(scales.element_count()), sf_size,
                                       static_cast<int64_t>(global_scale.element_count()));
      err.failure())
    return err;
  const uint8_t* c = static_cast<const uint8_t*>(codes.untyped_data());
  const uint8_t* sf = scales.typed_data();
  const float* gs = global_scale.typed_data();
  void* o = out->untyped_data();
  switch (out->element_type()) {
    case ffi::F32:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<float*>(o), ToF32{});
      break;
    case ffi::BF16:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<uint16_t*>(o), ToBf16{});
      break;
    case ffi::F16:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<uint16_t*>(o), ToF16{});
      break;
    default:
      return InvalidArgument(kOp, "output must be float32, bfloat16 or float16");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockDequantizeCpu, BlockDequantizeCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()           // codes
                                  .Arg<ffi::Buffer<ffi::U8>>()     // scales
                                  .Arg<ffi::Buffer<ffi::F32>>()    // global_scale
                                  .Ret<ffi::AnyBuffer>()           // out
                                  .Attr<int64_t>("element_format")
                                  .Attr<int64_t>("scale_format")
                                  .Attr<int64_t>("sf_vec_size")
                                  .Attr<int64_t>("layout")
                                  .Attr<bool>("plus_zero_code8")
                                  .Attr<bool>("device_math")
                                  .Attr<int64_t>("num_batch_dims"));

}  // namespace jax_fp4::cpu
