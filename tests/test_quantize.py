"""Quantizers, bitwise against the NumPy oracle: the FFI handler of each platform
(``backend="auto"``) and the pure-JAX twin (``backend="xla"``).

Covers ``fp4_quantize`` (NVFP4 / MXFP4, all layouts, fp16/bf16/e4m3 input, scalar and
row-wise global scales, the inverse flag, exact mode, >2-D input), ``nvfp4_quantize``,
``mxfp4_quantize``, ``nvfp4_batched_quantize`` and ``mxfp8_quantize``, plus the special
values of SPEC 4.2 / 4.5 / 4.7 / 8.11 and seeded random shapes.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import np_reference as R
import numpy as np
import pytest
from conftest import (
    BACKENDS,
    DTYPES,
    E4M3,
    assert_bytes_equal,
    assert_f32_bits_equal,
    cast,
    on,
    random_input,
    require_platform,
    run,
    seed_of,
    to_np,
    typical_scale,
    with_backends,
)

import jax_fp4 as F
from jax_fp4 import SfLayout

FORMATS = {"nvfp4": (16, False), "mxfp4": (32, True)}
LAYOUT_FLAGS = {  # name -> (is_sf_swizzled_layout, is_sf_8x4_layout, SfLayout)
    "128x4": (True, False, SfLayout.layout_128x4),
    "8x4": (True, True, SfLayout.layout_8x4),
    "linear": (False, False, SfLayout.layout_linear),
}
FP4_DTYPES = ("f16", "bf16", "e4m3")
MXFP8_DTYPES = ("f16", "bf16", "f32")

# (leading dims, number of blocks per row): M = 130 and 30 are neither multiples of 128
# nor of 8; 3 and 5 scale columns are not multiples of 4; the second shape is 4-D.
FP4_SHAPES = [((130,), 3), ((2, 3, 5), 5)]


def _shape_id(s):
    lead, nb = s
    return "x".join(map(str, lead)) + f"-C{nb}"


def fp4_oracle(x, gs, fmt, layout, *, inverse=False, exact=False):
    vec, ue8m0 = FORMATS[fmt]
    sw, is8x4, _ = LAYOUT_FLAGS[layout]
    return R.fp4_quantize(x, gs, vec, ue8m0, sw, is8x4, inverse, exact)


def fp4_jax(x, gs, fmt, layout, *, platform, backend, inverse=False, exact=False, jit=None):
    vec, ue8m0 = FORMATS[fmt]
    sw, is8x4, _ = LAYOUT_FLAGS[layout]
    return run(F.fp4_quantize, x, gs, vec, ue8m0, sw, is8x4, inverse,
               platform=platform, backend=backend, exact=exact, jit=jit)


def assert_fp4_equal(got, want, what=""):
    (q, sf), (rq, rsf) = got, want
    assert q.dtype == np.uint8 and sf.dtype == np.uint8, (q.dtype, sf.dtype)
    assert_bytes_equal(q, rq, f"{what} codes")
    assert_bytes_equal(sf, rsf, f"{what} scales")


# ---------------------------------------------------------------------------
# fp4_quantize: formats x dtypes x layouts x shapes
# ---------------------------------------------------------------------------


@with_backends("fmt, dtype, layout, shape",
               itertools.product(FORMATS, FP4_DTYPES, LAYOUT_FLAGS, FP4_SHAPES),
               twin=lambda fmt, dtype, layout, shape: shape == FP4_SHAPES[0]
               and (dtype == "bf16" or layout == "128x4"),
               ids=lambda v: _shape_id(v) if isinstance(v, tuple) else str(v))
def test_fp4_quantize_matches_oracle(fmt, dtype, layout, shape, backend, platform):
    lead, nblocks = shape
    vec = FORMATS[fmt][0]
    seed = seed_of(fmt, dtype, layout, lead)
    rng = np.random.default_rng(seed)
    x = random_input(rng, (*lead, nblocks * vec), DTYPES[dtype])
    gs = None if fmt == "mxfp4" else np.array([typical_scale(x)], np.float32)
    want = fp4_oracle(x, gs, fmt, layout)
    got = fp4_jax(x, gs, fmt, layout, platform=platform, backend=backend)
    M = math.prod(lead)
    assert got[0].shape == (*lead, nblocks * vec // 2)
    assert got[1].shape == R.sf_padded_shape(LAYOUT_FLAGS[layout][2], M, nblocks)
    assert_fp4_equal(got, want, f"{fmt} {dtype} {layout}")


SCALE_KINDS = ("float", "array1", "rows")
FLAG_SETS = {"plain": (False, False), "inverse": (True, False), "exact": (False, True),
             "inverse-exact": (True, True)}


def _scale_variant(x, kind, inverse, rng):
    """A global scale of the given kind; row-wise scales vary per row (SPEC 4.2.3)."""
    M = math.prod(x.shape[:-1])
    base = typical_scale(x)
    if kind == "rows":
        s = (base * 2.0 ** rng.uniform(-6, 6, M)).astype(np.float32)
    else:
        s = np.float32(base * 1.37)
    if inverse:
        s = (np.float32(1) / s).astype(np.float32)
    if kind == "float":
        return float(s), np.float32(s)
    if kind == "array1":
        arr = np.asarray(s, np.float32).reshape(1)
        return arr, arr
    return s, s


@with_backends("dtype, kind, flags", itertools.product(FP4_DTYPES, SCALE_KINDS, FLAG_SETS),
               twin=lambda dtype, kind, flags: (dtype == "bf16" and kind != "array1")
               or (kind == "rows" and flags == "inverse-exact"))
def test_nvfp4_global_scale_variants(dtype, kind, flags, backend, platform):
    """Scalar / [1] / row-wise scales, ``is_global_scale_inversed`` and ``exact``; the
    input is 3-D so that row-wise scales index the flattened rows."""
    inverse, exact = FLAG_SETS[flags]
    rng = np.random.default_rng(seed_of(dtype, kind, flags))
    x = random_input(rng, (3, 7, 64), DTYPES[dtype])
    gs_jax, gs_np = _scale_variant(x, kind, inverse, rng)
    want = fp4_oracle(x, gs_np, "nvfp4", "128x4", inverse=inverse, exact=exact)
    got = fp4_jax(x, gs_jax, "nvfp4", "128x4", platform=platform, backend=backend,
                  inverse=inverse, exact=exact)
    assert_fp4_equal(got, want, f"{dtype} {kind} {flags}")


# Blocks found by searching with the oracle where a plausible shortcut changes the bytes:
# (1) exact mode (SPEC 4.3) vs the fast recipe: element 0.22399902 of a block with max 5.5
#     under S = 0x41446DF0 encodes to 0 (fast) but 1 (exact);
# (2) the inverse flag (SPEC 4.2.1) must evaluate rcp(rcp(S_user)) genuinely: with
#     S_user = 0x3B549F4B, rcp(rcp(S_user)) is 1 ulp below S_user, and the elements
#     1.1679688, 2.3359375, 4.671875 encode to 3, 5, 7 (a cancelled double reciprocal gives
#     2, 4, 6).
MODE_CASES = {
    "fast": (0x41446DF0, [5.5, 0.22399902, -0.22399902], False, False, [7, 0, 8], 83),
    "exact": (0x41446DF0, [5.5, 0.22399902, -0.22399902], False, True, [7, 1, 9], 83),
    "inverse": (0x3B549F4B, [5.5, 1.1679688, 2.3359375, 4.671875], True, False,
                [7, 3, 5, 7], 121),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", MODE_CASES)
def test_mode_discriminating_blocks(case, backend, platform):
    s_bits, vals, inverse, exact, codes, scale = MODE_CASES[case]
    x = np.zeros((1, 16), np.float16)
    x[0, :len(vals)] = vals
    s = np.array([s_bits], np.uint32).view(np.float32)
    want = fp4_oracle(x, s, "nvfp4", "linear", inverse=inverse, exact=exact)
    assert R.unpack_fp4(want[0])[0, :len(vals)].tolist() == codes and want[1][0, 0] == scale
    got = fp4_jax(x, s, "nvfp4", "linear", platform=platform, backend=backend,
                  inverse=inverse, exact=exact)
    assert_fp4_equal(got, want, case)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FP4_DTYPES)
def test_mxfp4_global_scale(dtype, backend, platform):
    """MXFP4 ignores the global scale for 16-bit input and uses it for FP8 (SPEC 4.5/4.6)."""
    rng = np.random.default_rng(11)
    x = random_input(rng, (9, 96), DTYPES[dtype])
    gs = np.array([0.37], np.float32)
    want = fp4_oracle(x, gs, "mxfp4", "linear")
    got = fp4_jax(x, gs, "mxfp4", "linear", platform=platform, backend=backend)
    assert_fp4_equal(got, want, "mxfp4 with global scale")
    none = fp4_oracle(x, None, "mxfp4", "linear")
    if DTYPES[dtype] == E4M3:
        assert not np.array_equal(want[0], none[0])  # the scale matters for FP8 input
    else:
        assert_fp4_equal(got, none, "mxfp4 16-bit ignores global scale")


def test_worked_example_spec_4_9():
    """SPEC 4.9, through the public API on the CPU handler and the twin."""
    vals = [0.30004883, -1.2001953, 2.0, 5.5, -4.3984375, 0.0, -0.0, 1.0, 0.75,
            -0.26000977, 3.4003906, 1.5, -2.5996094, 0.099975586, 4.8984375, -3.5996094]
    x = np.array([vals], np.float16)
    S = np.array([0x43CEC4EC], np.uint32).view(np.float32)
    for backend in BACKENDS:
        q, sf = run(F.fp4_quantize, x, S, platform="cpu", backend=backend,
                    is_sf_swizzled_layout=False)
        assert q.tobytes().hex() == "b174 0e28 9236 0de7".replace(" ", ""), backend
        assert sf.tolist() == [[0x7C]]
        q, sf = run(F.fp4_quantize, x, S, platform="cpu", backend=backend,
                    is_sf_swizzled_layout=False, exact=True)
        assert q.tobytes().hex() == "b1740e2892360de7" and sf.tolist() == [[0x7C]]
        x32 = np.concatenate([x, np.zeros((1, 16), np.float16)], axis=1)
        q, sf = run(F.mxfp4_quantize, x32, platform="cpu", backend=backend,
                    sfLayout=SfLayout.layout_linear)
        assert q.tobytes().hex() == "a1740e2892350de6" + "00" * 8 and sf.tolist() == [[127]]


# ---------------------------------------------------------------------------
# Special values (SPEC 4.2 consequences, 4.5, 4.6, 8.11)
# ---------------------------------------------------------------------------

E2M1_TIES = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
INF, NAN = float("inf"), float("nan")


def _fill(vals, n):
    vals = list(vals)
    return (vals * (n // len(vals) + 1))[:n]


def _near(values, dtype, direction):
    """Each value moved by one unit in the last place of ``dtype`` (towards +/-inf)."""
    x = cast(values, dtype)
    bits = x.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize])
    mag_up = bits + bits.dtype.type(1)
    mag_dn = bits - bits.dtype.type(1)
    neg = np.signbit(x.astype(np.float32))
    towards_inf = np.where(neg, mag_dn, mag_up) if direction > 0 else np.where(neg, mag_up,
                                                                                mag_dn)
    return towards_inf.view(x.dtype).astype(np.float64)


def special_blocks(n, dtype):
    """Named blocks of ``n`` elements (values as float64, cast later) and whether they
    contain NaN."""
    ties = [6.0] + E2M1_TIES + [-v for v in E2M1_TIES] + [-6.0]
    blocks = {
        "zeros": [0.0] * n,
        "signed-zeros": _fill([0.0, -0.0], n),
        "neg-zeros": [-0.0] * n,
        "bf16-subnormals": _fill([2.0**-130, -(2.0**-133), 0.0, -(2.0**-127) * 1.5], n),
        "subnormals-with-normal": [1.0] + _fill([2.0**-130, -(2.0**-131), -1.5], n - 1),
        "e2m1-ties": _fill(ties, n),
        "e2m1-above-ties": [6.0] + _fill(list(_near(E2M1_TIES, dtype, +1))
                                         + list(-_near(E2M1_TIES, dtype, +1)), n - 1),
        "e2m1-below-ties": [6.0] + _fill(list(_near(E2M1_TIES, dtype, -1))
                                         + list(-_near(E2M1_TIES, dtype, -1)), n - 1),
        "underflow": _fill([1e-3, -5e-4, 0.0, -0.0, 2e-4], n),
        "max-448": _fill([448.0, -3.0, 1.0, -0.0], n),
        "max-2688": _fill([2688.0, -100.0, 7.0, 0.0], n),
        "max-2688x2^-8": _fill([2688.0 / 256, -1.0, 3.0], n),
        "max-448x2^-12": _fill([448.0 / 4096, -0.01, 0.03], n),
        "max-448x2^5": _fill([448.0 * 32, 9.0, -1000.0], n),
        # with S = 6 the scale is ~ the block max: E4M3 midpoints 17 (16|18), 1.0625
        # (1|1.125), 464 (448|saturation), 0.01171875 (= 1.5 * 2^-7, subnormal-grid midpoint)
        "max-17": _fill([17.0, -3.0, 0.5], n),
        "max-1.0625": _fill([-1.0625, 0.75, 0.25], n),
        "max-464": _fill([464.0, -200.0, 1.0], n),
        "max-0.01171875": _fill([0.01171875, -0.005, 0.0], n),
        "large": _fill([60000.0, -1.0, 0.5, -30000.0], n),
        "inf": _fill([INF, -INF, 1.0, -2.0, 0.0, -0.0, 1e-3], n),
        "neg-inf-only": _fill([-INF, 3.0, -0.25], n),
        "nan": _fill([NAN, 1.0, -1.0, 0.0, 4.0], n),
        "nan-odd": _fill([1.0, NAN, -2.0, NAN], n),
        "neg-nan": _fill([-NAN, -1.0, 2.0, -NAN, -0.0], n),
        "random": list(np.random.default_rng(5).standard_normal(n) * 3),
    }
    return blocks


def _special_tensor(n, dtype, row_factors=None):
    blocks = special_blocks(n, dtype)
    names = list(blocks)
    row = np.concatenate([np.asarray(blocks[k], np.float64) for k in names])
    rows = np.stack([row * (1.0 if f is None else f) for f in (row_factors or [None])])
    x = cast(rows, dtype)
    xf = x.astype(np.float32)
    nan_blocks = np.isnan(xf.reshape(xf.shape[0], len(names), n)).any(-1)
    return x, names, nan_blocks


# Encode scales, one per row (row-wise global scale): typical, exact 1 (os = 1 for the tie
# blocks), saturating, tiny (scale underflow), 0, huge (> 2^126: rcp flushes), inf.
SPECIAL_SCALES = np.array(
    [1.0, 2688.0 / 60000.0, 0.5, 6.0, 1e4, 2.0**-20, 1e-30, 0.0, 2.0**126, 2.0**127, 3e38,
     INF, 2.0**-126, 1.7e-38],
    np.float32)


@with_backends("dtype, flags", itertools.product(FP4_DTYPES, FLAG_SETS),
               twin=lambda dtype, flags: flags == "plain" or dtype == "bf16")
def test_nvfp4_special_values(dtype, flags, backend, platform):
    inverse, exact = FLAG_SETS[flags]
    x, _names, nan_blocks = _special_tensor(16, DTYPES[dtype], [None] * len(SPECIAL_SCALES))
    gs = SPECIAL_SCALES.copy()
    want = fp4_oracle(x, gs, "nvfp4", "linear", inverse=inverse, exact=exact)
    got = fp4_jax(x, gs, "nvfp4", "linear", platform=platform, backend=backend,
                  inverse=inverse, exact=exact)
    nan_blocks |= _fp8_nan_blocks(x, gs, inverse, 16)
    _check_special(got, want, x, nan_blocks, 16, f"nvfp4 {dtype} {flags}")


def _fp8_nan_blocks(x, gs, inverse, vec):
    """FP8 input (SPEC 4.6) is first rescaled by d = 6 * rcp(S); when d is inf (S = 0 or
    tiny), zero elements become 0 * inf = NaN, so the block maximum sees NaN although the
    input has none. Such blocks fall under the NaN rule of SPEC 4.1 (scale byte outside the
    contract); returns them as a [M, C] mask (all False for 16-bit input)."""
    M = x.shape[0]
    if x.dtype != E4M3:
        return np.zeros((M, x.shape[1] // vec), bool)
    S = np.broadcast_to(np.float32(1) if gs is None else np.asarray(gs, np.float32)
                        .reshape(-1), (M,)).astype(np.float32)
    if inverse:
        S = R.rcp(S)
    with np.errstate(all="ignore"):
        d = R.dmul(np.float32(6), R.rcp(S))
        h = R.dmul(x.astype(np.float32), d[:, None]).astype(np.float16)
    return np.isnan(h.astype(np.float32)).reshape(M, -1, vec).any(-1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FP4_DTYPES)
def test_mxfp4_special_values(dtype, backend, platform):
    factors = [1.0, 2.0**-60, 2.0**-100, 2.0**40, 2.0**100]
    x, _names, nan_blocks = _special_tensor(32, DTYPES[dtype], factors)
    gs = None if DTYPES[dtype] != E4M3 else np.array([2.0**-3], np.float32)
    want = fp4_oracle(x, gs, "mxfp4", "linear")
    got = fp4_jax(x, gs, "mxfp4", "linear", platform=platform, backend=backend)
    nan_blocks |= _fp8_nan_blocks(x, gs, False, 32)
    _check_special(got, want, x, nan_blocks, 32, f"mxfp4 {dtype}")


def _check_special(got, want, x, nan_blocks, vec, what):
    (q, sf), (rq, rsf) = got, want
    assert q.shape == rq.shape and sf.shape == rsf.shape
    codes, rcodes = R.unpack_fp4(q), R.unpack_fp4(rq)
    elem_in_nan_block = np.repeat(nan_blocks, vec, axis=1)
    keep = ~elem_in_nan_block
    assert_bytes_equal(np.where(keep, codes, 0), np.where(keep, rcodes, 0),
                       f"{what} codes outside NaN blocks")
    assert_bytes_equal(np.where(nan_blocks, 0, sf), np.where(nan_blocks, 0, rsf),
                       f"{what} scale bytes of non-NaN blocks")
    is_nan = np.isnan(x.astype(np.float32))
    assert is_nan.any() and (~nan_blocks).any()
    assert (codes[is_nan] == 7).all(), f"{what}: NaN elements must encode to 0x7"


def test_special_value_expectations_nvfp4():
    """The oracle's special-case bytes that the tests above rely on, spelled out (SPEC 4.2)
    and checked on the CPU handler too."""
    blocks = special_blocks(16, np.float16)
    x = cast(np.stack([blocks["signed-zeros"], blocks["underflow"], blocks["inf"],
                       blocks["e2m1-ties"]]), np.float16)
    S = np.float32(1.0)
    for q, sf in (fp4_oracle(x, S, "nvfp4", "linear"),
                  fp4_jax(x, S, "nvfp4", "linear", platform="cpu", backend="auto")):
        codes = R.unpack_fp4(q)
        assert sf[0, 0] == 0 and codes[0].tolist() == [0, 8] * 8  # all-zero block, -0 -> 8
        # scale underflow: byte 0, os = +inf: positive -> 7, negative -> 0xF, zeros -> 7
        assert sf[1, 0] == 0 and codes[1, :5].tolist() == [7, 0xF, 7, 7, 7]
        assert sf[2, 0] == 0x7E and codes[2, :2].tolist() == [7, 0xF]  # inf: scale 448
        # ties with os = 1: 6, 0.25->0, 0.75->2, 1.25->2, 1.75->4, 2.5->4, 3.5->6, 5->6
        assert codes[3, :8].tolist() == [7, 0, 2, 2, 4, 4, 6, 6]
        assert codes[3, 8:16].tolist() == [8, 10, 10, 12, 12, 14, 14, 15]
    # S = 0: every element of a non-zero block -> 0x7; zero blocks keep os = 0.
    for q, sf in (fp4_oracle(x, np.float32(0), "nvfp4", "linear"),
                  fp4_jax(x, np.float32(0), "nvfp4", "linear", platform="cpu",
                          backend="auto")):
        codes = R.unpack_fp4(q)
        assert codes[0].tolist() == [0, 8] * 8 and (codes[3] == 7).all()


# ---------------------------------------------------------------------------
# nvfp4_quantize, mxfp4_quantize, nvfp4_batched_quantize
# ---------------------------------------------------------------------------


@with_backends("dtype, layout", itertools.product(FP4_DTYPES, LAYOUT_FLAGS),
               twin=lambda dtype, layout: (layout == "128x4") != (dtype == "e4m3"))
def test_nvfp4_quantize(dtype, layout, backend, platform):
    rng = np.random.default_rng(21)
    x = random_input(rng, (37, 80), DTYPES[dtype])
    s = typical_scale(x)
    sf_layout = LAYOUT_FLAGS[layout][2]
    want = R.nvfp4_quantize(x, s, int(sf_layout))
    got = run(F.nvfp4_quantize, x, float(s), sf_layout, platform=platform, backend=backend)
    assert_fp4_equal(got, want, f"nvfp4_quantize {dtype} {layout}")
    got = run(F.nvfp4_quantize, x, np.array([s]), int(sf_layout), platform=platform,
              backend=backend, exact=True)
    assert_fp4_equal(got, R.nvfp4_quantize(x, s, int(sf_layout), exact=True), "exact")


@with_backends("dtype, layout", itertools.product(FP4_DTYPES, LAYOUT_FLAGS),
               twin=lambda dtype, layout: layout == "8x4" or dtype == "f16")
def test_mxfp4_quantize(dtype, layout, backend, platform):
    rng = np.random.default_rng(22)
    x = random_input(rng, (3, 11, 96), DTYPES[dtype])
    sf_layout = LAYOUT_FLAGS[layout][2]
    want = R.mxfp4_quantize(x, int(sf_layout))
    got = run(F.mxfp4_quantize, x, platform=platform, backend=backend, sfLayout=sf_layout)
    assert got[0].shape == (3, 11, 48)
    assert_fp4_equal(got, want, f"mxfp4_quantize {dtype} {layout}")


@with_backends("dtype, kind", itertools.product(FP4_DTYPES, ["scalar", "rows"]),
               twin=lambda dtype, kind: kind == "rows")
def test_nvfp4_batched_quantize(dtype, kind, backend, platform):
    rng = np.random.default_rng(23)
    B, M, K = 3, 130, 48
    x = random_input(rng, (B, M, K), DTYPES[dtype])
    s = typical_scale(x)
    gs = (np.array([s], np.float32) if kind == "scalar"
          else (s * 2.0 ** rng.uniform(-4, 4, M)).astype(np.float32))
    want = R.nvfp4_batched_quantize(x, gs)
    got = run(F.nvfp4_batched_quantize, x, gs, platform=platform, backend=backend)
    assert got[1].shape == (B, 256 * 4)
    assert_fp4_equal(got, want, f"batched {dtype} {kind}")
    # One 128x4 matrix per batch element = fp4_quantize of each element, flattened.
    for b in range(B):
        q, sf = R.fp4_quantize(x[b], gs, 16, False, True, False)
        assert_bytes_equal(got[0][b], q, f"batch {b} codes")
        assert_bytes_equal(got[1][b], sf.reshape(-1), f"batch {b} scales")
    got_exact = run(F.nvfp4_batched_quantize, x, gs, platform=platform, backend=backend,
                    exact=True)
    assert_fp4_equal(got_exact, R.nvfp4_batched_quantize(x, gs, exact=True), "batched exact")


@with_backends("dtype, layout, exact",
               itertools.product(["f16", "bf16"], LAYOUT_FLAGS, [False, True]),
               twin=lambda dtype, layout, exact: layout == "128x4",
               ids=lambda v: {False: "fast", True: "exact"}.get(v, v))
def test_nvfp4_quantize_per_token(dtype, layout, exact, backend, platform):
    """Per-token NVFP4 (SPEC 4.2.2 / 4.3): codes, scale bytes and per-token scales (float32
    bits); row 2 is all zeros (scale bytes 0x7F in fast mode)."""
    rng = np.random.default_rng(seed_of("per-token", dtype, layout, exact))
    x = random_input(rng, (37, 80), DTYPES[dtype])
    x[2] = 0
    s_inv = np.float32(1 / 2688)
    sf_layout = LAYOUT_FLAGS[layout][2]
    want = R.nvfp4_quantize(x, s_inv, int(sf_layout), per_token_activation=True, exact=exact)
    got = run(F.nvfp4_quantize, x, np.array([s_inv]), sf_layout, platform=platform,
              backend=backend, per_token_activation=True, exact=exact)
    assert_fp4_equal(got[:2], want[:2], f"per-token {dtype} {layout}")
    assert_f32_bits_equal(got[2], want[2], "per-token scale")
    if not exact:
        assert (R.unswizzle(got[1], int(sf_layout), 37, 5)[2] == 0x7F).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nvfp4_quantize_per_token_row_selection(backend, platform):
    rng = np.random.default_rng(31)
    x = random_input(rng, (20, 64), DTYPES["bf16"])
    idx = np.array([3, -1, 7, 0, -1, 19, 3] + [-1] * 13 + [5, 6], np.int32)  # [> M] entries
    want = R.nvfp4_quantize(x, np.float32(1 / 2688), 2, per_token_activation=True,
                            expanded_idx_to_permuted_idx=idx)
    got = run(F.nvfp4_quantize, x, 1 / 2688, SfLayout.layout_linear, platform=platform,
              backend=backend, per_token_activation=True, expanded_idx_to_permuted_idx=idx)
    assert_fp4_equal(got[:2], want[:2], "row selection")
    assert_f32_bits_equal(got[2], want[2], "per-token scale")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_token", [False, True], ids=["global", "per-token"])
def test_nvfp4_quantize_do_shuffle(per_token, backend, platform):
    rng = np.random.default_rng(32)
    x = random_input(rng, (256, 128), DTYPES["f16"])
    s = np.float32(1 / 2688) if per_token else typical_scale(x)
    want = R.nvfp4_quantize(x, s, 0, do_shuffle=True, per_token_activation=per_token)
    got = run(F.nvfp4_quantize, x, np.array([s]), platform=platform, backend=backend,
              do_shuffle=True, per_token_activation=per_token)
    assert got[1].shape == (256, 8)
    assert_fp4_equal(got[:2], want[:2], "do_shuffle")
    if per_token:
        assert_f32_bits_equal(got[2], want[2], "per-token scale")


# ---------------------------------------------------------------------------
# mxfp8_quantize
# ---------------------------------------------------------------------------

MXFP8_LAYOUTS = {  # name -> kwargs
    "128x4": {"sf_swizzle_layout": SfLayout.layout_128x4},
    "8x4": {"sf_swizzle_layout": SfLayout.layout_8x4},
    "linear": {"sf_swizzle_layout": SfLayout.layout_linear},
}


def mxfp8_oracle(x, layout, alignment):
    return R.mxfp8_quantize(x, alignment=alignment,
                            sf_swizzle_layout=int(MXFP8_LAYOUTS[layout]["sf_swizzle_layout"]))


def assert_mxfp8_equal(got, want, what=""):
    (q, sf), (rq, rsf) = got, want
    assert q.dtype == E4M3, q.dtype
    assert sf.dtype == np.uint8 and sf.ndim == 1, (sf.dtype, sf.shape)
    assert_bytes_equal(q, rq, f"{what} codes")
    assert_bytes_equal(sf, rsf, f"{what} scales")


@with_backends("dtype, layout, alignment",
               itertools.product(MXFP8_DTYPES, MXFP8_LAYOUTS, [32, 64, 128]),
               twin=lambda dtype, layout, alignment: (dtype == "bf16" and alignment == 64)
               or (layout == "128x4" and alignment == 128))
def test_mxfp8_quantize(dtype, layout, alignment, backend, platform):
    rng = np.random.default_rng(seed_of(dtype, layout, alignment))
    x = random_input(rng, (2, 67, 96), DTYPES[dtype], spread=6.0)
    want = mxfp8_oracle(x, layout, alignment)
    got = run(F.mxfp8_quantize, x, alignment=alignment, platform=platform, backend=backend,
              **MXFP8_LAYOUTS[layout])
    kp = -(-96 // alignment) * alignment
    assert got[0].shape == (2, 67, kp)
    assert_mxfp8_equal(got, want, f"mxfp8 {dtype} {layout} a{alignment}")
    if kp > 96:
        assert (got[0].view(np.uint8)[..., 96:] == 0).all()


@pytest.mark.parametrize("swizzled", [True, False])
def test_mxfp8_is_sf_swizzled_layout_flag(swizzled, platform):
    rng = np.random.default_rng(24)
    x = random_input(rng, (5, 64), DTYPES["bf16"])
    want = R.mxfp8_quantize(x, is_sf_swizzled_layout=swizzled)
    got = run(F.mxfp8_quantize, x, swizzled, platform=platform, backend="auto")
    assert_mxfp8_equal(got, want, f"swizzled={swizzled}")
    # sf_swizzle_layout overrides the boolean
    got = run(F.mxfp8_quantize, x, not swizzled, platform=platform, backend="auto",
              sf_swizzle_layout=SfLayout.layout_128x4 if swizzled else SfLayout.layout_linear)
    assert_mxfp8_equal(got, want, "override")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", MXFP8_DTYPES)
def test_mxfp8_special_values(dtype, backend, platform):
    e4m3_ties = [1.0625, -17.0, 1.5 * 2.0**-9, 0.5 * 2.0**-9, 464.0, 240.0 + 8.0, -0.0]
    extra = {
        "e4m3-ties": [448.0] + _fill(e4m3_ties, 31),
        "f32-subnormals": _fill([1e-40, -1e-41, 0.0], 32),
        "tiny-normal": _fill([1e-37, -3e-38, 0.0], 32),
        "max-448x2^-126": _fill([448.0 * 2.0**-126, 1e-37], 32),
        "max-449": _fill([449.0, -1.0, 0.001], 32),
    }
    blocks = {**special_blocks(32, DTYPES[dtype]), **extra}
    names = list(blocks)
    row = np.concatenate([np.asarray(blocks[k], np.float64) for k in names])
    factors = [1.0, 2.0**-10, 2.0**10, 2.0**-100, 2.0**100, 2.0**-130]
    x = cast(np.stack([row * f for f in factors]), DTYPES[dtype])
    xf = x.astype(np.float32)
    nan_blocks = np.isnan(xf.reshape(len(factors), len(names), 32)).any(-1)
    want = R.mxfp8_quantize(x, is_sf_swizzled_layout=False)
    got = run(F.mxfp8_quantize, x, False, platform=platform, backend=backend)
    q, sf = got[0].view(np.uint8), got[1].reshape(nan_blocks.shape)
    rq, rsf = want[0], want[1].reshape(nan_blocks.shape)
    keep = ~np.repeat(nan_blocks, 32, axis=1)
    assert_bytes_equal(np.where(keep, q, 0), np.where(keep, rq, 0), "codes outside NaN blocks")
    assert_bytes_equal(np.where(nan_blocks, 0, sf), np.where(nan_blocks, 0, rsf),
                       "scales of non-NaN blocks")
    assert (q[np.isnan(xf)] == 0x7E).all(), "NaN elements must encode to 0x7E (+448)"
    # SPEC 4.7: a block with inf: scale 254, finite -> +-0, +-inf -> 0x7E.
    j = names.index("inf")
    if np.isinf(xf[0, j * 32]):
        assert sf[0, j] == 254
        blk = q[0, j * 32:(j + 1) * 32]
        assert (blk[np.isinf(xf[0, j * 32:(j + 1) * 32])] == 0x7E).all()
        assert set(blk[np.isfinite(xf[0, j * 32:(j + 1) * 32])].tolist()) <= {0, 0x80}
    j = names.index("zeros")
    assert sf[0, j] == 0 and (q[0, j * 32:(j + 1) * 32] == 0).all()


# ---------------------------------------------------------------------------
# Seeded random shapes (property style)
# ---------------------------------------------------------------------------


def _random_case(rng):
    fmt = str(rng.choice(list(FORMATS)))
    vec = FORMATS[fmt][0]
    dtype = str(rng.choice(FP4_DTYPES))
    layout = str(rng.choice(list(LAYOUT_FLAGS)))
    ndim = int(rng.choice([1, 1, 2, 3]))
    M = int(rng.choice([1, int(rng.integers(1, 300))]))
    lead = [M] + [int(rng.integers(1, 4)) for _ in range(ndim - 1)]
    K = vec * int(rng.choice([1, int(rng.integers(1, 10))]))
    x = random_input(rng, (*lead, K), DTYPES[dtype], spread=float(rng.uniform(0, 6)))
    Mflat = math.prod(lead)
    inverse = bool(rng.random() < 0.3) and fmt == "nvfp4"
    exact = bool(rng.random() < 0.3) and fmt == "nvfp4"
    if fmt == "mxfp4" and DTYPES[dtype] != E4M3:
        gs = None
    elif rng.random() < 0.5:
        gs = np.array([typical_scale(x) * rng.uniform(0.1, 10)], np.float32)
    else:
        gs = (typical_scale(x) * 2.0 ** rng.uniform(-8, 8, Mflat)).astype(np.float32)
    if inverse:
        gs = (np.float32(1) / gs).astype(np.float32)
    return {"x": x, "gs": gs, "fmt": fmt, "layout": layout, "inverse": inverse, "exact": exact}


def _run_random_cases(seed, n, backends, platform):
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = _random_case(rng)
        want = fp4_oracle(c["x"], c["gs"], c["fmt"], c["layout"], inverse=c["inverse"],
                          exact=c["exact"])
        for backend in backends:
            got = fp4_jax(c["x"], c["gs"], c["fmt"], c["layout"], platform=platform,
                          backend=backend, inverse=c["inverse"], exact=c["exact"])
            desc = (f"case {i}: {c['fmt']} {c['x'].dtype} shape {c['x'].shape} {c['layout']} "
                    f"inverse={c['inverse']} exact={c['exact']} backend={backend}")
            assert_fp4_equal(got, want, desc)


def test_random_shapes_handler(platform):
    """40 seeded random problems (M = 1 and K = block included) on the FFI handler."""
    _run_random_cases(1234, 40, ["auto"], platform)


def test_random_shapes_twin(platform):
    _run_random_cases(4321, 5, ["xla"], platform)


def test_random_mxfp8_shapes(platform):
    rng = np.random.default_rng(99)
    for i in range(15):
        M = int(rng.choice([1, int(rng.integers(1, 300))]))
        K = 32 * int(rng.choice([1, int(rng.integers(1, 9))]))
        dtype = DTYPES[str(rng.choice(MXFP8_DTYPES))]
        layout = str(rng.choice(list(MXFP8_LAYOUTS)))
        alignment = int(rng.choice([32, 64, 128, 96]))
        x = random_input(rng, (M, K), dtype, spread=float(rng.uniform(0, 8)))
        want = mxfp8_oracle(x, layout, alignment)
        got = run(F.mxfp8_quantize, x, alignment=alignment, platform=platform,
                  backend="auto", **MXFP8_LAYOUTS[layout])
        assert_mxfp8_equal(got, want, f"case {i}: {dtype} ({M}, {K}) {layout} a{alignment}")


@pytest.mark.slow
def test_random_shapes_large(platform):
    """Larger seeded problems through both backends (still CI-sized)."""
    rng = np.random.default_rng(77)
    for i in range(3):
        fmt = ("nvfp4", "mxfp4", "nvfp4")[i]
        vec = FORMATS[fmt][0]
        dtype = ("bf16", "f16", "e4m3")[i]
        x = random_input(rng, (1000 + 37 * i, 40 * vec), DTYPES[dtype])
        gs = None if fmt == "mxfp4" else typical_scale(x)
        for j, layout in enumerate(LAYOUT_FLAGS):
            want = fp4_oracle(x, gs, fmt, layout)
            for backend in BACKENDS[: 2 if i == j else 1]:  # the twin: one layout per case
                got = fp4_jax(x, gs, fmt, layout, platform=platform, backend=backend)
                assert_fp4_equal(got, want, f"large {fmt} {dtype} {layout} {backend}")
    x = random_input(rng, (3, 333, 1024), DTYPES["bf16"])
    for backend in BACKENDS:
        got = run(F.mxfp8_quantize, x, alignment=128, platform=platform, backend=backend)
        assert_mxfp8_equal(got, R.mxfp8_quantize(x, alignment=128), f"mxfp8 large {backend}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_transposed_input_under_jit(backend, platform):
    """JAX has no strides: a transposed input is quantized along its (new) last axis."""
    rng = np.random.default_rng(41)
    x = random_input(rng, (64, 24), DTYPES["bf16"])  # quantize x.T: [24, 64]
    s = np.float32(typical_scale(x))
    want = fp4_oracle(np.ascontiguousarray(x.T), s, "nvfp4", "8x4")
    f = jax.jit(lambda a, g: F.fp4_quantize(a.T, g, is_sf_8x4_layout=True, backend=backend))
    got = to_np(f(*on(platform, x, np.array([s]))))
    assert_fp4_equal(got, want, "x.T")


@pytest.mark.parametrize("backend", BACKENDS)
def test_unit_batch_dims(backend, platform):
    rng = np.random.default_rng(42)
    x = random_input(rng, (1, 7, 1, 32), DTYPES["f16"])
    for fmt, gs in (("nvfp4", np.float32(typical_scale(x))), ("mxfp4", None)):
        want = fp4_oracle(x, gs, fmt, "128x4")
        got = fp4_jax(x, gs, fmt, "128x4", platform=platform, backend=backend)
        assert got[0].shape == (1, 7, 1, 16)
        assert_fp4_equal(got, want, f"{fmt} unit batch dims")


def test_output_device(platform):
    """The handler runs where the input lives (the result is committed there)."""
    x = on(platform, jnp.ones((4, 32), jnp.bfloat16))
    q, sf = F.fp4_quantize(x, jnp.float32(1.0))
    assert {d.platform for d in q.devices()} == {jax.devices(platform)[0].platform}
    assert {d.platform for d in sf.devices()} == {jax.devices(platform)[0].platform}


# ---------------------------------------------------------------------------
# Scale padding over stale memory (SPEC 3.4: padding bytes are 0)
# ---------------------------------------------------------------------------

# Freshly allocated device memory is often zero, which would hide a padding byte the kernel
# never writes. Here each output is aliased to a donated buffer of 0xFF bytes, so every byte
# the handler leaves alone shows. (leading dims, K, format, layout): M = 1 pads 127 rows of a
# 128x4 tile, M = 37 and 130 pad part of one, and batches repeat it per entry.
STALE_CASES = [
    ((1,), 256, "nvfp4", "128x4"), ((1,), 16384, "nvfp4", "128x4"),
    ((37,), 96, "nvfp4", "8x4"), ((3, 130), 64, "nvfp4", "128x4"),
    ((1,), 4096, "mxfp4", "128x4"), ((2, 5), 96, "mxfp4", "8x4"),
    ((1,), 4096, "mxfp8", "128x4"), ((3, 37), 96, "mxfp8", "8x4"),
    ((2, 130), 64, "mxfp8", "linear"),
]


@pytest.mark.parametrize("lead, K, fmt, layout", STALE_CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_every_output_byte_written_over_stale_memory(lead, K, fmt, layout, platform):
    rng = np.random.default_rng(seed_of("stale", lead, K, fmt, layout))
    x = random_input(rng, (*lead, K), DTYPES["bf16"])
    if fmt == "mxfp8":
        quantize = lambda a: F.mxfp8_quantize(a, **MXFP8_LAYOUTS[layout])
        want = mxfp8_oracle(x, layout, 32)
    else:
        gs = typical_scale(x) if fmt == "nvfp4" else None
        quantize = lambda a: F.fp4_quantize(a, gs, *FORMATS[fmt], *LAYOUT_FLAGS[layout][:2])
        want = fp4_oracle(x, gs, fmt, layout)
    shapes = jax.eval_shape(quantize, x)
    # keep_unused: otherwise jit drops the unused buffers and nothing aliases them.
    fn = jax.jit(lambda a, *stale: quantize(a), donate_argnums=(1, 2), keep_unused=True)
    # Made by a device computation: a buffer placed from NumPy may be shared with the host
    # array, and such a buffer is copied instead of donated.
    dev = jax.devices(platform)[0]
    stale = [jax.device_put(jax.lax.bitcast_convert_type(jnp.full(s.shape, 0xFF, jnp.uint8),
                                                         s.dtype), dev) for s in shapes]
    stale_pointers = [a.unsafe_buffer_pointer() for a in stale]
    out = fn(on(platform, x), *stale)
    assert [o.unsafe_buffer_pointer() for o in out] == stale_pointers, "outputs not aliased"
    got = to_np(out)
    what = f"{fmt} {lead}x{K} {layout}"
    if fmt == "mxfp8":
        assert_mxfp8_equal(got, want, what)
    else:
        assert_fp4_equal(got, want, what)


# ---------------------------------------------------------------------------
# CUDA kernel paths by problem size
# ---------------------------------------------------------------------------

# The CUDA quantizers pick a kernel by size: a scale block split over 2-8 lanes for decode
# shapes (up to 64 lanes per SM), one block per thread under a full wave, several blocks per
# thread above it. The small shapes of the other tests take the first; these the other two,
# each checked byte for byte against the CPU handler. (op, M, K, input dtype, layout)
SIZED_CASES = {
    "nvfp4-bf16-one-per-thread": ("nvfp4", 300, 4096, "bf16", "128x4"),
    "nvfp4-f16-multi-trip": ("nvfp4", 1100, 8192, "f16", "8x4"),
    "nvfp4-exact-bf16-multi-trip": ("nvfp4-exact", 1030, 8192, "bf16", "linear"),
    "nvfp4-e4m3-multi-trip": ("nvfp4", 1030, 8192, "e4m3", "128x4"),
    "mxfp4-bf16-multi-trip": ("mxfp4", 1100, 8192, "bf16", "128x4"),
    "mxfp8-bf16-multi-trip": ("mxfp8", 1030, 8192, "bf16", "128x4"),
    "mxfp8-f32-one-per-thread": ("mxfp8", 200, 4096, "f32", "8x4"),
}


@pytest.mark.cuda
@pytest.mark.parametrize("case", SIZED_CASES)
def test_sized_quantize_on_gpu_matches_cpu(case, gpu="cuda"):
    require_platform(gpu)
    op, M, K, dtype, layout = SIZED_CASES[case]
    rng = np.random.default_rng(seed_of("sized-quantize", case))
    x = random_input(rng, (M, K), DTYPES[dtype], spread=2.0)
    sw, is8x4, sl = LAYOUT_FLAGS[layout]
    if op == "mxfp8":
        fn = jax.jit(lambda a: F.mxfp8_quantize(a, sf_swizzle_layout=sl))
        args = (x,)
    elif op == "mxfp4":
        fn = jax.jit(lambda a: F.mxfp4_quantize(a, sfLayout=sl))
        args = (x,)
    else:
        exact = op == "nvfp4-exact"
        fn = jax.jit(lambda a, s: F.fp4_quantize(a, s, 16, False, sw, is8x4, exact=exact))
        args = (x, np.float32(typical_scale(x)))
    got = fn(*[on(gpu, a) for a in args])
    want = fn(*[on("cpu", a) for a in args])
    for g, w, what in zip(got, want, ("codes", "scales")):
        assert_bytes_equal(g, w, f"{case} {what}")
