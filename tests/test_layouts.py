"""Scale-factor layouts: ``block_scale_interleave`` (and its alias), the reverse helper,
``sf_buffer_size`` / ``sf_padded_shape``, and the offset examples of SPEC 3.2 / 3.3 through
the public API."""

from __future__ import annotations

import np_reference as R
import numpy as np
import pytest
from conftest import BACKENDS, BF16, as_bytes, assert_bytes_equal, run, seed_of

import jax_fp4 as F
from jax_fp4 import SfLayout

INTERLEAVE_SHAPES = [(1, 1), (3, 5), (130, 3), (128, 4), (256, 9), (2, 130, 3), (3, 1, 8),
                     (260, 20), (2, 300, 68), (300, 48), (2, 130, 64)]


def _random(rng, shape, dtype):
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    # random non-NaN bf16 bit patterns (zeros, subnormals, inf included); NaN payloads are
    # tested in test_interleave_keeps_bf16_bits
    bits = rng.integers(0, 1 << 16, shape, dtype=np.uint16)
    bits = np.where((bits & 0x7FFF) > 0x7F80, bits & 0x807F, bits).astype(np.uint16)
    return bits.view(BF16)


def _sid(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["uint8", "bfloat16"])
@pytest.mark.parametrize("shape", INTERLEAVE_SHAPES, ids=_sid)
def test_block_scale_interleave(shape, dtype, backend, platform):
    rng = np.random.default_rng(seed_of("interleave", shape, dtype))
    x = _random(rng, shape, dtype)
    want = R.block_scale_interleave(x)
    got = run(F.block_scale_interleave, x, platform=platform, backend=backend)
    E = shape[0] if len(shape) == 3 else 1
    R_, C = shape[-2:]
    assert got.ndim == 1 and got.size == E * R.round_up(R_, 128) * R.round_up(C, 4)
    assert got.dtype == x.dtype
    assert_bytes_equal(got, want, f"interleave {shape} {dtype}")
    # padding is zero
    mask = np.ones(got.size, bool)
    per = R.sf_buffer_size(0, R_, C)
    for e in range(E):
        mask[e * per + R.sf_offsets(0, R_, C).reshape(-1)] = False
    assert (as_bytes(got)[mask] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleave_keeps_bf16_bits(backend, platform):
    """Pure data movement: every bf16 bit pattern survives, signalling NaNs included."""
    pats = np.array([0x7F81, 0xFF89, 0x7FC0, 0xFFC1, 0x8000, 0x0001, 0x8001, 0x7F80, 0xFF80,
                     0x3F80, 0x7F7F, 0x0080], np.uint16)
    x = pats.view(BF16).reshape(3, 4)
    got = run(F.block_scale_interleave, x, platform=platform, backend=backend)
    assert_bytes_equal(got, R.block_scale_interleave(x), "bf16 bit patterns")


def test_alias():
    assert F.nvfp4_block_scale_interleave is F.block_scale_interleave
    x = np.arange(15, dtype=np.uint8).reshape(3, 5)
    np.testing.assert_array_equal(np.asarray(F.nvfp4_block_scale_interleave(x)),
                                  R.block_scale_interleave(x))


@pytest.mark.parametrize("dtype", ["uint8", "bfloat16"])
@pytest.mark.parametrize("shape", INTERLEAVE_SHAPES, ids=_sid)
def test_interleave_reverse_round_trip(shape, dtype, platform):
    rng = np.random.default_rng(seed_of("reverse", shape, dtype))
    x = _random(rng, shape, dtype)
    buf = run(F.block_scale_interleave, x, platform=platform, backend="auto")
    x3 = x.reshape((-1,) + shape[-2:])
    per = R.sf_buffer_size(0, *shape[-2:])
    for e in range(x3.shape[0]):
        back = np.asarray(F.block_scale_interleave_reverse(buf[e * per:(e + 1) * per],
                                                           *shape[-2:]))
        assert_bytes_equal(back, x3[e], f"expert {e}")


@pytest.mark.parametrize("layout", list(SfLayout), ids=lambda l: l.name)
@pytest.mark.parametrize("rc", [(1, 1), (7, 3), (130, 5), (256, 8), (9, 12)], ids=_sid)
def test_reverse_matches_oracle_unswizzle(rc, layout):
    """``block_scale_interleave_reverse`` reads every layout; accepts the 2-D ``sf`` view."""
    rows, cols = rc
    rng = np.random.default_rng(seed_of("unswizzle", rc, int(layout)))
    buf = rng.integers(0, 256, R.sf_padded_shape(int(layout), rows, cols), dtype=np.uint8)
    want = R.unswizzle(buf, int(layout), rows, cols)
    got = np.asarray(F.block_scale_interleave_reverse(buf, rows, cols, layout))
    assert_bytes_equal(got, want, layout.name)
    # and inverts the oracle's swizzle
    m = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    back = F.block_scale_interleave_reverse(R.swizzle(m, int(layout)), rows, cols, layout)
    assert_bytes_equal(np.asarray(back), m, "swizzle round trip")


@pytest.mark.parametrize("layout", list(SfLayout), ids=lambda l: l.name)
def test_reverse_of_quantizer_scales(layout, platform):
    """The 2-D ``sf`` of ``fp4_quantize`` read back equals the linear-layout scales."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((131, 9 * 16)) * 4).astype(np.float16)
    sf_lin = run(F.fp4_quantize, x, np.float32(100.0), is_sf_swizzled_layout=False,
                 platform=platform, backend="auto")[1]
    sw = layout != SfLayout.layout_linear
    sf = run(F.fp4_quantize, x, np.float32(100.0), is_sf_swizzled_layout=sw,
             is_sf_8x4_layout=layout == SfLayout.layout_8x4, platform=platform,
             backend="auto")[1]
    back = np.asarray(F.block_scale_interleave_reverse(sf, 131, 9, layout))
    assert_bytes_equal(back, sf_lin, layout.name)


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 9, 127, 128, 129, 1000])
@pytest.mark.parametrize("cols", [0, 1, 3, 4, 5, 64])
def test_sf_sizes(rows, cols):
    for layout in SfLayout:
        assert F.sf_padded_shape(layout, rows, cols) == R.sf_padded_shape(int(layout), rows,
                                                                           cols)
        assert F.sf_buffer_size(layout, rows, cols) == R.sf_buffer_size(int(layout), rows, cols)
        assert F.sf_buffer_size(int(layout), rows, cols) == R.sf_buffer_size(int(layout), rows,
                                                                              cols)
    assert F.sf_padded_shape(SfLayout.layout_128x4, rows, cols) == (
        -(-rows // 128) * 128, -(-cols // 4) * 4)
    assert F.sf_padded_shape(SfLayout.layout_8x4, rows, cols) == (-(-rows // 8) * 8,
                                                                 -(-cols // 4) * 4)
    assert F.sf_padded_shape(SfLayout.layout_linear, rows, cols) == (rows, cols)


def test_sf_layout_enum():
    assert [int(v) for v in (SfLayout.layout_128x4, SfLayout.layout_8x4,
                             SfLayout.layout_linear)] == [0, 1, 2]


# SPEC 3.2: C = 9 (Cp = 12), 128x4.
OFFSETS_128x4 = {(0, 0): 0, (0, 1): 1, (1, 0): 16, (31, 0): 496, (32, 0): 4, (33, 2): 22,
                 (96, 3): 15, (127, 3): 511, (0, 4): 512, (5, 7): 595, (128, 0): 1536,
                 (130, 8): 2592}
# SPEC 3.3: C = 9, 8x4.
OFFSETS_8x4 = {(1, 0): 4, (0, 4): 32, (31, 0): 316, (32, 0): 384, (5, 7): 55, (128, 0): 1536}


def test_spec_offsets_block_scale_interleave(platform):
    """One expert per example, a single marker at (r, k): its position in the expert's
    slice of the 1-D result is the SPEC offset."""
    R_, C = 131, 9
    items = list(OFFSETS_128x4.items())
    x = np.zeros((len(items), R_, C), np.uint8)
    for e, ((r, k), _) in enumerate(items):
        x[e, r, k] = 1
    for backend in BACKENDS:
        buf = run(F.block_scale_interleave, x, platform=platform, backend=backend)
        per = buf.reshape(len(items), -1)
        assert per.shape[1] == 256 * 12
        for e, ((r, k), off) in enumerate(items):
            assert np.flatnonzero(per[e]).tolist() == [off], (backend, (r, k))


@pytest.mark.parametrize("layout", ["128x4", "8x4"])
def test_spec_offsets_through_quantizer(layout, platform):
    """An input whose only non-zero block is (r, k) puts its only non-zero scale byte at
    the SPEC offset of the flat ``sf`` buffer (MXFP4, K = 9 * 32)."""
    table = OFFSETS_128x4 if layout == "128x4" else OFFSETS_8x4
    for (r, k), off in table.items():
        x = np.zeros((131, 9 * 32), np.float16)
        x[r, k * 32:(k + 1) * 32] = 1.0
        _q, sf = run(F.fp4_quantize, x, None, 32, True, True, layout == "8x4",
                    platform=platform, backend="auto")
        assert np.flatnonzero(sf.reshape(-1)).tolist() == [off], (r, k)


def test_spec_offsets_reverse():
    for layout, table in ((SfLayout.layout_128x4, OFFSETS_128x4),
                          (SfLayout.layout_8x4, OFFSETS_8x4)):
        size = F.sf_buffer_size(layout, 131, 9)
        for (r, k), off in table.items():
            buf = np.zeros(size, np.uint8)
            buf[off] = 7
            m = np.asarray(F.block_scale_interleave_reverse(buf, 131, 9, layout))
            assert np.argwhere(m).tolist() == [[r, k]], (layout.name, off)
