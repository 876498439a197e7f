"""Bit packing with FlashInfer's names: ``packbits`` and ``segment_packbits`` (SPEC 5.18/19)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jax_fp4 import _primitives as prims
from jax_fp4._validation import as_array, check_rank, concrete_value, resolve_backend

_BYTE_DTYPES = (jnp.dtype(jnp.bool_), jnp.dtype(jnp.uint8), jnp.dtype(jnp.int8))


def _little(op: str, bitorder: str) -> bool:
    if bitorder not in ("big", "little"):
        raise ValueError(f"{op}: bitorder={bitorder!r} must be 'big' or 'little'")
    return bitorder == "little"


def _as_bytes(x: jax.Array) -> jax.Array:
    """Non-zero is 1 (NumPy's bool conversion: -0.0 is 0, NaN and subnormals are 1)."""
    if x.dtype in _BYTE_DTYPES:
        return x
    if jnp.issubdtype(x.dtype, jnp.floating):
        # On the bits: XLA:CPU flushes subnormals, so `x != 0` would call them zero.
        bits = jnp.dtype(f"uint{8 * x.dtype.itemsize}")
        return (lax.bitcast_convert_type(x, bits) << 1) != 0
    return x != 0


def packbits(x: ArrayLike, bitorder: str = "big", backend: str = "auto") -> jax.Array:
    """Packs the elements of ``x`` (non-zero = 1) into bits, like ``numpy.packbits``.

    ``x`` is flattened (FlashInfer writes past its output for multi-dimensional input).

    Args:
        x: any shape and dtype; ``N`` elements in all.
        bitorder: ``"big"`` (first element in bit 7) or ``"little"`` (in bit 0).
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).

    Returns:
        uint8 ``[ceil(N / 8)]``; missing bits of the last byte are 0.

    Example:
        >>> packbits(jnp.array([1, 0, 1, 1, 0, 0, 1, 1]))
        Array([179], dtype=uint8)
    """
    op = "packbits"
    backend = resolve_backend(op, backend)
    little = _little(op, bitorder)
    flat = _as_bytes(as_array(x).reshape(-1))
    (out,) = (prims.packbits_p.twin(flat, little=little) if backend == "xla"
              else prims.packbits_p.bind(flat, little=little))
    return out


def segment_packbits(
    x: ArrayLike,
    indptr: ArrayLike,
    bitorder: str = "big",
    *,
    total_bytes: int | None = None,
    backend: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """Packs each segment ``x[indptr[i]:indptr[i+1]]`` into whole bytes (SPEC 5.19).

    The output size depends on ``indptr``. With a concrete ``indptr`` (outside ``jit``) it
    is computed; under ``jit`` pass ``total_bytes`` (an upper bound, like
    ``jnp.nonzero(size=...)``): the result is zero-padded to it and bytes past it are dropped.

    Args:
        x: 1-D, any dtype (non-zero = 1), length ``indptr[-1]``.
        indptr: int32 or int64 ``[B + 1]``, non-decreasing, starting at >= 0.
        bitorder: ``"big"`` or ``"little"``.
        total_bytes: static output size; required when ``indptr`` is traced.
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        ``(y, new_indptr)``: uint8 ``[total_bytes]`` and int32 ``[B + 1]`` with
        ``new_indptr[i + 1] = new_indptr[i] + ceil(len_i / 8)``.

    Raises:
        ValueError: malformed concrete ``indptr``, or traced ``indptr`` without
            ``total_bytes``.

    Example:
        >>> y, ptr = segment_packbits(jnp.array([1, 0, 1, 1, 0, 0, 1]), jnp.array([0, 4, 7]))
        >>> y, ptr
        (Array([176,  32], dtype=uint8), Array([0, 1, 2], dtype=int32))
    """
    op = "segment_packbits"
    backend = resolve_backend(op, backend)
    little = _little(op, bitorder)
    known = concrete_value(indptr)  # before as_array: under jit that would stage a constant
    xa, ptr = as_array(x), as_array(indptr)
    check_rank(op, "x", xa, (1,))
    check_rank(op, "indptr", ptr, (1,))
    if ptr.shape[0] < 1:
        raise ValueError(f"{op}: indptr needs at least one element")
    if ptr.dtype not in (jnp.dtype(jnp.int32), jnp.dtype(jnp.int64)):
        if not jnp.issubdtype(ptr.dtype, jnp.integer):
            raise TypeError(f"{op}: indptr must be an integer array, got {ptr.dtype.name}")
        ptr = ptr.astype(jnp.int32)
    if known is not None:
        lengths = np.diff(known.astype(np.int64))
        if known[0] < 0 or (lengths < 0).any() or known[-1] > xa.shape[0]:
            raise ValueError(f"{op}: indptr must be non-decreasing from >= 0 to <= len(x) = "
                             f"{xa.shape[0]}, got {known.tolist()[:16]}")
        needed = int(((lengths + 7) // 8).sum())
        total_bytes = needed if total_bytes is None else total_bytes
    elif total_bytes is None:
        raise ValueError(f"{op}: indptr is traced (under jit), so the output size is not known; "
                         "pass total_bytes=<static upper bound>")
    if not isinstance(total_bytes, (int, np.integer)) or total_bytes < 0:
        raise ValueError(f"{op}: total_bytes={total_bytes!r} must be a non-negative int")
    params = dict(little=little, total_bytes=int(total_bytes))
    bits = _as_bytes(xa)
    prim = prims.segment_packbits_p
    y, new_indptr = (prim.twin(bits, ptr, **params) if backend == "xla"
                     else prim.bind(bits, ptr, **params))
    return y, new_indptr
