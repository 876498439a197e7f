"""Oracle-free sanity checks of the pure-JAX twin (``jax_fp4._reference``, ``_rcp``).

These pin the SPEC's own worked examples and tables (SPEC 1.4, 2, 3.2/3.3, 4.9,
5.18/5.19) and the float32 arithmetic helpers; bitwise agreement with the NumPy
oracle and the FFI handlers is tested elsewhere.
"""

from __future__ import annotations

import importlib
import sys
import types
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

_PKG_DIR = Path(__file__).resolve().parents[1] / "jax_fp4"


def _load():
    """Imports ``_reference``/``_rcp``; falls back to a stub package if the
    compiled extension (needed by ``jax_fp4/__init__.py``) is not built."""
    try:
        return (
            importlib.import_module("jax_fp4._reference"),
            importlib.import_module("jax_fp4._rcp"),
        )
    except ImportError:
        for name in [
            n for n in sys.modules if n == "jax_fp4" or n.startswith("jax_fp4.")
        ]:
            del sys.modules[name]
        pkg = types.ModuleType("jax_fp4")
        pkg.__path__ = [str(_PKG_DIR)]
        sys.modules["jax_fp4"] = pkg
        return (
            importlib.import_module("jax_fp4._reference"),
            importlib.import_module("jax_fp4._rcp"),
        )


R, RCP = _load()


def f32(bits):
    return np.asarray(bits, np.uint32).view(np.float32)


def u32(x):
    return np.asarray(x, np.float32).view(np.uint32)


def ftz_np(x):
    u = u32(x)
    return f32(np.where((u & 0x7F800000) == 0, u & 0x80000000, u))


# SPEC 4.9 worked example.
EXAMPLE_BLOCK = np.array(
    [
        0.30004883,
        -1.2001953,
        2.0,
        5.5,
        -4.3984375,
        0.0,
        -0.0,
        1.0,
        0.75,
        -0.26000977,
        3.4003906,
        1.5,
        -2.5996094,
        0.099975586,
        4.8984375,
        -3.5996094,
    ],
    np.float16,
)
EXAMPLE_S = f32([0x43CEC4EC])


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize("layout", [0, 1, 2])
def test_worked_example_nvfp4(exact, layout):
    fn = jax.jit(
        partial(
            R.fp4_quantize,
            sf_vec_size=16,
            use_ue8m0=False,
            layout=layout,
            scale_mode=0,
            exact=exact,
            four_over_six=0,
        )
    )
    q, sf = fn(jnp.asarray(EXAMPLE_BLOCK[None]), jnp.asarray(EXAMPLE_S))
    assert bytes(np.asarray(q)[0]) == bytes.fromhex("B1740E2892360DE7")
    assert np.asarray(sf).reshape(-1)[0] == 0x7C
    assert not np.asarray(sf).reshape(-1)[1:].any()  # zero padding
    # Dequantized with g = 1/S = 0x3B1E79E8 (SPEC 4.9).
    out = R.e2m1_and_ufp8sf_scale_to_float(
        q, sf.reshape(-1), f32([0x3B1E79E8]), sf_vec_size=16, ufp8_type=1, layout=layout
    )
    want = [
        0.4643,
        -1.3929,
        1.8571,
        5.5714,
        -3.7143,
        0,
        -0.0,
        0.9286,
        0.9286,
        -0.4643,
        3.7143,
        1.3929,
        -2.7857,
        0,
        5.5714,
        -3.7143,
    ]
    np.testing.assert_allclose(np.asarray(out)[0], want, atol=1e-4)
    assert np.signbit(np.asarray(out)[0, 6])


def test_worked_example_intermediates():
    s = jnp.asarray(EXAMPLE_S)
    t = R.mul(jnp.float32(5.5), R.RCP6)
    sf = R.mul(s, t)
    assert u32(t)[()] == 0x3F6AAAAB and u32(sf)[0] == 0x43BD89D9
    assert np.asarray(R.encode_e4m3(sf))[0] == 0x7C
    dec = R.rcp(s)
    p = R.mul(jnp.float32(384.0), dec)
    assert u32(dec)[0] == 0x3B1E79E8 and u32(p)[0] == 0x3F6DB6DC
    assert u32(R.rcp(p))[0] == 0x3F89D89D


