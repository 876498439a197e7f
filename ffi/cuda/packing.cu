// CUDA handlers that move bytes: packbits, segment_packbits and block_scale_interleave.
// Same contracts as ffi/cpu/packing.cc.
#include <cuda_runtime.h>

#include <type_traits>

#include "common/packing.h"
#include "common/sf_layout.h"
#include "cuda/cuda_utils.h"
#include "handlers.h"

namespace jax_fp4::cuda {
namespace {

// One thread per output byte.
__global__ void PackbitsKernel(const uint8_t* __restrict__ x, uint8_t* __restrict__ out,
                               int64_t rows, int64_t n, bool little) {
  const int64_t nbytes = CeilDiv8(n), total = rows * nbytes;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / nbytes, j = i - r * nbytes;
    const uint8_t* src = x + r * n + 8 * j;
    if (n % 8 == 0) {  // aligned: one 8-byte load
      const uint2 w = *reinterpret_cast<const uint2*>(src);
      uint8_t bytes[8];
      *reinterpret_cast<uint2*>(bytes) = w;
      out[i] = PackByte(bytes, 8, little);
    } else {
      out[i] = PackByte(src, n - 8 * j, little);
    }
  }
}

// Four bytes (non-zero = 1) to a nibble, the first byte in the high bit ("big") or the low
// bit: each byte's "non-zero" lands on its bit 7, and one multiply gathers the four bits.
__device__ __forceinline__ uint32_t PackNibble(uint32_t w, bool little) {
  const uint32_t nonzero = ((((w & 0x7F7F7F7Fu) + 0x7F7F7F7Fu) | w) & 0x80808080u) >> 7;
  return (nonzero * (little ? 0x01020408u : 0x08040201u)) >> 24;
}

// Eight input bytes (the first in the low byte of `v`; non-zero = 1) to one output byte.
__device__ __forceinline__ uint32_t PackWindow(uint64_t v, bool little) {
  const uint32_t lo = static_cast<uint32_t>(v), hi = static_cast<uint32_t>(v >> 32);
  return little ? PackNibble(lo, true) | (PackNibble(hi, true) << 4)
                : (PackNibble(lo, false) << 4) | PackNibble(hi, false);
}

// Rows of whole bytes (n % 8 == 0): the output is the flat input packed 8 to 1. A warp loads
// 8 x 512 contiguous input bytes (every load coalesced) and stores 2 bytes per 16 read.
__global__ void __launch_bounds__(kThreads)
    PackbitsFlatKernel(const uint4* __restrict__ x, uint16_t* __restrict__ out, int64_t chunks,
                       bool little) {
  constexpr int kPerTrip = 8;
  const int64_t lane = threadIdx.x & 31;
  const int64_t warp = (int64_t{blockIdx.x} * kThreads + threadIdx.x) >> 5;
  const int64_t warps = int64_t{gridDim.x} * (kThreads / 32);
  for (int64_t base = warp * 32 * kPerTrip; base < chunks; base += warps * 32 * kPerTrip) {
    uint4 v[kPerTrip];
#pragma unroll
    for (int k = 0; k < kPerTrip; ++k) {
      const int64_t c = base + k * 32 + lane;
      v[k] = c < chunks ? x[c] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < kPerTrip; ++k) {
      const int64_t c = base + k * 32 + lane;
      if (c >= chunks) break;
      const uint32_t lo = PackWindow((uint64_t{v[k].y} << 32) | v[k].x, little);
      const uint32_t hi = PackWindow((uint64_t{v[k].w} << 32) | v[k].z, little);
      out[c] = static_cast<uint16_t>(lo | (hi << 8));
    }
  }
}

ffi::Error PackbitsCudaImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::ResultBuffer<ffi::U8> out,
                            bool little) {
  const auto dims = x.dimensions();
  const int64_t n = dims.size() ? dims[dims.size() - 1] : 1;
  const int64_t rows = n ? static_cast<int64_t>(x.element_count()) / n : 0;
  if (static_cast<int64_t>(out->element_count()) != rows * CeilDiv8(n))
    return InvalidArgument("packbits", "output size does not match the input");
  if (rows * n == 0) return ffi::Error::Success();
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  if (n % 8 == 0) {
    // 16 input bytes per chunk; an odd 8-byte tail goes to the general kernel.
    const int64_t chunks = rows * n / 16;
    if (chunks > 0)
      PackbitsFlatKernel<<<GridFor(chunks, kThreads * 8), kThreads, 0, stream>>>(
          reinterpret_cast<const uint4*>(in), reinterpret_cast<uint16_t*>(out->typed_data()),
          chunks, little);
    if ((rows * n) % 16 != 0)
      PackbitsKernel<<<1, 32, 0, stream>>>(in + chunks * 16, out->typed_data() + chunks * 2, 1,
                                           8, little);
    return LaunchStatus("packbits");
  }
  PackbitsKernel<<<GridFor(rows * CeilDiv8(n)), kThreads, 0, stream>>>(in, out->typed_data(),
                                                                       rows, n, little);
  return LaunchStatus("packbits");
}

