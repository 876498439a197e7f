"""Self-tests of the NumPy oracle against the tables and examples of SPEC.md."""

import hashlib
import lzma

import ml_dtypes
import np_reference as R
import numpy as np
import pytest

F32 = np.float32
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn


def f32(bits):
    return np.array(bits, np.uint32).view(F32)


def bits(x):
    return np.asarray(x, F32).view(np.uint32)


def assert_bits(x, expected):
    np.testing.assert_array_equal(bits(x), np.asarray(expected, np.uint32))


def _all_fp16_as_f32():
    return np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(F32)


def _random_f32(n, seed=0):
    return (
        np.random.default_rng(seed)
        .integers(0, 1 << 32, n, dtype=np.uint64)
        .astype(np.uint32)
        .view(F32)
    )


# ---------------------------------------------------------------------------
# 1.2 / 1.4 / 1.5 arithmetic
# ---------------------------------------------------------------------------


def test_table_sha256_and_popcount():
    raw = lzma.decompress(R.TABLE_PATH.read_bytes())
    assert len(raw) == 1_048_576
    assert hashlib.sha256(raw).hexdigest() == R.TABLE_SHA256
    table = R.rcp_table()
    assert table.shape == (262_144,) and table.dtype == np.uint32
    assert sum(bin(int(w)).count("1") for w in table) == 1_108_522


def test_constants_bits():
    assert_bits(R.RCP6, 0x3E2AAAAB)
    assert_bits(R.RCP448, 0x3B124925)
    assert_bits(R.ONE_SIXTH, 0x3E2AAAAB)
    assert_bits(R.FLT_MAX, 0x7F7FFFFF)
    # rcp(6), rcp(448) equal the constants and the correctly rounded values (1.5).
    assert_bits(R.rcp(F32(6.0)), 0x3E2AAAAB)
    assert_bits(R.rcp(F32(448.0)), 0x3B124925)
    assert bits(F32(1.0) / F32(6.0)) == 0x3E2AAAAB
    assert bits(F32(1.0) / F32(448.0)) == 0x3B124925


def test_rcp_counts_over_all_mantissas():
    m = np.arange(1 << 23, dtype=np.uint32)
    x = ((127 << 23) | m).view(F32)  # x = 1.m
    r = R.rcp(x)
    rn = (1.0 / x.astype(np.float64)).astype(F32)
    assert int((r != rn).sum()) == 1_108_522
    assert int((r > rn).sum()) == 733_799
    assert int((r < rn).sum()) == 374_723
    # Faithful: never more than one ulp from RN.
    assert int(np.abs(bits(r).astype(np.int64) - bits(rn).astype(np.int64)).max()) == 1
    # The hardware double reciprocal differs from p for 2,029,550 mantissas (1.5).
    assert int((R.rcp(r) != x).sum()) == 2_029_550


@pytest.mark.parametrize("exp", [1, 20, 100, 126, 180, 253])
def test_rcp_exponent_invariance(exp):
    m = np.random.default_rng(exp).integers(0, 1 << 23, 50_000).astype(np.uint32)
    x1 = ((127 << 23) | m).view(F32)
    xe = ((exp << 23) | m).view(F32)
    r1, re = R.rcp(x1), R.rcp(xe)
    mant = lambda r: bits(r) & 0x7FFFFF  # noqa: E731
    ok = np.abs(re) >= F32(2.0**-126)
    np.testing.assert_array_equal(mant(r1)[ok], mant(re)[ok])


def test_rcp_special_values():
    tiny = f32(1)  # smallest subnormal
    x = np.array(
        [
            0.0,
            -0.0,
            tiny,
            -tiny,
            np.inf,
            -np.inf,
            2.0**126,
            2.0**-126,
            1.0,
            -2.0,
            2.0**127,
            R.FLT_MAX,
        ],
        F32,
    )
    r = R.rcp(x)
    np.testing.assert_array_equal(
        r,
        np.array(
            [
                np.inf,
                -np.inf,
                np.inf,
                -np.inf,
                0,
                0,
                2.0**-126,
                2.0**126,
                1.0,
                -0.5,
                0,
                0,
            ],
            F32,
        ),
    )
    assert np.signbit(r[5]) and not np.signbit(r[4])
    assert np.isnan(R.rcp(F32(np.nan)))
    # Just above 2^126 the result would be subnormal: flushed.
    assert R.rcp(f32(0x7E800001)) == 0


def test_ftz_and_device_ops():
    sub = F32(2.0**-127)
    assert R.ftz(sub) == 0 and not np.signbit(R.ftz(sub))
    assert R.ftz(-sub) == 0 and np.signbit(R.ftz(-sub))
    assert R.ftz(F32(2.0**-126)) == F32(2.0**-126)
    # Results below 2^-126 flush on the device but not on the host.
    assert R.dmul(F32(2.0**-63), F32(2.0**-64)) == 0
    assert R.hmul(F32(2.0**-63), F32(2.0**-64)) == F32(2.0**-127)
    assert R.dmul(sub, F32(2.0**10)) == 0  # subnormal operand flushed first
    assert R.hmul(sub, F32(2.0**10)) == F32(2.0**-117)
    # Measured: __fdiv_rn(1, FLT_MAX) = +0 (1.1).
    assert R.ddiv(F32(1), R.FLT_MAX) == 0 and not np.signbit(R.ddiv(F32(1), R.FLT_MAX))
    assert R.dsub(F32(1.5 * 2.0**-126), F32(2.0**-126)) == 0
    assert R.dadd(sub, sub) == 0


# ---------------------------------------------------------------------------
# 2. Formats
# ---------------------------------------------------------------------------