def test_worked_example_mxfp4():
    x = np.concatenate([EXAMPLE_BLOCK, np.zeros(16, np.float16)])[None]
    fn = jax.jit(
        partial(
            R.fp4_quantize,
            sf_vec_size=32,
            use_ue8m0=True,
            layout=2,
            scale_mode=0,
            exact=False,
            four_over_six=0,
        )
    )
    q, sf = fn(jnp.asarray(x), jnp.ones(1))
    assert bytes(np.asarray(q)[0]) == bytes.fromhex("A1740E2892350DE6" + "00" * 8)
    assert np.asarray(sf).tolist() == [[0x7F]]


OFFSETS_128x4 = {
    (0, 0): 0,
    (0, 1): 1,
    (1, 0): 16,
    (31, 0): 496,
    (32, 0): 4,
    (33, 2): 22,
    (96, 3): 15,
    (127, 3): 511,
    (0, 4): 512,
    (5, 7): 595,
    (128, 0): 1536,
    (130, 8): 2592,
}
OFFSETS_8x4 = {
    (1, 0): 4,
    (0, 4): 32,
    (31, 0): 316,
    (32, 0): 384,
    (5, 7): 55,
    (128, 0): 1536,
}


@pytest.mark.parametrize(
    "layout,table", [(0, OFFSETS_128x4), (1, OFFSETS_8x4)], ids=["128x4", "8x4"]
)
def test_layout_offsets(layout, table):
    m, c = 131, 9  # C = 9 as in SPEC 3.2/3.3; M not a multiple of the row tile
    ids = np.arange(1, m * c + 1, dtype=np.int32).reshape(m, c)
    flat = np.asarray(R.swizzle_scales(jnp.asarray(ids), layout))
    assert flat.shape == (R.sf_buffer_size(layout, m, c),)
    for (r, k), off in table.items():
        assert flat[off] == ids[r, k], (r, k)
    assert np.count_nonzero(flat) == m * c  # everything else is zero padding
    back = R.unswizzle_scales(jnp.asarray(flat), layout, m, c)
    np.testing.assert_array_equal(np.asarray(back), ids)


def test_sf_buffer_sizes():
    assert R.sf_buffer_size(0, 131, 9) == 256 * 12
    assert R.sf_buffer_size(1, 131, 9) == 136 * 12
    assert R.sf_buffer_size(2, 131, 9) == 131 * 9
    assert R.sf_buffer_size(0, 0, 9) == 0
    assert R.sf_matrix_shape(0, 3, 3) == (128, 4)


def test_block_scale_interleave_experts():
    x = np.random.default_rng(0).integers(0, 256, (3, 130, 5)).astype(np.uint8)
    out = np.asarray(R.block_scale_interleave(jnp.asarray(x)))
    per = 256 * 8
    assert out.shape == (3 * per,)
    for e in range(3):
        np.testing.assert_array_equal(
            out[e * per : (e + 1) * per],
            np.asarray(R.swizzle_scales(jnp.asarray(x[e]), 0)),
        )
    bf = R.block_scale_interleave(jnp.ones((130, 5), jnp.bfloat16))
    assert bf.dtype == jnp.bfloat16 and bf.shape == (256 * 8,)


RCP_CASES = [  # (input bits, expected output bits), SPEC 1.2 / 1.4
    (0x00000000, 0x7F800000),
    (0x80000000, 0xFF800000),  # ±0 -> ±inf
    (0x00000001, 0x7F800000),
    (0x807FFFFF, 0xFF800000),  # subnormal flushed first
    (0x7F800000, 0x00000000),
    (0xFF800000, 0x80000000),  # ±inf -> ±0
    (0x7E800000, 0x00800000),  # rcp(2^126) = 2^-126
    (0x7E800001, 0x00000000),
    (0x7F7FFFFF, 0x00000000),  # results < 2^-126 flushed
    (0x00800000, 0x7E800000),  # rcp(2^-126) = 2^126
    (0x40C00000, 0x3E2AAAAB),  # RCP6
    (0x43E00000, 0x3B124925),  # RCP448
    (0x3F800000, 0x3F800000),
    (0xC0000000, 0xBF000000),
]


def test_rcp_special_values():
    x = f32([c[0] for c in RCP_CASES])
    got = u32(jax.jit(R.rcp)(x))
    assert [hex(g) for g in got] == [hex(c[1]) for c in RCP_CASES]
    assert np.isnan(np.asarray(R.rcp(jnp.float32(np.nan))))


