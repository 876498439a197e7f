// CUDA handlers of the block quantizers (fp4_quantize: NVFP4 and MXFP4; mxfp8_quantize).
// Each thread owns whole scale blocks (16 or 32 elements) and runs the shared recipe of
// common/block_scale.h on them; no data moves between threads.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
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
  bool pdl = false;                 // programmatic dependent launch (enable_pdl)
  // Set by Launch: scale addressing, divisions by blocks per row and by rows, and the scale
  // buffer's last row tile, which holds its padding rows: 16-byte chunks of it (per batch
  // entry, and in all), its byte offset in a batch entry, and its rows that are real.
  SfAddressing sf_addr;
  FastDiv32 blocks_per_row_div, rows_div;
  uint32_t pad_chunks_per_batch = 0, pad_chunks = 0, pad_tile_offset = 0, pad_tile_real_rows = 0;
  FastDiv32 pad_chunks_div;

  // Where row r of batch entry b finds its global scale: one per batch entry, or one per row.
  __device__ __forceinline__ int64_t GlobalScaleIndex(uint32_t b, uint32_t r) const {
    return b * global_scales_per_batch + (global_scales_per_batch == 1 ? 0 : r);
  }
};

// Block maximum (SPEC 4.1) of the Prepare()d elements `f`, scalar: one FMNMX per element.
template <int kN>
__device__ __forceinline__ float ScalarAbsMax(const float (&f)[kN]) {
  float amax = BitsFloat(kNoMaxBits);
#pragma unroll
  for (int i = 0; i < kN; ++i) amax = AbsMax(amax, f[i]);
  return amax;
}

// The same on packed 16-bit pairs: max is exact in the input format and HMNMX2 ignores NaN
// the way fmaxf does, so one instruction covers two elements.
// The sign bits of eight 16-bit inputs (one uint4) at bits 4i + 3, where E2M1 codes keep
// them: the high byte of each half gathered with byte permutes.
__device__ __forceinline__ uint32_t SignNibbles16(const uint4& v) {
  const uint32_t p01 = __byte_perm(v.x, v.y, 0x7351);  // x.b1 y.b1 x.b3 y.b3
  const uint32_t p23 = __byte_perm(v.z, v.w, 0x7351);
  const uint32_t low = __byte_perm(p01, p23, 0x5410);   // even elements' sign bytes
  const uint32_t high = __byte_perm(p01, p23, 0x7632);  // odd elements' sign bytes
  return ((low >> 4) & 0x08080808u) | (high & 0x80808080u);
}

// Also says whether the block holds no NaN (a NaN-propagating maximum alongside).
template <typename Pair, int kLoads, int kN>
__device__ __forceinline__ float PairAbsMax(const uint4 (&raw)[kLoads], const float (&f)[kN],
                                            bool& nan_free) {
  Pair m, with_nan;
  const uint32_t nan_pair = 0x7FFF7FFFu;  // NaN in both halves: "no element yet"
  const uint32_t zero_pair = 0u;
  m = *reinterpret_cast<const Pair*>(&nan_pair);
  with_nan = *reinterpret_cast<const Pair*>(&zero_pair);
#pragma unroll
  for (int v = 0; v < kLoads; ++v)
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const Pair a = __habs2(reinterpret_cast<const Pair*>(&raw[v])[k]);
      m = __hmax2(m, a);
      with_nan = __hmax2_nan(with_nan, a);
    }
  const float lo = __low2float(with_nan), hi = __high2float(with_nan);
  nan_free = lo == lo && hi == hi;
  return fmaxf(static_cast<float>(__low2float(m)), static_cast<float>(__high2float(m)));
}