// Phase 1, one block per batch row: new_indptr[s+1] = sum of ceil(len/8) over segments <= s.
template <typename Index>
__global__ void SegmentOffsetsKernel(const Index* __restrict__ indptr, int32_t* __restrict__ new_indptr,
                                     int64_t n, int64_t segments) {
  const Index* ip = indptr + blockIdx.x * (segments + 1);
  int32_t* np = new_indptr + blockIdx.x * (segments + 1);
  __shared__ int32_t partial[kThreads];
  __shared__ int32_t carry;
  if (threadIdx.x == 0) {
    carry = 0;
    np[0] = 0;
  }
  __syncthreads();
  for (int64_t base = 0; base < segments; base += kThreads) {
    const int64_t s = base + threadIdx.x;
    int32_t bytes = 0;
    if (s < segments) {
      int64_t begin = ip[s], end = ip[s + 1];
      ClampSegment(n, begin, end);
      bytes = static_cast<int32_t>(CeilDiv8(end - begin));
    }
    partial[threadIdx.x] = bytes;
    __syncthreads();
    // Hillis-Steele inclusive scan over the chunk.
    for (int offset = 1; offset < kThreads; offset <<= 1) {
      const int32_t add = threadIdx.x >= offset ? partial[threadIdx.x - offset] : 0;
      __syncthreads();
      partial[threadIdx.x] += add;
      __syncthreads();
    }
    if (s < segments) np[s + 1] = carry + partial[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == kThreads - 1) carry += partial[kThreads - 1];
    __syncthreads();
  }
}

// Eight input bytes from x[start] on (any alignment, as two aligned 8-byte loads and a
// shift), those at or past `count` as 0; byte loads within 16 bytes of the end of x.
__device__ __forceinline__ uint64_t LoadBoolBytes(const uint8_t* __restrict__ x, int64_t start,
                                                  int64_t count, int64_t x_size) {
  const int64_t aligned = start & ~int64_t{7};
  const uint32_t shift = static_cast<uint32_t>(start & 7) * 8;
  uint64_t v = 0;
  if (aligned + 16 <= x_size) {
    const uint64_t w0 = *reinterpret_cast<const uint64_t*>(x + aligned);
    const uint64_t w1 = *reinterpret_cast<const uint64_t*>(x + aligned + 8);
    v = shift ? (w0 >> shift) | (w1 << (64 - shift)) : w0;
  } else {
    for (int64_t i = 0; i < 8 && i < count; ++i) v |= uint64_t{x[start + i]} << (8 * i);
  }
  if (count < 8) v &= (uint64_t{1} << (8 * count)) - 1;
  return v;
}

constexpr int kSegmentBytesPerThread = 16;

