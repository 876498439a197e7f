"""Scale-factor layouts: the ``SfLayout`` enum, ``block_scale_interleave`` and its inverse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_fp4 import _primitives as prims
from jax_fp4._shapes import SfLayout, round_up, sf_buffer_size, sf_padded_shape
from jax_fp4._validation import as_array, check_dtype, check_rank, resolve_backend

__all__ = [
    "SfLayout",
    "block_scale_interleave",
    "block_scale_interleave_reverse",
    "nvfp4_block_scale_interleave",
    "shuffle_matrix_a",
    "shuffle_matrix_sf_a",
    "sf_buffer_size",
    "sf_padded_shape",
]


def block_scale_interleave(unswizzled_sf: ArrayLike, backend: str = "auto") -> jax.Array:
    """Scatters a linear scale matrix into the 128x4 tiled layout (SPEC 3.2, 5.8).

    Pure data movement; works on every platform (FlashInfer refuses CPU tensors).

    Args:
        unswizzled_sf: uint8 or bfloat16 ``[R, C]``, or ``[E, R, C]`` (one matrix per expert).
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).

    Returns:
        1-D, same dtype, ``E * round_up(R, 128) * round_up(C, 4)`` elements; padding is 0.

    Example:
        >>> block_scale_interleave(jnp.ones((3, 5), jnp.uint8)).shape
        (1024,)
    """
    op = "block_scale_interleave"
    backend = resolve_backend(op, backend)
    x = as_array(unswizzled_sf)
    check_dtype(op, "unswizzled_sf", x, (jnp.uint8, jnp.bfloat16))
    check_rank(op, "unswizzled_sf", x, (2, 3))
    prim = prims.block_scale_interleave_p
    (out,) = prim.twin(x, shuffle_block=0) if backend == "xla" else prim.bind(x, shuffle_block=0)
    return out.reshape(-1)


nvfp4_block_scale_interleave = block_scale_interleave


def block_scale_interleave_reverse(
    sf_buffer: ArrayLike, rows: int, cols: int, layout: SfLayout = SfLayout.layout_128x4
) -> jax.Array:
    """Reads a swizzled (or linear) scale buffer back into the ``[rows, cols]`` matrix.

    FlashInfer has this in C++ only (``block_scale_interleave_reverse``). Works for any
    dtype; padding is dropped.

    Args:
        sf_buffer: the buffer, any shape with ``sf_buffer_size(layout, rows, cols)`` elements
            (e.g. the 2-D ``sf`` that ``fp4_quantize`` returns).
        rows: ``M``, rows of the logical scale matrix.
        cols: scale columns (``K // sf_vec_size``).
        layout: the ``SfLayout`` of ``sf_buffer``.

    Returns:
        ``[rows, cols]`` of ``sf_buffer``'s dtype.
    """
    op = "block_scale_interleave_reverse"
    buf = as_array(sf_buffer)
    try:
        layout = SfLayout(int(layout))
    except (ValueError, TypeError):
        raise ValueError(f"{op}: layout={layout!r} is not an SfLayout (0, 1 or 2)") from None
    if buf.size != sf_buffer_size(layout, rows, cols):
        raise ValueError(f"{op}: sf_buffer has {buf.size} elements; a {layout.name} buffer for "
                         f"[{rows}, {cols}] has {sf_buffer_size(layout, rows, cols)}")
    buf = buf.reshape(-1)
    if layout == SfLayout.layout_linear:
        return buf.reshape(rows, cols)
    rp, cp = sf_padded_shape(layout, rows, cols)
    if layout == SfLayout.layout_128x4:
        # [mt, kt, o, i, kk] -> [mt, i, o, kt, kk] (SPEC 3.2)
        tiles = buf.reshape(rp // 128, cp // 4, 32, 4, 4).transpose(0, 3, 2, 1, 4)
    else:
        tiles = buf.reshape(rp // 8, cp // 4, 8, 4).transpose(0, 2, 1, 3)
    return tiles.reshape(rp, cp)[:rows, :cols]


def _shuffle_block(op: str, epilogue_tile_m: int) -> int:
    if not isinstance(epilogue_tile_m, (int, np.integer)) or epilogue_tile_m <= 0:
        raise ValueError(f"{op}: epilogue_tile_m={epilogue_tile_m!r} must be a positive int")
    return 32 if epilogue_tile_m % 128 == 0 else 16


def shuffle_matrix_a(input_tensor: ArrayLike, epilogue_tile_m: int,
                     backend: str = "auto") -> jax.Array:
    """Row shuffle for TRT-LLM-gen GEMM weights (SPEC 5.11).

    Inside each block of ``B`` rows (``B = 32`` when ``epilogue_tile_m % 128 == 0``, else 16),
    output row ``r`` is input row ``(r % 8) * (B // 8) + r // 8``.

    Args:
        input_tensor: ``[M, K]``, any dtype, ``M % B == 0``.
        epilogue_tile_m: the GEMM's epilogue tile height (128 in FlashInfer's recipes).
        backend: ``"auto"``/``"cuda"`` (FFI handler) or ``"xla"`` (pure-JAX twin).

    Returns:
        ``[M, K]``, same dtype.
    """
    op = "shuffle_matrix_a"
    backend = resolve_backend(op, backend)
    block = _shuffle_block(op, epilogue_tile_m)
    x = as_array(input_tensor)
    check_rank(op, "input_tensor", x, (2,))
    if x.shape[0] % block:
        raise ValueError(f"{op}: M = {x.shape[0]} is not a multiple of the shuffle block {block}")
    prim = prims.shuffle_rows_p
    (out,) = prim.twin(x, block=block) if backend == "xla" else prim.bind(x, block=block)
    return out


def shuffle_matrix_sf_a(input_tensor: ArrayLike, epilogue_tile_m: int,
                        num_elts_per_sf: int = 16, backend: str = "auto") -> jax.Array:
    """Row-shuffles a linear scale matrix and lays it out in 128x4 tiles (SPEC 5.12).

    ``shuffle_matrix_a``'s row order, then ``block_scale_interleave``, in one pass.

    Args:
        input_tensor: linear scales ``[M, C]``, uint8 or bfloat16, ``M % 128 == 0``.
        epilogue_tile_m: as for ``shuffle_matrix_a``.
        num_elts_per_sf: accepted for FlashInfer compatibility; no effect (as there).
        backend: ``"auto"``/``"cuda"`` or ``"xla"``.

    Returns:
        1-D, same dtype, ``M * round_up(C, 4)`` elements.
    """
    del num_elts_per_sf
    op = "shuffle_matrix_sf_a"
    backend = resolve_backend(op, backend)
    block = _shuffle_block(op, epilogue_tile_m)
    x = as_array(input_tensor)
    check_dtype(op, "input_tensor", x, (jnp.uint8, jnp.bfloat16))
    check_rank(op, "input_tensor", x, (2,))
    if x.shape[0] % 128:
        raise ValueError(f"{op}: M = {x.shape[0]} is not a multiple of 128")
    prim = prims.block_scale_interleave_p
    (out,) = (prim.twin(x, shuffle_block=block) if backend == "xla"
              else prim.bind(x, shuffle_block=block))
    return out.reshape(-1)


del round_up