E2M1_TIES = [
    (0.0, 0x0),
    (-0.0, 0x8),
    (1e-30, 0x0),
    (-1e-30, 0x8),
    (0.25, 0x0),
    (np.nextafter(F32(0.25), F32(1)), 0x1),
    (0.5, 0x1),
    (np.nextafter(F32(0.75), F32(0)), 0x1),
    (0.75, 0x2),
    (1.0, 0x2),
    (1.25, 0x2),
    (np.nextafter(F32(1.25), F32(2)), 0x3),
    (np.nextafter(F32(1.75), F32(0)), 0x3),
    (1.75, 0x4),
    (2.5, 0x4),
    (np.nextafter(F32(2.5), F32(3)), 0x5),
    (np.nextafter(F32(3.5), F32(0)), 0x5),
    (3.5, 0x6),
    (5.0, 0x6),
    (np.nextafter(F32(5.0), F32(6)), 0x7),
    (6.0, 0x7),
    (1e30, 0x7),
    (np.inf, 0x7),
    (-0.25, 0x8),
    (-0.75, 0xA),
    (-1.25, 0xA),
    (-1.75, 0xC),
    (-2.5, 0xC),
    (-3.5, 0xE),
    (-5.0, 0xE),
    (-5.5, 0xF),
    (-np.inf, 0xF),
    (np.nan, 0x7),
    (-np.nan, 0x7),
]


@pytest.mark.parametrize("value,code", E2M1_TIES, ids=[f"{v!r}" for v, _ in E2M1_TIES])
def test_e2m1_encode_ties(value, code):
    assert R.e2m1_encode(F32(value)) == code


def test_e2m1_negative_nan_bits():
    neg_nan = f32(0xFFC00000)
    assert R.e2m1_encode(neg_nan) == 7


def test_e2m1_decode_table():
    d = R.e2m1_decode(np.arange(16))
    np.testing.assert_array_equal(
        d,
        np.array(
            [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], F32
        ),
    )
    assert np.signbit(d[8])
    assert not np.signbit(R.e2m1_decode(np.array([8]), plus_zero_for_8=True)[0])


def test_e2m1_matches_ml_dtypes_on_finite():
    x = np.concatenate([_all_fp16_as_f32(), _random_f32(1 << 20)])
    x = x[np.isfinite(x)]
    ref = x.astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF
    np.testing.assert_array_equal(R.e2m1_encode(x), ref)


def test_pack_fp4_example():
    packed = R.pack_fp4(np.array([1, 11, 4, 7], np.uint8))
    np.testing.assert_array_equal(packed, np.array([0xB1, 0x74], np.uint8))
    np.testing.assert_array_equal(R.unpack_fp4(packed), [1, 11, 4, 7])
    c = np.random.default_rng(1).integers(0, 16, (3, 5, 8)).astype(np.uint8)
    np.testing.assert_array_equal(R.unpack_fp4(R.pack_fp4(c)), c)


def test_e4m3_decode_table():
    c = np.arange(256, dtype=np.uint8)
    ref = c.view(E4M3).astype(F32)
    d = R.e4m3_decode(c)
    np.testing.assert_array_equal(np.isnan(d), np.isin(c, [0x7F, 0xFF]))
    np.testing.assert_array_equal(bits(d)[~np.isnan(d)], bits(ref)[~np.isnan(ref)])
    assert d[0x7E] == 448 and d[0x01] == 2.0**-9 and d[0x08] == 2.0**-6


@pytest.mark.parametrize("source", ["all_fp16", "random_f32"])
def test_e4m3_encode_vs_ml_dtypes(source):
    x = _all_fp16_as_f32() if source == "all_fp16" else _random_f32(1 << 21, seed=2)
    q = R.e4m3_encode(x)
    small = np.abs(x) <= 448  # SPEC 2.2: agrees with ml_dtypes here (NaN excluded)
    ref = x[small].astype(E4M3).view(np.uint8)
    np.testing.assert_array_equal(q[small], ref)
    big = np.abs(x) > 448
    np.testing.assert_array_equal(q[big], np.where(np.signbit(x[big]), 0xFE, 0x7E))
    assert np.all(q[np.isnan(x)] == 0x7F)


E4M3_CASES = [
    (448.0, 0x7E),
    (464.0, 0x7E),
    (465.0, 0x7E),
    (1e30, 0x7E),
    (np.inf, 0x7E),
    (-np.inf, 0xFE),
    (np.nan, 0x7F),
    (-np.nan, 0x7F),
    (-0.0, 0x80),
    (2.0**-10, 0x00),
    (-(2.0**-10), 0x80),
    (2.0**-10 * 1.001, 0x01),
    (2.0**-9, 0x01),
    (3 * 2.0**-10, 0x02),
    (2.0**-6, 0x08),
    (1.0, 0x38),
    (384.0, 0x7C),
    (379.07693, 0x7C),
    (352.0, 0x7B),
    (368.0, 0x7C),
    (-1e-12, 0x80),
]


@pytest.mark.parametrize(
    "value,code", E4M3_CASES, ids=[f"{v!r}" for v, _ in E4M3_CASES]
)
def test_e4m3_encode_cases(value, code):
    assert R.e4m3_encode(F32(value)) == code


UE8M0_CASES = [
    (0.0, 0),
    (-0.0, 0),
    (2.0**-127, 0),
    (2.0**-130, 0),
    (f32(1)[()], 0),
    (f32(0x00400001)[()], 1),
    (2.0**-126, 1),
    (1.0, 127),
    (-1.0, 127),
    (np.nextafter(F32(1), F32(2)), 128),
    (0.75, 127),
    (0.9166667, 127),
    (0.5, 126),
    (3.0, 129),
    (2.0**127, 254),
    (1.5 * 2.0**127, 254),
    (R.FLT_MAX, 254),
    (np.inf, 254),
    (-np.inf, 254),
    (np.nan, 255),
]


@pytest.mark.parametrize(
    "value,code", UE8M0_CASES, ids=[f"{v!r}" for v, _ in UE8M0_CASES]
)
def test_ue8m0_encode_cases(value, code):
    assert R.ue8m0_encode(F32(value)) == code


