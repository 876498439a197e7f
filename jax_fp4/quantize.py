"""Block-scaled quantizers with FlashInfer's names and arguments: NVFP4, MXFP4 and MXFP8.

Formats and recipes follow FlashInfer's ``backend="cuda"`` results bit for bit (SPEC 4, 5):
E2M1 codes packed two per byte (lower index in the low nibble), scale bytes in the 128x4, 8x4
or linear layout (``SfLayout``), zero padding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jax_fp4 import _primitives as prims
from jax_fp4._shapes import SfLayout
from jax_fp4.layouts import shuffle_matrix_a, shuffle_matrix_sf_a
from jax_fp4._validation import (
    as_array,
    concrete_value,
    check_dtype,
    check_multiple,
    check_rank,
    dtype_name,
    resolve_backend,
)

FP4_INPUT_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float8_e4m3fn)
MXFP8_INPUT_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32)


def _layout_from_flags(op: str, swizzled: bool, is_8x4: bool) -> SfLayout:
    if is_8x4 and not swizzled:
        raise ValueError(f"{op}: is_sf_8x4_layout=True needs is_sf_swizzled_layout=True")
    if not swizzled:
        return SfLayout.layout_linear
    return SfLayout.layout_8x4 if is_8x4 else SfLayout.layout_128x4


def _as_layout(op: str, layout, name: str = "sfLayout") -> SfLayout:
    try:
        return SfLayout(int(layout))
    except (ValueError, TypeError):
        raise ValueError(f"{op}: {name}={layout!r} is not an SfLayout (0, 1 or 2)") from None


def _global_scale_rows(op: str, name: str, scale, rows: int, *, required: bool) -> jax.Array:
    """The encode scale as float32 [1] or [rows] (SPEC 4.2.3); 1.0 when optional and None."""
    if scale is None:
        if required:
            raise ValueError(f"{op}: {name} is required for NVFP4 (E4M3 scales)")
        return jnp.ones((1,), jnp.float32)
    if isinstance(scale, (int, np.integer)) and not isinstance(scale, bool):
        scale = float(scale)  # a Python int like 2688 is a fine scale
    scale = as_array(scale)
    if not jnp.issubdtype(scale.dtype, jnp.floating):
        raise TypeError(f"{op}: {name} must be a floating-point scalar or array, "
                        f"got dtype {dtype_name(scale.dtype)}")
    scale = scale.astype(jnp.float32).reshape(-1)
    if scale.shape[0] not in (1, rows):
        raise ValueError(f"{op}: {name} has {scale.shape[0]} elements; expected 1 or M = {rows} "
                         "(one per row)")
    return scale


def _check_fp4_input(op: str, name: str, x: jax.Array, sf_vec_size: int,
                     dtypes=FP4_INPUT_DTYPES) -> None:
    check_dtype(op, name, x, dtypes)
    check_rank(op, name, x, min_rank=2)
    check_multiple(op, f"the last dim K of {name}", x.shape[-1], sf_vec_size)


_NO_MASK = np.ones((1,), np.uint8)  # a placeholder operand when no row is masked


def _four_over_six_bits(op: str, four_over_six) -> int:
    """FlashInfer's 4over6 switches (SPEC 4.4) as the handlers' bit field."""
    if four_over_six is None or four_over_six is False:
        return 0
    if four_over_six is True:
        return 1
    if not isinstance(four_over_six, dict) or set(four_over_six) - {
            "err_mode", "err_fast_math", "e4m3_use_256"}:
        raise ValueError(f"{op}: four_over_six must be None, True or a dict with keys "
                         f"'err_mode', 'err_fast_math', 'e4m3_use_256'; got {four_over_six!r}")
    mode = four_over_six.get("err_mode", "MAE")
    if mode not in ("MAE", "MSE"):
        raise ValueError(f"{op}: four_over_six['err_mode']={mode!r} must be 'MAE' or 'MSE'")
    return (1 | (2 if mode == "MSE" else 0)
            | (4 if four_over_six.get("err_fast_math", False) else 0)
            | (8 if four_over_six.get("e4m3_use_256", False) else 0))


def _pdl(enable_pdl: bool | None) -> bool:
    """FlashInfer's ``enable_pdl``: programmatic dependent launch of the CUDA kernel (sm_90+;
    the CPU handlers and the twin ignore it). None means off: under XLA the kernel before ours
    is XLA's, which does not signal early completion, so the default gains nothing."""
    return bool(enable_pdl)


