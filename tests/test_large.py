"""Inputs past 2^31 elements on the GPU: 64-bit byte offsets in every kernel.

An NVFP4 quantize of a [131200, 16384] bfloat16 matrix (2^31 + 2^21 elements, 4 GiB) and the
dequantize of its codes (an 8.6 GB float32 result) on the GPU, checked tile by tile against
the CPU handler: the first, a middle and the last 128-row tile (each tile's codes, scale
bytes and dequantized rows are independent of the other rows). Needs a GPU with ~20 GB free;
skipped otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_fp4
from conftest import assert_bytes_equal, assert_f32_bits_equal, require_platform

pytestmark = [pytest.mark.cuda, pytest.mark.slow]

ROWS, K = 131072 + 128, 16384
GLOBAL_SCALE = 448.0 * 6.0 / 5.0  # N(0, 1) data: block maxima mostly below 5


def _gpu_with_memory(min_bytes: float):
    require_platform("cuda")
    gpu = jax.devices("cuda")[0]
    stats = gpu.memory_stats() or {}
    if stats.get("bytes_limit", 0) < min_bytes:
        pytest.skip(f"needs {min_bytes / 1e9:.0f} GB of GPU memory")
    return gpu


def test_nvfp4_past_2_31_elements_matches_cpu_tiles():
    gpu = _gpu_with_memory(24e9)
    cpu = jax.devices("cpu")[0]
    assert ROWS * K > 2**31
    key = jax.device_put(jax.random.key(7), gpu)
    x = jax.jit(lambda k: jax.random.normal(k, (ROWS, K), jnp.bfloat16))(key)
    gs = jax.device_put(jnp.float32(GLOBAL_SCALE), gpu)
    codes, sf = jax.jit(jax_fp4.fp4_quantize)(x, gs)
    out = jax.jit(lambda c, s: jax_fp4.e2m1_and_ufp8sf_scale_to_float(c, s, 1.0 / GLOBAL_SCALE))(
        codes, sf)
    tile_bytes = 128 * (K // 16)  # one 128-row tile of the 128x4 scale layout
    sf = sf.reshape(-1)
    for tile in (0, ROWS // 256, ROWS // 128 - 1):
        rows = slice(128 * tile, 128 * (tile + 1))
        x_tile = jax.device_put(np.asarray(x[rows]), cpu)
        want_codes, want_sf = jax_fp4.fp4_quantize(x_tile, jax.device_put(gs, cpu))
        assert_bytes_equal(codes[rows], want_codes, f"codes of tile {tile}")
        assert_bytes_equal(sf[tile * tile_bytes:(tile + 1) * tile_bytes],
                           np.asarray(want_sf).reshape(-1), f"scales of tile {tile}")
        want_out = jax_fp4.e2m1_and_ufp8sf_scale_to_float(want_codes, want_sf,
                                                          1.0 / GLOBAL_SCALE)
        assert_f32_bits_equal(out[rows], want_out, f"dequantized tile {tile}")