template <InputType kType>
struct InputTraits;
template <>
struct InputTraits<InputType::kF16> {
  static constexpr int kElems = 8;
  __device__ static float Get(const uint4& v, int i) {
    const uint32_t w = (&v.x)[i / 2];
    return HalfToFloat(static_cast<uint16_t>(w >> (16 * (i & 1))));
  }
  template <int kLoads, int kN>
  __device__ static float BlockAbsMax(const uint4 (&raw)[kLoads], const float (&f)[kN],
                                      bool& nan_free) {
    return PairAbsMax<__half2>(raw, f, nan_free);
  }
};
template <>
struct InputTraits<InputType::kBf16> {
  static constexpr int kElems = 8;
  __device__ static float Get(const uint4& v, int i) {
    const uint32_t w = (&v.x)[i / 2];
    return Bf16ToFloat(static_cast<uint16_t>(w >> (16 * (i & 1))));
  }
  template <int kLoads, int kN>
  __device__ static float BlockAbsMax(const uint4 (&raw)[kLoads], const float (&f)[kN],
                                      bool& nan_free) {
    return PairAbsMax<__nv_bfloat162>(raw, f, nan_free);
  }
};
template <>
struct InputTraits<InputType::kE4m3> {
  static constexpr int kElems = 16;
  __device__ static float Get(const uint4& v, int i) {
    return DecodeE4M3(((&v.x)[i / 4] >> (8 * (i & 3))) & 0xFFu);
  }
  template <int kLoads, int kN>
  __device__ static float BlockAbsMax(const uint4 (&)[kLoads], const float (&f)[kN],
                                      bool& nan_free) {
    nan_free = false;  // not tracked: such blocks take the saturating encoder
    return ScalarAbsMax(f);  // FP8 inputs are maximised after Prepare() rescales them
  }
};
template <>
struct InputTraits<InputType::kF32> {
  static constexpr int kElems = 4;
  __device__ static float Get(const uint4& v, int i) { return BitsFloat((&v.x)[i]); }
  template <int kLoads, int kN>
  __device__ static float BlockAbsMax(const uint4 (&)[kLoads], const float (&f)[kN],
                                      bool& nan_free) {
    nan_free = false;  // float32 input is MXFP8-only, whose encoder needs no such flag
    return ScalarAbsMax(f);
  }
};

// A whole scale block per thread: its elements (as the recipe sees them), the block maximum,
// the scale byte and the packed codes, with no data exchanged between threads.
template <class Q, class In>
struct BlockWork {
  static constexpr int kSfVec = Q::kSfVec;
  static constexpr int kLoads = kSfVec / In::kElems;               // 16-byte loads per block
  static constexpr int kOutWords = Q::kFp4Out ? kSfVec / 8 : kSfVec / 4;
  // Blocks a thread takes per loop trip, all loads issued before any is used: about 64
  // bytes of input in flight per thread.
  static constexpr int kPerTrip = kLoads >= 4 ? 1 : 4 / kLoads;
  uint4 raw[kLoads];
};

// The kernels index scale blocks with 32 bits: 2^32 blocks is 2^36 elements, beyond any
// GPU's memory today, and the handlers refuse more.
// Below 2^32 with room for one grid stride (at most a few million), so that no 32-bit index
// wraps in the grid-stride loops.
constexpr int64_t kMaxBlocks = (int64_t{1} << 32) - (int64_t{1} << 28);

// Decode shapes take SplitBlockQuantizeKernel (a switch for A/B runs) up to this many lanes
// per SM: beyond it (e.g. 16 x 16384 NVFP4, 32k lanes) one block per thread was as fast or
// faster on an H100 (4.35 vs 4.45 us; 128 x 16384: 5.7 vs 6.2 us), below it the split
// kernel gained 0.1-0.4 us.
constexpr bool kSplitSmallProblems = true;
constexpr int64_t kSplitMaxLanesPerSm = 64;

// The kernels' 32-bit index ranges: scale blocks, 16-byte chunks of the padded row tiles
// (ZeroPaddingRows) and byte offsets within a batch entry's scale buffer.
ffi::Error CheckIndexRange(const char* op, const Dims3& d, int64_t layout,
                           int64_t blocks_per_row) {
  const int64_t tile_rows = SfPaddedRows(layout, 1);  // 128, 8, or 1 (linear: no padding)
  const int64_t pad_chunks =
      d.rows % tile_rows == 0 ? 0 : d.batch * tile_rows * SfPaddedCols(layout, blocks_per_row) / 16;
  if (d.batch * d.rows * blocks_per_row >= kMaxBlocks || pad_chunks >= kMaxBlocks ||
      SfBufferSize(layout, d.rows, blocks_per_row) >= kMaxBlocks)
    return InvalidArgument(op, "more than 2^32 scale blocks (or scale bytes) in one call");
  return ffi::Error::Success();
}

