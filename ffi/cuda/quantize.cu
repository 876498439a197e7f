// CUDA handlers of the block quantizers (fp4_quantize: NVFP4 and MXFP4; mxfp8_quantize).
// Each thread owns one 16-byte input vector; the 2-8 threads of a scale block combine their
// maxima with warp shuffles and run the shared recipe of common/block_scale.h.
#include <cuda_runtime.h>

#include "common/block_scale.h"
#include "common/sf_layout.h"
#include "cuda/cuda_utils.h"
#include "handlers.h"

namespace jax_fp4::cuda {
namespace {

struct QuantizeParams {
  int64_t batch, rows, cols, padded_cols, layout, sf_size;
  int64_t global_scales_per_batch;  // 1 or rows
  ScaleMode scale_mode;
  const uint8_t* row_mask;          // null, or [batch, rows]: 0 writes a zero row
  float* per_token_scale;           // non-null: per-token NVFP4 (4.2.2), [batch, rows]
  uint32_t runtime_zero;            // always 0; see Opaque() in block_scale.h
  FourOverSix four_over_six;        // NVFP4 16-bit input only
  FastDiv vecs_per_row_div, rows_div;  // set by Launch
};

template <InputType kType>
struct InputTraits;
template <>
struct InputTraits<InputType::kF16> {
  static constexpr int kElems = 8;
  __device__ static float Get(const uint4& v, int i) {
    const uint32_t w = (&v.x)[i / 2];
    return HalfToFloat(static_cast<uint16_t>(w >> (16 * (i & 1))));
  }
};
template <>
struct InputTraits<InputType::kBf16> {
  static constexpr int kElems = 8;
  __device__ static float Get(const uint4& v, int i) {
    const uint32_t w = (&v.x)[i / 2];
    return Bf16ToFloat(static_cast<uint16_t>(w >> (16 * (i & 1))));
  }
};
template <>
struct InputTraits<InputType::kE4m3> {
  static constexpr int kElems = 16;
  __device__ static float Get(const uint4& v, int i) {
    return DecodeE4M3(((&v.x)[i / 4] >> (8 * (i & 3))) & 0xFFu);
  }
};
template <>
struct InputTraits<InputType::kF32> {
  static constexpr int kElems = 4;
  __device__ static float Get(const uint4& v, int i) { return BitsFloat((&v.x)[i]); }
};

// Stores `bytes` (4, 8 or 16) output bytes held in `w` as one vector store.
template <int kBytes>
__device__ __forceinline__ void StoreBytes(uint8_t* dst, const uint32_t (&w)[4]) {
  if constexpr (kBytes == 4) *reinterpret_cast<uint32_t*>(dst) = w[0];
  if constexpr (kBytes == 8) *reinterpret_cast<uint2*>(dst) = make_uint2(w[0], w[1]);
  if constexpr (kBytes == 16) *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

// Quantizes the 16-byte vector `raw` (one thread's share of a scale block) with row state `q`.
// All lanes of the warp must call it together: the block maximum is combined by shuffles
// among the kLanes consecutive lanes that share a block. `keep` false gives zero output.
template <class Q, class In, bool kFourOverSix>
__device__ __forceinline__ void QuantizeVector(const uint4& raw, const Q& q, bool keep,
                                               uint32_t (&w)[4], uint32_t& scale_code) {
  constexpr int kElems = In::kElems;
  constexpr int kLanes = Q::kSfVec / kElems;
  float f[kElems];
  float amax = BitsFloat(kNoMaxBits);
#pragma unroll
  for (int i = 0; i < kElems; ++i) {
    f[i] = q.Prepare(In::Get(raw, i));
    amax = AbsMax(amax, f[i]);
  }
#pragma unroll
  for (int offset = 1; offset < kLanes; offset <<= 1)
    amax = AbsMax(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = 0;
  if constexpr (kFourOverSix && Q::kSfVec == 16 && kElems == 8 && Q::kFp4Out) {
    {
      // 4over6 needs the whole block: the lane pair swaps halves, both run the recipe.
      const bool upper = threadIdx.x & 1;
      float block[16];
      uint32_t codes[16];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float other = __shfl_xor_sync(0xFFFFFFFFu, f[i], 1);
        block[i] = upper ? other : f[i];
        block[8 + i] = upper ? f[i] : other;
      }
      const uint32_t code = q.ScaleFourOverSix(block, amax, codes);
#pragma unroll
      for (int i = 0; i < 8; i += 2)
        w[0] |= (codes[(upper ? 8 : 0) + i] | (codes[(upper ? 8 : 0) + i + 1] << 4))
                << (4 * i);
      if (!keep) w[0] = 0;
      scale_code = keep ? code : 0u;
      return;
    }
  }
  const BlockScale bs = q.Scale(amax);
  if constexpr (Q::kFp4Out) {
#pragma unroll
    for (int i = 0; i < kElems; i += 2)
      w[i / 8] |= Q::EncodePair(f[i], f[i + 1], bs.out_scale) << (8 * ((i / 2) & 3));
  } else {
#pragma unroll
    for (int i = 0; i < kElems; i += 2)
      w[i / 4] |= Q::EncodePairE4M3(f[i], f[i + 1], bs.out_scale) << (8 * (i & 3));
  }
  if (!keep) {
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = 0;
  }
  scale_code = keep ? bs.code : 0u;
}

// Writes a block's scale byte (by the first lane of the block) and, after the last block of a
// row, zeros into the row's padding columns (SPEC 3.4).
__device__ __forceinline__ void StoreScale(uint8_t* sf, const QuantizeParams& p, int64_t r,
                                           int64_t j, int64_t blocks_per_row, uint32_t code) {
  sf[SfOffset(p.layout, r, j, blocks_per_row)] = static_cast<uint8_t>(code);
  if (j == blocks_per_row - 1)
    for (int64_t k = blocks_per_row; k < SfPaddedCols(p.layout, blocks_per_row); ++k)
      sf[SfOffset(p.layout, r, k, blocks_per_row)] = 0;
}

// Padding rows of swizzled layouts: whole 4-byte groups of zeros, grid-strided.
__device__ __forceinline__ void ZeroPaddingRows(uint8_t* scales, const QuantizeParams& p,
                                                int64_t blocks_per_row, int64_t first,
                                                int64_t stride) {
  const int64_t col_groups = SfPaddedCols(p.layout, blocks_per_row) / 4;
  const int64_t pad_rows = SfPaddedRows(p.layout, p.rows) - p.rows;
  const int64_t pad_words = p.batch * pad_rows * col_groups;
  for (int64_t i = first; i < pad_words; i += stride) {
    const int64_t b = i / (pad_rows * col_groups), rem = i - b * pad_rows * col_groups;
    const int64_t r = p.rows + rem / col_groups, kt = rem % col_groups;
    *reinterpret_cast<uint32_t*>(scales + b * p.sf_size +
                                 SfOffset(p.layout, r, kt * 4, blocks_per_row)) = 0u;
  }
}

// Vectors a thread handles per loop trip: both loads are issued before either is used.
constexpr int kUnroll = 2;

// Each thread block takes tiles of kUnroll x kThreads consecutive 16-byte input vectors
// (grid-strided); a vector's row and batch come from two multiply-shift divisions.
template <Recipe kRecipe, bool kInputFp8, InputType kType, bool kFourOverSix>
__global__ void __launch_bounds__(kThreads)
    BlockQuantizeKernel(const uint4* __restrict__ x, const float* __restrict__ global_scale,
                        uint8_t* __restrict__ codes, uint8_t* __restrict__ scales,
                        QuantizeParams p) {
  using Q = BlockQuantizer<kRecipe, kInputFp8>;
  using In = InputTraits<kType>;
  constexpr int kElems = In::kElems;
  constexpr int kLanes = Q::kSfVec / kElems;  // threads per scale block: 1, 2, 4 or 8
  constexpr int kOutBytes = Q::kFp4Out ? kElems / 2 : kElems;
  constexpr int64_t kTile = int64_t{kUnroll} * kThreads;
  const int64_t vecs_per_row = p.padded_cols / kElems;
  const int64_t in_vecs_per_row = p.cols / kElems;
  const int64_t total = p.batch * p.rows * vecs_per_row;
  const int64_t blocks_per_row = p.padded_cols / Q::kSfVec;

  // Whole thread blocks iterate together, so every lane joins every shuffle.
  for (int64_t tile = blockIdx.x; tile * kTile < total; tile += gridDim.x) {
    uint4 raw[kUnroll];
    int64_t row[kUnroll], col_vec[kUnroll];
    bool keep[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = tile * kTile + u * kThreads + threadIdx.x;
      const bool active = v < total;
      row[u] = active ? static_cast<int64_t>(p.vecs_per_row_div.Div(v)) : 0;
      col_vec[u] = v - row[u] * vecs_per_row;
      keep[u] = active && (p.row_mask == nullptr || p.row_mask[row[u]] != 0);
      raw[u] = make_uint4(0, 0, 0, 0);
      if (keep[u] && col_vec[u] < in_vecs_per_row) raw[u] = x[row[u] * in_vecs_per_row + col_vec[u]];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = tile * kTile + u * kThreads + threadIdx.x;
      const int64_t b = static_cast<int64_t>(p.rows_div.Div(row[u])), r = row[u] - b * p.rows;
      Q q;
      q.four_over_six = p.four_over_six;
      if (Q::kUsesGlobalScale && keep[u])
        q.InitRow(global_scale[b * p.global_scales_per_batch +
                               (p.global_scales_per_batch == 1 ? 0 : r)],
                  p.scale_mode, p.runtime_zero);
      uint32_t w[4], code;
      QuantizeVector<Q, In, kFourOverSix>(raw[u], q, keep[u], w, code);
      if (v >= total) continue;
      StoreBytes<kOutBytes>(codes + v * kOutBytes, w);
      if (col_vec[u] % kLanes == 0)
        StoreScale(scales + b * p.sf_size, p, r, col_vec[u] / kLanes, blocks_per_row, code);
    }
  }
  ZeroPaddingRows(scales, p, blocks_per_row, int64_t{blockIdx.x} * blockDim.x + threadIdx.x,
                  int64_t{gridDim.x} * blockDim.x);
}

// Per-token NVFP4: one thread block per row (grid-strided). Pass 1 takes the row maximum,
// pass 2 quantizes with the row's own scale; the second read of the row mostly hits L2.
template <Recipe kRecipe, InputType kType, bool kFourOverSix>
__global__ void __launch_bounds__(kThreads)
    PerTokenQuantizeKernel(const uint4* __restrict__ x, const float* __restrict__ s_inv,
                           uint8_t* __restrict__ codes, uint8_t* __restrict__ scales,
                           QuantizeParams p) {
  using Q = BlockQuantizer<kRecipe, false>;
  using In = InputTraits<kType>;
  constexpr int kElems = In::kElems;
  constexpr int kLanes = Q::kSfVec / kElems;
  const int64_t vecs_per_row = p.cols / kElems;
  const int64_t blocks_per_row = p.cols / Q::kSfVec;
  __shared__ float warp_max[kThreads / 32];
  for (int64_t row = blockIdx.x; row < p.batch * p.rows; row += gridDim.x) {
    const int64_t b = static_cast<int64_t>(p.rows_div.Div(row)), r = row - b * p.rows;
    const bool keep = p.row_mask == nullptr || p.row_mask[row] != 0;
    const uint4* in = x + row * vecs_per_row;
    float amax = BitsFloat(kNoMaxBits);
    if (keep)
      for (int64_t v = threadIdx.x; v < vecs_per_row; v += kThreads) {
        const uint4 raw = in[v];
#pragma unroll
        for (int i = 0; i < kElems; ++i) amax = AbsMax(amax, In::Get(raw, i));
      }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      amax = AbsMax(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = amax;
    __syncthreads();
    float row_amax = BitsFloat(kNoMaxBits);
#pragma unroll
    for (int i = 0; i < kThreads / 32; ++i) row_amax = AbsMax(row_amax, warp_max[i]);
    __syncthreads();  // warp_max is rewritten for the next row
    Q q;
    q.four_over_six = p.four_over_six;
    const float pts = q.InitPerTokenRow(row_amax, s_inv[b]);
    if (threadIdx.x == 0) p.per_token_scale[row] = keep ? pts : 0.0f;
    // Warp-uniform bound so every lane joins the shuffles.
    for (int64_t base = threadIdx.x & ~31; base < vecs_per_row; base += kThreads) {
      const int64_t v = base + (threadIdx.x & 31);
      const bool active = v < vecs_per_row;
      const uint4 raw = keep && active ? in[v] : make_uint4(0, 0, 0, 0);
      uint32_t w[4], code;
      QuantizeVector<Q, In, kFourOverSix>(raw, q, keep, w, code);
      if (!active) continue;
      StoreBytes<kElems / 2>(codes + (row * vecs_per_row + v) * (kElems / 2), w);
      if (v % kLanes == 0)
        StoreScale(scales + b * p.sf_size, p, r, v / kLanes, blocks_per_row, code);
    }
  }
  ZeroPaddingRows(scales, p, blocks_per_row, int64_t{blockIdx.x} * blockDim.x + threadIdx.x,
                  int64_t{gridDim.x} * blockDim.x);
}

template <Recipe kRecipe, bool kInputFp8, InputType kType, bool kFourOverSix>
void LaunchKernel(cudaStream_t stream, const void* x, const float* gs, uint8_t* codes,
                  uint8_t* sf, const QuantizeParams& p) {
  if (p.per_token_scale != nullptr) {
    if constexpr (!kInputFp8 && (kType == InputType::kF16 || kType == InputType::kBf16) &&
                  (kRecipe == Recipe::kNvfp4 || kRecipe == Recipe::kNvfp4Exact))
      PerTokenQuantizeKernel<kRecipe, kType, kFourOverSix>
          <<<GridFor(p.batch * p.rows, 1), kThreads, 0, stream>>>(
              static_cast<const uint4*>(x), gs, codes, sf, p);
    return;
  }
  constexpr int kElems = InputTraits<kType>::kElems;
  auto kernel = BlockQuantizeKernel<kRecipe, kInputFp8, kType, kFourOverSix>;
  const int grid = GridForKernel(kernel, p.batch * p.rows * (p.padded_cols / kElems),
                                 kThreads * kUnroll);
  kernel<<<grid, kThreads, 0, stream>>>(static_cast<const uint4*>(x), gs, codes, sf, p);
}

template <Recipe kRecipe, bool kInputFp8, InputType kType>
void Launch(cudaStream_t stream, const void* x, const float* gs, uint8_t* codes, uint8_t* sf,
            QuantizeParams p) {
  p.vecs_per_row_div = FastDiv::Make(p.padded_cols / InputTraits<kType>::kElems);
  p.rows_div = FastDiv::Make(p.rows);
  // 4over6 is its own instantiation so the common kernels do not carry its code.
  constexpr bool kCanFourOverSix =
      !kInputFp8 && (kRecipe == Recipe::kNvfp4 || kRecipe == Recipe::kNvfp4Exact);
  if (kCanFourOverSix && p.four_over_six.on)
    LaunchKernel<kRecipe, kInputFp8, kType, kCanFourOverSix>(stream, x, gs, codes, sf, p);
  else
    LaunchKernel<kRecipe, kInputFp8, kType, false>(stream, x, gs, codes, sf, p);
}

template <Recipe kRecipe>
ffi::Error DispatchInput(cudaStream_t stream, ffi::AnyBuffer x, const float* gs, uint8_t* codes,
                         uint8_t* sf, const QuantizeParams& p, const char* op) {
  const void* in = x.untyped_data();
  switch (x.element_type()) {
    case ffi::F16:
      Launch<kRecipe, false, InputType::kF16>(stream, in, gs, codes, sf, p);
      break;
    case ffi::BF16:
      Launch<kRecipe, false, InputType::kBf16>(stream, in, gs, codes, sf, p);
      break;
    case ffi::F8E4M3FN:
      if constexpr (kRecipe != Recipe::kMxfp8 && kRecipe != Recipe::kNvfp4Exact)
        Launch<kRecipe, true, InputType::kE4m3>(stream, in, gs, codes, sf, p);
      break;
    case ffi::F32:
      if constexpr (kRecipe == Recipe::kMxfp8)
        Launch<kRecipe, false, InputType::kF32>(stream, in, gs, codes, sf, p);
      break;
    default:
      return InvalidArgument(op, "unsupported input dtype");
  }
  return LaunchStatus(op);
}

// Same contract as Fp4QuantizeCpuImpl (ffi/cpu/quantize.cc).
ffi::Error Fp4QuantizeCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                               ffi::Buffer<ffi::F32> global_scale, ffi::Buffer<ffi::U8> row_mask,
                               ffi::ResultBuffer<ffi::U8> codes, ffi::ResultBuffer<ffi::U8> scales,
                               int64_t sf_vec_size, bool use_ue8m0, int64_t layout,
                               int64_t scale_mode, bool exact, int64_t four_over_six,
                               bool masked, int64_t num_batch_dims) {
  constexpr const char* kOp = "fp4_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (!((sf_vec_size == 16 && !use_ue8m0) || (sf_vec_size == 32 && use_ue8m0)))
    return InvalidArgument(kOp, "only sf_vec_size 16 with E4M3 or 32 with UE8M0 scales");
  if (d.last % sf_vec_size != 0) return InvalidArgument(kOp, "K is not a multiple of sf_vec_size");
  QuantizeParams p{d.batch, d.rows, d.last, d.last, layout,
                   SfBufferSize(layout, d.rows, d.last / sf_vec_size), 1,
                   static_cast<ScaleMode>(scale_mode), nullptr, nullptr, 0u,
                   FourOverSix::FromBits(four_over_six)};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();  // nothing to write
  const int64_t n_gs = static_cast<int64_t>(global_scale.element_count());
  p.global_scales_per_batch = n_gs / d.batch;
  if (p.global_scales_per_batch * d.batch != n_gs ||
      (p.global_scales_per_batch != 1 && p.global_scales_per_batch != d.rows))
    return InvalidArgument(kOp, "global_scale must have 1 or M elements per batch");
  if (masked) {
    if (static_cast<int64_t>(row_mask.element_count()) != d.batch * d.rows)
      return InvalidArgument(kOp, "row_mask must have one byte per row");
    p.row_mask = row_mask.typed_data();
  }
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * d.last / 2 ||
      static_cast<int64_t>(scales->element_count()) != d.batch * p.sf_size)
    return InvalidArgument(kOp, "output sizes do not match the input");
  const float* gs = global_scale.typed_data();
  uint8_t* c = codes->typed_data();
  uint8_t* sf = scales->typed_data();
  if (sf_vec_size == 32) return DispatchInput<Recipe::kMxfp4>(stream, x, gs, c, sf, p, kOp);
  // FP8 input ignores the exact mode (SPEC 4.6); DispatchInput routes it to the fast recipe.
  if (exact && x.element_type() != ffi::F8E4M3FN)
    return DispatchInput<Recipe::kNvfp4Exact>(stream, x, gs, c, sf, p, kOp);
  return DispatchInput<Recipe::kNvfp4>(stream, x, gs, c, sf, p, kOp);
}

// Same contract as Nvfp4PerTokenQuantizeCpuImpl (ffi/cpu/quantize.cc).
ffi::Error Nvfp4PerTokenQuantizeCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                                         ffi::Buffer<ffi::F32> s_inv,
                                         ffi::Buffer<ffi::U8> row_mask,
                                         ffi::ResultBuffer<ffi::U8> codes,
                                         ffi::ResultBuffer<ffi::U8> scales,
                                         ffi::ResultBuffer<ffi::F32> per_token_scale,
                                         int64_t layout, bool exact, int64_t four_over_six,
                                         bool masked, int64_t num_batch_dims) {
  constexpr const char* kOp = "nvfp4_quantize(per_token_activation=True)";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 16 != 0) return InvalidArgument(kOp, "K is not a multiple of 16");
  QuantizeParams p{d.batch, d.rows, d.last, d.last, layout,
                   SfBufferSize(layout, d.rows, d.last / 16), 1, ScaleMode::kEncode,
                   nullptr, per_token_scale->typed_data(), 0u,
                   FourOverSix::FromBits(four_over_six)};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (static_cast<int64_t>(s_inv.element_count()) != d.batch)
    return InvalidArgument(kOp, "the global scale must have one element per batch");
  if (masked) {
    if (static_cast<int64_t>(row_mask.element_count()) != d.batch * d.rows)
      return InvalidArgument(kOp, "row_mask must have one byte per row");
    p.row_mask = row_mask.typed_data();
  }
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * d.last / 2 ||
      static_cast<int64_t>(scales->element_count()) != d.batch * p.sf_size ||
      static_cast<int64_t>(per_token_scale->element_count()) != d.batch * d.rows)
    return InvalidArgument(kOp, "output sizes do not match the input");
  if (x.element_type() != ffi::F16 && x.element_type() != ffi::BF16)
    return InvalidArgument(kOp, "input must be float16 or bfloat16");
  const float* gs = s_inv.typed_data();
  return exact ? DispatchInput<Recipe::kNvfp4Exact>(stream, x, gs, codes->typed_data(),
                                                    scales->typed_data(), p, kOp)
               : DispatchInput<Recipe::kNvfp4>(stream, x, gs, codes->typed_data(),
                                               scales->typed_data(), p, kOp);
}

