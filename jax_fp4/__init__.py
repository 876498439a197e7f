"""jax_fp4: block-scaled FP4/FP8 quantization for JAX, bit-compatible with FlashInfer.

Every operation is a JAX primitive with CPU and CUDA FFI handlers and a pure-JAX twin
(``backend="xla"``); names and arguments follow ``flashinfer.quantization``.
"""

from jax_fp4._registry import cuda_available, cuda_compiled
from jax_fp4._shapes import SfLayout
from jax_fp4.dequantize import (
    e2m1_and_ufp8sf_scale_to_float,
    mxfp4_dequantize,
    mxfp4_dequantize_host,
    mxfp8_dequantize,
    mxfp8_dequantize_host,
    nvfp4_dequantize,
)
from jax_fp4.interop import (
    mxfp4_to_scaled_matmul,
    mxfp8_to_scaled_matmul,
    nvfp4_to_scaled_matmul,
)
from jax_fp4.kv_cache import (
    nvfp4_kv_dequantize,
    nvfp4_kv_dequantize_paged,
    nvfp4_kv_quantize,
    nvfp4_quantize_paged_kv_cache,
)
from jax_fp4.layouts import (
    block_scale_interleave,
    block_scale_interleave_reverse,
    nvfp4_block_scale_interleave,
    sf_buffer_size,
    shuffle_matrix_a,
    shuffle_matrix_sf_a,
    sf_padded_shape,
)
from jax_fp4.packing import packbits, segment_packbits
from jax_fp4.quantize import (
    fp4_quantize,
    mxfp4_quantize,
    mxfp8_quantize,
    nvfp4_batched_quantize,
    nvfp4_global_scale,
    nvfp4_quantize,
    scaled_fp4_grouped_quantize,
    silu_and_mul_nvfp4_quantize,
)
from jax_fp4.views import fp4_codes_to_float4, scales_as_e4m3, scales_as_ue8m0

__version__ = "0.1.0"

__all__ = [
    "SfLayout",
    "block_scale_interleave",
    "block_scale_interleave_reverse",
    "cuda_available",
    "cuda_compiled",
    "e2m1_and_ufp8sf_scale_to_float",
    "fp4_codes_to_float4",
    "fp4_quantize",
    "mxfp4_dequantize",
    "mxfp4_dequantize_host",
    "mxfp4_quantize",
    "mxfp4_to_scaled_matmul",
    "mxfp8_dequantize",
    "mxfp8_dequantize_host",
    "mxfp8_to_scaled_matmul",
    "nvfp4_dequantize",
    "nvfp4_kv_dequantize",
    "nvfp4_kv_dequantize_paged",
    "nvfp4_kv_quantize",
    "nvfp4_quantize_paged_kv_cache",
    "nvfp4_global_scale",
    "nvfp4_to_scaled_matmul",
    "scaled_fp4_grouped_quantize",
    "shuffle_matrix_a",
    "shuffle_matrix_sf_a",
    "silu_and_mul_nvfp4_quantize",
    "mxfp8_quantize",
    "nvfp4_batched_quantize",
    "nvfp4_block_scale_interleave",
    "nvfp4_quantize",
    "packbits",
    "scales_as_e4m3",
    "scales_as_ue8m0",
    "segment_packbits",
    "sf_buffer_size",
    "sf_padded_shape",
]