// Codes of kN Prepare()d elements `f` (a whole block, or a lane's part of one), loaded as
// `raw`, with the block's maximum `amax` and output scale: FP4 codes 8 to a word, E4M3 codes
// 4 to a word. `nan_free` and `amax` are the whole block's.
template <class Q, class In, int kN, int kLoads, int kWords>
__device__ __forceinline__ void EncodeCodes(const float (&f)[kN], const uint4 (&raw)[kLoads],
                                            float amax, bool nan_free, float out_scale,
                                            uint32_t (&w)[kWords]) {
  if constexpr (Q::kFp4Out) {
    // Every |element * scale| is at most amax * scale: when that is finite and <= 6.5 and no
    // element is NaN, the encoder can skip its saturation and take the signs from the input
    // bytes (~3 of ~11 instructions per element on sm_90).
    if constexpr (In::kElems == 8) {  // 16-bit inputs: raw[g] holds elements 8g..8g+7
      if (nan_free && fabsf(Mul(Ftz(amax), out_scale)) <= 6.5f) {
        // out_scale >= 0 here, so each code's sign is its input's (-0 and flushed ones too).
#pragma unroll
        for (int g = 0; g < kN / 8; ++g)
          w[g] = Q::Encode8Magnitudes(f + 8 * g, out_scale) | SignNibbles16(raw[g]);
        return;
      }
    }
#pragma unroll
    for (int g = 0; g < kN / 8; ++g) w[g] = Q::Encode8(f + 8 * g, out_scale);
  } else {
#pragma unroll
    for (int i = 0; i < kN; i += 4)
      w[i / 4] = Q::EncodePairE4M3(f[i], f[i + 1], out_scale) |
                 (Q::EncodePairE4M3(f[i + 2], f[i + 3], out_scale) << 16);
  }
}

// Quantizes one block from its raw input: writes the codes to `w` and returns the scale byte.
template <class Q, class In, bool kFourOverSix>
__device__ __forceinline__ uint32_t QuantizeBlock(const uint4 (&raw)[BlockWork<Q, In>::kLoads],
                                                  const Q& q,
                                                  uint32_t (&w)[BlockWork<Q, In>::kOutWords]) {
  constexpr int kSfVec = Q::kSfVec;
  float f[kSfVec];
#pragma unroll
  for (int i = 0; i < kSfVec; ++i) f[i] = q.Prepare(In::Get(raw[i / In::kElems], i % In::kElems));
  bool nan_free;
  const float amax = In::BlockAbsMax(raw, f, nan_free);
  if constexpr (kFourOverSix && kSfVec == 16 && Q::kFp4Out) {
    uint32_t c[16];
    const uint32_t code = q.ScaleFourOverSix(f, amax, c);
#pragma unroll
    for (int i = 0; i < 16; ++i) w[i / 8] |= c[i] << (4 * (i % 8));  // w arrives zeroed
    return code;
  }
  const BlockScale bs = q.Scale(amax);
  EncodeCodes<Q, In>(f, raw, amax, nan_free, bs.out_scale, w);
  return bs.code;
}

// Stores a block's (or a lane's) codes: 4, 8, 16 or 32 bytes, in 4-, 8- or 16-byte stores.
template <int kWords>
__device__ __forceinline__ void StoreWords(uint8_t* dst, const uint32_t (&w)[kWords]) {
  static_assert(kWords == 1 || kWords == 2 || kWords % 4 == 0, "4, 8 or 16k bytes");
  if constexpr (kWords == 1) {
    *reinterpret_cast<uint32_t*>(dst) = w[0];
  } else if constexpr (kWords == 2) {
    *reinterpret_cast<uint2*>(dst) = make_uint2(w[0], w[1]);
  } else {
#pragma unroll
    for (int i = 0; i < kWords; i += 4)
      reinterpret_cast<uint4*>(dst)[i / 4] = make_uint4(w[i], w[i + 1], w[i + 2], w[i + 3]);
  }
}

// Writes a block's scale byte at `row_sf` + the column part of `j` and, after the last block
// of a row, zeros into the row's padding columns (SPEC 3.4).
__device__ __forceinline__ void StoreScale(uint8_t* row_sf, const QuantizeParams& p, uint32_t j,
                                           uint32_t blocks_per_row, uint32_t code) {
  row_sf[p.sf_addr.ColPart(j)] = static_cast<uint8_t>(code);
  if (j == blocks_per_row - 1)
    for (int64_t k = blocks_per_row; k < SfPaddedCols(p.layout, blocks_per_row); ++k)
      row_sf[p.sf_addr.ColPart(k)] = 0;
}