// Same contract as Mxfp8QuantizeCpuImpl (ffi/cpu/quantize.cc).
ffi::Error Mxfp8QuantizeCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                                 ffi::ResultBuffer<ffi::U8> codes,
                                 ffi::ResultBuffer<ffi::U8> scales, int64_t layout,
                                 int64_t alignment, int64_t num_batch_dims) {
  constexpr const char* kOp = "mxfp8_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 32 != 0 || alignment <= 0 || alignment % 32 != 0)
    return InvalidArgument(kOp, "K and alignment must be multiples of 32");
  const int64_t kp = RoundUp(d.last, alignment);
  QuantizeParams p{d.batch, d.rows, d.last, kp, layout, SfBufferSize(layout, d.rows, kp / 32),
                   1, ScaleMode::kEncode, nullptr, nullptr, 0u, FourOverSix{}};
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * kp ||
      static_cast<int64_t>(scales->element_count()) != d.batch * p.sf_size)
    return InvalidArgument(kOp, "output sizes do not match the input");
  // MXFP8 reads no global scale (BlockQuantizer::kUsesGlobalScale is false).
  return DispatchInput<Recipe::kMxfp8>(stream, x, nullptr, codes->typed_data(),
                                       scales->typed_data(), p, kOp);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Fp4QuantizeCuda, Fp4QuantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
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
                                  .Attr<int64_t>("num_batch_dims"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(Nvfp4PerTokenQuantizeCuda, Nvfp4PerTokenQuantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
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
                                  .Attr<int64_t>("num_batch_dims"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(Mxfp8QuantizeCuda, Mxfp8QuantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()           // x
                                  .Ret<ffi::Buffer<ffi::U8>>()     // codes
                                  .Ret<ffi::Buffer<ffi::U8>>()     // scales
                                  .Attr<int64_t>("layout")
                                  .Attr<int64_t>("alignment")
                                  .Attr<int64_t>("num_batch_dims"),
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jax_fp4::cuda
