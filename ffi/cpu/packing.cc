// CPU handlers that move bytes: packbits, segment_packbits and block_scale_interleave.
#include <cstring>

#include "common/ffi_utils.h"
#include "common/packing.h"
#include "common/sf_layout.h"
#include "handlers.h"

namespace jax_fp4::cpu {
namespace {

// x: u8|pred [B..., N] -> out: u8 [B..., ceil(N/8)].
ffi::Error PackbitsCpuImpl(ffi::AnyBuffer x, ffi::ResultBuffer<ffi::U8> out, bool little) {
  const auto dims = x.dimensions();
  const int64_t n = dims.size() ? dims[dims.size() - 1] : 1;
  const int64_t rows = n ? static_cast<int64_t>(x.element_count()) / n : 0;
  const int64_t nbytes = CeilDiv8(n);
  if (static_cast<int64_t>(out->element_count()) != rows * nbytes)
    return InvalidArgument("packbits", "output size does not match the input");
  const auto* in = static_cast<const uint8_t*>(x.untyped_data());
  uint8_t* o = out->typed_data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < nbytes; ++j)
      o[r * nbytes + j] = PackByte(in + r * n + 8 * j, n - 8 * j, little);
  return ffi::Error::Success();
}

template <typename Index>
void SegmentPackbitsRow(const uint8_t* x, int64_t n, const Index* indptr, int64_t segments,
                        uint8_t* y, int64_t total_bytes, int32_t* new_indptr, bool little) {
  std::memset(y, 0, static_cast<size_t>(total_bytes));
  int64_t out = 0;
  new_indptr[0] = 0;
  for (int64_t s = 0; s < segments; ++s) {
    int64_t begin = indptr[s], end = indptr[s + 1];
    ClampSegment(n, begin, end);
    for (int64_t i = begin; i < end; i += 8, ++out)
      if (out < total_bytes) y[out] = PackByte(x + i, end - i, little);
    new_indptr[s + 1] = static_cast<int32_t>(out);
  }
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

template <typename T>
void InterleaveRows(const T* in, T* out, int64_t batch, int64_t rows, int64_t cols,
                    int64_t shuffle_block) {
  const int64_t size = SfBufferSize(kLayout128x4, rows, cols);
  std::memset(out, 0, static_cast<size_t>(batch * size) * sizeof(T));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k)
        out[b * size + SfOffset(kLayout128x4, r, k, cols)] =
            in[(b * rows + ShuffleSourceRow(r, shuffle_block)) * cols + k];
}

// x: u8|bf16 [B..., R, C] -> out: same dtype [B..., round_up(R,128) * round_up(C,4)], the
// 128x4 layout of SPEC 3.2 with zero padding; rows first shuffled when shuffle_block is 16|32
// (shuffle_matrix_sf_a, SPEC 5.12; R is then a multiple of 128).
ffi::Error BlockScaleInterleaveCpuImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out,
                                       int64_t shuffle_block) {
  const auto dims = x.dimensions();
  if (dims.size() < 2) return InvalidArgument("block_scale_interleave", "input must be 2-D or 3-D");
  const int64_t rows = dims[dims.size() - 2], cols = dims[dims.size() - 1];
  const int64_t batch = rows * cols ? static_cast<int64_t>(x.element_count()) / (rows * cols) : 0;
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
  for (int64_t r = 0; r < total_rows; ++r)
    std::memcpy(o + r * row_bytes, in + ShuffleSourceRow(r, block) * row_bytes,
                static_cast<size_t>(row_bytes));
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
