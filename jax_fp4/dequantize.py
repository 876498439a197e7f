"""Dequantizers with FlashInfer's names: FP4/FP8 codes times decoded scales, as float32.

These are FlashInfer's host functions (SPEC 5.6, 5.7, 5.9, 5.17): IEEE float32 arithmetic
with subnormals kept, each with its own UE8M0 decoding (SPEC 2.3). In jax_fp4 they are JAX
ops: they run on whatever device the arrays live on and compose with jit and vmap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_fp4 import _primitives as prims
from jax_fp4._rcp import ieee_div
from jax_fp4._shapes import SfLayout, sf_buffer_size
from jax_fp4._validation import (
    as_array,
    check_dtype,
    check_multiple,
    check_rank,
    dtype_name,
    resolve_backend,
)
from jax_fp4.quantize import _as_layout, _layout_from_flags


def _bind_dequantize(codes, scales, global_scale, *, backend, device_math=False,
                     out_dtype="float32", **params):
    params.update(device_math=device_math, out_dtype=jnp.dtype(out_dtype).name, num_batch_dims=0)
    if backend == "xla":
        (out,) = prims.block_dequantize_p.twin(codes, scales, global_scale, **params)
    else:
        (out,) = prims.block_dequantize_p.bind(codes, scales, global_scale, **params)
    return out


def _check_scale_buffer(op: str, name: str, sf: jax.Array, layout: int, rows: int,
                        cols: int) -> jax.Array:
    check_dtype(op, name, sf, (jnp.uint8,))
    expected = sf_buffer_size(layout, rows, cols)
    if sf.size != expected:
        raise ValueError(
            f"{op}: {name} has {sf.size} bytes; a {SfLayout(layout).name} buffer for M = {rows}"
            f" rows and {cols} scale columns has exactly {expected}")
    return sf.reshape(-1)


def e2m1_and_ufp8sf_scale_to_float(
    e2m1_tensor: ArrayLike,
    ufp8_scale_tensor: ArrayLike,
    global_scale_tensor: ArrayLike | float | None = None,
    sf_vec_size: int = 16,
    ufp8_type: int = 1,
    is_sf_swizzled_layout: bool = True,
    is_sf_8x4_layout: bool = False,
    backend: str = "auto",
) -> jax.Array:
    """Dequantizes packed E2M1 codes with E4M3 or UE8M0 scale bytes (SPEC 5.9).

    ``out[r, k] = e2m1(code) * (scale(sf[r, k // sf_vec_size]) * g)`` in IEEE float32, with
    ``scale`` = E4M3 (``ufp8_type=1``, ``g`` = the global scale) or the UE8M0 bit pattern
    ``b << 23`` (``ufp8_type=0``: 0 gives 0.0, 255 gives inf, ``g`` ignored).

    Args:
        e2m1_tensor: uint8 ``[M, K // 2]``.
        ufp8_scale_tensor: uint8 scale bytes in the given layout, any shape, exactly the
            layout's buffer size.
        global_scale_tensor: decode multiplier ``g`` (1 element); None means 1.0.
        sf_vec_size: elements per scale, a positive multiple of 8 (16 or 32 in practice).
        ufp8_type: 1 for E4M3 scales, 0 for UE8M0.
        is_sf_swizzled_layout: swizzled (128x4 or 8x4) or linear scales.
        is_sf_8x4_layout: 8x4 instead of 128x4 tiles.
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).

    Returns:
        float32 ``[M, K]``.

    Example:
        >>> x_q, sf = fp4_quantize(x, gs)
        >>> x_hat = e2m1_and_ufp8sf_scale_to_float(x_q, sf, 1.0 / gs)
    """
    return _e2m1_and_ufp8sf_scale_to_float(
        e2m1_tensor, ufp8_scale_tensor, global_scale_tensor, sf_vec_size, ufp8_type,
        is_sf_swizzled_layout, is_sf_8x4_layout, backend)


def _e2m1_and_ufp8sf_scale_to_float(
        e2m1_tensor, ufp8_scale_tensor, global_scale_tensor, sf_vec_size, ufp8_type,
        is_sf_swizzled_layout, is_sf_8x4_layout, backend, op="e2m1_and_ufp8sf_scale_to_float",
        names=("e2m1_tensor", "ufp8_scale_tensor", "global_scale_tensor")):
    """The body; wrappers pass their own op and argument names for errors."""
    backend = resolve_backend(op, backend)
    layout = _layout_from_flags(op, is_sf_swizzled_layout, is_sf_8x4_layout)
    if ufp8_type not in (0, 1):
        raise ValueError(f"{op}: ufp8_type={ufp8_type!r}; 1 is E4M3 and 0 is UE8M0")
    if not isinstance(sf_vec_size, int) or sf_vec_size <= 0 or sf_vec_size % 8:
        raise ValueError(f"{op}: sf_vec_size={sf_vec_size!r} must be a positive multiple of 8")
    codes = as_array(e2m1_tensor)
    check_dtype(op, names[0], codes, (jnp.uint8,))
    check_rank(op, names[0], codes, (2,))
    rows, k = codes.shape[0], 2 * codes.shape[1]
    check_multiple(op, f"K (2 x the last dim of {names[0]})", k, sf_vec_size)
    sf = _check_scale_buffer(op, names[1], as_array(ufp8_scale_tensor), layout,
                             rows, k // sf_vec_size)
    if global_scale_tensor is None or ufp8_type == 0:
        g = jnp.ones((1,), jnp.float32)  # FlashInfer's C++ path ignores it for UE8M0
    else:
        g = as_array(float(global_scale_tensor)
                     if isinstance(global_scale_tensor, (int, np.integer)) else global_scale_tensor)
        if not jnp.issubdtype(g.dtype, jnp.floating):
            raise TypeError(f"{op}: {names[2]} must be floating point, got "
                            f"{dtype_name(g.dtype)}")
        if g.size != 1:
            raise ValueError(f"{op}: {names[2]} must be one float, got "
                             f"{dtype_name(g.dtype)} {tuple(g.shape)}")
        g = g.astype(jnp.float32).reshape(1)
    return _bind_dequantize(
        codes, sf, g, backend=backend, element_format=prims.ELEMENT_E2M1,
        scale_format=prims.SCALE_E4M3 if ufp8_type == 1 else prims.SCALE_UE8M0_BITS,
        sf_vec_size=sf_vec_size, layout=int(layout), plus_zero_code8=False)


def mxfp4_dequantize(
    a_fp4: ArrayLike,
    a_sf: ArrayLike,
    sfLayout: SfLayout = SfLayout.layout_128x4,  # noqa: N803 - FlashInfer's name
    backend: str = "auto",
) -> jax.Array:
    """Dequantizes MXFP4 (SPEC 5.6): ``e2m1(code) * 2^(sf - 127)``, scale byte 0 gives 0.0.

    Args:
        a_fp4: uint8 ``[M, K // 2]`` packed E2M1.
        a_sf: uint8 UE8M0 scale bytes in ``sfLayout``, exactly the layout's buffer size.
        sfLayout: ``SfLayout`` of ``a_sf``.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        float32 ``[M, K]``.
    """
    op = "mxfp4_dequantize"
    layout = _as_layout(op, sfLayout)
    return _e2m1_and_ufp8sf_scale_to_float(
        a_fp4, a_sf, None, 32, 0, layout != SfLayout.layout_linear,
        layout == SfLayout.layout_8x4, backend, op=op, names=("a_fp4", "a_sf", "-"))


def mxfp4_dequantize_host(
    weight: ArrayLike, scale: ArrayLike, group_size: int = 32, backend: str = "auto"
) -> jax.Array:
    """Dequantizes MXFP4 with FlashInfer's host decoding (SPEC 5.7).

    Scale byte 0 decodes to 2^-127 (kept as a subnormal), 255 to NaN; FP4 code 8 is +0.0.

    Args:
        weight: uint8 ``[N, K // 2]`` packed E2M1.
        scale: uint8 ``[N, K // group_size]``, linear layout.
        group_size: elements per scale, a positive multiple of 8.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        float32 ``[N, K]``.
    """
    op = "mxfp4_dequantize_host"
    backend = resolve_backend(op, backend)
    if not isinstance(group_size, int) or group_size <= 0 or group_size % 8:
        raise ValueError(f"{op}: group_size={group_size!r} must be a positive multiple of 8")
    w, s = as_array(weight), as_array(scale)
    check_dtype(op, "weight", w, (jnp.uint8,))
    check_dtype(op, "scale", s, (jnp.uint8,))
    check_rank(op, "weight", w, (2,))
    check_rank(op, "scale", s, (2,))
    n, k = w.shape[0], 2 * w.shape[1]
    check_multiple(op, "K (2 x the last dim of weight)", k, group_size)
    if s.shape != (n, k // group_size):
        raise ValueError(f"{op}: scale has shape {tuple(s.shape)}; expected "
                         f"[N, K // group_size] = {(n, k // group_size)}")
    return _bind_dequantize(
        w, s.reshape(-1), jnp.ones((1,), jnp.float32), backend=backend,
        element_format=prims.ELEMENT_E2M1, scale_format=prims.SCALE_UE8M0_HOST,
        sf_vec_size=group_size, layout=int(SfLayout.layout_linear), plus_zero_code8=True)


def mxfp8_dequantize_host(
    input: ArrayLike,
    scale_tensor: ArrayLike,
    is_sf_swizzled_layout: bool = True,
    sf_swizzle_layout: SfLayout | None = None,
    backend: str = "auto",
) -> jax.Array:
    """Dequantizes MXFP8 (SPEC 5.17): ``e4m3(x) * bits(sf << 23)`` in IEEE float32.

    Args:
        input: ``[M, K]`` E4M3 bytes as uint8 or float8_e4m3fn.
        scale_tensor: uint8 UE8M0 bytes of the ``[M, K // 32]`` scale matrix in the layout,
            exactly the layout's buffer size (checked; FlashInfer reads past a short one).
        is_sf_swizzled_layout: 128x4 (True) or linear (False).
        sf_swizzle_layout: an ``SfLayout``; overrides ``is_sf_swizzled_layout``.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        float32 ``[M, K]``.
    """
    op = "mxfp8_dequantize_host"
    backend = resolve_backend(op, backend)
    layout = (_as_layout(op, sf_swizzle_layout, "sf_swizzle_layout")
              if sf_swizzle_layout is not None
              else SfLayout.layout_128x4 if is_sf_swizzled_layout else SfLayout.layout_linear)
    x = as_array(input)
    check_dtype(op, "input", x, (jnp.uint8, jnp.float8_e4m3fn))
    check_rank(op, "input", x, (2,))
    rows, k = x.shape
    check_multiple(op, "the last dim K of input", k, 32)
    sf = _check_scale_buffer(op, "scale_tensor", as_array(scale_tensor), layout, rows, k // 32)
    return _bind_dequantize(
        x, sf, jnp.ones((1,), jnp.float32), backend=backend,
        element_format=prims.ELEMENT_E4M3, scale_format=prims.SCALE_UE8M0_BITS,
        sf_vec_size=32, layout=int(layout), plus_zero_code8=False)


def nvfp4_dequantize(
    x_q: ArrayLike,
    sf: ArrayLike,
    global_scale: ArrayLike | float,
    sfLayout: SfLayout = SfLayout.layout_128x4,  # noqa: N803 - FlashInfer's name
    dtype=jnp.float32,
    *,
    is_global_scale_inversed: bool = False,
    backend: str = "auto",
) -> jax.Array:
    """NVFP4 back to floats inside model code: ``e2m1(code) * (e4m3(sf) / S)``.

    The inverse of ``nvfp4_quantize`` / ``fp4_quantize`` (NVFP4). Computed as
    ``e2m1_and_ufp8sf_scale_to_float(x_q, sf, 1 / S)`` in float32, then rounded to ``dtype``.

    Args:
        x_q: uint8 ``[..., K // 2]``.
        sf: the scale bytes as ``fp4_quantize`` returned them (any shape, exact size).
        global_scale: the encode scale ``S`` used to quantize (or ``1/S`` with
            ``is_global_scale_inversed``), 1 element.
        sfLayout: ``SfLayout`` of ``sf``.
        dtype: float32, bfloat16 or float16.
        is_global_scale_inversed: ``global_scale`` holds ``1/S``.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``[..., K]`` of ``dtype``.
    """
    op = "nvfp4_dequantize"
    backend = resolve_backend(op, backend)
    layout = _as_layout(op, sfLayout)
    q = as_array(x_q)
    check_dtype(op, "x_q", q, (jnp.uint8,))
    check_rank(op, "x_q", q, min_rank=1)
    lead, k = q.shape[:-1], 2 * q.shape[-1]
    check_multiple(op, "K (2 x the last dim of x_q)", k, 16)
    rows = int(np.prod(lead, dtype=np.int64))
    sf = _check_scale_buffer(op, "sf", as_array(sf), layout, rows, k // 16)
    g = as_array(global_scale)
    if not jnp.issubdtype(g.dtype, jnp.floating) or g.size != 1:
        raise ValueError(f"{op}: global_scale must be one float, got {dtype_name(g.dtype)} "
                         f"{tuple(g.shape)}")
    g = g.astype(jnp.float32).reshape(1)
    # 1/S as an IEEE division on every platform (XLA:GPU's own float division is not
    # correctly rounded).
    decode = g if is_global_scale_inversed else ieee_div(np.float32(1.0), g)
    out = _bind_dequantize(
        q.reshape(rows, k // 2), sf, decode, backend=backend,
        element_format=prims.ELEMENT_E2M1, scale_format=prims.SCALE_E4M3, sf_vec_size=16,
        layout=int(layout), plus_zero_code8=False, out_dtype=_out_dtype(op, dtype))
    return out.reshape(*lead, k)


def mxfp8_dequantize(
    x_q: ArrayLike,
    sf: ArrayLike,
    sf_swizzle_layout: SfLayout = SfLayout.layout_128x4,
    dtype=jnp.float32,
    *,
    backend: str = "auto",
) -> jax.Array:
    """MXFP8 back to floats inside model code: ``e4m3(x) * 2^(sf - 127)``.

    ``mxfp8_dequantize_host`` for any leading dims, rounded to ``dtype``.

    Args:
        x_q: ``[..., K]`` float8_e4m3fn (or uint8 bytes) as ``mxfp8_quantize`` returned it.
        sf: the 1-D scale buffer ``mxfp8_quantize`` returned.
        sf_swizzle_layout: ``SfLayout`` of ``sf``.
        dtype: float32, bfloat16 or float16.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``[..., K]`` of ``dtype``.
    """
    op = "mxfp8_dequantize"
    backend = resolve_backend(op, backend)
    layout = _as_layout(op, sf_swizzle_layout, "sf_swizzle_layout")
    x = as_array(x_q)
    check_dtype(op, "x_q", x, (jnp.uint8, jnp.float8_e4m3fn))
    check_rank(op, "x_q", x, min_rank=1)
    lead, k = x.shape[:-1], x.shape[-1]
    check_multiple(op, "the last dim K of x_q", k, 32)
    rows = int(np.prod(lead, dtype=np.int64))
    sf = _check_scale_buffer(op, "sf", as_array(sf), layout, rows, k // 32)
    out = _bind_dequantize(
        x.reshape(rows, k), sf, jnp.ones((1,), jnp.float32), backend=backend,
        element_format=prims.ELEMENT_E4M3, scale_format=prims.SCALE_UE8M0_BITS, sf_vec_size=32,
        layout=int(layout), plus_zero_code8=False, out_dtype=_out_dtype(op, dtype))
    return out.reshape(*lead, k)


def _out_dtype(op: str, dtype) -> str:
    name = jnp.dtype(dtype).name
    if name not in ("float32", "bfloat16", "float16"):
        raise TypeError(f"{op}: dtype must be float32, bfloat16 or float16, got {name}")
    return name