def _rcp_spec_numpy(x):
    """SPEC 1.4 literally: RN via float64, ±1 ulp towards 1/x where the raw table bit
    is set, then flush."""
    x = ftz_np(x)
    exact = 1.0 / x.astype(np.float64)
    r = exact.astype(np.float32)
    table = RCP.mismatch_bits()
    step = np.where(np.abs(r.astype(np.float64)) < np.abs(exact), 1, -1)
    u = u32(r).astype(np.int64) + np.where(table[u32(x) & 0x7FFFFF], step, 0)
    return ftz_np(f32(u.astype(np.uint32))), step


@pytest.mark.parametrize("exponent", [127, 1, 200, 253], ids=lambda e: f"2^{e - 127}")
def test_rcp_all_mantissas(exponent):
    x = f32(np.arange(1 << 23, dtype=np.uint32) | np.uint32(exponent << 23))
    want, step = _rcp_spec_numpy(x)
    got = np.asarray(jax.jit(R.rcp)(x))
    np.testing.assert_array_equal(u32(got), u32(want))
    if exponent == 127:
        table = RCP.mismatch_bits()
        assert table.sum() == 1_108_522
        assert (table & (step > 0)).sum() == 733_799  # hardware one ulp above RN
        assert (table & (step < 0)).sum() == 374_723
        rn = np.float32(1) / x
        assert (u32(got) != u32(rn)).sum() == 1_108_522


def test_rcp_numpy_model_matches():
    x = f32(
        np.random.default_rng(1)
        .integers(0, 2**32, 100_000, dtype=np.uint64)
        .astype(np.uint32)
    )
    a, b = u32(RCP.rcp_numpy(x)), u32(R.rcp(jnp.asarray(x)))
    nan = np.isnan(x)
    np.testing.assert_array_equal(a[~nan], b[~nan])


def test_mul_div_underflow_window():
    # IEEE rounding gives 2^-126 (normal) where x86 FTZ would flush (SPEC 1.2).
    assert u32(R.mul(f32(0x3F7FFFFF), f32(0x00800000))) == 0x00800000
    assert u32(R.mul(f32(0xBF7FFFFF), f32(0x00800000))) == 0x80800000
    assert u32(R.mul(f32(0x3F7FFFFE), f32(0x00800001))) == 0x00800000
    assert u32(R.div(f32(0x00FFFFFF), np.float32(2))) == 0x00800000
    # Subnormal operands and results flush to signed zeros.
    assert u32(R.mul(f32(0x00400000), np.float32(4))) == 0
    assert u32(R.mul(f32(0x3F000000), f32(0x80800000))) == 0x80000000
    assert u32(R.div(np.float32(1), f32(0x7F7FFFFF))) == 0
    rng = np.random.default_rng(2)
    a = f32(rng.integers(0x3F000000, 0x40000000, 200_000).astype(np.uint32))
    b = (2.0**-126 / a.astype(np.float64)).astype(np.float32)
    b = f32((u32(b).astype(np.int64) + rng.integers(-2, 3, a.size)).astype(np.uint32))
    np.testing.assert_array_equal(u32(jax.jit(R.mul)(a, b)), u32(ftz_np(a * ftz_np(b))))
    q = (a.astype(np.float64) * 2.0**-126).astype(np.float32)
    np.testing.assert_array_equal(u32(jax.jit(R.div)(q, a)), u32(ftz_np(ftz_np(q) / a)))


def test_ieee_div_matches_numpy():
    # XLA:GPU division is not correctly rounded; the twin divides in integers.
    rng = np.random.default_rng(6)
    n = 300_000
    a = f32(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))
    b = f32(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))
    tiny = f32(rng.integers(0, 0x01000000, n).astype(np.uint32))
    a = np.where(rng.random(n) < 0.2, tiny, a)
    b = np.where(rng.random(n) < 0.2, tiny, b)
    b[:4] = [0, -0.0, np.inf, 1.0]
    a[:4] = [0, 1.0, np.inf, np.nan]
    with np.errstate(all="ignore"):
        want = a / b
    got = np.asarray(jax.jit(RCP.ieee_div)(a, b))
    assert ((u32(got) == u32(want)) | (np.isnan(got) & np.isnan(want))).all()
    assert ((want != 0) & (np.abs(want) < 2.0**-126)).sum() > 100  # subnormals seen
    m = f32(np.arange(1 << 23, dtype=np.uint32) | np.uint32(0x3F800000))
    r = np.asarray(jax.jit(lambda v: RCP.ieee_div(jnp.float32(1), v))(m))
    np.testing.assert_array_equal(u32(r), u32(np.float32(1) / m))