def _ue8m0_via_bf16(x):
    """Second description of SPEC 2.3: round |x| up to bf16, exponent, +1, saturate."""
    b = bits(np.abs(np.asarray(x, F32)))
    hi = (b >> 16).astype(np.uint32)
    hi = hi + ((b & 0xFFFF) != 0)  # toward +inf on the magnitude
    mag = hi & 0x7FFF
    e = (mag >> 7).astype(np.int64)
    e = e + (((mag & 0x7F) != 0) & (mag > 0x0040) & (mag < 0x7F80))
    nan = np.isnan(np.asarray(x, F32))
    e = np.where(~nan & (e >= 255), 254, e)
    return np.where(nan, 255, e).astype(np.uint8)


def test_ue8m0_two_descriptions_agree():
    x = np.concatenate(
        [
            _random_f32(1 << 20, seed=3),
            _all_fp16_as_f32(),
            f32(np.arange(0, 1 << 24, 97, dtype=np.uint32)),
        ]
    )
    np.testing.assert_array_equal(R.ue8m0_encode(x), _ue8m0_via_bf16(x))


def test_ue8m0_decodings():
    c = np.array([0, 1, 127, 254, 255], np.uint8)
    dev, bit, host = (
        R.ue8m0_decode_device(c),
        R.ue8m0_decode_bits(c),
        R.ue8m0_decode_host(c),
    )
    np.testing.assert_array_equal(
        dev[:4], np.array([2.0**-127, 2.0**-126, 1, 2.0**127], F32)
    )
    assert np.isnan(dev[4])
    assert_bits(bit, [0, 1 << 23, 127 << 23, 254 << 23, 0x7F800000])
    np.testing.assert_array_equal(host[:4], dev[:4])
    assert np.isnan(host[4]) and host[0] != 0


# ---------------------------------------------------------------------------
# 3. Layouts
# ---------------------------------------------------------------------------

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
def test_layout_offset_examples(layout, table):
    off = R.sf_offsets(layout, 256, 9)
    for (r, k), o in table.items():
        assert off[r, k] == o, (r, k)


@pytest.mark.parametrize("M,C", [(1, 1), (5, 3), (130, 9), (256, 12), (0, 4), (3, 0)])
@pytest.mark.parametrize("layout", [0, 1, 2], ids=["128x4", "8x4", "linear"])
def test_layout_roundtrip_and_padding(layout, M, C):
    rng = np.random.default_rng(M * 100 + C)
    sf = rng.integers(1, 256, (M, C)).astype(np.uint8)
    buf = R.swizzle(sf, layout)
    mult = {0: 128, 1: 8, 2: 1}[layout]
    cmul = 1 if layout == 2 else 4
    assert (
        buf.size
        == R.sf_buffer_size(layout, M, C)
        == R.round_up(M, mult) * R.round_up(C, cmul)
    )
    np.testing.assert_array_equal(R.unswizzle(buf, layout, M, C), sf)
    assert int((buf != 0).sum()) == M * C  # padding is 0
    off = R.sf_offsets(layout, M, C).reshape(-1)
    assert np.unique(off).size == off.size


def test_layout_reshape_forms():
    M, C = 200, 9
    sf = np.random.default_rng(5).integers(1, 256, (M, C)).astype(np.uint8)
    p = np.zeros((256, 12), np.uint8)
    p[:M, :C] = sf
    ref = p.reshape(2, 4, 32, 3, 4).transpose(0, 3, 2, 1, 4).reshape(-1)
    np.testing.assert_array_equal(R.swizzle(sf, 0), ref)
    p8 = np.zeros((200, 12), np.uint8)
    p8[:, :C] = sf
    ref8 = p8.reshape(25, 8, 3, 4).transpose(0, 2, 1, 3).reshape(-1)
    np.testing.assert_array_equal(R.swizzle(sf, 1), ref8)


# ---------------------------------------------------------------------------
# 4.9 worked example
# ---------------------------------------------------------------------------

EX_VALUES = [
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
]
EX_S = F32(2688 / 6.5)
EX_PACKED = [0xB1, 0x74, 0x0E, 0x28, 0x92, 0x36, 0x0D, 0xE7]
EX_CODES = [1, 11, 4, 7, 14, 0, 8, 2, 2, 9, 6, 3, 13, 0, 7, 14]


def _ex_block():
    x = np.array(EX_VALUES, np.float16)
    np.testing.assert_array_equal(x.astype(F32), np.array(EX_VALUES, F32))  # fp16-exact
    return x[None]


def test_worked_example_steps():
    assert bits(EX_S) == 0x43CEC4EC
    x = _ex_block().astype(F32)
    a = R.block_amax(x)[0]
    assert a == 5.5
    t = R.dmul(a, R.RCP6)
    assert_bits(t, 0x3F6AAAAB)
    sf = R.dmul(EX_S, t)
    assert_bits(sf, 0x43BD89D9)
    assert R.e4m3_encode(sf) == 0x7C
    dec = R.rcp(EX_S)
    assert_bits(dec, 0x3B1E79E8)
    prod = R.dmul(F32(384), dec)
    assert_bits(prod, 0x3F6DB6DC)
    os = R.rcp(prod)
    assert_bits(os, 0x3F89D89D)
    np.testing.assert_array_equal(R.e2m1_encode(R.dmul(x[0], os)), EX_CODES)


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_worked_example_nvfp4_bytes(exact):
    x = _ex_block()
    q, sf = R.fp4_quantize(
        x, np.array([EX_S]), is_sf_swizzled_layout=False, exact=exact
    )
    np.testing.assert_array_equal(q, np.array([EX_PACKED], np.uint8))
    np.testing.assert_array_equal(sf, np.array([[0x7C]], np.uint8))
    q2, sf2 = R.fp4_quantize(x, np.array([EX_S]), exact=exact)
    assert sf2.shape == (128, 4) and sf2[0, 0] == 0x7C and int(sf2.sum()) == 0x7C
    np.testing.assert_array_equal(q2, q)
    q3, sf3 = R.nvfp4_quantize(x, np.array([EX_S]), sfLayout=1, exact=exact)
    assert sf3.shape == (8, 4) and sf3[0, 0] == 0x7C and int(sf3.sum()) == 0x7C
    np.testing.assert_array_equal(q3, q)


