// CPU handlers that move bytes: packbits, segment_packbits and block_scale_interleave.
#include <cstring>
#include <vector>

#include "common/ffi_utils.h"
#include "common/packing.h"
#include "common/sf_layout.h"
#include "cpu/isa.h"
#include "handlers.h"

#if JAX_FP4_CPU_AVX2
#include <immintrin.h>
#endif

namespace jax_fp4::cpu {
namespace {

// Eight whole groups of 8 input bytes (64 elements) as 8 packed bytes, with 64-bit words:
// each byte's "non-zero" becomes its top bit, and a multiply gathers the 8 top bits of a word
// into its top byte (in LSB-first order; a byte swap of the word first gives MSB-first).
inline void Pack64(const uint8_t* x, uint8_t* out, bool little) {
  for (int g = 0; g < 8; ++g) {
    uint64_t v;
    std::memcpy(&v, x + 8 * g, 8);
    if (!little) v = __builtin_bswap64(v);
    constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;
    const uint64_t top = (((v & kLow7) + kLow7) | v) & ~kLow7;  // 0x80 where the byte is non-zero
    out[g] = static_cast<uint8_t>(((top >> 7) * 0x0102040810204080ull) >> 56);
  }
}

#if JAX_FP4_CPU_AVX2
// The same with AVX2: 32 input bytes compared with zero give a 32-bit mask, bit i for byte i
// (LSB-first); MSB-first reverses each group of 8 bytes first.
__attribute__((target("avx2"))) inline void Pack64Avx2(const uint8_t* x, uint8_t* out,
                                                       bool little) {
  const __m256i reverse = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
                                           7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
  for (int h = 0; h < 2; ++h) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * h));
    if (!little) v = _mm256_shuffle_epi8(v, reverse);
    const uint32_t zero = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256())));
    const uint32_t bits = ~zero;
    std::memcpy(out + 4 * h, &bits, 4);
  }
}
#endif

// Packs the `count` elements at `x` into bytes from `out`, at most `max_bytes` of them:
// whole 64-element groups by Pack64 (Pack64Avx2 where `use_avx2` holds), the rest by PackByte.
template <typename UseAvx2>
inline void PackRun(UseAvx2, const uint8_t* x, int64_t count, uint8_t* out, int64_t max_bytes,
                    bool little) {
  int64_t i = 0, o = 0;
  for (; i + 64 <= count && o + 8 <= max_bytes; i += 64, o += 8) {
#if JAX_FP4_CPU_AVX2
    if constexpr (UseAvx2::value) {
      Pack64Avx2(x + i, out + o, little);
      continue;
    }
#endif
    Pack64(x + i, out + o, little);
  }
  for (; i < count && o < max_bytes; i += 8, ++o) out[o] = PackByte(x + i, count - i, little);
}

// x: u8|pred [B..., N] -> out: u8 [B..., ceil(N/8)]. Rows, or for few rows pieces of them,
// over the threads.
ffi::Error PackbitsCpuImpl(ffi::AnyBuffer x, ffi::ResultBuffer<ffi::U8> out, bool little) {
  const auto dims = x.dimensions();
  const int64_t n = dims.size() ? dims[dims.size() - 1] : 1;
  const int64_t rows = n ? static_cast<int64_t>(x.element_count()) / n : 0;
  const int64_t nbytes = CeilDiv8(n);
  if (static_cast<int64_t>(out->element_count()) != rows * nbytes)
    return InvalidArgument("packbits", "output size does not match the input");
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  uint8_t* o = out->typed_data();
  // Work items: (row, piece of 2^16 output bytes), so one long row still splits.
  constexpr int64_t kPieceBytes = int64_t{1} << 16;
  const int64_t pieces = std::max<int64_t>(1, (nbytes + kPieceBytes - 1) / kPieceBytes);
  const auto items = [&](auto use_avx2, int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / pieces, first = (item % pieces) * kPieceBytes;
      const int64_t bytes = std::min(nbytes - first, kPieceBytes);
      PackRun(use_avx2, in + r * n + 8 * first, n - 8 * first, o + r * nbytes + first, bytes,
              little);
    }
  };
  const int64_t items_per_task = std::max<int64_t>(1, kPieceBytes / std::max<int64_t>(1, nbytes));
  ParallelRows<true>(rows * pieces, items_per_task, true, items);
  return ffi::Error::Success();
}

