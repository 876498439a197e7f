// Every FFI handler symbol of jax_fp4, CPU and CUDA. The bindings wrap these in capsules.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/formats.h"
#include "xla/ffi/api/ffi.h"

namespace jax_fp4::cpu {
XLA_FFI_DECLARE_HANDLER_SYMBOL(Fp4QuantizeCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Mxfp8QuantizeCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Nvfp4PerTokenQuantizeCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(BlockDequantizeCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(PackbitsCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(SegmentPackbitsCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(BlockScaleInterleaveCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(DeviceCopyCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(ShuffleRowsCpu);
// Installs the host reciprocal table (262,144 words); false if the size is wrong.
bool SetRcpTable(const uint32_t* words, size_t count);
}  // namespace jax_fp4::cpu

namespace jax_fp4::cuda {
XLA_FFI_DECLARE_HANDLER_SYMBOL(Fp4QuantizeCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Mxfp8QuantizeCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Nvfp4PerTokenQuantizeCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(BlockDequantizeCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(PackbitsCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(SegmentPackbitsCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(BlockScaleInterleaveCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(DeviceCopyCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(ShuffleRowsCuda);
}  // namespace jax_fp4::cuda
