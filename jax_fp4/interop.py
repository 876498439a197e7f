"""Operands for ``jax.nn.scaled_matmul`` / ``jax.nn.scaled_dot_general`` from jax_fp4 outputs.

``jax.nn.scaled_matmul(lhs, rhs, lhs_scales, rhs_scales)`` wants typed element arrays
``[B, M, K]`` (float4_e2m1fn or float8_e4m3fn) and typed scales ``[B, M, K // block]``
(float8_e4m3fn for NVFP4, float8_e8m0fnu for MX formats) in natural row-major order. These
helpers unpack the FP4 codes and read the scale bytes out of any ``SfLayout``. NVFP4 has a
tensor-level encode scale ``S`` that ``scaled_matmul`` does not know: multiply its result by
``1 / (S_lhs * S_rhs)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jax_fp4._shapes import SfLayout
from jax_fp4._validation import as_array, check_dtype, check_rank
from jax_fp4.layouts import block_scale_interleave_reverse
from jax_fp4.views import fp4_codes_to_float4


def _scale_matrix(op: str, sf, layout: SfLayout, rows: int, cols: int) -> jax.Array:
    sf = as_array(sf)
    check_dtype(op, "sf", sf, (jnp.uint8,))
    return block_scale_interleave_reverse(sf, rows, cols, layout)


def _fp4_operand(op: str, x_q, sf, layout, block: int, scale_dtype):
    q = as_array(x_q)
    check_rank(op, "x_q", q, min_rank=1)
    rows, k = math.prod(q.shape[:-1]), 2 * q.shape[-1]
    scales = _scale_matrix(op, sf, SfLayout(int(layout)), rows, k // block)
    data = fp4_codes_to_float4(q.reshape(rows, k // 2))
    return data, lax.bitcast_convert_type(scales, scale_dtype)


def nvfp4_to_scaled_matmul(
    x_q: ArrayLike, sf: ArrayLike, sfLayout: SfLayout = SfLayout.layout_128x4  # noqa: N803
) -> tuple[jax.Array, jax.Array]:
    """NVFP4 ``(x_q, sf)`` as ``(float4_e2m1fn [M, K], float8_e4m3fn [M, K // 16])``.

    Args:
        x_q: uint8 ``[..., K // 2]`` from ``fp4_quantize``/``nvfp4_quantize`` (leading dims
            are flattened into ``M``).
        sf: the scale bytes returned with it.
        sfLayout: their ``SfLayout``.

    Returns:
        The operand and its scales; add a leading batch axis for ``scaled_matmul``.
    """
    return _fp4_operand("nvfp4_to_scaled_matmul", x_q, sf, sfLayout, 16, jnp.float8_e4m3fn)


def mxfp4_to_scaled_matmul(
    x_q: ArrayLike, sf: ArrayLike, sfLayout: SfLayout = SfLayout.layout_128x4  # noqa: N803
) -> tuple[jax.Array, jax.Array]:
    """MXFP4 ``(x_q, sf)`` as ``(float4_e2m1fn [M, K], float8_e8m0fnu [M, K // 32])``."""
    return _fp4_operand("mxfp4_to_scaled_matmul", x_q, sf, sfLayout, 32, jnp.float8_e8m0fnu)


def mxfp8_to_scaled_matmul(
    x_q: ArrayLike, sf: ArrayLike, sf_swizzle_layout: SfLayout = SfLayout.layout_128x4
) -> tuple[jax.Array, jax.Array]:
    """MXFP8 ``(x_q, sf)`` as ``(float8_e4m3fn [M, K], float8_e8m0fnu [M, K // 32])``."""
    op = "mxfp8_to_scaled_matmul"
    q = as_array(x_q)
    check_dtype(op, "x_q", q, (jnp.float8_e4m3fn, jnp.uint8))
    check_rank(op, "x_q", q, min_rank=1)
    rows, k = math.prod(q.shape[:-1]), q.shape[-1]
    scales = _scale_matrix(op, sf, SfLayout(int(sf_swizzle_layout)), rows, k // 32)
    data = q.reshape(rows, k)
    if data.dtype == jnp.uint8:
        data = lax.bitcast_convert_type(data, jnp.float8_e4m3fn)
    return data, lax.bitcast_convert_type(scales, jnp.float8_e8m0fnu)