// The output offsets first (each segment's bytes follow the previous segment's), then the
// segments on the threads, packed by PackRun like packbits.
template <typename Index>
void SegmentPackbitsRow(const uint8_t* x, int64_t n, const Index* indptr, int64_t segments,
                        uint8_t* y, int64_t total_bytes, int32_t* new_indptr, bool little) {
  std::vector<int64_t> first_byte(static_cast<size_t>(segments) + 1, 0);
  for (int64_t s = 0; s < segments; ++s) {
    int64_t begin = indptr[s], end = indptr[s + 1];
    ClampSegment(n, begin, end);
    first_byte[s + 1] = first_byte[s] + CeilDiv8(end - begin);
  }
  for (int64_t s = 0; s <= segments; ++s) new_indptr[s] = static_cast<int32_t>(first_byte[s]);
  const int64_t written = std::min(first_byte[segments], total_bytes);
  std::memset(y + written, 0, static_cast<size_t>(total_bytes - written));
  const auto pack = [&](auto use_avx2, int64_t s_begin, int64_t s_end) {
    for (int64_t s = s_begin; s < s_end; ++s) {
      int64_t begin = indptr[s], end = indptr[s + 1];
      ClampSegment(n, begin, end);
      const int64_t out = std::min(first_byte[s], total_bytes);
      PackRun(use_avx2, x + begin, end - begin, y + out, total_bytes - out, little);
    }
  };
  ParallelRows<true>(segments, std::max<int64_t>(1, segments / 64), true, pack);
}

// x: u8|pred [B..., N]; indptr: s32|s64 [B..., S+1] -> y: u8 [B..., T], new_indptr: s32 [B..., S+1].
// Bytes past new_indptr[S] are zero; bytes that would pass T are dropped.
ffi::Error SegmentPackbitsCpuImpl(ffi::AnyBuffer x, ffi::AnyBuffer indptr,
                                  ffi::ResultBuffer<ffi::U8> y,
                                  ffi::ResultBuffer<ffi::S32> new_indptr, bool little) {
  const auto xd = x.dimensions(), id = indptr.dimensions(), yd = y->dimensions();
  const int64_t n = xd[xd.size() - 1], s1 = id[id.size() - 1], t = yd[yd.size() - 1];
  const int64_t rows = n ? static_cast<int64_t>(x.element_count()) / n
                         : static_cast<int64_t>(indptr.element_count()) / s1;
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* yr = y->typed_data() + r * t;
    int32_t* nr = new_indptr->typed_data() + r * s1;
    if (indptr.element_type() == ffi::S64)
      SegmentPackbitsRow(in + r * n, n, static_cast<const int64_t*>(indptr.untyped_data()) + r * s1,
                         s1 - 1, yr, t, nr, little);
    else
      SegmentPackbitsRow(in + r * n, n, static_cast<const int32_t*>(indptr.untyped_data()) + r * s1,
                         s1 - 1, yr, t, nr, little);
  }
  return ffi::Error::Success();
}

// Each output row tile (128 rows of the padded matrix) is one task. A tile whose 128 rows are
// real and whose columns need no padding is written in memory order: a 512-element column
// group holds, for each lane l, the 4-column pieces of rows l, l + 32, l + 64, l + 96, so
// the stores are sequential and the 128 source rows' pieces stay in L1 between groups.
// Other tiles are zeroed and take their rows one at a time.
template <typename T>
void InterleaveRows(const T* in, T* out, int64_t batch, int64_t rows, int64_t cols,
                    int64_t shuffle_block) {
  const int64_t size = SfBufferSize(kLayout128x4, rows, cols);
  const SfAddressing addr = SfAddressing::Make(kLayout128x4, cols);
  const int64_t tiles = SfPaddedRows(kLayout128x4, rows) / 128;
  const int64_t tile_elems = addr.row_tile_bytes;  // elements of T per 128-row tile
  const auto source_row = [&](int64_t b, int64_t r) {
    return in + (b * rows + ShuffleSourceRow(r, shuffle_block)) * cols;
  };
  ParallelFor(batch * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / tiles, tile = item % tiles;
      T* out_tile = out + b * size + tile * tile_elems;
      const int64_t first_row = tile * 128, row_end = std::min(rows, first_row + 128);
      if (row_end - first_row == 128 && cols % 4 == 0) {
        const T* src[128];
        for (int i = 0; i < 128; ++i) src[i] = source_row(b, first_row + i);
        T* dst = out_tile;
        for (int64_t k = 0; k < cols; k += 4)
          for (int lane = 0; lane < 32; ++lane)
            for (int group = 0; group < 4; ++group, dst += 4)
              std::memcpy(dst, src[group * 32 + lane] + k, 4 * sizeof(T));
        continue;
      }
      std::memset(out_tile, 0, static_cast<size_t>(tile_elems) * sizeof(T));
      for (int64_t r = first_row; r < row_end; ++r) {
        const T* src = source_row(b, r);
        T* dst = out + b * size + addr.RowPart(r);
        for (int64_t k = 0; k < cols; k += 4)
          std::memcpy(dst + addr.ColPart(k), src + k,
                      static_cast<size_t>(std::min<int64_t>(4, cols - k)) * sizeof(T));
      }
    }
  });
}

