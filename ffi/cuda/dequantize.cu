// CUDA handler of the block dequantizers: same contract and arithmetic as
// ffi/cpu/dequantize.cc (FlashInfer's host IEEE math, so HostMul keeps subnormals).
#include <cuda_runtime.h>

#include "common/block_scale.h"
#include "common/sf_layout.h"
#include "cuda/cuda_utils.h"
#include "handlers.h"

namespace jax_fp4::cuda {
namespace {

struct DequantizeParams {
  int64_t batch, rows, cols, sf_vec_size, layout, sf_size;
  ElementFormat element_format;
  ScaleFormat scale_format;
  bool plus_zero_code8, device_math;
  FastDiv vecs_per_row_div, rows_div;
};

template <typename Out>
__device__ __forceinline__ void Store8(Out* out, int64_t v, const float (&o)[8]) {
  if constexpr (sizeof(Out) == 4) {  // float32: two 16-byte stores
    reinterpret_cast<float4*>(out)[2 * v] = make_float4(o[0], o[1], o[2], o[3]);
    reinterpret_cast<float4*>(out)[2 * v + 1] = make_float4(o[4], o[5], o[6], o[7]);
  } else {  // 16-bit: one 16-byte store
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool bf16 = Out::kBf16;
      const uint32_t lo = bf16 ? FloatToBf16(o[2 * i]) : FloatToHalf(o[2 * i]);
      const uint32_t hi = bf16 ? FloatToBf16(o[2 * i + 1]) : FloatToHalf(o[2 * i + 1]);
      w[i] = lo | (hi << 16);
    }
    reinterpret_cast<uint4*>(out)[v] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

struct Bf16Out { static constexpr bool kBf16 = true; uint16_t bits; };
struct F16Out { static constexpr bool kBf16 = false; uint16_t bits; };

// One thread per 8 output elements: reads 4 (E2M1) or 8 (E4M3) code bytes, writes 8 values.
template <typename Out>
__global__ void __launch_bounds__(kThreads)
    BlockDequantizeKernel(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                          const float* __restrict__ global_scale, Out* __restrict__ out,
                          DequantizeParams p) {
  const int64_t vecs_per_row = p.cols / 8;
  const int64_t total = p.batch * p.rows * vecs_per_row;
  const int64_t blocks_per_row = p.cols / p.sf_vec_size;
  const bool fp4 = p.element_format == ElementFormat::kE2m1;
  for (int64_t v = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; v < total;
       v += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = static_cast<int64_t>(p.vecs_per_row_div.Div(v));
    const int64_t col = (v - row * vecs_per_row) * 8;
    const int64_t b = static_cast<int64_t>(p.rows_div.Div(row)), r = row - b * p.rows;
    const float scale = DecodeScale(
        p.scale_format,
        scales[b * p.sf_size + SfOffset(p.layout, r, col / p.sf_vec_size, blocks_per_row)]);
    const float g = global_scale[b];
    uint2 raw;
    if (fp4) {
      raw.x = *reinterpret_cast<const uint32_t*>(codes + v * 4);
      raw.y = 0;
    } else {
      raw = *reinterpret_cast<const uint2*>(codes + v * 8);
    }
    float o[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t code = fp4 ? (raw.x >> (4 * i)) & 0xFu
                                : ((i < 4 ? raw.x : raw.y) >> (8 * (i & 3))) & 0xFFu;
      o[i] = DequantizeElement(DecodeElement(p.element_format, code, p.plus_zero_code8), scale,
                               g, p.device_math);
    }
    Store8(out, v, o);
  }
}

ffi::Error BlockDequantizeCudaImpl(cudaStream_t stream, ffi::Buffer<ffi::U8> codes,
                                   ffi::Buffer<ffi::U8> scales, ffi::Buffer<ffi::F32> global_scale,
                                   ffi::Result<ffi::AnyBuffer> out, int64_t element_format,
                                   int64_t scale_format, int64_t sf_vec_size, int64_t layout,
                                   bool plus_zero_code8, bool device_math,
                                   int64_t num_batch_dims) {
  constexpr const char* kOp = "dequantize";
  const Dims3 d = SplitDims(out->dimensions(), num_batch_dims);
  // Block sizes are multiples of 8 (16 or 32), so a thread's 8 elements share one scale.
  if (sf_vec_size <= 0 || sf_vec_size % 8 != 0 || d.last % sf_vec_size != 0)
    return InvalidArgument(kOp, "K is not a multiple of sf_vec_size (a multiple of 8)");
  DequantizeParams p{d.batch, d.rows, d.last, sf_vec_size, layout,
                     SfBufferSize(layout, d.rows, d.last / sf_vec_size),
                     static_cast<ElementFormat>(element_format),
                     static_cast<ScaleFormat>(scale_format), plus_zero_code8, device_math,
                     FastDiv::Make(d.last / 8), FastDiv::Make(d.rows)};
  const int64_t code_row = p.element_format == ElementFormat::kE2m1 ? d.last / 2 : d.last;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (static_cast<int64_t>(codes.element_count()) != d.batch * d.rows * code_row ||
      static_cast<int64_t>(scales.element_count()) != d.batch * p.sf_size ||
      static_cast<int64_t>(global_scale.element_count()) != d.batch)
    return InvalidArgument(kOp, "input sizes do not match the output");
  const int grid = GridFor(d.batch * d.rows * d.last / 8);
  void* o = out->untyped_data();
  switch (out->element_type()) {
    case ffi::F32:
      BlockDequantizeKernel<<<grid, kThreads, 0, stream>>>(
          codes.typed_data(), scales.typed_data(), global_scale.typed_data(),
          static_cast<float*>(o), p);
      break;
    case ffi::BF16:
      BlockDequantizeKernel<<<grid, kThreads, 0, stream>>>(
          codes.typed_data(), scales.typed_data(), global_scale.typed_data(),
          static_cast<Bf16Out*>(o), p);
      break;
    case ffi::F16:
      BlockDequantizeKernel<<<grid, kThreads, 0, stream>>>(
          codes.typed_data(), scales.typed_data(), global_scale.typed_data(),
          static_cast<F16Out*>(o), p);
      break;
    default:
      return InvalidArgument(kOp, "output must be float32, bfloat16 or float16");
  }
  return LaunchStatus(kOp);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockDequantizeCuda, BlockDequantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
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
                                  .Attr<int64_t>("num_batch_dims"),
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jax_fp4::cuda