// Phase 2, one thread per 16 consecutive output bytes of a row: one binary search over
// new_indptr for the first. When all 16 lie in one segment with their 128 input bytes inside
// it (nearly every group of a long segment), the input is read as 9 aligned 16-byte loads
// and shifted into place, and the output stored as one 16-byte store where aligned; other
// groups walk byte by byte (a segment boundary, the end of a segment or of the input). A
// thread per output byte with its own search and byte loads ran at 20% of a copy, a thread
// per 4 bytes with 8-byte windows at 45% (H100, 64 segments over 2^28 bools).
template <typename Index>
__global__ void SegmentPackKernel(const uint8_t* __restrict__ x, const Index* __restrict__ indptr,
                                  const int32_t* __restrict__ new_indptr, uint8_t* __restrict__ y,
                                  int64_t n, int64_t segments, uint32_t t, int64_t x_size,
                                  uint32_t total_groups, FastDiv32 groups_per_row_div,
                                  bool little) {
  constexpr uint32_t kBytes = kSegmentBytesPerThread;
  const uint32_t groups_per_row = groups_per_row_div.divisor;
  for (uint32_t g = blockIdx.x * blockDim.x + threadIdx.x; g < total_groups;
       g += gridDim.x * blockDim.x) {
    const uint32_t r = groups_per_row_div.Div(g), j0 = (g - r * groups_per_row) * kBytes;
    const int32_t* np = new_indptr + int64_t{r} * (segments + 1);
    const Index* ip = indptr + int64_t{r} * (segments + 1);
    const int64_t used = np[segments];
    uint8_t* out = y + int64_t{r} * t + j0;
    int64_t seg = 0;  // the largest s with np[s] <= j (empty segments are skipped)
    if (j0 < used) {
      int64_t hi = segments;
      while (hi - seg > 1) {
        const int64_t mid = (seg + hi) / 2;
        if (np[mid] <= j0) seg = mid; else hi = mid;
      }
      int64_t begin = ip[seg], end = ip[seg + 1];
      ClampSegment(n, begin, end);
      const int64_t start = int64_t{r} * n + begin + 8 * (j0 - np[seg]);
      const int64_t aligned = start & ~int64_t{15};
      if (j0 + kBytes <= t && j0 + kBytes <= static_cast<uint32_t>(np[seg + 1]) &&
          start + 8 * kBytes <= int64_t{r} * n + end && aligned + 16 * 9 <= x_size) {
        uint64_t w[18];
#pragma unroll
        for (int k = 0; k < 9; ++k) {
          const uint4 v = reinterpret_cast<const uint4*>(x + aligned)[k];
          w[2 * k] = (uint64_t{v.y} << 32) | v.x;
          w[2 * k + 1] = (uint64_t{v.w} << 32) | v.z;
        }
        const bool odd_word = (start & 8) != 0;
        const uint32_t shift = static_cast<uint32_t>(start & 7) * 8;
        uint32_t packed[kBytes / 4] = {};
#pragma unroll
        for (int k = 0; k < static_cast<int>(kBytes); ++k) {
          const uint64_t a = odd_word ? w[k + 1] : w[k], b = odd_word ? w[k + 2] : w[k + 1];
          const uint64_t v = shift ? (a >> shift) | (b << (64 - shift)) : a;
          packed[k / 4] |= PackWindow(v, little) << (8 * (k % 4));
        }
        const uintptr_t address = reinterpret_cast<uintptr_t>(out);
        if (address % 16 == 0) {
          *reinterpret_cast<uint4*>(out) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        } else if (address % 4 == 0) {
#pragma unroll
          for (int k = 0; k < static_cast<int>(kBytes / 4); ++k)
            reinterpret_cast<uint32_t*>(out)[k] = packed[k];
        } else {
#pragma unroll
          for (int k = 0; k < static_cast<int>(kBytes); ++k)
            out[k] = static_cast<uint8_t>(packed[k / 4] >> (8 * (k % 4)));
        }
        continue;
      }
    }
    for (uint32_t k = 0; k < kBytes; ++k) {
      const uint32_t j = j0 + k;
      if (j >= t) break;
      uint32_t byte = 0;
      if (j < used) {
        while (np[seg + 1] <= j) ++seg;
        int64_t begin = ip[seg], end = ip[seg + 1];
        ClampSegment(n, begin, end);
        const int64_t start = begin + 8 * (j - np[seg]);
        byte = PackWindow(LoadBoolBytes(x, int64_t{r} * n + start, end - start, x_size), little);
      }
      out[k] = static_cast<uint8_t>(byte);
    }
  }
}