// x: u8|bf16 [B..., R, C] -> out: same dtype [B..., round_up(R,128) * round_up(C,4)], the
// 128x4 layout of SPEC 3.2 with zero padding; rows first shuffled when shuffle_block is 16|32
// (shuffle_matrix_sf_a, SPEC 5.12; R is then a multiple of 128).
ffi::Error BlockScaleInterleaveCpuImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out,
                                       int64_t shuffle_block) {
  const auto dims = x.dimensions();
  if (dims.size() < 2) return InvalidArgument("block_scale_interleave", "input must be 2-D or 3-D");
  const int64_t rows = dims[dims.size() - 2], cols = dims[dims.size() - 1];
  const int64_t batch =
      rows * cols != 0 ? static_cast<int64_t>(x.element_count()) / (rows * cols) : 0;
  if (static_cast<int64_t>(out->element_count()) != batch * SfBufferSize(kLayout128x4, rows, cols))
    return InvalidArgument("block_scale_interleave", "output size does not match the input");
  if (x.element_type() == ffi::BF16)
    InterleaveRows(static_cast<const uint16_t*>(x.untyped_data()),
                   static_cast<uint16_t*>(out->untyped_data()), batch, rows, cols,
                   shuffle_block);
  else
    InterleaveRows(static_cast<const uint8_t*>(x.untyped_data()),
                   static_cast<uint8_t*>(out->untyped_data()), batch, rows, cols,
                   shuffle_block);
  return ffi::Error::Success();
}

// x: any dtype [B..., M, N] -> out: same, rows permuted by ShuffleSourceRow (SPEC 5.11).
ffi::Error ShuffleRowsCpuImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out, int64_t block) {
  const auto dims = x.dimensions();
  if (dims.size() < 2) return InvalidArgument("shuffle_matrix_a", "input must be 2-D");
  const int64_t rows = dims[dims.size() - 2];
  const int64_t row_bytes = static_cast<int64_t>(x.size_bytes()) /
                            std::max<int64_t>(1, static_cast<int64_t>(x.element_count())) *
                            dims[dims.size() - 1];
  const int64_t total_rows = row_bytes ? static_cast<int64_t>(x.size_bytes()) / row_bytes : 0;
  if (block <= 0 || rows % block != 0)
    return InvalidArgument("shuffle_matrix_a", "rows must be a multiple of the shuffle block");
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  auto* o = static_cast<uint8_t*>(out->untyped_data());
  const int64_t rows_per_task =
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, row_bytes));
  ParallelFor(total_rows, rows_per_task, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      std::memcpy(o + r * row_bytes, in + ShuffleSourceRow(r, block) * row_bytes,
                  static_cast<size_t>(row_bytes));
  });
  return ffi::Error::Success();
}

// The memcpy ceiling for the benchmarks.
ffi::Error DeviceCopyCpuImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out) {
  if (x.size_bytes() != out->size_bytes())
    return InvalidArgument("device_copy", "output size does not match the input");
  if (x.size_bytes()) std::memcpy(out->untyped_data(), x.untyped_data(), x.size_bytes());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeviceCopyCpu, DeviceCopyCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>());       // out

XLA_FFI_DEFINE_HANDLER_SYMBOL(PackbitsCpu, PackbitsCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::Buffer<ffi::U8>>()   // out
                                  .Attr<bool>("little"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SegmentPackbitsCpu, SegmentPackbitsCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Arg<ffi::AnyBuffer>()         // indptr
                                  .Ret<ffi::Buffer<ffi::U8>>()   // y
                                  .Ret<ffi::Buffer<ffi::S32>>()  // new_indptr
                                  .Attr<bool>("little"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockScaleInterleaveCpu, BlockScaleInterleaveCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>()         // out
                                  .Attr<int64_t>("shuffle_block"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShuffleRowsCpu, ShuffleRowsCpuImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // x
                                  .Ret<ffi::AnyBuffer>()         // out
                                  .Attr<int64_t>("block"));

}  // namespace jax_fp4::cpu
