"""Typed views of jax_fp4's uint8 outputs: ``float4_e2m1fn`` codes, E4M3 and UE8M0 scales."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jax_fp4._validation import as_array, check_dtype

# E2M1 magnitudes by code (SPEC 2.1); codes 8..15 are the negatives.
_E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def fp4_codes_to_float4(x_q: ArrayLike) -> jax.Array:
    """Unpacks ``[..., K // 2]`` uint8 (two E2M1 codes a byte) to ``[..., K]`` float4_e2m1fn.

    Every E2M1 code is a finite float4_e2m1fn value, so this is exact (codes 8 stay -0).
    """
    x = as_array(x_q)
    check_dtype("fp4_codes_to_float4", "x_q", x, (jnp.uint8,))
    codes = jnp.stack([x & 0xF, x >> 4], axis=-1).reshape(*x.shape[:-1], 2 * x.shape[-1])
    return jnp.asarray(_E2M1_VALUES, jnp.float32)[codes].astype(jnp.float4_e2m1fn)


def scales_as_e4m3(sf: ArrayLike) -> jax.Array:
    """NVFP4 scale bytes viewed as float8_e4m3fn (same bits, same shape)."""
    x = as_array(sf)
    check_dtype("scales_as_e4m3", "sf", x, (jnp.uint8,))
    return lax.bitcast_convert_type(x, jnp.float8_e4m3fn)


def scales_as_ue8m0(sf: ArrayLike) -> jax.Array:
    """MXFP4/MXFP8 scale bytes viewed as float8_e8m0fnu (same bits, same shape)."""
    x = as_array(sf)
    check_dtype("scales_as_ue8m0", "sf", x, (jnp.uint8,))
    return lax.bitcast_convert_type(x, jnp.float8_e8m0fnu)