def test_worked_example_dequant():
    x = _ex_block()
    q, sf = R.fp4_quantize(x, np.array([EX_S]))
    g = f32([0x3B1E79E8])
    d = R.e2m1_and_ufp8sf_scale_to_float(q, sf, g)
    exp = [
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
    np.testing.assert_allclose(d[0], exp, atol=6e-5)
    assert np.signbit(d[0, 6]) and not np.signbit(d[0, 5])
    # e2m1 * (384 * g), grouping of SPEC 5.9.
    np.testing.assert_array_equal(
        d[0], R.hmul(R.e2m1_decode(EX_CODES), R.hmul(F32(384), g))
    )


def test_worked_example_mxfp4():
    x = np.concatenate([_ex_block(), np.zeros((1, 16), np.float16)], axis=1)
    q, sf = R.mxfp4_quantize(x, sfLayout=2)
    np.testing.assert_array_equal(
        q,
        np.array(
            [[0xA1, 0x74, 0x0E, 0x28, 0x92, 0x35, 0x0D, 0xE6] + [0] * 8], np.uint8
        ),
    )
    np.testing.assert_array_equal(sf, np.array([[0x7F]], np.uint8))
    d = R.mxfp4_dequantize(q, sf, sfLayout=2)
    np.testing.assert_array_equal(d[0, :16], R.e2m1_decode(R.unpack_fp4(q)[0, :16]))


# ---------------------------------------------------------------------------
# 4.2 consequences and other special cases
# ---------------------------------------------------------------------------


def _nvfp4_block(values, S, exact=False, dtype=np.float16):
    x = np.asarray(values, dtype)[None]
    q, sf = R.fp4_quantize(
        x, np.array([S], F32), is_sf_swizzled_layout=False, exact=exact
    )
    return R.unpack_fp4(q)[0], int(sf[0, 0])


def test_all_zero_block_and_signed_zero():
    codes, sf = _nvfp4_block([0.0, -0.0] * 8, 100.0)
    assert sf == 0x00
    np.testing.assert_array_equal(codes, [0x0, 0x8] * 8)


def test_bf16_subnormal_block_is_zero_block():
    vals = np.array([2.0**-130, -(2.0**-128)] * 8, F32).astype(BF16)
    assert np.all(np.abs(vals.astype(F32)) < 2.0**-126) and np.all(
        vals.astype(F32) != 0
    )
    codes, sf = _nvfp4_block(vals, 2.0**120, dtype=BF16)
    assert sf == 0x00
    np.testing.assert_array_equal(codes, [0x0, 0x8] * 8)


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_scale_underflow(exact):
    vals = [1e-4, -1e-4, 0.0, -0.0, 5e-5] + [0.0] * 11
    codes, sf = _nvfp4_block(vals, 1.0, exact=exact)
    assert sf == 0x00
    if exact:  # os = FLT_MAX: zeros stay zero, others saturate
        np.testing.assert_array_equal(codes, [0x7, 0xF, 0x0, 0x8, 0x7] + [0x0] * 11)
    else:  # os = +inf: 0 * inf = NaN -> 0x7
        np.testing.assert_array_equal(codes, [0x7, 0xF, 0x7, 0x7, 0x7] + [0x7] * 11)


def test_huge_global_scale():
    codes, sf = _nvfp4_block([1.0, -2.0, 0.0] + [0.5] * 13, 2.0**127)
    assert sf == 0x7E
    np.testing.assert_array_equal(codes, [0x7, 0xF, 0x7] + [0x7] * 13)


def test_zero_global_scale():
    codes, sf = _nvfp4_block([1.0, -2.0, 0.0] + [0.5] * 13, 0.0)
    assert sf == 0x00
    np.testing.assert_array_equal(codes, [0x7] * 16)
    codes, sf = _nvfp4_block([0.0, -0.0] * 8, 0.0)
    assert sf == 0x00
    np.testing.assert_array_equal(codes, [0x0, 0x8] * 8)


def test_inf_and_nan_elements():
    vals = [np.inf, -np.inf, 1.0, -1.0] + [0.0] * 12
    codes, sf = _nvfp4_block(vals, 1.0)
    assert sf == 0x7E
    os = R.rcp(R.dmul(F32(448), R.rcp(F32(1.0))))
    np.testing.assert_array_equal(
        codes[:4],
        [0x7, 0xF] + list(R.e2m1_encode(R.dmul(np.array([1.0, -1.0], F32), os))),
    )
    codes, _ = _nvfp4_block([np.nan, 1.0] + [0.0] * 14, 1.0)
    assert codes[0] == 0x7


def test_inverse_global_scale_is_rcp_then_recipe():
    x = np.random.default_rng(7).standard_normal((64, 64)).astype(np.float16)
    s_user = np.array([0.0123], F32)
    q1, sf1 = R.fp4_quantize(x, s_user, is_global_scale_inversed=True)
    q2, sf2 = R.fp4_quantize(x, R.rcp(s_user))
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(sf1, sf2)


def test_row_wise_global_scale():
    x = np.random.default_rng(8).standard_normal((5, 32)).astype(BF16)
    S = np.array([1.0, 10.0, 100.0, 1000.0, 0.5], F32)
    q, sf = R.fp4_quantize(x, S, is_sf_swizzled_layout=False)
    for r in range(5):
        qr, sfr = R.fp4_quantize(
            x[r : r + 1], S[r : r + 1], is_sf_swizzled_layout=False
        )
        np.testing.assert_array_equal(q[r], qr[0])
        np.testing.assert_array_equal(sf[r], sfr[0])


def test_mxfp4_inf_block():
    x = np.zeros((1, 32), np.float16)
    x[0, :4] = [np.inf, -np.inf, 1.0, -1.0]
    q, sf = R.mxfp4_quantize(x, sfLayout=2)
    assert sf[0, 0] == 254
    np.testing.assert_array_equal(R.unpack_fp4(q)[0, :5], [0x7, 0x7, 0x0, 0x8, 0x0])


def test_mxfp4_zero_block():
    x = np.zeros((1, 32), np.float16)
    x[0, 1::2] = -0.0
    q, sf = R.mxfp4_quantize(x, sfLayout=2)
    assert sf[0, 0] == 0
    np.testing.assert_array_equal(R.unpack_fp4(q)[0], [0x0, 0x8] * 16)


def test_mxfp8_inf_block_zero_block_nan():
    x = np.zeros((2, 64), BF16)
    x[0, :4] = [np.inf, -np.inf, 1.0, -1.0]
    x[1, 1] = -0.0
    x[1, 32:36] = [np.nan, 1.0, -448.0, 2.0**-140]
    q, sf = R.mxfp8_quantize(x, is_sf_swizzled_layout=False)
    assert q.dtype == np.uint8 and q.shape == (2, 64) and sf.shape == (4,)
    np.testing.assert_array_equal(sf, [254, 0, 0, R.ue8m0_encode(F32(448 / 448))[()]])
    np.testing.assert_array_equal(q[0, :5], [0x7E, 0x7E, 0x00, 0x80, 0x00])
    np.testing.assert_array_equal(q[1, :32], [0x00, 0x80] + [0x00] * 30)
    # block 3: amax 448 -> t = 448*RCP448 = 1 -> code 127, os = 1; NaN -> +448.
    np.testing.assert_array_equal(q[1, 32:36], [0x7E, 0x38, 0xFE, 0x00])


def test_mxfp8_alignment_padding():
    x = np.random.default_rng(9).standard_normal((3, 2, 64)).astype(np.float16)
    q, sf = R.mxfp8_quantize(x, alignment=128)
    assert q.shape == (3, 2, 128) and np.all(q[..., 64:] == 0)
    assert sf.shape == (128 * 4,)
    mat = R.unswizzle(sf, 0, 6, 4)
    assert np.all(mat[:, 2:] == 0) and np.all(mat[:, :2] != 0)
    q8, sf8 = R.mxfp8_quantize(x, sf_swizzle_layout=1)
    assert sf8.shape == (8 * 4,)


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["fp16", "bf16"])
def test_per_token_zero_row(dtype):
    x = np.random.default_rng(10).standard_normal((3, 48)).astype(dtype)
    x[1] = 0
    x[1, 5] = -0.0
    q, sf, p = R.nvfp4_quantize(x, 1 / 2688, sfLayout=2, per_token_activation=True)
    assert p.dtype == np.float32 and p.shape == (3,)
    assert p[1] == 0
    np.testing.assert_array_equal(sf[1], [0x7F] * 3)
    codes = R.unpack_fp4(q)[1]
    np.testing.assert_array_equal(codes, np.where(np.arange(48) == 5, 0x8, 0x0))
    assert np.all(sf[[0, 2]] < 0x7F)
    # Exact mode: G = FLT_MAX, p = div(1, FLT_MAX) flushes to +0, scale bytes 0x00.
    q, sf, p = R.nvfp4_quantize(
        x, 1 / 2688, sfLayout=2, per_token_activation=True, exact=True
    )
    assert p[1] == 0 and not np.signbit(p[1])
    np.testing.assert_array_equal(sf[1], [0x00] * 3)