def test_hmul_matches_ieee_including_subnormals():
    rng = np.random.default_rng(3)
    n = 300_000
    e4m3 = (
        np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    )
    smalls = np.concatenate(
        [
            e4m3,
            f32(np.arange(256, dtype=np.uint32) << 23),
            f32([0x00400000]),
            np.float32([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -6, np.inf, -np.inf]),
        ]
    )
    b = smalls[rng.integers(0, smalls.size, n)]
    a = f32(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))
    tiny = f32(rng.integers(0, 0x02000000, n).astype(np.uint32))
    a = np.where(rng.random(n) < 0.5, tiny, a)
    with np.errstate(all="ignore"):
        want = a * b
    got = np.asarray(jax.jit(R.hmul)(a, b))
    same = (u32(got) == u32(want)) | (np.isnan(got) & np.isnan(want))
    assert same.all()
    assert ((want != 0) & (np.abs(want) < 2.0**-126)).sum() > 1000  # subnormals seen


def test_encoders():
    ties = np.float32(
        [
            0.25,
            0.75,
            1.25,
            1.75,
            2.5,
            3.5,
            5.0,
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            np.inf,
            -np.inf,
            np.nan,
            -np.nan,
            6.5,
            -0.26,
        ]
    )
    assert np.asarray(R.encode_e2m1(ties)).tolist() == [
        0,
        2,
        2,
        4,
        4,
        6,
        6,
        0,
        8,
        0,
        8,
        7,
        15,
        7,
        7,
        7,
        9,
    ]
    rng = np.random.default_rng(4)
    x = f32(rng.integers(0, 2**32, 500_000, dtype=np.uint64).astype(np.uint32))
    small = np.abs(x) <= 448
    got = np.asarray(jax.jit(R.encode_e4m3)(x))
    np.testing.assert_array_equal(
        got[small], x[small].astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    )
    big = ~small & ~np.isnan(x)
    np.testing.assert_array_equal(got[big], np.where(x[big] > 0, 0x7E, 0xFE))
    assert (got[np.isnan(x)] == 0x7F).all()
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(
        np.asarray(R.encode_e2m1(x))[finite],
        x[finite].astype(ml_dtypes.float4_e2m1fn).view(np.uint8),
    )
    e8 = f32(
        [
            0,
            0x00400000,
            0x00400001,
            0x00800000,
            0x3F800000,
            0x3F800001,
            0x3F6AAAAB,
            0x7F000000,
            0x7F000001,
            0x7F800000,
            0x7FC00000,
            0xBF800000,
        ]
    )
    assert np.asarray(R.encode_ue8m0(e8)).tolist() == [
        0,
        0,
        1,
        1,
        127,
        128,
        127,
        254,
        254,
        254,
        255,
        127,
    ]
    h = np.asarray(R.round_to_float16(x))
    with np.errstate(all="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    assert ((u32(h) == u32(want)) | (np.isnan(h) & np.isnan(want))).all()
    codes = np.arange(256, dtype=np.uint8)
    dec = np.asarray(R.decode_e4m3(jnp.asarray(codes)))
    ref = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    assert ((u32(dec) == u32(ref)) | (np.isnan(dec) & np.isnan(ref))).all()


def test_pack_unpack_fp4():
    codes = jnp.asarray(np.array([[1, 11, 4, 7]], np.uint8))
    packed = R.pack_fp4(codes)
    assert np.asarray(packed).tolist() == [[0xB1, 0x74]]
    np.testing.assert_array_equal(np.asarray(R.unpack_fp4(packed)), np.asarray(codes))


def test_packbits_examples():
    x = jnp.asarray([1, 0, 1, 1, 0, 0, 1, 1])
    assert np.asarray(R.packbits(x, bitorder="big")).tolist() == [0b10110011]
    assert np.asarray(R.packbits(x, bitorder="little")).tolist() == [0b11001101]
    sub = jnp.asarray(f32([0x00000001, 0, 0x80000000]))  # subnormal is truthy
    assert np.asarray(R.packbits(sub, bitorder="big")).tolist() == [0b10000000]
    xs = jnp.asarray([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], jnp.int32)
    fn = jax.jit(partial(R.segment_packbits, bitorder="big", total_bytes=5))
    y, ind = fn(xs, jnp.asarray([0, 4, 7, 11]))
    assert np.asarray(y).tolist() == [0b10110000, 0b00100000, 0b11010000, 0, 0]
    assert np.asarray(ind).tolist() == [0, 1, 2, 3] and ind.dtype == jnp.int32
    y, ind = fn(xs, jnp.asarray([0, 0, 4, 4, 11]))  # empty segments
    assert np.asarray(y).tolist() == [0b10110000, 0b00111010, 0, 0, 0]
    assert np.asarray(ind).tolist() == [0, 0, 1, 1, 2]


def test_jit_matches_eager():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((3, 5, 64)).astype(np.float32)).astype(
        jnp.bfloat16
    )
    gs = jnp.asarray(rng.uniform(1, 100, 15).astype(np.float32))
    configs = [
        (16, False, 0, 1, False),
        (16, False, 1, 0, True),
        (32, True, 2, 0, False),
    ]
    names = ("sf_vec_size", "use_ue8m0", "layout", "scale_mode", "exact")
    for kw in (dict(zip(names, c, strict=True), four_over_six=0) for c in configs):
        eager = R.fp4_quantize(x, gs, **kw)
        jitted = jax.jit(partial(R.fp4_quantize, **kw))(x, gs)
        for a, b in zip(eager, jitted):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert eager[0].shape == (3, 5, 32)
    q, sf = jax.jit(partial(R.mxfp8_quantize, layout=0, alignment=64))(
        x.astype(jnp.float16)
    )
    assert q.shape == (3, 5, 64) and sf.shape == (128 * 4,)
    back = R.mxfp8_dequantize_host(q.reshape(15, 64), sf, layout=0)
    np.testing.assert_allclose(
        np.asarray(back), np.asarray(x, np.float32).reshape(15, 64), rtol=0.07
    )