template <typename Index>
void LaunchSegment(cudaStream_t stream, const uint8_t* x, const void* indptr, int32_t* new_indptr,
                   uint8_t* y, int64_t rows, int64_t n, int64_t segments, int64_t t, bool little) {
  const auto* ip = static_cast<const Index*>(indptr);
  SegmentOffsetsKernel<Index><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      ip, new_indptr, n, segments);
  const int64_t groups_per_row = (t + kSegmentBytesPerThread - 1) / kSegmentBytesPerThread;
  if (rows * groups_per_row > 0)
    SegmentPackKernel<Index><<<GridFor(rows * groups_per_row), kThreads, 0, stream>>>(
        x, ip, new_indptr, y, n, segments, static_cast<uint32_t>(t), rows * n,
        static_cast<uint32_t>(rows * groups_per_row), FastDiv32::Make(groups_per_row), little);
}

ffi::Error SegmentPackbitsCudaImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer indptr,
                                   ffi::ResultBuffer<ffi::U8> y,
                                   ffi::ResultBuffer<ffi::S32> new_indptr, bool little) {
  const auto xd = x.dimensions(), id = indptr.dimensions(), yd = y->dimensions();
  const int64_t n = xd[xd.size() - 1], s1 = id[id.size() - 1], t = yd[yd.size() - 1];
  const int64_t rows = static_cast<int64_t>(indptr.element_count()) / s1;
  if (rows == 0) return ffi::Error::Success();
  // 32-bit output byte offsets within a row and 32-bit indices of the 16-byte output groups,
  // with room for one grid stride (at most a few million).
  const int64_t groups = rows * ((t + kSegmentBytesPerThread - 1) / kSegmentBytesPerThread);
  if (t >= (int64_t{1} << 32) - 64 || groups >= (int64_t{1} << 32) - (int64_t{1} << 28))
    return InvalidArgument("segment_packbits", "2^32 - 64 output bytes or more in one row");
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  if (indptr.element_type() == ffi::S64)
    LaunchSegment<int64_t>(stream, in, indptr.untyped_data(), new_indptr->typed_data(),
                           y->typed_data(), rows, n, s1 - 1, t, little);
  else
    LaunchSegment<int32_t>(stream, in, indptr.untyped_data(), new_indptr->typed_data(),
                           y->typed_data(), rows, n, s1 - 1, t, little);
  return LaunchStatus("segment_packbits");
}

struct InterleaveParams {
  uint32_t words, words_per_batch, rows, cols, col_tiles, shuffle_block;
  FastDiv32 words_per_batch_div, col_tiles_div;
  // InterleaveWideKernel: 128-row tiles per batch entry, groups of 8 column tiles per row
  uint32_t tile_rows = 0, col_groups = 0, items = 0;
  FastDiv32 tile_rows_div, col_groups_div;
};

// One thread per 4 consecutive output elements (a "word": one row's 4 columns of a 128x4
// tile), read with one 4- or 8-byte load when rows hold whole words (cols % 4 == 0), with
// 32-bit index math. One thread per element with 64-bit divisions ran 4x slower than the
// pure-JAX twin at [16384, 1024] (H100, session 5).
template <typename T, bool kWholeWords>
__global__ void InterleaveKernel(const T* __restrict__ in, T* __restrict__ out,
                                 InterleaveParams p) {
  using Word = std::conditional_t<sizeof(T) == 1, uint32_t, uint2>;
  for (uint32_t w = blockIdx.x * blockDim.x + threadIdx.x; w < p.words;
       w += gridDim.x * blockDim.x) {
    const uint32_t b = p.words_per_batch_div.Div(w);
    const uint32_t word = w - b * p.words_per_batch;
    // SPEC 3.2: offset (r % 32) * 16 + ((r / 32) % 4) * 4 + k % 4 within a 512-element tile
    const uint32_t tile = word >> 7, q = word & 127u;
    const uint32_t tile_row = p.col_tiles_div.Div(tile);
    const uint32_t r = tile_row * 128 + (q & 3u) * 32 + (q >> 2);
    const uint32_t k0 = (tile - tile_row * p.col_tiles) * 4;
    T v[4] = {T(0), T(0), T(0), T(0)};
    if (r < p.rows && k0 < p.cols) {
      const uint32_t src_row = ShuffleSourceRow(r, p.shuffle_block);
      const T* src = in + (int64_t{b} * p.rows + src_row) * p.cols + k0;
      if constexpr (kWholeWords) {
        *reinterpret_cast<Word*>(v) = *reinterpret_cast<const Word*>(src);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (k0 + i < p.cols) v[i] = src[i];
      }
    }
    reinterpret_cast<Word*>(out)[w] = *reinterpret_cast<const Word*>(v);
  }
}