def test_per_token_scale_and_roundtrip():
    x = np.random.default_rng(11).standard_normal((4, 64)).astype(BF16)
    s_inv = F32(1 / 2688)
    q, sf, p = R.nvfp4_quantize(x, s_inv, sfLayout=2, per_token_activation=True)
    ra = np.abs(x.astype(F32)).max(axis=1)
    np.testing.assert_array_equal(p, R.dmul(ra, s_inv))
    deq = (
        R.e2m1_decode(R.unpack_fp4(q))
        * np.repeat(R.e4m3_decode(sf), 16, 1)
        * p[:, None]
    )
    np.testing.assert_allclose(deq, x.astype(F32), atol=0.35 * float(ra.max()))
    # Selected rows only; unselected rows are zeros.
    q2, sf2, p2 = R.nvfp4_quantize(
        x,
        s_inv,
        sfLayout=2,
        per_token_activation=True,
        expanded_idx_to_permuted_idx=np.array([2, -1, 0, -1], np.int32),
    )
    np.testing.assert_array_equal(q2[[0, 2]], q[[0, 2]])
    assert (
        np.all(q2[[1, 3]] == 0) and np.all(sf2[[1, 3]] == 0) and np.all(p2[[1, 3]] == 0)
    )
    np.testing.assert_array_equal(p2[[0, 2]], p[[0, 2]])


# ---------------------------------------------------------------------------
# Recipes: round trips and consistency
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["fp16", "bf16"])
def test_nvfp4_roundtrip(dtype):
    x = np.random.default_rng(12).standard_normal((3, 7, 64)).astype(dtype)
    xf = x.astype(F32).reshape(21, 64)
    S = F32(2688) / F32(np.abs(xf).max())
    q, sf = R.fp4_quantize(x, np.array([S]))
    assert q.shape == (3, 7, 32) and sf.shape == (128, 4)
    d = R.e2m1_and_ufp8sf_scale_to_float(q.reshape(21, 32), sf, np.array([1 / S], F32))
    blk = np.abs(xf).reshape(21, 4, 16).max(-1)
    err = np.abs(d - xf).reshape(21, 4, 16).max(-1)
    assert np.all(err <= blk / 3 + 1e-6)