// Padding rows of swizzled layouts (SPEC 3.4), which all lie in each batch entry's last row
// tile: the tile is walked in memory order, a 16-byte chunk per thread (grid-strided), and
// each chunk's words of padding rows are zeroed, in one store where the chunk holds no real
// row (as for M = 1, whose 128x4 buffer is 127/128 padding). Consecutive threads write
// consecutive bytes; the real rows' words are the quantizing threads'. Launch sizes the grid
// for this work too, and the kernels run it while their first loads are in flight.
__device__ __forceinline__ void ZeroPaddingRows(uint8_t* scales, const QuantizeParams& p) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < p.pad_chunks; i += stride) {
    const uint32_t b = p.batch == 1 ? 0u : p.pad_chunks_div.Div(i);
    const uint32_t offset = (i - b * p.pad_chunks_per_batch) * 16u;
    uint32_t* chunk = reinterpret_cast<uint32_t*>(scales + b * p.sf_size + p.pad_tile_offset +
                                                  offset);
    bool padding[4], all_padding = true;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      padding[w] = p.sf_addr.TileRowOfWord(offset + 4u * w) >= p.pad_tile_real_rows;
      all_padding = all_padding && padding[w];
    }
    if (all_padding) {
      *reinterpret_cast<uint4*>(chunk) = make_uint4(0, 0, 0, 0);
    } else {
#pragma unroll
      for (int w = 0; w < 4; ++w)
        if (padding[w]) chunk[w] = 0u;
    }
  }
}

// Thread i of the grid takes scale blocks i, i + T, i + 2T, ... of the flattened
// [batch * rows, blocks_per_row] block matrix (grid-strided, kTrip at a time, a thread
// block's width apart), so a warp reads consecutive blocks of a row. Problems under a full
// wave take the kTrip = 1 instantiation: a short serial chain per thread, more threads in
// flight, less code (NVFP4: 920 instead of 1568 instructions; on an H100 it timed the same as
// the run-time flag it replaced, 2026-12-08).
// The block size is chosen at launch (ShapeForKernel: smaller for decode shapes). Block
// indices are 32-bit (Launch checks the count); byte offsets are 64-bit. At most 64
// registers: four thread blocks per SM keep enough loads in flight.
template <Recipe kRecipe, bool kInputFp8, InputType kType, bool kFourOverSix, int kTrip>
__global__ void __launch_bounds__(kThreads, 4)
    BlockQuantizeKernel(const uint4* __restrict__ x, const float* __restrict__ global_scale,
                        uint8_t* __restrict__ codes, uint8_t* __restrict__ scales,
                        QuantizeParams p) {
  using Q = BlockQuantizer<kRecipe, kInputFp8>;
  using In = InputTraits<kType>;
  using Work = BlockWork<Q, In>;
  constexpr int kOutBytes = Work::kOutWords * 4;
  const uint32_t blocks_per_row = static_cast<uint32_t>(p.padded_cols / Q::kSfVec);
  const uint32_t in_blocks_per_row = static_cast<uint32_t>(p.cols / Q::kSfVec);
  const uint32_t total = static_cast<uint32_t>(p.batch * p.rows * blocks_per_row);
  const uint32_t threads = blockDim.x;
  const uint32_t cta_span = threads * kTrip;
  const uint32_t stride = gridDim.x * cta_span;
  // One global scale for the whole call (the common case): the row state is set up once.
  const bool one_scale = p.batch == 1 && p.global_scales_per_batch == 1;
  WaitForPreviousGrid();
  Q q_all;
  q_all.four_over_six = p.four_over_six;
  // The row state is derived after the first trip's loads are issued, so the global scale's
  // load latency overlaps theirs (decode shapes are one trip: two serial loads otherwise).
  const float one_global_scale = Q::kUsesGlobalScale && one_scale ? global_scale[0] : 0.0f;
  bool row_state_ready = !(Q::kUsesGlobalScale && one_scale);
  bool padding_done = false;

  // The loops run the same number of trips in every lane of a warp (32-byte blocks are
  // stored with a shuffle between lanes); lanes past the end quantize and store nothing.
  const uint32_t lane = threadIdx.x & 31u;
  for (uint32_t first = blockIdx.x * cta_span + threadIdx.x; first - lane < total;
       first += stride) {
    Work work[kTrip];
    uint32_t row[kTrip], col[kTrip];
    bool keep[kTrip];
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t blk = first + u * threads;
      row[u] = p.blocks_per_row_div.Div(blk);
      col[u] = blk - row[u] * blocks_per_row;
      keep[u] = blk < total && (p.row_mask == nullptr || p.row_mask[row[u]] != 0);
      const bool load = keep[u] && col[u] < in_blocks_per_row;
      const uint4* src =
          x + (int64_t{row[u]} * in_blocks_per_row + col[u]) * int64_t{Work::kLoads};
#pragma unroll
      for (int v = 0; v < Work::kLoads; ++v)
        work[u].raw[v] = load ? src[v] : make_uint4(0, 0, 0, 0);
    }
    if (!row_state_ready) {
      q_all.InitRow(one_global_scale, p.scale_mode, p.runtime_zero);
      row_state_ready = true;
    }
    if (!padding_done) {  // while the first trip's loads are in flight
      ZeroPaddingRows(scales, p);
      padding_done = true;
    }
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t blk = first + u * threads;
      if (blk - lane >= total) break;  // the same in every lane
      const bool valid = blk < total;
      const uint32_t b = p.batch == 1 ? 0u : p.rows_div.Div(row[u]);
      const uint32_t r = row[u] - b * static_cast<uint32_t>(p.rows);
      uint32_t w[Work::kOutWords], code = 0;
#pragma unroll
      for (int i = 0; i < Work::kOutWords; ++i) w[i] = 0;
      if (keep[u]) {
        Q q = q_all;
        if (Q::kUsesGlobalScale && !one_scale)
          q.InitRow(global_scale[p.GlobalScaleIndex(b, r)], p.scale_mode, p.runtime_zero);
        code = QuantizeBlock<Q, In, kFourOverSix>(work[u].raw, q, w);
      }
      if constexpr (kOutBytes == 32) {
        StorePairSwapped32(reinterpret_cast<uint4*>(codes), blk,
                           make_uint4(w[0], w[1], w[2], w[3]), make_uint4(w[4], w[5], w[6], w[7]),
                           (blk | 1u) < total, valid);
      } else if (valid) {
        StoreWords(codes + int64_t{blk} * kOutBytes, w);
      }
      if (valid)
        StoreScale(scales + b * p.sf_size + p.sf_addr.RowPart(r), p, col[u], blocks_per_row, code);
    }
  }
  AllowNextGrid();
  if (!padding_done)  // threads with no trip
    ZeroPaddingRows(scales, p);
}

