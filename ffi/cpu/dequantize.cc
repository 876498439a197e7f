// CPU handler of the block dequantizers (e2m1_and_ufp8sf_scale_to_float, mxfp4_dequantize(_host),
// mxfp8_dequantize_host): element decode times scale decode, FlashInfer's host IEEE math.
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <cstdint>

#include "common/block_scale.h"
#include "common/ffi_utils.h"
#include "common/sf_layout.h"
#include "cpu/isa.h"
#include "handlers.h"

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
// instead of one page fault per page. XLA:CPU hands the handler freshly mapped output on every
// call; on the 2-core KVM guest of the benchmarks the faults cost more than the decode, and
// this (per thread, just ahead of its stores) cuts them by ~40%. It changes no contents or
// settings; where the kernel lacks it (before Linux 5.14) it fails and the stores fault.
void PrefaultForWrite(void* begin, size_t bytes) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(begin) + bytes + page - 1) & ~(page - 1);
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE);
#else
  (void)begin;
  (void)bytes;
#endif
}

// Output bytes prefaulted at a time: small enough that they are still in L2 when written.
constexpr int64_t kPrefaultBytes = int64_t{256} << 10;

// `Out` is the output element (float, or uint16_t bits of bf16 / fp16), `convert` maps the
// float32 result to it. Each block decodes its scale once; E2M1 blocks then fill a 16-entry
// table of finished outputs (same function, same bits) and look both nibbles of every code
// byte up in it; E4M3 blocks run a loop the compiler vectorizes.
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
  const auto rows = [&](int64_t begin, int64_t end) {
    Out table[16];
    for (int64_t row = begin; row < end; ++row) {
      if ((row - begin) % prefault_rows == 0)
        PrefaultForWrite(out + row * d.last,
                         static_cast<size_t>(std::min(prefault_rows, end - row) * d.last) *
                             sizeof(Out));
      const int64_t b = row / d.rows, r = row % d.rows;
      const float g = gs[b];
      const uint8_t* scale_row = sf + b * sf_size + addr.RowPart(r);
      const uint8_t* code_ptr = c + row * code_row;
      Out* out_ptr = out + row * d.last;
      for (int64_t j = 0; j < cols; ++j, out_ptr += sf_vec_size) {
        const float scale = DecodeScale(sfmt, scale_row[addr.ColPart(j)]);
        if (elem == ElementFormat::kE2m1) {
          for (int k = 0; k < 16; ++k)
            table[k] = convert(DequantizeElement(element.value[k], scale, g, kDeviceMath));
          for (int64_t i = 0; i < sf_vec_size / 2; ++i) {
            const uint32_t byte = code_ptr[i];
            out_ptr[2 * i] = table[byte & 0xFu];
            out_ptr[2 * i + 1] = table[byte >> 4];
          }
          code_ptr += sf_vec_size / 2;
        } else {
          for (int64_t i = 0; i < sf_vec_size; ++i)
            out_ptr[i] = convert(DequantizeElement(DecodeE4M3(code_ptr[i]), scale, g,
                                                   kDeviceMath));
          code_ptr += sf_vec_size;
        }
      }
    }
  };
  ParallelFor(d.batch * d.rows, std::max<int64_t>(1, (1 << 16) / d.last),
              [&](int64_t begin, int64_t end) { RunBestIsa(rows, begin, end); });
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

// codes: u8 [B..., M, K/2] (E2M1, packed) or [B..., M, K] (E4M3); scales: u8 [B..., N] with
// N the layout's buffer size for an [M, K/sf_vec_size] matrix; global_scale: f32 [B..., 1];
// out: f32 | bf16 | f16 [B..., M, K], see DequantizeElement for the arithmetic.
ffi::Error BlockDequantizeCpuImpl(ffi::Buffer<ffi::U8> codes, ffi::Buffer<ffi::U8> scales,
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
  if (static_cast<int64_t>(codes.element_count()) != d.batch * d.rows * code_row ||
      static_cast<int64_t>(scales.element_count()) != d.batch * sf_size ||
      static_cast<int64_t>(global_scale.element_count()) != d.batch)
    return InvalidArgument(kOp, "input sizes do not match the output");
  const uint8_t* c = codes.typed_data();
  const uint8_t* sf = scales.typed_data();
  const float* gs = global_scale.typed_data();
  void* o = out->untyped_data();
  switch (out->element_type()) {
    case ffi::F32:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<float*>(o), [](float v) { return v; });
      break;
    case ffi::BF16:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<uint16_t*>(o), [](float v) { return FloatToBf16(v); });
      break;
    case ffi::F16:
      DequantizeRows(c, sf, gs, d, sf_vec_size, layout, elem, sfmt, plus_zero_code8, device_math,
                     static_cast<uint16_t*>(o), [](float v) { return FloatToHalf(v); });
      break;
    default:
      return InvalidArgument(kOp, "output must be float32, bfloat16 or float16");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockDequantizeCpu, BlockDequantizeCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U8>>()     // codes
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
