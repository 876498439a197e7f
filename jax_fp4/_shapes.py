"""Shape arithmetic of the scale-factor layouts (SPEC 3), shared by wrappers and primitives."""

from __future__ import annotations

from enum import IntEnum


class SfLayout(IntEnum):
    """Scale-factor layout, FlashInfer's numbering (also what the C++ handlers receive).

    ``layout_128x4``: 512-byte tiles of 128 rows x 4 block columns (SPEC 3.2).
    ``layout_8x4``: 32-byte tiles of 8 rows x 4 block columns (SPEC 3.3).
    ``layout_linear``: row-major ``[M, K // sf_vec_size]`` (SPEC 3.1).
    """

    layout_128x4 = 0
    layout_8x4 = 1
    layout_linear = 2


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def sf_padded_shape(layout: int, rows: int, cols: int) -> tuple[int, int]:
    """The padded scale matrix ``(rows', cols')`` a layout stores (FlashInfer's 2-D shape)."""
    if layout == SfLayout.layout_128x4:
        return round_up(rows, 128), round_up(cols, 4)
    if layout == SfLayout.layout_8x4:
        return round_up(rows, 8), round_up(cols, 4)
    return rows, cols


def sf_buffer_size(layout: int, rows: int, cols: int) -> int:
    """Bytes of the scale buffer for an ``[rows, cols]`` scale matrix in ``layout``."""
    r, c = sf_padded_shape(layout, rows, cols)
    return r * c