def test_mxfp4_mxfp8_roundtrip():
    x = np.random.default_rng(13).standard_normal((130, 96)).astype(BF16)
    q, sf = R.mxfp4_quantize(x)
    assert sf.shape == (256, 4)
    d = R.mxfp4_dequantize(q, sf)
    xf = x.astype(F32)
    blk = np.abs(xf).reshape(130, 3, 32).max(-1, keepdims=True)
    assert np.all(np.abs(d - xf).reshape(130, 3, 32) <= blk / 2)
    q8, sf8 = R.mxfp8_quantize(x)
    d8 = R.mxfp8_dequantize_host(q8, sf8)
    np.testing.assert_allclose(d8, xf, rtol=2**-3, atol=1e-6)


def test_kv_quantize_roundtrip():
    x = np.random.default_rng(14).standard_normal((9, 64)).astype(np.float16)
    g = np.array([np.abs(x.astype(F32)).max() / 2688], F32)
    q, sf = R.nvfp4_kv_quantize(x, g)
    assert q.shape == (9, 32) and sf.shape == (9, 4)
    d = R.nvfp4_kv_dequantize(q, sf, g, output_dtype=np.float16)
    assert d.dtype == np.float16
    ref = R.dmul(
        R.dmul(R.e2m1_decode(R.unpack_fp4(q)), np.repeat(R.e4m3_decode(sf), 16, 1)), g
    )
    np.testing.assert_array_equal(d, ref.astype(np.float16))
    np.testing.assert_allclose(
        d.astype(F32), x.astype(F32), atol=0.35 * float(np.abs(x).max())
    )


def test_fp8_input_path():
    x = np.random.default_rng(15).standard_normal((4, 64)).astype(E4M3)
    q, sf = R.fp4_quantize(x, np.array([1.0], F32), is_sf_swizzled_layout=False)
    # Scale ~= amax of the original FP8 values; dequant reconstructs 6*x/S (SPEC 4.6).
    d = R.e2m1_and_ufp8sf_scale_to_float(
        q, sf, np.array([1.0], F32), is_sf_swizzled_layout=False
    )
    xf = x.astype(F32)
    np.testing.assert_allclose(d, 6 * xf, atol=0.35 * 6 * float(np.abs(xf).max()))
    qm, sfm = R.fp4_quantize(x, None, 32, True, False)
    assert qm.shape == (4, 32) and sfm.shape == (4, 2)


FOS = [
    (mode, fast, u256)
    for mode in ("MAE", "MSE")
    for fast in (False, True)
    for u256 in (False, True)
]


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize(
    "opts", FOS, ids=[f"{m}-fm{int(f)}-256{int(u)}" for m, f, u in FOS]
)
@pytest.mark.parametrize("per_token", [False, True], ids=["global", "per_token"])
def test_4over6_picks_a_candidate(opts, exact, per_token):
    rng = np.random.default_rng(16)
    x = (rng.standard_normal((6, 64)) * rng.uniform(0.01, 10, (6, 1))).astype(BF16)
    x[2, :16] = 0
    x[2, 3] = -0.0
    xf = x.astype(F32)
    fos = dict(zip(("err_mode", "err_fast_math", "e4m3_use_256"), opts, strict=True))
    S = F32((256 if opts[2] else 448) * 6) / F32(np.abs(xf).max())
    if per_token:
        q, sf, p = R.nvfp4_quantize(
            x,
            1 / 2688,
            sfLayout=2,
            per_token_activation=True,
            exact=exact,
            four_over_six=fos,
        )
        # Encode scale G of the 4over6 per-token recipe (SPEC 4.4).
        ra = R.block_amax(xf)
        G = (
            R.rcp(R.dmul(ra, F32(1 / 2688)))
            if not exact
            else R.ddiv(R.ddiv(F32(1), F32(1 / 2688)), ra)
        )
    else:
        q, sf = R.nvfp4_quantize(
            x, np.array([S]), sfLayout=2, exact=exact, four_over_six=fos
        )
        G = np.full(6, S, F32)
    codes = R.unpack_fp4(q).reshape(6, 4, 16)
    a = R.block_amax(xf.reshape(6, 4, 16))
    if exact:
        sf6 = R.dmul(R.ddiv(a, F32(6)), G[:, None])
    else:
        sf6 = R.dmul(G[:, None], R.dmul(a, R.RCP6))
    c6, c4 = R.e4m3_encode(sf6), R.e4m3_encode(R.dmul(sf6, F32(1.5)))
    nz = a != 0
    assert np.all((sf == c6) | (sf == c4))
    assert np.all(sf[~nz] == 0) and np.all(codes[~nz] == 0)  # even the -0 element
    assert np.any(sf[nz] == c4[nz]) and np.any(sf[nz] == c6[nz])


def test_4over6_candidate_6_equals_plain_recipe():
    x = np.random.default_rng(17).standard_normal((32, 64)).astype(np.float16)
    S = np.array([2688 / 4.0], F32)
    qf, sff = R.fp4_quantize(x, S, is_sf_swizzled_layout=False, four_over_six=True)
    qp, sfp = R.fp4_quantize(x, S, is_sf_swizzled_layout=False)
    same = sff == sfp
    cf = R.unpack_fp4(qf).reshape(32, 4, 16)
    cp = R.unpack_fp4(qp).reshape(32, 4, 16)
    assert same.any() and (~same).any()
    np.testing.assert_array_equal(cf[same], cp[same])