// Problems under a full wave (decode shapes): a scale block is split over kLanes adjacent
// lanes, one 16-byte input load each (NVFP4: 2 lanes, MXFP4/MXFP8: 4, float32 input: 8), and
// the block maximum is reduced with shuffles. Per thread that is 1/kLanes of the serial work
// of BlockQuantizeKernel's one block per thread, and a far smaller kernel (cold instruction
// fetch is a large part of a launch this size). The same recipe calls in the same order, so
// the bytes are those of BlockQuantizeKernel; 4over6 (whole-block error sums) stays there.
template <Recipe kRecipe, bool kInputFp8, InputType kType>
__global__ void __launch_bounds__(kThreads)
    SplitBlockQuantizeKernel(const uint4* __restrict__ x, const float* __restrict__ global_scale,
                             uint8_t* __restrict__ codes, uint8_t* __restrict__ scales,
                             QuantizeParams p) {
  using Q = BlockQuantizer<kRecipe, kInputFp8>;
  using In = InputTraits<kType>;
  constexpr int kLanes = BlockWork<Q, In>::kLoads;  // a power of two dividing 32
  constexpr int kElems = In::kElems;
  constexpr int kOutWords = Q::kFp4Out ? kElems / 8 : kElems / 4;  // a lane's code words
  static_assert(kLanes >= 2 && 32 % kLanes == 0 && kOutWords >= 1, "no split for this input");
  const uint32_t blocks_per_row = static_cast<uint32_t>(p.padded_cols / Q::kSfVec);
  const uint32_t in_blocks_per_row = static_cast<uint32_t>(p.cols / Q::kSfVec);
  const uint32_t total = static_cast<uint32_t>(p.batch * p.rows * blocks_per_row);
  const uint32_t total_lanes = total * kLanes;
  const uint32_t stride = gridDim.x * blockDim.x;
  const bool one_scale = p.batch == 1 && p.global_scales_per_batch == 1;
  const uint32_t lane = threadIdx.x & 31u;
  bool padding_done = false;
  WaitForPreviousGrid();
  // Every lane of a warp runs the same trips (the shuffles); past the end they do nothing.
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t - lane < total_lanes; t += stride) {
    const uint32_t blk = t / kLanes, part = t % kLanes;
    const bool valid = t < total_lanes;
    const uint32_t row = p.blocks_per_row_div.Div(blk);
    const uint32_t col = blk - row * blocks_per_row;
    const bool keep = valid && (p.row_mask == nullptr || p.row_mask[row] != 0);
    uint4 raw[1] = {make_uint4(0, 0, 0, 0)};
    if (keep && col < in_blocks_per_row)
      raw[0] = x[(int64_t{row} * in_blocks_per_row + col) * kLanes + part];
    const uint32_t b = p.batch == 1 ? 0u : p.rows_div.Div(row);
    const uint32_t r = row - b * static_cast<uint32_t>(p.rows);
    const float row_global_scale =
        Q::kUsesGlobalScale && valid
            ? global_scale[one_scale ? 0 : p.GlobalScaleIndex(b, r)]
            : 0.0f;
    if (!padding_done) {  // while the loads are in flight
      ZeroPaddingRows(scales, p);
      padding_done = true;
    }
    Q q;
    if (Q::kUsesGlobalScale && valid) q.InitRow(row_global_scale, p.scale_mode, p.runtime_zero);
    float f[kElems];
#pragma unroll
    for (int i = 0; i < kElems; ++i) f[i] = q.Prepare(In::Get(raw[0], i));
    bool nan_free;
    float amax = In::BlockAbsMax(raw, f, nan_free);
    // fmaxf drops NaN operands as the whole-block maximum does, so the order does not matter.
#pragma unroll
    for (int offset = 1; offset < kLanes; offset <<= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
      nan_free = __shfl_xor_sync(0xFFFFFFFFu, nan_free ? 1 : 0, offset) != 0 && nan_free;
    }
    if (!valid) continue;
    uint32_t w[kOutWords], code = 0;
#pragma unroll
    for (int i = 0; i < kOutWords; ++i) w[i] = 0;
    if (keep) {
      const BlockScale bs = q.Scale(amax);
      code = bs.code;
      EncodeCodes<Q, In>(f, raw, amax, nan_free, bs.out_scale, w);
    }
    StoreWords(codes + int64_t{t} * (kOutWords * 4), w);
    if (part == 0)
      StoreScale(scales + b * p.sf_size + p.sf_addr.RowPart(r), p, col, blocks_per_row, code);
  }
  AllowNextGrid();
  if (!padding_done)  // threads with no trip
    ZeroPaddingRows(scales, p);
}