def test_zero_size():
    for shape in [(0, 32), (4, 0), (2, 0, 64)]:
        for dtype in (jnp.float16, jnp.bfloat16, jnp.float8_e4m3fn):
            for sv, ue in ((16, False), (32, True)):
                for layout in (0, 1, 2):
                    q, sf = R.fp4_quantize(
                        jnp.zeros(shape, dtype),
                        jnp.ones(1),
                        sf_vec_size=sv,
                        use_ue8m0=ue,
                        layout=layout,
                        scale_mode=0,
                        exact=False,
                        four_over_six=0,
                    )
                    m, k = int(np.prod(shape[:-1])), shape[-1]
                    assert q.shape == shape[:-1] + (k // 2,)
                    assert sf.shape == R.sf_matrix_shape(layout, m, k // sv)
        q, sf = R.mxfp8_quantize(jnp.zeros(shape, jnp.bfloat16), layout=0, alignment=32)
        assert q.shape == shape and sf.shape == (0,)
    assert R.e2m1_and_ufp8sf_scale_to_float(
        jnp.zeros((0, 8), jnp.uint8),
        jnp.zeros((0,), jnp.uint8),
        jnp.ones(1),
        sf_vec_size=16,
        ufp8_type=1,
        layout=0,
    ).shape == (0, 16)
    assert R.mxfp4_dequantize_host(
        jnp.zeros((0, 16), jnp.uint8), jnp.zeros((0, 1), jnp.uint8), group_size=32
    ).shape == (0, 32)
    assert R.mxfp8_dequantize_host(
        jnp.zeros((0, 32), jnp.uint8), jnp.zeros((0,), jnp.uint8), layout=0
    ).shape == (0, 32)
    assert R.packbits(jnp.zeros((0,)), bitorder="big").shape == (0,)
    y, ind = R.segment_packbits(
        jnp.zeros((0,)), jnp.zeros((3,), jnp.int32), bitorder="big", total_bytes=2
    )
    assert np.asarray(y).tolist() == [0, 0] and np.asarray(ind).tolist() == [0, 0, 0]
    assert R.block_scale_interleave(jnp.zeros((2, 0, 3), jnp.uint8)).shape == (0,)


def test_buffer_size_checked():
    with pytest.raises(ValueError, match="needs"):
        R.e2m1_and_ufp8sf_scale_to_float(
            jnp.zeros((2, 8), jnp.uint8),
            jnp.zeros((3,), jnp.uint8),
            jnp.ones(1),
            sf_vec_size=16,
            ufp8_type=1,
            layout=2,
        )
    with pytest.raises(ValueError, match="needs"):
        R.mxfp8_dequantize_host(
            jnp.zeros((2, 32), jnp.uint8), jnp.zeros((1,), jnp.uint8), layout=2
        )


# ---- row masks, scale modes, per-token, 4over6 (SPEC 4.2.2, 4.4, 5.10, 5.13) ----

_FP4_KW = {"sf_vec_size": 16, "use_ue8m0": False, "exact": False, "four_over_six": 0}


def test_row_mask_zeroes_rows_and_scales():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((5, 48)).astype(np.float16))
    gs = jnp.asarray([300.0], jnp.float32)
    mask = jnp.asarray([1, 0, 1, 0, 1], jnp.uint8)
    for layout in (0, 1, 2):
        kw = dict(_FP4_KW, layout=layout, scale_mode=0)
        q, sf = R.fp4_quantize(x, gs, **kw)
        qm, sfm = jax.jit(partial(R.fp4_quantize, **kw))(x, gs, mask)
        keep = np.asarray(mask, bool)
        np.testing.assert_array_equal(np.asarray(qm)[keep], np.asarray(q)[keep])
        assert not np.asarray(qm)[~keep].any()
        sfl = np.asarray(R.unswizzle_scales(sf.reshape(-1), layout, 5, 3))
        sflm = np.asarray(R.unswizzle_scales(sfm.reshape(-1), layout, 5, 3))
        np.testing.assert_array_equal(sflm[keep], sfl[keep])
        assert not sflm[~keep].any()
        assert np.count_nonzero(np.asarray(sfm)) == np.count_nonzero(sflm)  # padding 0


def test_scale_modes():
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((4, 32)).astype(np.float32)).astype(
        jnp.bfloat16
    )
    g = jnp.asarray([0.0123], jnp.float32)
    kw = dict(_FP4_KW, layout=2)
    # Inverse flag: S = rcp(g), then the recipe with that S (SPEC 4.2.1).
    a = R.fp4_quantize(x, g, scale_mode=1, **kw)
    b = R.fp4_quantize(x, R.rcp(g), scale_mode=0, **kw)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # KV decode scale (SPEC 5.13): sf = mul(rcp(g), mul(a, RCP6)), os = rcp(mul(sfq, g)).
    q, sf = R.fp4_quantize(x, g, scale_mode=2, **kw)
    xb = R._widen(x).reshape(4, 2, 16)
    amax = R._amax(xb)
    code = R.encode_e4m3(R.mul(R.rcp(g), R.mul(amax, R.RCP6)))
    os = jnp.where(amax != 0, R.rcp(R.mul(R.decode_e4m3(code), g)), 0.0)
    want_q = R.pack_fp4(R.encode_e2m1(R.mul(xb, os[..., None])).reshape(4, 32))
    np.testing.assert_array_equal(np.asarray(sf), np.asarray(code))
    np.testing.assert_array_equal(np.asarray(q), np.asarray(want_q))