// uint8 with cols % 16 == 0 (scale matrices of K / 16 or K / 32 columns): a thread takes one
// word position q of 8 column-adjacent tiles, i.e. 32 contiguous bytes of one input row (two
// 16-byte loads, every sector used whole; InterleaveKernel's 4-byte loads used 1/8 of each),
// and stores 8 words a tile apart, each store instruction 128 contiguous bytes of a tile.
__global__ void InterleaveWideKernel(const uint8_t* __restrict__ in, uint32_t* __restrict__ out,
                                     InterleaveParams p) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < p.items;
       i += gridDim.x * blockDim.x) {
    const uint32_t q = i & 127u, cell = i >> 7;
    const uint32_t batch_row = p.col_groups_div.Div(cell);  // b * tile_rows + tile_row
    const uint32_t group = cell - batch_row * p.col_groups;
    const uint32_t b = p.tile_rows_div.Div(batch_row);
    const uint32_t tile_row = batch_row - b * p.tile_rows;
    const uint32_t r = tile_row * 128 + (q & 3u) * 32 + (q >> 2);
    const uint32_t k0 = group * 32;
    uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
    if (r < p.rows) {
      const uint8_t* src =
          in + (int64_t{b} * p.rows + ShuffleSourceRow(r, p.shuffle_block)) * p.cols + k0;
      lo = *reinterpret_cast<const uint4*>(src);
      if (k0 + 16 < p.cols) hi = *reinterpret_cast<const uint4*>(src + 16);
    }
    const uint32_t words[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    uint32_t* dst = out + b * p.words_per_batch + (tile_row * p.col_tiles + group * 8) * 128 + q;
#pragma unroll
    for (uint32_t c = 0; c < 8; ++c)
      if (group * 8 + c < p.col_tiles) dst[c * 128] = words[c];
  }
}

template <typename T>
void LaunchInterleave(cudaStream_t stream, const void* in, void* out, const InterleaveParams& p) {
  auto kernel = p.cols % 4 == 0 ? InterleaveKernel<T, true> : InterleaveKernel<T, false>;
  kernel<<<GridFor(p.words), kThreads, 0, stream>>>(static_cast<const T*>(in),
                                                     static_cast<T*>(out), p);
}

ffi::Error BlockScaleInterleaveCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                                        ffi::Result<ffi::AnyBuffer> out, int64_t shuffle_block) {
  const auto dims = x.dimensions();
  if (dims.size() < 2) return InvalidArgument("block_scale_interleave", "input must be 2-D or 3-D");
  const int64_t rows = dims[dims.size() - 2], cols = dims[dims.size() - 1];
  const int64_t batch = rows * cols ? static_cast<int64_t>(x.element_count()) / (rows * cols) : 0;
  const int64_t size = SfBufferSize(kLayout128x4, rows, cols);
  const int64_t total = batch * size;
  if (static_cast<int64_t>(out->element_count()) != total)
    return InvalidArgument("block_scale_interleave", "output size does not match the input");
  if (total == 0) return ffi::Error::Success();
  // 32-bit word indices, with room for one grid stride.
  if (total / 4 >= (int64_t{1} << 32) - (int64_t{1} << 28))
    return InvalidArgument("block_scale_interleave", "more than 2^34 - 2^30 output elements");
  InterleaveParams p{static_cast<uint32_t>(total / 4), static_cast<uint32_t>(size / 4),
                     static_cast<uint32_t>(rows), static_cast<uint32_t>(cols),
                     static_cast<uint32_t>(SfPaddedCols(kLayout128x4, cols) / 4),
                     static_cast<uint32_t>(shuffle_block), FastDiv32{}, FastDiv32{}};
  p.words_per_batch_div = FastDiv32::Make(p.words_per_batch);
  p.col_tiles_div = FastDiv32::Make(p.col_tiles);
  if (x.element_type() == ffi::BF16) {
    LaunchInterleave<uint16_t>(stream, x.untyped_data(), out->untyped_data(), p);
  } else if (cols % 16 == 0) {
    p.tile_rows = static_cast<uint32_t>(SfPaddedRows(kLayout128x4, rows) / 128);
    p.col_groups = (p.col_tiles + 7) / 8;
    p.items = static_cast<uint32_t>(batch * p.tile_rows * p.col_groups * 128);  // <= words
    p.tile_rows_div = FastDiv32::Make(p.tile_rows);
    p.col_groups_div = FastDiv32::Make(p.col_groups);
    InterleaveWideKernel<<<GridFor(p.items), kThreads, 0, stream>>>(
        static_cast<const uint8_t*>(x.untyped_data()), static_cast<uint32_t*>(out->untyped_data()),
        p);
  } else {
    LaunchInterleave<uint8_t>(stream, x.untyped_data(), out->untyped_data(), p);
  }
  return LaunchStatus("block_scale_interleave");
}