def test_batched_equals_per_batch():
    x = np.random.default_rng(18).standard_normal((3, 5, 48)).astype(BF16)
    S = np.array([100.0], F32)
    q, sf = R.nvfp4_batched_quantize(x, S)
    assert q.shape == (3, 5, 24) and sf.shape == (3, 128 * 4)
    for b in range(3):
        qb, sfb = R.fp4_quantize(x[b], S)
        np.testing.assert_array_equal(q[b], qb)
        np.testing.assert_array_equal(sf[b], sfb.reshape(-1))


def test_leading_dims_fold_into_one_scale_matrix():
    x = np.random.default_rng(19).standard_normal((2, 3, 32)).astype(np.float16)
    S = np.array([50.0], F32)
    q, sf = R.fp4_quantize(x, S, is_sf_8x4_layout=True)
    assert q.shape == (2, 3, 16) and sf.shape == (8, 4)
    q2, sf2 = R.fp4_quantize(x.reshape(6, 32), S, is_sf_8x4_layout=True)
    np.testing.assert_array_equal(sf, sf2)
    np.testing.assert_array_equal(q.reshape(6, 16), q2)


def test_grouped_quantize():
    x = np.random.default_rng(20).standard_normal((3, 10, 48)).astype(np.float16)
    mask = np.array([10, 4, 0], np.int32)
    S = np.array([10.0, 20.0, 30.0], F32)
    q, sf = R.scaled_fp4_grouped_quantize(x, mask, S)
    assert (
        q.shape == (10, 24, 3) and sf.shape == (32, 4, 1, 4, 1, 3) and sf.dtype == E4M3
    )
    phys = sf.view(np.uint8).transpose(5, 2, 4, 0, 1, 3).reshape(3, -1)
    for grp in range(3):
        qr, sfr = R.fp4_quantize(x[grp], S[grp : grp + 1])
        n = mask[grp]
        np.testing.assert_array_equal(q[:n, :, grp], qr[:n])
        assert np.all(q[n:, :, grp] == 0)
        mat = R.unswizzle(phys[grp], 0, 10, 3)
        np.testing.assert_array_equal(mat[:n], R.unswizzle(sfr, 0, 10, 3)[:n])
        assert np.all(mat[n:] == 0) and int((phys[grp] != 0).sum()) == int(
            (mat != 0).sum()
        )


# ---------------------------------------------------------------------------
# 5. Data movement and host dequantizers
# ---------------------------------------------------------------------------


def test_shuffle_row_orders():
    x = np.arange(64)[:, None]
    out = R.shuffle_matrix_a(x, 128)[:, 0]
    b32 = [
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
    np.testing.assert_array_equal(out, b32 + [32 + r for r in b32])
    out16 = R.shuffle_matrix_a(np.arange(32)[:, None], 64)[:, 0]
    b16 = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]
    np.testing.assert_array_equal(out16, b16 + [16 + r for r in b16])
    with pytest.raises(ValueError):
        R.shuffle_matrix_a(np.zeros((48, 2)), 128)


def test_shuffle_matrix_sf_a_and_interleave():
    sf = np.random.default_rng(21).integers(0, 256, (128, 5)).astype(np.uint8)
    out = R.shuffle_matrix_sf_a(sf, 128)
    assert out.shape == (128 * 8,)
    np.testing.assert_array_equal(out, R.swizzle(R.shuffle_matrix_a(sf, 128), 0))
    x3 = np.random.default_rng(22).standard_normal((2, 3, 5)).astype(BF16)
    il = R.block_scale_interleave(x3)
    assert il.dtype == BF16 and il.shape == (2 * 128 * 8,)
    np.testing.assert_array_equal(
        il[1024:].view(np.uint16), R.swizzle(x3[1], 0).view(np.uint16)
    )
    np.testing.assert_array_equal(R.block_scale_interleave_reverse(il, 3, 5, E=2), x3)


def test_nvfp4_quantize_do_shuffle():
    x = np.random.default_rng(23).standard_normal((128, 64)).astype(np.float16)
    S = np.array([30.0], F32)
    q, sf = R.nvfp4_quantize(x, S, do_shuffle=True)
    ql, sfl = R.fp4_quantize(x, S, is_sf_swizzled_layout=False)
    assert sf.shape == (128, 4)
    np.testing.assert_array_equal(q, R.shuffle_matrix_a(ql, 128))
    np.testing.assert_array_equal(
        sf.reshape(-1), R.swizzle(R.shuffle_matrix_a(sfl, 128), 0)
    )


def test_host_dequantizers_special_scales():
    q = np.array([[0x82, 0x82]], np.uint8)  # codes 2 (1.0), 8 (-0), 2, 8
    # mxfp4_dequantize_host: code 8 -> +0, scale 0 -> 2^-127 kept, 255 -> NaN.
    d = R.mxfp4_dequantize_host(np.repeat(q, 8, 1), np.array([[0]], np.uint8))
    assert d[0, 0] == F32(2.0**-127) and d[0, 1] == 0 and not np.signbit(d[0, 1])
    d = R.mxfp4_dequantize_host(np.repeat(q, 8, 1), np.array([[255]], np.uint8))
    assert np.all(np.isnan(d))
    # e2m1_and_ufp8sf_scale_to_float UE8M0: bits(c << 23), global scale ignored.
    q16 = np.repeat(q, 8, 1)
    for c, v in ((0, 0.0), (255, np.inf), (100, 2.0**-27)):
        d = R.e2m1_and_ufp8sf_scale_to_float(
            q16, np.array([c], np.uint8), np.array([3.0], F32), 32, 0, False
        )
        assert d[0, 0] == v and np.signbit(d[0, 1])
    # E4M3 NaN byte -> NaN; grouping e2m1 * (s * g).
    d = R.e2m1_and_ufp8sf_scale_to_float(
        q16[:, :8], np.array([0x7F], np.uint8), None, 16, 1, False
    )
    assert np.isnan(d[0, 0])
    # mxfp8_dequantize_host: scale 0 -> 0, 255 -> inf.
    q8 = np.full((1, 64), 0x38, np.uint8)
    d = R.mxfp8_dequantize_host(
        q8, np.array([0, 255], np.uint8), is_sf_swizzled_layout=False
    )
    assert np.all(d[0, :32] == 0) and np.all(d[0, 32:] == np.inf)


