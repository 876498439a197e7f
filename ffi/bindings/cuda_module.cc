// Python module _jax_fp4_cuda: the CUDA FFI handlers as capsules.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "handlers.h"

namespace nb = nanobind;

namespace {

template <typename T>
nb::capsule Capsule(T* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, T, XLA_FFI_CallFrame*>,
                "an FFI handler must have the XLA_FFI_Handler signature");
  return nb::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

NB_MODULE(_jax_fp4_cuda, m) {
  m.def("registrations", []() {
    nb::dict d;
    d["jax_fp4_fp4_quantize"] = Capsule(jax_fp4::cuda::Fp4QuantizeCuda);
    d["jax_fp4_mxfp8_quantize"] = Capsule(jax_fp4::cuda::Mxfp8QuantizeCuda);
    d["jax_fp4_nvfp4_per_token_quantize"] = Capsule(jax_fp4::cuda::Nvfp4PerTokenQuantizeCuda);
    d["jax_fp4_block_dequantize"] = Capsule(jax_fp4::cuda::BlockDequantizeCuda);
    d["jax_fp4_packbits"] = Capsule(jax_fp4::cuda::PackbitsCuda);
    d["jax_fp4_segment_packbits"] = Capsule(jax_fp4::cuda::SegmentPackbitsCuda);
    d["jax_fp4_block_scale_interleave"] = Capsule(jax_fp4::cuda::BlockScaleInterleaveCuda);
    d["jax_fp4_device_copy"] = Capsule(jax_fp4::cuda::DeviceCopyCuda);
    d["jax_fp4_shuffle_rows"] = Capsule(jax_fp4::cuda::ShuffleRowsCuda);
    return d;
  });
}
