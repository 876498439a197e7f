// Python module _jax_fp4_cpu: the CPU FFI handlers as capsules, and the host rcp table.
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

NB_MODULE(_jax_fp4_cpu, m) {
  m.def("registrations", []() {
    nb::dict d;
    d["jax_fp4_fp4_quantize"] = Capsule(jax_fp4::cpu::Fp4QuantizeCpu);
    d["jax_fp4_mxfp8_quantize"] = Capsule(jax_fp4::cpu::Mxfp8QuantizeCpu);
    d["jax_fp4_nvfp4_per_token_quantize"] = Capsule(jax_fp4::cpu::Nvfp4PerTokenQuantizeCpu);
    d["jax_fp4_block_dequantize"] = Capsule(jax_fp4::cpu::BlockDequantizeCpu);
    d["jax_fp4_packbits"] = Capsule(jax_fp4::cpu::PackbitsCpu);
    d["jax_fp4_segment_packbits"] = Capsule(jax_fp4::cpu::SegmentPackbitsCpu);
    d["jax_fp4_block_scale_interleave"] = Capsule(jax_fp4::cpu::BlockScaleInterleaveCpu);
    d["jax_fp4_device_copy"] = Capsule(jax_fp4::cpu::DeviceCopyCpu);
    d["jax_fp4_shuffle_rows"] = Capsule(jax_fp4::cpu::ShuffleRowsCpu);
    return d;
  });
  m.def(
      "set_rcp_table",
      [](nb::ndarray<const uint32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> words) {
        if (!jax_fp4::cpu::SetRcpTable(words.data(), words.shape(0)))
          throw nb::value_error("the rcp table must have 262144 uint32 words");
      },
      "Installs the rcp.approx.ftz.f32 mismatch table (SPEC 1.4) for the CPU handlers.");
}
