"""FP4 KV cache with FlashInfer's names: NVFP4 quantize/dequantize, paged caches (SPEC 5.13-5.15).

The KV functions take a **decode** scale ``g`` (dequantized value = e2m1 * e4m3(sf) * g,
typically ``g = amax / (448 * 6)``), unlike ``fp4_quantize``'s encode scale. Nothing here
reads a device value on the host: FlashInfer's ``.item()`` calls become device arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jax_fp4 import _primitives as prims
from jax_fp4._rcp import ieee_div
from jax_fp4._shapes import SfLayout
from jax_fp4._validation import (
    as_array,
    check_dtype,
    check_multiple,
    check_rank,
    dtype_name,
    resolve_backend,
)
from jax_fp4.dequantize import _bind_dequantize
from jax_fp4.quantize import _bind_fp4, _global_scale_rows, fp4_quantize

_KV_DTYPES = (jnp.float16, jnp.bfloat16)


def _scale_bytes(op: str, name: str, sf) -> jax.Array:
    sf = as_array(sf)
    check_dtype(op, name, sf, (jnp.uint8, jnp.float8_e4m3fn))
    return sf if sf.dtype == jnp.uint8 else lax.bitcast_convert_type(sf, jnp.uint8)


def nvfp4_kv_quantize(
    input: ArrayLike, global_scale: ArrayLike | float, *, backend: str = "auto"
) -> tuple[jax.Array, jax.Array]:
    """Quantizes K or V rows to NVFP4 with a decode scale (SPEC 5.13).

    Per 16-element block: ``sf = e4m3(rcp(g) * amax / 6)``, codes ``e2m1(x * rcp(sf * g))``.
    FlashInfer runs this only on sm_100+; here it runs everywhere.

    Args:
        input: ``[M, K]`` float16 or bfloat16, ``K % 16 == 0``.
        global_scale: float32 decode scale ``g`` (1 element).
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``(fp4_output, block_scales)``: uint8 ``[M, K // 2]`` and uint8 ``[M, K // 16]``
        (E4M3 bytes, linear layout).

    Example:
        >>> q, sf = nvfp4_kv_quantize(k, jnp.max(jnp.abs(k)) / 2688)
    """
    op = "nvfp4_kv_quantize"
    backend = resolve_backend(op, backend)
    x = as_array(input)
    check_dtype(op, "input", x, _KV_DTYPES)
    check_rank(op, "input", x, (2,))
    check_multiple(op, "the last dim K of input", x.shape[-1], 16)
    g = _global_scale_rows(op, "global_scale", global_scale, 1, required=True)
    return _bind_fp4(x, g, sf_vec_size=16, use_ue8m0=False, layout=SfLayout.layout_linear,
                     scale_mode=prims.SCALE_KV_DECODE, exact=False, backend=backend)


def nvfp4_kv_dequantize(
    fp4_data: ArrayLike,
    block_scales: ArrayLike,
    global_scale: ArrayLike | float,
    output_dtype=jnp.bfloat16,
    *,
    backend: str = "auto",
) -> jax.Array:
    """Dequantizes an NVFP4 KV block (SPEC 5.14): ``round16((e2m1 * e4m3(sf)) * g)``.

    Device arithmetic (subnormal products flush to zero), rounded to nearest even.

    Args:
        fp4_data: uint8 ``[M, K // 2]``.
        block_scales: ``[M, K // 16]`` E4M3 bytes, uint8 or float8_e4m3fn.
        global_scale: float32 decode scale ``g`` (1 element).
        output_dtype: bfloat16 or float16.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``[M, K]`` of ``output_dtype``.
    """
    op = "nvfp4_kv_dequantize"
    backend = resolve_backend(op, backend)
    q = as_array(fp4_data)
    check_dtype(op, "fp4_data", q, (jnp.uint8,))
    check_rank(op, "fp4_data", q, (2,))
    rows, k = q.shape[0], 2 * q.shape[1]
    check_multiple(op, "K (2 x the last dim of fp4_data)", k, 16)
    sf = _scale_bytes(op, "block_scales", block_scales)
    if sf.shape != (rows, k // 16):
        raise ValueError(f"{op}: block_scales has shape {tuple(sf.shape)}; expected "
                         f"[M, K // 16] = {(rows, k // 16)}")
    if jnp.dtype(output_dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        raise TypeError(f"{op}: output_dtype must be bfloat16 or float16, got "
                        f"{dtype_name(output_dtype)}")
    g = _global_scale_rows(op, "global_scale", global_scale, 1, required=True)
    return _bind_dequantize(
        q, sf.reshape(-1), g, backend=backend, element_format=prims.ELEMENT_E2M1,
        scale_format=prims.SCALE_E4M3, sf_vec_size=16, layout=int(SfLayout.layout_linear),
        plus_zero_code8=False, device_math=True, out_dtype=output_dtype)


def _split_kv(op: str, kv, name: str):
    if isinstance(kv, (tuple, list)):
        if len(kv) != 2:
            raise ValueError(f"{op}: {name} as a tuple must be (k, v)")
        return as_array(kv[0]), as_array(kv[1])
    kv = as_array(kv)
    if kv.ndim != 5 or kv.shape[1] != 2:
        raise ValueError(f"{op}: {name} must be a (k, v) tuple or a stacked [P, 2, ...] array, "
                         f"got shape {tuple(kv.shape)}")
    return kv[:, 0], kv[:, 1]


def nvfp4_kv_dequantize_paged(
    paged_kv_fp4,
    paged_kv_scales,
    block_tables: ArrayLike,
    seq_lens: ArrayLike,
    k_scale: ArrayLike | float,
    v_scale: ArrayLike | float,
    out_k: ArrayLike,
    out_v: ArrayLike,
    kv_layout: str = "NHD",
    *,
    backend: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """Gathers and dequantizes a paged NVFP4 KV cache (SPEC 5.14, paged form).

    For each batch row ``b`` and token ``t < seq_lens[b]`` whose page
    ``block_tables[b, t // page_size]`` lies in ``[0, P)``, writes the dequantized K and V of
    that token into ``out_k[b, t]`` / ``out_v[b, t]``; every other entry keeps the value it
    had in ``out_k`` / ``out_v`` (JAX returns the updated arrays instead of writing in place).

    Args:
        paged_kv_fp4: ``(k, v)`` uint8 caches, or one stacked ``[P, 2, ...]`` array; NHD:
            ``[P, page_size, H, D // 2]``, HND: ``[P, H, page_size, D // 2]``.
        paged_kv_scales: the matching E4M3 scale caches (``D // 16`` last), uint8 or float8.
        block_tables: int ``[batch, max_pages]``, page ids per sequence.
        seq_lens: int ``[batch]``.
        k_scale, v_scale: float32 decode scales (1 element each).
        out_k, out_v: ``[batch, max_seq_len, H, D]`` float16 or bfloat16; untouched entries
            are returned as they are. ``max_pages * page_size >= max_seq_len`` is required.
        kv_layout: ``"NHD"`` or ``"HND"``.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``(out_k, out_v)`` updated.
    """
    op = "nvfp4_kv_dequantize_paged"
    if kv_layout not in ("NHD", "HND"):
        raise ValueError(f"{op}: kv_layout={kv_layout!r} must be 'NHD' or 'HND'")
    kq, vq = _split_kv(op, paged_kv_fp4, "paged_kv_fp4")
    ks, vs = _split_kv(op, paged_kv_scales, "paged_kv_scales")
    tables = as_array(block_tables)
    lens = as_array(seq_lens)
    ok, ov = as_array(out_k), as_array(out_v)
    check_rank(op, "block_tables", tables, (2,))
    check_rank(op, "seq_lens", lens, (1,))
    for name, arr in (("paged k cache", kq), ("paged v cache", vq)):
        check_dtype(op, name, arr, (jnp.uint8,))
        check_rank(op, name, arr, (4,))
    check_rank(op, "out_k", ok, (4,))
    batch, max_seq = ok.shape[:2]
    pages = kq.shape[0]
    page_size = kq.shape[1] if kv_layout == "NHD" else kq.shape[2]
    if tables.shape[0] != batch or lens.shape != (batch,):
        raise ValueError(f"{op}: block_tables {tuple(tables.shape)} and seq_lens "
                         f"{tuple(lens.shape)} must have batch = {batch} rows")
    if tables.shape[1] * page_size < max_seq:
        raise ValueError(f"{op}: block_tables covers {tables.shape[1]} pages x {page_size} "
                         f"tokens < max_seq_len = {max_seq}")
    t = jnp.arange(max_seq)
    page = tables[:, t // page_size].astype(jnp.int32)       # [batch, max_seq]
    slot = t % page_size
    valid = (t[None, :] < lens[:, None]) & (page >= 0) & (page < pages)
    safe_page = jnp.clip(page, 0, max(pages - 1, 0))

    def gather(cache):  # -> [batch, max_seq, H, last]
        if kv_layout == "NHD":
            return cache[safe_page, slot[None, :]]
        return cache[safe_page, :, slot[None, :]]  # advanced indices first: [b, t, H, last]

    outs = []
    for q, s, g, out in ((kq, ks, k_scale, ok), (vq, vs, v_scale, ov)):
        q_tok = gather(q)
        s_tok = gather(_scale_bytes(op, "paged_kv_scales", s))
        d2 = q_tok.shape[-1]
        deq = nvfp4_kv_dequantize(q_tok.reshape(-1, d2), s_tok.reshape(-1, d2 // 8), g,
                                  out.dtype, backend=backend).reshape(out.shape)
        outs.append(jnp.where(valid[:, :, None, None], deq, out))
    return outs[0], outs[1]


def _v_scale_interleave(sf: jax.Array, kv_layout: str) -> jax.Array:
    # Per (page, head) and group of 4 tokens, the [4, S] scale bytes become token-minor
    # (SPEC 5.15 step 6): out_flat[s * 4 + u] = in_flat[u * S + s].
    hnd = sf if kv_layout == "HND" else jnp.swapaxes(sf, 1, 2)
    p, h, n, s = hnd.shape
    out = hnd.reshape(p, h, n // 4, 4, s).swapaxes(3, 4).reshape(p, h, n, s)
    return out if kv_layout == "HND" else jnp.swapaxes(out, 1, 2)


def nvfp4_quantize_paged_kv_cache(
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    kv_layout: str = "HND",
    k_global_sf: ArrayLike | float | None = None,
    v_global_sf: ArrayLike | float | None = None,
    *,
    backend: str = "auto",
):
    """Quantizes paged K and V caches to NVFP4 (SPEC 5.15).

    Each cache is quantized with ``fp4_quantize`` (linear scales) and encode scale
    ``gsf = 448 / max(amax(cache), 1e-12)`` unless given (no factor 6, as in FlashInfer);
    V's scale bytes are interleaved in groups of 4 tokens for the attention kernels.

    Args:
        k_cache, v_cache: HND ``[P, H, page_size, D]`` or NHD ``[P, page_size, H, D]``,
            float16 or bfloat16; ``page_size % 4 == 0`` and ``D % 64 == 0``.
        kv_layout: ``"HND"`` or ``"NHD"`` (FlashInfer treats anything else as HND; here it
            is an error).
        k_global_sf, v_global_sf: encode scales (1 element) or None to derive them.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``((k_fp4, v_fp4), (k_sf, v_sf), k_decode_scale, v_decode_scale)``: uint8 codes
        ``[..., D // 2]``, float8_e4m3fn scales ``[..., D // 16]`` and the float32 decode
        scales ``1 / gsf`` as 0-d device arrays (FlashInfer returns Python floats, which
        would need a host sync).
    """
    op = "nvfp4_quantize_paged_kv_cache"
    if kv_layout not in ("HND", "NHD"):
        raise ValueError(f"{op}: kv_layout={kv_layout!r} must be 'HND' or 'NHD'")
    results = []
    for name, cache, gsf in (("k_cache", k_cache, k_global_sf),
                             ("v_cache", v_cache, v_global_sf)):
        c = as_array(cache)
        check_dtype(op, name, c, _KV_DTYPES)
        check_rank(op, name, c, (4,))
        page_size, d = (c.shape[2] if kv_layout == "HND" else c.shape[1]), c.shape[-1]
        if page_size % 4 or d % 64:
            raise ValueError(f"{op}: page_size = {page_size} must be a multiple of 4 and "
                             f"head_dim = {d} a multiple of 64")
        if gsf is None:
            amax = jnp.max(jnp.abs(c).astype(jnp.float32), initial=0.0)
            # FlashInfer divides in double; an IEEE float32 division of 448 by a float32
            # amax rounds the same (no double-rounding case exists for such quotients).
            # XLA:GPU's own division is not correctly rounded, hence ieee_div.
            gsf = jnp.where(amax > np.float32(1e-12), ieee_div(np.float32(448.0), amax),
                            np.float32(448.0 / 1e-12))
        gsf = _global_scale_rows(op, f"{name[0]}_global_sf", gsf, 1, required=True)
        q, sf = fp4_quantize(c.reshape(-1, d), gsf, 16, False, False, backend=backend)
        q = q.reshape(*c.shape[:-1], d // 2)
        sf = sf.reshape(*c.shape[:-1], d // 16)
        if name == "v_cache":
            sf = _v_scale_interleave(sf, kv_layout)
        results.append((q, lax.bitcast_convert_type(sf, jnp.float8_e4m3fn),
                        ieee_div(np.float32(1.0), gsf[0])))
    (kq, ksf, kdec), (vq, vsf, vdec) = results
    return (kq, vq), (ksf, vsf), kdec, vdec