def _bind_fp4(x, gs, *, sf_vec_size, use_ue8m0, layout, scale_mode, exact, backend,
              row_mask=None, num_batch_dims=0, four_over_six=0, pdl=False):
    params = dict(sf_vec_size=sf_vec_size, use_ue8m0=use_ue8m0, layout=int(layout),
                  scale_mode=int(scale_mode), exact=bool(exact),
                  four_over_six=int(four_over_six), masked=row_mask is not None,
                  num_batch_dims=num_batch_dims, pdl=bool(pdl))
    # Every operand carries the batch axes, so XLA can shard them all alike.
    mask = (jnp.ones((*x.shape[:num_batch_dims], 1), jnp.uint8) if row_mask is None
            else row_mask)
    prim = prims.fp4_quantize_p
    return tuple(prim.twin(x, gs, mask, **params) if backend == "xla"
                 else prim.bind(x, gs, mask, **params))


def fp4_quantize(
    input: ArrayLike,
    global_scale: ArrayLike | float | None = None,
    sf_vec_size: int = 16,
    sf_use_ue8m0: bool = False,
    is_sf_swizzled_layout: bool = True,
    is_sf_8x4_layout: bool = False,
    is_global_scale_inversed: bool = False,
    enable_pdl: bool | None = None,
    backend: str = "auto",
    *,
    exact: bool = False,
    four_over_six: bool | dict | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Quantizes to NVFP4 (16-element blocks, E4M3 scales) or MXFP4 (32, UE8M0).

    FlashInfer's ``fp4_quantize``. All leading dims of ``input`` form the rows ``M`` of one
    scale matrix (use ``jax.vmap`` or ``nvfp4_batched_quantize`` for one matrix per batch).

    Args:
        input: ``[..., K]`` float16, bfloat16 or float8_e4m3fn, rank >= 2,
            ``K % sf_vec_size == 0``. FP8 input follows FlashInfer's FP8 path (SPEC 4.6).
        global_scale: float32 encode scale ``S``, 1 element or one per row (``M``);
            typically ``448 * 6 / amax(input)``. Required for NVFP4; MXFP4 ignores it for
            16-bit input. A Python float is accepted.
        sf_vec_size: 16 (NVFP4) or 32 (MXFP4).
        sf_use_ue8m0: False for NVFP4, True for MXFP4 (the other pairings are refused).
        is_sf_swizzled_layout: swizzled (128x4 or 8x4) scale layout; False gives linear.
        is_sf_8x4_layout: with a swizzled layout, 8x4 tiles instead of 128x4.
        is_global_scale_inversed: ``global_scale`` holds ``1/S`` (SPEC 4.2.1).
        enable_pdl: programmatic dependent launch on sm_90+ GPUs (a launch option, no effect
            on results; None means off).
        backend: ``"auto"`` (or ``"cuda"``) runs the FFI handler of the platform the
            computation runs on; ``"xla"`` runs the pure-JAX twin (any JAX platform).
        exact: NVFP4 "exact" mode (SPEC 4.3), FlashInfer's
            ``FLASHINFER_DISABLE_FP4_QUANT_FAST_MATH=1``; 16-bit NVFP4 only.
        four_over_six: NVFP4 "4over6" (SPEC 4.4), FlashInfer's ``FLASHINFER_NVFP4_4OVER6=1``:
            per block, keep the scale for max 6 or max 4, whichever reconstructs better.
            ``True`` for the defaults or a dict ``{"err_mode": "MAE"|"MSE",
            "err_fast_math": bool, "e4m3_use_256": bool}`` (the other environment
            switches). Combinable with ``exact``; 16-bit NVFP4 only.

    Returns:
        ``(x_q, sf)``: ``x_q`` uint8 ``[..., K // 2]`` packed E2M1 (low nibble first);
        ``sf`` uint8 scale bytes, ``[round_up(M, 128 or 8), round_up(K // sf_vec_size, 4)]``
        for swizzled layouts (a 2-D view of the tiled buffer, padding 0) or
        ``[M, K // sf_vec_size]`` for linear.

    Raises:
        NotImplementedError: ``sf_vec_size`` not 16 or 32.
        TypeError: unsupported dtype of ``input`` or ``global_scale``.
        ValueError: bad rank, ``K``, scale size, flag combination or backend.

    Example:
        >>> x = jnp.ones((128, 64), jnp.bfloat16)
        >>> x_q, sf = fp4_quantize(x, jnp.float32(2688.0))
        >>> x_q.shape, sf.shape
        ((128, 32), (128, 4))
    """
    return _fp4_quantize(input, global_scale, sf_vec_size, sf_use_ue8m0, is_sf_swizzled_layout,
                         is_sf_8x4_layout, is_global_scale_inversed, backend, exact,
                         four_over_six, pdl=_pdl(enable_pdl))


def _fp4_quantize(x, global_scale, sf_vec_size, sf_use_ue8m0, is_sf_swizzled_layout,
                  is_sf_8x4_layout, is_global_scale_inversed, backend, exact, four_over_six,
                  op="fp4_quantize", names=("input", "global_scale"), pdl=False):
    """fp4_quantize's body; wrappers pass their own op and argument names for errors."""
    backend = resolve_backend(op, backend)
    if sf_vec_size not in (16, 32):
        raise NotImplementedError(f"{op}: sf_vec_size={sf_vec_size}; only 16 and 32 exist")
    if (sf_vec_size == 16) == bool(sf_use_ue8m0):
        raise ValueError(f"{op}: sf_vec_size={sf_vec_size} with sf_use_ue8m0={sf_use_ue8m0}; "
                         "NVFP4 is 16 with E4M3 scales (False), MXFP4 is 32 with UE8M0 (True)")
    layout = _layout_from_flags(op, is_sf_swizzled_layout, is_sf_8x4_layout)
    x = as_array(x)
    _check_fp4_input(op, names[0], x, sf_vec_size)
    rows = math.prod(x.shape[:-1])
    needs_scale = sf_vec_size == 16
    gs = _global_scale_rows(op, names[1], global_scale, rows, required=needs_scale)
    fos = _four_over_six_bits(op, four_over_six)
    if fos and (sf_vec_size != 16 or x.dtype == jnp.float8_e4m3fn):
        raise ValueError(f"{op}: four_over_six needs NVFP4 (sf_vec_size=16) with float16 or "
                         f"bfloat16 input, got sf_vec_size={sf_vec_size}, {dtype_name(x.dtype)}")
    mode = prims.SCALE_INVERSE if is_global_scale_inversed else prims.SCALE_ENCODE
    return _bind_fp4(x, gs, sf_vec_size=sf_vec_size, use_ue8m0=bool(sf_use_ue8m0),
                     layout=layout, scale_mode=mode, exact=exact, backend=backend,
                     four_over_six=fos, pdl=pdl)


def nvfp4_quantize(
    a: ArrayLike,
    a_global_sf: ArrayLike | float,
    sfLayout: SfLayout = SfLayout.layout_128x4,  # noqa: N803 - FlashInfer's name
    do_shuffle: bool = False,
    sf_vec_size: int = 16,
    enable_pdl: bool | None = None,
    backend: str = "auto",
    per_token_activation: bool = False,
    expanded_idx_to_permuted_idx: ArrayLike | None = None,
    *,
    exact: bool = False,
    four_over_six: bool | dict | None = None,
) -> tuple[jax.Array, jax.Array]:
    """NVFP4 quantization: FlashInfer's ``nvfp4_quantize`` (SPEC 5.3).

    The default path is ``fp4_quantize(a, a_global_sf, 16, False, ...)`` with the layout
    taken from ``sfLayout``.

    Args:
        a: ``[..., K]`` float16, bfloat16 or float8_e4m3fn, ``K % 16 == 0``.
        a_global_sf: float32 encode scale, 1 element or ``M`` (a Python float is accepted).
        sfLayout: ``SfLayout`` of the returned scales.
        do_shuffle: prepare a TRT-LLM-gen GEMM weight: quantize with linear scales, then
            ``shuffle_matrix_a(x_q, 128)`` and the 128x4 bytes of the row-shuffled scales,
            kept in the linear shape ``[M, K // 16]`` (FlashInfer's behaviour, SPEC 7.14).
            Needs ``sfLayout=layout_128x4``, a 2-D input, ``M % 128 == 0``, ``K % 64 == 0``.
        sf_vec_size: must be 16.
        enable_pdl: programmatic dependent launch on sm_90+ GPUs (see ``fp4_quantize``).
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).
        per_token_activation: per-token quantization (SPEC 4.2.2): ``a`` is 2-D float16 or
            bfloat16 and ``a_global_sf`` is the inverse base scale ``S_inv`` (typically
            ``1 / (448 * 6)``); each row gets the scale ``p = amax(row) * S_inv``. A zero row
            gets scale bytes 0x7F (E4M3 NaN), exactly as FlashInfer's CUDA kernel.
        expanded_idx_to_permuted_idx: with ``per_token_activation``: int ``[>= M]``; row
            ``idx[i]`` is quantized for each ``i < M`` with ``idx[i] >= 0``. Unselected rows
            are zeros (FlashInfer: uninitialised). Entries ``>= M`` raise when known at trace
            time and are dropped under ``jit``.
        exact: NVFP4 exact mode (SPEC 4.3).
        four_over_six: the 4over6 recipe (SPEC 4.4), see ``fp4_quantize``.

    Returns:
        ``(x_q, sf)`` as ``fp4_quantize`` returns them, or ``(x_q, sf, per_token_scale)``
        with ``per_token_activation`` (float32 ``[M]``; dequantize as
        ``e2m1 * e4m3(sf) * per_token_scale[row]``).

    Raises:
        ValueError: bad arguments (see ``fp4_quantize``).

    Example:
        >>> x_q, sf = nvfp4_quantize(jnp.ones((4, 32), jnp.float16), 2688.0,
        ...                          SfLayout.layout_linear)
        >>> sf.shape
        (4, 2)
    """
    op = "nvfp4_quantize"
    backend_kind = resolve_backend(op, backend)
    if sf_vec_size != 16:
        raise ValueError(f"{op}: sf_vec_size={sf_vec_size}; NVFP4 blocks have 16 elements")
    if expanded_idx_to_permuted_idx is not None and not per_token_activation:
        raise ValueError(f"{op}: expanded_idx_to_permuted_idx needs per_token_activation=True")
    layout = _as_layout(op, sfLayout)
    if do_shuffle and layout != SfLayout.layout_128x4:
        raise ValueError(f"{op}: do_shuffle=True needs sfLayout=layout_128x4, got {layout.name}")
    # The shuffled weight is quantized with linear scales, then rows and scales are shuffled.
    qlayout = SfLayout.layout_linear if do_shuffle else layout
    x = as_array(a)
    if do_shuffle:
        _check_shuffle_shape(op, x)
    if not per_token_activation:
        x_q, sf = _fp4_quantize(x, a_global_sf, 16, False, qlayout != SfLayout.layout_linear,
                                qlayout == SfLayout.layout_8x4, False, backend, exact,
                                four_over_six, op=op, names=("a", "a_global_sf"),
                                pdl=_pdl(enable_pdl))
        if do_shuffle:
            x_q, sf = _shuffle_weight(x_q, sf, backend)
        return x_q, sf
    check_dtype(op, "a", x, (jnp.float16, jnp.bfloat16))
    check_rank(op, "a", x, (2,))
    check_multiple(op, "the last dim K of a", x.shape[-1], 16)
    rows = x.shape[0]
    s_inv = _global_scale_rows(op, "a_global_sf", a_global_sf, 1, required=True)
    row_mask = (None if expanded_idx_to_permuted_idx is None
                else _rows_selected(op, expanded_idx_to_permuted_idx, rows))
    params = dict(layout=int(qlayout), exact=bool(exact),
                  four_over_six=_four_over_six_bits(op, four_over_six),
                  masked=row_mask is not None, num_batch_dims=0, pdl=_pdl(enable_pdl))
    operands = (x, s_inv, _NO_MASK if row_mask is None else row_mask)
    prim = prims.nvfp4_per_token_quantize_p
    x_q, sf, per_token = (prim.twin(*operands, **params) if backend_kind == "xla"
                          else prim.bind(*operands, **params))
    if do_shuffle:
        x_q, sf = _shuffle_weight(x_q, sf, backend)
        per_token = shuffle_matrix_a(per_token[:, None], 128, backend=backend)[:, 0]
    return x_q, sf, per_token


def _check_shuffle_shape(op: str, x: jax.Array) -> None:
    # shuffle_matrix_a needs M % 32; the 128x4 scale reshape needs M % 128 and C % 4 (SPEC 5.3).
    rows = math.prod(x.shape[:-1])
    if x.ndim != 2 or rows % 128 or (x.shape[-1] // 16) % 4:
        raise ValueError(f"{op}: do_shuffle=True needs a 2-D input with M % 128 == 0 and "
                         f"K % 64 == 0, got shape {tuple(x.shape)}")


def _shuffle_weight(x_q, sf_linear, backend):
    x_q = shuffle_matrix_a(x_q, 128, backend=backend)
    # 128x4 bytes of the row-shuffled scales, kept in the linear [M, K/16] shape (SPEC 7.14).
    sf = shuffle_matrix_sf_a(sf_linear, 128, backend=backend).reshape(sf_linear.shape)
    return x_q, sf


def _rows_selected(op: str, idx, rows: int) -> jax.Array:
    """uint8 [rows]: 1 where some entry of idx[:rows] names the row (SPEC 5.3)."""
    known = concrete_value(idx)  # before as_array: under jit that would stage a constant
    idx = as_array(idx)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"{op}: expanded_idx_to_permuted_idx must be an integer array, got "
                        f"{dtype_name(idx.dtype)}")
    idx = idx.reshape(-1)[:rows].astype(jnp.int32)
    if known is not None:
        known = known.reshape(-1)[:rows]
    if known is not None and (known >= rows).any():
        raise ValueError(f"{op}: expanded_idx_to_permuted_idx has entries >= M = {rows}: "
                         f"{sorted(set(known[known >= rows].tolist()))[:8]}")
    # Negative entries select nothing; under jit, entries >= M are dropped (never written).
    target = jnp.where(idx >= 0, idx, rows)
    return jnp.zeros((rows,), jnp.uint8).at[target].set(1, mode="drop")


def scaled_fp4_grouped_quantize(
    a: ArrayLike,
    mask: ArrayLike,
    a_global_sf: ArrayLike,
    *,
    backend: str = "auto",
    exact: bool = False,
    four_over_six: bool | dict | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Masked grouped NVFP4 for the masked grouped GEMM (SPEC 5.10).

    Group ``l`` quantizes its first ``mask[l]`` rows with encode scale ``a_global_sf[l]``;
    the other rows and all padding are written as zeros (FlashInfer leaves them
    uninitialised; treat them as unspecified).

    Args:
        a: ``[L, M, K]`` float16 or bfloat16, ``K % 16 == 0``.
        mask: int ``[L]``, valid rows per group (values past ``M`` act as ``M``).
        a_global_sf: float32 ``[L]``, one encode scale per group.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.
        exact: NVFP4 exact mode (SPEC 4.3).
        four_over_six: the 4over6 recipe (SPEC 4.4), see ``fp4_quantize``.

    Returns:
        ``(x_q, sf)`` in FlashInfer's logical (permuted) shapes: ``x_q`` uint8
        ``[M, K // 2, L]`` and ``sf`` float8_e4m3fn ``[32, 4, Mp // 128, 4, Cp // 4, L]``
        (``Mp = round_up(M, 128)``, ``Cp = round_up(K // 16, 4)``). JAX has no views, so
        these are transposed copies of the per-group ``[L, M, K // 2]`` codes and 128x4
        scale buffers.
    """
    op = "scaled_fp4_grouped_quantize"
    backend = resolve_backend(op, backend)
    x = as_array(a)
    check_dtype(op, "a", x, (jnp.float16, jnp.bfloat16))
    check_rank(op, "a", x, (3,))
    check_multiple(op, "the last dim K of a", x.shape[-1], 16)
    groups, rows, k = x.shape
    m = as_array(mask)
    if not jnp.issubdtype(m.dtype, jnp.integer) or m.shape != (groups,):
        raise ValueError(f"{op}: mask must be an integer array of shape [L] = ({groups},), got "
                         f"{dtype_name(m.dtype)} {tuple(m.shape)}")
    gs = as_array(a_global_sf)
    if not jnp.issubdtype(gs.dtype, jnp.floating) or gs.size != groups:
        raise ValueError(f"{op}: a_global_sf must hold one float per group (L = {groups}), got "
                         f"{dtype_name(gs.dtype)} {tuple(gs.shape)}")
    gs = gs.astype(jnp.float32).reshape(groups, 1)
    row_mask = (jnp.arange(rows, dtype=jnp.int32)[None, :] < m.astype(jnp.int32)[:, None])
    x_q, sf = _bind_fp4(x, gs, sf_vec_size=16, use_ue8m0=False, layout=SfLayout.layout_128x4,
                        scale_mode=prims.SCALE_ENCODE, exact=exact, backend=backend,
                        row_mask=row_mask.astype(jnp.uint8), num_batch_dims=1,
                        four_over_six=_four_over_six_bits(op, four_over_six))
    mp, cp = sf.shape[1:]
    sf = sf.reshape(groups, mp // 128, cp // 4, 32, 4, 4).transpose(3, 4, 1, 5, 2, 0)
    return x_q.transpose(1, 2, 0), lax.bitcast_convert_type(sf, jnp.float8_e4m3fn)


def mxfp4_quantize(
    a: ArrayLike,
    backend: str = "auto",
    enable_pdl: bool | None = None,
    sfLayout: SfLayout = SfLayout.layout_128x4,  # noqa: N803 - FlashInfer's name
) -> tuple[jax.Array, jax.Array]:
    """MXFP4 quantization (32-element blocks, UE8M0 scales): FlashInfer's ``mxfp4_quantize``.

    Args:
        a: ``[..., K]`` float16 or bfloat16 (float8_e4m3fn follows SPEC 4.6 with S = 1),
            ``K % 32 == 0``.
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).
        enable_pdl: programmatic dependent launch on sm_90+ GPUs (see ``fp4_quantize``).
        sfLayout: ``SfLayout`` of the returned scales.

    Returns:
        ``(x_q, sf)``: uint8 ``[..., K // 2]`` and uint8 UE8M0 scale bytes, 2-D as in
        ``fp4_quantize``.

    Example:
        >>> x_q, sf = mxfp4_quantize(jnp.ones((2, 64), jnp.bfloat16))
        >>> sf.shape
        (128, 4)
    """
    op = "mxfp4_quantize"
    layout = _as_layout(op, sfLayout)
    return _fp4_quantize(a, None, 32, True, layout != SfLayout.layout_linear,
                         layout == SfLayout.layout_8x4, False, backend, False, None, op=op,
                         names=("a", "global_scale"), pdl=_pdl(enable_pdl))


def nvfp4_batched_quantize(
    a: ArrayLike,
    a_global_sf: ArrayLike | float,
    sf_vec_size: int = 16,
    *,
    backend: str = "auto",
    exact: bool = False,
    four_over_six: bool | dict | None = None,
) -> tuple[jax.Array, jax.Array]:
    """NVFP4 with one 128x4 scale matrix per batch: FlashInfer's ``nvfp4_batched_quantize``.

    Identical to ``jax.vmap`` of ``fp4_quantize`` over the first axis (SPEC 5.4).

    Args:
        a: ``[B, M, K]`` float16, bfloat16 or float8_e4m3fn, ``K % 16 == 0``.
        a_global_sf: float32 encode scale, 1 element or ``M`` (shared by every batch).
        sf_vec_size: must be 16.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.
        exact: NVFP4 exact mode (SPEC 4.3).
        four_over_six: the 4over6 recipe (SPEC 4.4), see ``fp4_quantize``.

    Returns:
        ``(x_q, sf)``: uint8 ``[B, M, K // 2]`` and uint8
        ``[B, round_up(M, 128) * round_up(K // 16, 4)]``.
    """
    op = "nvfp4_batched_quantize"
    backend = resolve_backend(op, backend)
    if sf_vec_size != 16:
        raise ValueError(f"{op}: sf_vec_size={sf_vec_size}; only 16 is supported")
    x = as_array(a)
    check_rank(op, "a", x, (3,))
    _check_fp4_input(op, "a", x, 16)
    batch, rows = x.shape[0], x.shape[1]
    gs = _global_scale_rows(op, "a_global_sf", a_global_sf, rows, required=True)
    gs = jnp.broadcast_to(gs, (batch, gs.shape[0]))
    fos = _four_over_six_bits(op, four_over_six)
    if fos and x.dtype == jnp.float8_e4m3fn:
        raise ValueError(f"{op}: four_over_six needs float16 or bfloat16 input")
    x_q, sf = _bind_fp4(x, gs, sf_vec_size=16, use_ue8m0=False, layout=SfLayout.layout_128x4,
                        scale_mode=prims.SCALE_ENCODE, exact=exact, backend=backend,
                        num_batch_dims=1, four_over_six=fos)
    return x_q, sf.reshape(batch, sf.shape[1] * sf.shape[2])


def mxfp8_quantize(
    input: ArrayLike,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    enable_pdl: bool | None = None,
    backend: str = "auto",
    sf_swizzle_layout: SfLayout | None = None,
) -> tuple[jax.Array, jax.Array]:
    """MXFP8 quantization (32-element blocks, UE8M0 scales, E4M3 elements), SPEC 4.7 / 5.16.

    FlashInfer's GPU-path numerics on every device and for every input dtype (its CPU path
    differs only for inf/NaN and block maxima below ~5e-36, SPEC 5.16). The 8x4 layout, which
    FlashInfer's CPU path refuses, is accepted everywhere.

    Args:
        input: ``[..., K]`` float16, bfloat16 or float32, rank >= 2, ``K % 32 == 0``.
        is_sf_swizzled_layout: 128x4 (True) or linear (False) scales.
        alignment: ``K`` is padded with zero codes (and zero scales) to a multiple of it;
            a positive multiple of 32.
        enable_pdl: programmatic dependent launch on sm_90+ GPUs (see ``fp4_quantize``).
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).
        sf_swizzle_layout: an ``SfLayout``; overrides ``is_sf_swizzled_layout``.

    Returns:
        ``(x_q, sf)``: ``x_q`` float8_e4m3fn ``[..., Kp]`` (``Kp = round_up(K, alignment)``)
        and ``sf`` uint8 1-D, the ``[M, Kp // 32]`` scale matrix in the chosen layout.

    Example:
        >>> x_q, sf = mxfp8_quantize(jnp.ones((4, 64), jnp.bfloat16), False)
        >>> x_q.dtype, sf.shape
        (dtype(float8_e4m3fn), (8,))
    """
    op = "mxfp8_quantize"
    backend = resolve_backend(op, backend)
    layout = (_as_layout(op, sf_swizzle_layout, "sf_swizzle_layout")
              if sf_swizzle_layout is not None
              else SfLayout.layout_128x4 if is_sf_swizzled_layout else SfLayout.layout_linear)
    if not isinstance(alignment, int) or alignment <= 0 or alignment % 32:
        raise ValueError(f"{op}: alignment={alignment!r} must be a positive multiple of 32")
    x = as_array(input)
    check_dtype(op, "input", x, MXFP8_INPUT_DTYPES)
    check_rank(op, "input", x, min_rank=2)
    check_multiple(op, "the last dim K of input", x.shape[-1], 32)
    params = dict(layout=int(layout), alignment=alignment, num_batch_dims=0,
                  pdl=_pdl(enable_pdl))
    if backend == "xla":
        return tuple(prims.mxfp8_quantize_p.twin(x, **params))
    return tuple(prims.mxfp8_quantize_p.bind(x, **params))


def silu_and_mul_nvfp4_quantize(
    input: ArrayLike,
    global_scale: ArrayLike | float,
    sf_vec_size: int = 16,
    is_sf_swizzled_layout: bool = True,
    is_sf_8x4_layout: bool = False,
    enable_pdl: bool | None = None,
    *,
    backend: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """Fused SwiGLU + NVFP4: ``fp4_quantize(round16(silu(g) * u), global_scale)``.

    ``g, u = input[..., :K], input[..., K:]``, ``silu(g) = g / (1 + exp(-g))`` in float32,
    rounded to the input dtype, then the NVFP4 recipe of ``fp4_quantize``. Not bit-exact with
    FlashInfer (Blackwell-only CuTe-DSL there): its fast ``exp`` can change the 16-bit
    intermediate in the last bit, and its CuTe recipe writes codes 0x0/0x8 instead of
    0x7/0xF in scale-underflow blocks (SPEC 5.20, 5.21). Under ``jit`` XLA fuses the prologue.

    Args:
        input: ``[..., 2 * K]`` float16 or bfloat16, ``K % 16 == 0``.
        global_scale: encode scale ``S``, 1 element or one per row.
        sf_vec_size: must be 16.
        is_sf_swizzled_layout, is_sf_8x4_layout: scale layout, as in ``fp4_quantize``.
        enable_pdl: programmatic dependent launch on sm_90+ GPUs (see ``fp4_quantize``).
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``(x_q, sf)`` as ``fp4_quantize`` returns them for ``[..., K]``.
    """
    op = "silu_and_mul_nvfp4_quantize"
    if sf_vec_size != 16:
        raise ValueError(f"{op}: sf_vec_size={sf_vec_size}; only 16 is supported")
    x = as_array(input)
    check_dtype(op, "input", x, (jnp.float16, jnp.bfloat16))
    check_rank(op, "input", x, min_rank=2)
    check_multiple(op, "the last dim 2K of input", x.shape[-1], 32)
    k = x.shape[-1] // 2
    gate, up = x[..., :k].astype(jnp.float32), x[..., k:].astype(jnp.float32)
    h = (gate / (1.0 + jnp.exp(-gate)) * up).astype(x.dtype)
    return fp4_quantize(h, global_scale, 16, False, is_sf_swizzled_layout, is_sf_8x4_layout,
                        False, enable_pdl, backend)


def nvfp4_global_scale(x: ArrayLike, *, per_row: bool = False) -> jax.Array:
    """The usual NVFP4 encode scale ``S = 448 * 6 / amax(|x|)`` (E4M3 max times E2M1 max).

    Plain ``jnp``: under ``jit`` with a sharded ``x`` the maximum stays sharded and XLA adds
    the one all-reduce a global maximum needs; pass the result to ``fp4_quantize`` /
    ``nvfp4_quantize`` (``per_row=True`` gives the row-wise form they also accept).

    Args:
        x: ``[..., K]`` float16, bfloat16 or float32.
        per_row: one scale per row (the leading axes flattened, ``[M]``) instead of one.

    Returns:
        float32 ``[1]`` or ``[M]``. NaN and inf are left out of the maximum, and an all-zero
        input (or row) gets 1.0, so the scale is always finite.

    Example:
        >>> x = jnp.array([[1.0, -4.0], [0.5, 2.0]], jnp.bfloat16)
        >>> nvfp4_global_scale(x)
        Array([672.], dtype=float32)
    """
    op = "nvfp4_global_scale"
    a = as_array(x)
    check_dtype(op, "x", a, (jnp.float16, jnp.bfloat16, jnp.float32))
    check_rank(op, "x", a, min_rank=1)
    mag = jnp.abs(a.astype(jnp.float32))
    mag = jnp.where(jnp.isfinite(mag), mag, 0.0)
    amax = (jnp.max(mag.reshape(-1, a.shape[-1]), axis=-1) if per_row
            else jnp.max(mag).reshape(1))
    return jnp.where(amax > 0, jnp.float32(448.0 * 6.0) / jnp.where(amax > 0, amax, 1.0),
                     jnp.float32(1.0))