def test_per_token_zero_row_and_scales():
    x = np.zeros((3, 32), np.float16)
    x[0, :16] = np.linspace(-3, 5, 16)
    x[2] = 1.0
    s_inv = jnp.asarray([1 / 2688], jnp.float32)
    q, sf, p = jax.jit(
        partial(R.nvfp4_per_token_quantize, layout=2, exact=False, four_over_six=0)
    )(jnp.asarray(x), s_inv)
    sf = np.asarray(sf)
    assert (sf[1] == 0x7F).all()  # zero row, fast: sf = mul(inf, 0) = NaN (SPEC 4.2.2)
    assert np.asarray(p)[1] == 0 and not np.asarray(q)[1].any()
    assert u32(np.asarray(p)[2]) == u32(R.mul(jnp.float32(1.0), s_inv[0]))
    assert sf[0, 1] == 0  # zero block of a non-zero row
    # Exact (SPEC 4.3): zero row G = FLT_MAX, p = div(1, FLT_MAX) = +0; bytes 0.
    q, sf, p = R.nvfp4_per_token_quantize(
        jnp.asarray(x), s_inv, layout=2, exact=True, four_over_six=0
    )
    assert u32(np.asarray(p)[1]) == 0 and not np.asarray(sf)[1].any()
    g_row2 = R.div(R.div(jnp.float32(1), s_inv[0]), jnp.float32(1.0))
    assert u32(np.asarray(p)[2]) == u32(R.div(jnp.float32(1), g_row2))
    # Row mask: p = 0 and zero bytes for unselected rows.
    mask = jnp.asarray([0, 1, 1], jnp.uint8)
    q, sf, p = R.nvfp4_per_token_quantize(
        jnp.asarray(x), s_inv, mask, layout=0, exact=False, four_over_six=0
    )
    assert np.asarray(p)[0] == 0 and not np.asarray(q)[0].any()
    sfl = np.asarray(R.unswizzle_scales(sf.reshape(-1), 0, 3, 2))
    assert not sfl[0].any() and (sfl[1] == 0x7F).all()