// One thread per 16 bytes (or per byte when rows are not 16-byte multiples) of the output.
template <typename Chunk>
__global__ void ShuffleRowsKernel(const Chunk* __restrict__ in, Chunk* __restrict__ out,
                                  int64_t total_rows, int64_t row_chunks, int64_t block) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total_rows * row_chunks;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / row_chunks, c = i - r * row_chunks;
    out[i] = in[ShuffleSourceRow(r, block) * row_chunks + c];
  }
}

ffi::Error ShuffleRowsCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                               ffi::Result<ffi::AnyBuffer> out, int64_t block) {
  const auto dims = x.dimensions();
  if (dims.size() < 2) return InvalidArgument("shuffle_matrix_a", "input must be 2-D");
  const int64_t rows = dims[dims.size() - 2];
  const int64_t n = static_cast<int64_t>(x.element_count());
  const int64_t row_bytes = n ? static_cast<int64_t>(x.size_bytes()) / n * dims[dims.size() - 1] : 0;
  if (block <= 0 || rows % block != 0)
    return InvalidArgument("shuffle_matrix_a", "rows must be a multiple of the shuffle block");
  if (row_bytes == 0) return ffi::Error::Success();
  const int64_t total_rows = static_cast<int64_t>(x.size_bytes()) / row_bytes;
  if (row_bytes % 16 == 0)
    ShuffleRowsKernel<<<GridFor(total_rows * row_bytes / 16), kThreads, 0, stream>>>(
        static_cast<const uint4*>(x.untyped_data()), static_cast<uint4*>(out->untyped_data()),
        total_rows, row_bytes / 16, block);
  else
    ShuffleRowsKernel<<<GridFor(total_rows * row_bytes), kThreads, 0, stream>>>(
        static_cast<const uint8_t*>(x.untyped_data()), static_cast<uint8_t*>(out->untyped_data()),
        total_rows, row_bytes, block);
  return LaunchStatus("shuffle_matrix_a");
}

// The copy-bandwidth ceiling for the benchmarks: one device-to-device copy of x's bytes.
ffi::Error DeviceCopyCudaImpl(cudaStream_t stream, ffi::AnyBuffer x,
                              ffi::Result<ffi::AnyBuffer> out) {
  if (x.size_bytes() != out->size_bytes())
    return InvalidArgument("device_copy", "output size does not match the input");
  if (x.size_bytes() == 0) return ffi::Error::Success();
  cudaMemcpyAsync(out->untyped_data(), x.untyped_data(), x.size_bytes(), cudaMemcpyDeviceToDevice,
                  stream);
  return LaunchStatus("device_copy");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeviceCopyCuda, DeviceCopyCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>(),        // out
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(PackbitsCuda, PackbitsCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::Buffer<ffi::U8>>()   // out
                                  .Attr<bool>("little"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(SegmentPackbitsCuda, SegmentPackbitsCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Arg<ffi::AnyBuffer>()         // indptr
                                  .Ret<ffi::Buffer<ffi::U8>>()   // y
                                  .Ret<ffi::Buffer<ffi::S32>>()  // new_indptr
                                  .Attr<bool>("little"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockScaleInterleaveCuda, BlockScaleInterleaveCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>()         // out
                                  .Attr<int64_t>("shuffle_block"),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShuffleRowsCuda, ShuffleRowsCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>()         // out
                                  .Attr<int64_t>("block"),
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jax_fp4::cuda