def test_paged_kv_cache_v_interleave():
    rng = np.random.default_rng(24)
    for layout in ("HND", "NHD"):
        shape = (2, 3, 8, 64) if layout == "HND" else (2, 8, 3, 64)
        k = rng.standard_normal(shape).astype(BF16)
        v = rng.standard_normal(shape).astype(BF16)
        (kq, vq), (ksf, vsf), kinv, vinv = R.nvfp4_quantize_paged_kv_cache(k, v, layout)
        assert ksf.dtype == E4M3 and vsf.shape == shape[:-1] + (4,)
        gsf = F32(448.0 / float(np.abs(v.astype(np.float64)).max()))
        assert vinv == float(F32(1) / gsf)
        _, vsf_lin = R.fp4_quantize(
            v.reshape(-1, 64), np.array([gsf]), is_sf_swizzled_layout=False
        )
        lin = vsf_lin.reshape(shape[:-1] + (4,))
        if layout == "NHD":
            lin, out = (
                lin.transpose(0, 2, 1, 3),
                vsf.view(np.uint8).transpose(0, 2, 1, 3),
            )
        else:
            out = vsf.view(np.uint8)
        S = 4
        for t0 in (0, 4):
            for u in range(4):
                for s in range(
                    S
                ):  # out[t0 + s div (S/4), (s mod (S/4))*4 + u] = in[t0+u, s]
                    np.testing.assert_array_equal(
                        out[:, :, t0 + s // (S // 4), (s % (S // 4)) * 4 + u],
                        lin[:, :, t0 + u, s],
                    )
        # K scales are not interleaved; K codes are plain fp4_quantize output.
        kgsf = F32(448.0 / float(np.abs(k.astype(np.float64)).max()))
        kq_lin, ksf_lin = R.fp4_quantize(
            k.reshape(-1, 64), np.array([kgsf]), is_sf_swizzled_layout=False
        )
        assert kinv == float(F32(1) / kgsf)
        np.testing.assert_array_equal(
            ksf.view(np.uint8), ksf_lin.reshape(shape[:-1] + (4,))
        )
        np.testing.assert_array_equal(kq, kq_lin.reshape(shape[:-1] + (32,)))


def test_packbits_examples():
    np.testing.assert_array_equal(
        R.packbits(np.array([1, 0, 1, 1, 0, 0, 1, 1])), [0b10110011]
    )
    np.testing.assert_array_equal(
        R.packbits(np.array([1, 0, 1, 1, 0, 0, 1, 1]), "little"), [0b11001101]
    )
    x = np.random.default_rng(25).integers(0, 3, 1001)
    for order in ("big", "little"):
        np.testing.assert_array_equal(
            R.packbits(x, order), np.packbits(x != 0, bitorder=order)
        )
    assert R.packbits(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError):
        R.packbits(x, "middle")


def test_segment_packbits_example():
    x = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1])
    y, ind = R.segment_packbits(x, np.array([0, 4, 7, 11], np.int64))
    np.testing.assert_array_equal(y, [0b10110000, 0b00100000, 0b11010000])
    np.testing.assert_array_equal(ind, [0, 1, 2, 3])
    assert ind.dtype == np.int32
    rng = np.random.default_rng(26)
    x = rng.integers(0, 2, 300)
    indptr = np.array([0, 0, 9, 9, 17, 100, 300])
    for order in ("big", "little"):
        y, ind = R.segment_packbits(x, indptr, order)
        ref = [
            np.packbits(x[a:b], bitorder=order)
            for a, b in zip(indptr[:-1], indptr[1:], strict=True)
        ]
        np.testing.assert_array_equal(y, np.concatenate(ref))
        np.testing.assert_array_equal(np.diff(ind), [r.size for r in ref])


# ---------------------------------------------------------------------------
# Zero-size inputs and speed
# ---------------------------------------------------------------------------


def test_zero_size_inputs():
    q, sf = R.fp4_quantize(np.zeros((0, 32), np.float16), np.array([1.0], F32))
    assert q.shape == (0, 16) and sf.shape == (0, 4)
    q, sf = R.fp4_quantize(
        np.zeros((2, 0, 64), BF16), np.array([1.0], F32), is_sf_swizzled_layout=False
    )
    assert q.shape == (2, 0, 32) and sf.shape == (0, 4)
    q, sf = R.mxfp4_quantize(np.zeros((3, 0), np.float16))
    assert q.shape == (3, 0) and sf.shape == (128, 0)
    q, sf = R.mxfp8_quantize(np.zeros((0, 32), np.float16))
    assert q.shape == (0, 32) and sf.shape == (0,)
    q, sf, p = R.nvfp4_quantize(
        np.zeros((0, 16), np.float16), 1.0, per_token_activation=True
    )
    assert q.shape == (0, 8) and p.shape == (0,)
    assert R.block_scale_interleave(np.zeros((0, 3), np.uint8)).shape == (0,)
    y, ind = R.segment_packbits(np.zeros(0), np.array([0]))
    assert y.shape == (0,) and list(ind) == [0]


def test_million_elements_is_fast():
    import time

    x = np.random.default_rng(27).standard_normal((1024, 1024)).astype(BF16)
    t0 = time.perf_counter()
    R.fp4_quantize(x, np.array([100.0], F32))
    R.nvfp4_quantize(x, 1 / 2688, per_token_activation=True, four_over_six=True)
    R.mxfp8_quantize(x)
    assert time.perf_counter() - t0 < 30