@pytest.mark.parametrize("flags", [1, 3, 5, 9, 15])
@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_four_over_six_zero_block_and_choice(flags, exact):
    x = np.zeros((2, 32), np.float16)
    x[0, :16] = -0.0  # zero block with -0: codes 0x0, not 0x8
    x[0, 16:] = [4.0, 3.0] * 8  # max 4 -> candidate 4 represents it exactly
    x[1, :16] = np.linspace(-6, 6, 16)
    gs = jnp.asarray([2688.0 / 6.0], jnp.float32)
    kw = {
        "sf_vec_size": 16,
        "use_ue8m0": False,
        "layout": 2,
        "scale_mode": 0,
        "exact": exact,
    }
    q, sf = jax.jit(partial(R.fp4_quantize, four_over_six=flags, **kw))(
        jnp.asarray(x), gs
    )
    q, sf = np.asarray(q), np.asarray(sf)
    assert not q[0, :8].any() and sf[0, 0] == 0
    _, base_sf = R.fp4_quantize(jnp.asarray(x), gs, four_over_six=0, **kw)
    assert sf[0, 1] != np.asarray(base_sf)[0, 1]  # the max-4 scale won
    deq = np.asarray(
        R.e2m1_and_ufp8sf_scale_to_float(
            jnp.asarray(q),
            jnp.asarray(sf).reshape(-1),
            1 / gs,
            sf_vec_size=16,
            ufp8_type=1,
            layout=2,
        )
    )
    np.testing.assert_allclose(deq[0, 16:], x[0, 16:].astype(np.float32), rtol=1e-2)


# ---- dequantization and 16-bit rounding (SPEC 2.4, 5.14) ----