// Per-token NVFP4: one thread block per row (grid-strided). Pass 1 takes the row maximum,
// pass 2 quantizes a scale block per thread with the row's own scale; the second read of the
// row mostly hits L2.
template <Recipe kRecipe, InputType kType, bool kFourOverSix>
__global__ void __launch_bounds__(kThreads)
    PerTokenQuantizeKernel(const uint4* __restrict__ x, const float* __restrict__ s_inv,
                           uint8_t* __restrict__ codes, uint8_t* __restrict__ scales,
                           QuantizeParams p) {
  using Q = BlockQuantizer<kRecipe, false>;
  using In = InputTraits<kType>;
  using Work = BlockWork<Q, In>;
  const int64_t vecs_per_row = p.cols / In::kElems;
  const int64_t blocks_per_row = p.cols / Q::kSfVec;
  __shared__ float warp_max[kThreads / 32];
  WaitForPreviousGrid();
  for (int64_t row = blockIdx.x; row < p.batch * p.rows; row += gridDim.x) {
    const int64_t b = p.rows_div.Div(static_cast<uint32_t>(row)), r = row - b * p.rows;
    const bool keep = p.row_mask == nullptr || p.row_mask[row] != 0;
    const uint4* in = x + row * vecs_per_row;
    float amax = BitsFloat(kNoMaxBits);
    if (keep)
      for (int64_t v = threadIdx.x; v < vecs_per_row; v += kThreads) {
        const uint4 raw = in[v];
#pragma unroll
        for (int i = 0; i < In::kElems; ++i) amax = AbsMax(amax, In::Get(raw, i));
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
    for (int64_t j = threadIdx.x; j < blocks_per_row; j += kThreads) {
      uint32_t w[Work::kOutWords] = {}, code = 0;
      if (keep) {
        Work work;
#pragma unroll
        for (int v = 0; v < Work::kLoads; ++v) work.raw[v] = in[j * Work::kLoads + v];
        code = QuantizeBlock<Q, In, kFourOverSix>(work.raw, q, w);
      }
      StoreWords(codes + (row * blocks_per_row + j) * (Work::kOutWords * 4), w);
      StoreScale(scales + b * p.sf_size + p.sf_addr.RowPart(r), p, static_cast<uint32_t>(j),
                 static_cast<uint32_t>(blocks_per_row), code);
    }
  }
  AllowNextGrid();
  ZeroPaddingRows(scales, p);
}

template <Recipe kRecipe, bool kInputFp8, InputType kType, bool kFourOverSix>
void LaunchKernel(cudaStream_t stream, const void* x, const float* gs, uint8_t* codes,
                  uint8_t* sf, QuantizeParams p) {
  if (p.per_token_scale != nullptr) {
    if constexpr (!kInputFp8 && (kType == InputType::kF16 || kType == InputType::kBf16) &&
                  (kRecipe == Recipe::kNvfp4 || kRecipe == Recipe::kNvfp4Exact))
      LaunchMaybePdl(PerTokenQuantizeKernel<kRecipe, kType, kFourOverSix>,
                     std::max(GridFor(p.batch * p.rows, 1), GridFor(p.pad_chunks)),
                     kThreads, stream, p.pdl,
                     static_cast<const uint4*>(x), gs, codes, sf, p);
    return;
  }
  using Q = BlockQuantizer<kRecipe, kInputFp8>;
  constexpr int kPerTrip = BlockWork<Q, InputTraits<kType>>::kPerTrip;
  auto kernel = BlockQuantizeKernel<kRecipe, kInputFp8, kType, kFourOverSix, kPerTrip>;
  const int64_t blocks = p.batch * p.rows * (p.padded_cols / Q::kSfVec);
  const int64_t pad_threads = p.pad_chunks;
  const LaunchShape shape = ShapeForKernel(kernel, blocks, kPerTrip, pad_threads);
  if constexpr (!kFourOverSix && BlockWork<Q, InputTraits<kType>>::kLoads >= 2) {
    const int64_t lanes = blocks * BlockWork<Q, InputTraits<kType>>::kLoads;
    if (shape.single && kSplitSmallProblems && lanes <= kSplitMaxLanesPerSm * SmCount()) {
      auto split = SplitBlockQuantizeKernel<kRecipe, kInputFp8, kType>;
      const LaunchShape split_shape = ShapeForKernel(split, lanes, 1, pad_threads);
      LaunchMaybePdl(split, split_shape.grid, split_shape.threads, stream, p.pdl,
                     static_cast<const uint4*>(x), gs, codes, sf, p);
      return;
    }
  }
  if (shape.single)
    kernel = BlockQuantizeKernel<kRecipe, kInputFp8, kType, kFourOverSix, 1>;
  LaunchMaybePdl(kernel, shape.grid, shape.threads, stream, p.pdl, static_cast<const uint4*>(x),
                 gs, codes, sf, p);
}

template <Recipe kRecipe, bool kInputFp8, InputType kType>
void Launch(cudaStream_t stream, const void* x, const float* gs, uint8_t* codes, uint8_t* sf,
            QuantizeParams p) {
  p.sf_addr = SfAddressing::Make(p.layout, p.padded_cols / BlockQuantizer<kRecipe, kInputFp8>::kSfVec);
  p.blocks_per_row_div = FastDiv32::Make(p.padded_cols / BlockQuantizer<kRecipe, kInputFp8>::kSfVec);
  p.rows_div = FastDiv32::Make(p.rows);
  const int64_t tile_rows = int64_t{1} << p.sf_addr.row_tile_shift;
  const int64_t real_rows = p.rows & (tile_rows - 1);  // in the last row tile
  if (p.layout != kLayoutLinear && real_rows != 0) {
    p.pad_chunks_per_batch = static_cast<uint32_t>(p.sf_addr.row_tile_bytes / 16);
    p.pad_tile_offset = static_cast<uint32_t>((p.rows >> p.sf_addr.row_tile_shift) *
                                              p.sf_addr.row_tile_bytes);
    p.pad_tile_real_rows = static_cast<uint32_t>(real_rows);
  }
  p.pad_chunks = static_cast<uint32_t>(p.batch * p.pad_chunks_per_batch);
  p.pad_chunks_div = FastDiv32::Make(std::max<uint32_t>(1, p.pad_chunks_per_batch));
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
                               bool masked, int64_t num_batch_dims, bool pdl) {
  constexpr const char* kOp = "fp4_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (!((sf_vec_size == 16 && !use_ue8m0) || (sf_vec_size == 32 && use_ue8m0)))
    return InvalidArgument(kOp, "only sf_vec_size 16 with E4M3 or 32 with UE8M0 scales");
  if (d.last % sf_vec_size != 0) return InvalidArgument(kOp, "K is not a multiple of sf_vec_size");
  QuantizeParams p{d.batch, d.rows, d.last, d.last, layout,
                   SfBufferSize(layout, d.rows, d.last / sf_vec_size), 1,
                   static_cast<ScaleMode>(scale_mode), nullptr, nullptr, 0u,
                   FourOverSix::FromBits(four_over_six)};
  p.pdl = pdl;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();  // nothing to write
  if (auto err = CheckIndexRange(kOp, d, layout, d.last / sf_vec_size); err.failure())
    return err;
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
                                         bool masked, int64_t num_batch_dims, bool pdl) {
  constexpr const char* kOp = "nvfp4_quantize(per_token_activation=True)";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 16 != 0) return InvalidArgument(kOp, "K is not a multiple of 16");
  QuantizeParams p{d.batch, d.rows, d.last, d.last, layout,
                   SfBufferSize(layout, d.rows, d.last / 16), 1, ScaleMode::kEncode,
                   nullptr, per_token_scale->typed_data(), 0u,
                   FourOverSix::FromBits(four_over_six)};
  p.pdl = pdl;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (auto err = CheckIndexRange(kOp, d, layout, d.last / 16); err.failure()) return err;
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
                                 ffi::Result<ffi::AnyBuffer> codes,
                                 ffi::ResultBuffer<ffi::U8> scales, int64_t layout,
                                 int64_t alignment, int64_t num_batch_dims, bool pdl) {
  constexpr const char* kOp = "mxfp8_quantize";
  const Dims3 d = SplitDims(x.dimensions(), num_batch_dims);
  if (d.last % 32 != 0 || alignment <= 0 || alignment % 32 != 0)
    return InvalidArgument(kOp, "K and alignment must be multiples of 32");
  const int64_t kp = RoundUp(d.last, alignment);
  QuantizeParams p{d.batch, d.rows, d.last, kp, layout, SfBufferSize(layout, d.rows, kp / 32),
                   1, ScaleMode::kEncode, nullptr, nullptr, 0u, FourOverSix{}};
  p.pdl = pdl;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (auto err = CheckIndexRange(kOp, d, layout, kp / 32); err.failure()) return err;
  if (codes->element_type() != ffi::F8E4M3FN)
    return InvalidArgument(kOp, "codes must be float8_e4m3fn");
  if (static_cast<int64_t>(codes->element_count()) != d.batch * d.rows * kp ||
      static_cast<int64_t>(scales->element_count()) != d.batch * p.sf_size)
    return InvalidArgument(kOp, "output sizes do not match the input");
  // MXFP8 reads no global scale (BlockQuantizer::kUsesGlobalScale is false).
  return DispatchInput<Recipe::kMxfp8>(stream, x, nullptr,
                                       static_cast<uint8_t*>(codes->untyped_data()),
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
                                  .Attr<int64_t>("num_batch_dims")
                                  .Attr<bool>("pdl"),
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
                                  .Attr<int64_t>("num_batch_dims")
                                  .Attr<bool>("pdl"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(Mxfp8QuantizeCuda, Mxfp8QuantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()           // x
                                  .Ret<ffi::AnyBuffer>()           // codes
                                  .Ret<ffi::Buffer<ffi::U8>>()     // scales
                                  .Attr<int64_t>("layout")
                                  .Attr<int64_t>("alignment")
                                  .Attr<int64_t>("num_batch_dims")
                                  .Attr<bool>("pdl"),
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jax_fp4::cuda