def test_round_to_dtype_matches_numpy():
    rng = np.random.default_rng(10)
    x = f32(rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32))
    tiny = f32(rng.integers(0, 0x39000000, 400_000).astype(np.uint32))  # |x| < 2^-13
    x = np.where(rng.random(x.size) < 0.5, tiny, x)
    x = f32(
        u32(x) ^ np.where(rng.random(x.size) < 0.5, 0, 0x80000000).astype(np.uint32)
    )
    for name, npt in (("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16)):
        got = np.asarray(jax.jit(partial(R.round_to_dtype, dtype=name))(x))
        assert got.dtype == np.dtype(npt)
        with np.errstate(all="ignore"):
            want = x.astype(npt)
        gb, wb = got.view(np.uint16), want.view(np.uint16)
        nan = np.isnan(x)
        np.testing.assert_array_equal(gb[~nan], wb[~nan])
        assert np.isnan(got[nan].astype(np.float32)).all()
    assert (
        np.asarray(R.round_to_dtype(x, "float16")).view(np.uint16) & 0x7C00 == 0
    ).sum() > 1000


@pytest.mark.parametrize("device_math", [False, True], ids=["host", "device"])
def test_block_dequantize_formats(device_math):
    rng = np.random.default_rng(11)
    m, k = 9, 64
    codes = rng.integers(0, 256, (m, k // 2), dtype=np.uint8)
    sf = rng.integers(0, 256, R.sf_buffer_size(1, m, k // 16), dtype=np.uint8)
    g = np.float32(2.0**-120)  # pushes many products into the subnormal range
    fn = jax.jit(
        partial(
            R.block_dequantize,
            element_format=0,
            scale_format=0,
            sf_vec_size=16,
            layout=1,
            plus_zero_code8=False,
            device_math=device_math,
            out_dtype="float32",
        )
    )
    got = np.asarray(fn(jnp.asarray(codes), jnp.asarray(sf), jnp.asarray([g])))
    e = np.asarray(R.decode_e2m1(R.unpack_fp4(jnp.asarray(codes))))
    s = np.repeat(
        np.asarray(R.decode_e4m3(R.unswizzle_scales(jnp.asarray(sf), 1, m, 4))),
        16,
        axis=1,
    )
    with np.errstate(all="ignore"):
        want = ftz_np(ftz_np(e * s) * g) if device_math else e * (s * g)
    same = (u32(got) == u32(want)) | (np.isnan(got) & np.isnan(want))
    assert same.all()
    assert ((got != 0) & (np.abs(got) < 2.0**-126)).any() != device_math
    # UE8M0 host decoding (0 -> 2^-127, 255 -> NaN) and code 8 -> +0.
    w = jnp.asarray([[0x88, 0x21]], jnp.uint8)
    out = np.asarray(
        R.block_dequantize(
            w,
            jnp.asarray([0, 255], jnp.uint8),
            None,
            element_format=0,
            scale_format=2,
            sf_vec_size=2,
            layout=2,
            plus_zero_code8=True,
            device_math=False,
        )
    )
    assert u32(out[0, 0]) == 0 and u32(out[0, 1]) == 0
    assert np.isnan(out[0, 2:]).all()


def test_block_dequantize_16bit_subnormals():
    # E2M1 0.5 x E4M3 2^-9 x g lands on fp16 subnormals: rounded exactly, no flush.
    codes = jnp.asarray([[0x11] * 8], jnp.uint8)  # sixteen 0.5 elements
    sf = jnp.asarray([0x01], jnp.uint8)  # 2^-9
    for g in (2.0**-8, 3.0 * 2.0**-10, 2.0**-20):
        kw = {
            "element_format": 0,
            "scale_format": 0,
            "sf_vec_size": 16,
            "layout": 2,
            "plus_zero_code8": False,
        }
        for device_math in (False, True):
            ref = np.float32(0.5 * 2.0**-9 * g)
            for name, npt in (
                ("float16", np.float16),
                ("bfloat16", ml_dtypes.bfloat16),
            ):
                out = jax.jit(
                    partial(
                        R.block_dequantize,
                        device_math=device_math,
                        out_dtype=name,
                        **kw,
                    )
                )(codes, sf, jnp.asarray([g]))
                assert out.dtype == np.dtype(npt)
                assert (
                    np.asarray(out).view(np.uint16) == ref.astype(npt).view(np.uint16)
                ).all()


# ---- shuffles (SPEC 5.11, 5.12) ----


def test_shuffle_rows_spec_order():
    x = jnp.arange(64 * 2, dtype=jnp.int32).reshape(64, 2)
    out = np.asarray(R.shuffle_rows(x, block=32))[:, 0] // 2
    want32 = [
        0,
        4,
        8,
        12,
        16,
        20,
        24,
        28,
        1,
        5,
        9,
        13,
        17,
        21,
        25,
        29,
        2,
        6,
        10,
        14,
        18,
        22,
        26,
        30,
        3,
        7,
        11,
        15,
        19,
        23,
        27,
        31,
    ]
    assert out.tolist() == want32 + [32 + r for r in want32]
    out16 = np.asarray(R.shuffle_rows(x[:16], block=16))[:, 0] // 2
    assert out16.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]
    batched = R.shuffle_rows(jnp.stack([x, x + 1000]), block=32)
    np.testing.assert_array_equal(
        np.asarray(batched[1]), np.asarray(R.shuffle_rows(x, block=32)) + 1000
    )
    with pytest.raises(ValueError):
        R.shuffle_rows(x[:40], block=32)
    sf = jnp.asarray(np.random.default_rng(12).integers(0, 256, (2, 128, 5)), jnp.uint8)
    got = R.block_scale_interleave(sf, shuffle_block=32)
    want = R.block_scale_interleave(R.shuffle_rows(sf, block=32))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.shape == (2 * 128 * 8,)


def test_zero_size_new_ops():
    q, sf, p = R.nvfp4_per_token_quantize(
        jnp.zeros((0, 32), jnp.bfloat16),
        jnp.ones(1),
        layout=0,
        exact=True,
        four_over_six=1,
    )
    assert q.shape == (0, 16) and sf.shape == (0, 4) and p.shape == (0,)
    q, sf, p = R.nvfp4_per_token_quantize(
        jnp.zeros((3, 0), jnp.float16),
        jnp.ones(1),
        layout=2,
        exact=False,
        four_over_six=0,
    )
    assert q.shape == (3, 0) and sf.shape == (3, 0) and p.shape == (3,)
    q, sf = R.fp4_quantize(
        jnp.zeros((0, 32), jnp.float16),
        jnp.ones(1),
        jnp.zeros((0,), jnp.uint8),
        sf_vec_size=16,
        use_ue8m0=False,
        layout=1,
        scale_mode=2,
        exact=False,
        four_over_six=3,
    )
    assert q.shape == (0, 16) and sf.shape == (0, 4)
    out = R.block_dequantize(
        jnp.zeros((0, 16), jnp.uint8),
        jnp.zeros((0,), jnp.uint8),
        jnp.ones(1),
        element_format=1,
        scale_format=1,
        sf_vec_size=16,
        layout=0,
        plus_zero_code8=False,
        device_math=True,
        out_dtype="bfloat16",
    )
    assert out.shape == (0, 16) and out.dtype == jnp.bfloat16
    assert R.shuffle_rows(jnp.zeros((2, 0, 3)), block=16).shape == (2, 0, 3)
