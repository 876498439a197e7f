"""Dequantizers: float32 bit patterns against the NumPy oracle (NaN positions equal, NaN
payloads free), on random codes and random scale bytes, for the FFI handler of each
platform and the pure-JAX twin; plus quantize -> dequantize round trips."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import np_reference as R
import numpy as np
import pytest
from conftest import (
    BACKENDS,
    DTYPES,
    E4M3,
    assert_f32_bits_equal,
    on,
    random_input,
    require_platform,
    run,
    seed_of,
    typical_scale,
    with_backends,
)

import jax_fp4 as F
from jax_fp4 import SfLayout

LAYOUTS = {  # name -> (is_sf_swizzled_layout, is_sf_8x4_layout, SfLayout)
    "128x4": (True, False, SfLayout.layout_128x4),
    "8x4": (True, True, SfLayout.layout_8x4),
    "linear": (False, False, SfLayout.layout_linear),
}


def random_scale_buffer(rng, layout: str, M: int, C: int, *, two_d: bool) -> np.ndarray:
    """Random bytes in every position of a scale buffer (padding included): 2-D in the shape
    the quantizers return, or flat."""
    shape = R.sf_padded_shape(int(LAYOUTS[layout][2]), M, C)
    buf = rng.integers(0, 256, shape, dtype=np.uint8)
    return buf if two_d else buf.reshape(-1)


# (ufp8_type, sf_vec_size, kind of global scale)
E2M1_CASES = {
    "e4m3-16-none": (1, 16, "none"),
    "e4m3-16-float": (1, 16, "float"),
    "e4m3-16-subnormal": (1, 16, "subnormal"),
    "e4m3-32-array": (1, 32, "array"),
    "ue8m0-32-none": (0, 32, "none"),
    "ue8m0-16-ignored": (0, 16, "ignored"),
}


def _global_scale(kind):
    """(value passed to jax_fp4, value passed to the oracle)."""
    if kind == "none":
        return None, None
    if kind == "float":
        return 0.0123, np.float32(0.0123)
    if kind == "subnormal":  # s * g and the final products straddle the subnormal range
        g = np.array([3.0e-38], np.float32)
        return g, g
    if kind == "array":
        g = np.array([1.0 / 2688.0], np.float32)
        return g, g
    if kind == "ignored":  # UE8M0: the C++ path ignores the global scale (SPEC 5.9)
        return np.array([5.0], np.float32), None
    raise AssertionError(kind)


@with_backends("case, layout", itertools.product(E2M1_CASES, LAYOUTS),
               twin=lambda case, layout: layout == "128x4" or case == "e4m3-16-subnormal")
def test_e2m1_and_ufp8sf_scale_to_float(case, layout, backend, platform):
    ufp8_type, vec, kind = E2M1_CASES[case]
    rng = np.random.default_rng(seed_of(case, layout))
    M, C = 130, 5
    codes = rng.integers(0, 256, (M, C * vec // 2), dtype=np.uint8)
    sf = random_scale_buffer(rng, layout, M, C, two_d=layout != "linear")
    # Scales (0, 0) and (0, 1) sit at offsets 0 and 1 in every layout: make them NaN / inf
    # (E4M3 0x7F / 0xFF, UE8M0 255) and 0, with zero codes among their elements.
    sf.reshape(-1)[:2] = [0x7F, 0xFF] if ufp8_type == 1 else [255, 0]
    codes[0, 0], codes[0, vec // 2] = 0x80, 0x08
    g_jax, g_np = _global_scale(kind)
    sw, is8x4, _ = LAYOUTS[layout]
    want = R.e2m1_and_ufp8sf_scale_to_float(codes, sf, g_np, vec, ufp8_type, sw, is8x4)
    got = run(F.e2m1_and_ufp8sf_scale_to_float, codes, sf, g_jax, vec, ufp8_type, sw, is8x4,
              platform=platform, backend=backend)
    assert got.shape == (M, C * vec)
    assert np.isnan(want).any()  # E4M3 0x7F/0xFF, or UE8M0 255 (inf) times 0
    if kind == "subnormal":
        sub = (want != 0) & (np.abs(want) < 2.0**-126)
        assert sub.any(), "the case must produce subnormal results"
    assert_f32_bits_equal(got, want, case)


@pytest.mark.parametrize("case", ["e4m3-16-float", "ue8m0-32-none"])
def test_e2m1_dequantize_many_blocks(case, platform):
    """Enough blocks per thread for the CPU handler's per-entry table of all 256 x 16
    (scale byte, code) outputs; every scale byte and code occurs, a batch of 3 under vmap
    rebuilds the table per entry (each entry with its own global scale)."""
    ufp8_type, vec, kind = E2M1_CASES[case]
    rng = np.random.default_rng(seed_of("many-blocks", case))
    B, M, C = 3, 300, 40
    codes = rng.integers(0, 256, (B, M, C * vec // 2), dtype=np.uint8)
    sf = np.stack([random_scale_buffer(rng, "128x4", M, C, two_d=False) for _ in range(B)])
    g = np.array([0.0123, 3.0e-38, 7.5], np.float32) if kind == "float" else None
    fn = lambda c, s, g: F.e2m1_and_ufp8sf_scale_to_float(c, s, g, vec, ufp8_type, True)
    got = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0 if g is not None else None)))(
        *on(platform, codes, sf), None if g is None else on(platform, g))
    for b in range(B):
        want = R.e2m1_and_ufp8sf_scale_to_float(codes[b], sf[b], None if g is None else g[b],
                                                vec, ufp8_type, True, False)
        assert_f32_bits_equal(got[b], want, f"{case} batch entry {b}")


def test_e2m1_dequantize_known_values(platform):
    """Hand-checked values (SPEC 5.9): E4M3 scale 1.5 (0x3C) * g = 2, code 0x7 (6) -> 18;
    code 8 -> -0.0; UE8M0 scale 127 -> 1.0, 0 -> +0.0, 255 -> +inf (NaN for a zero code)."""
    codes = np.array([[0x87] + [0] * 7], np.uint8)  # element 0: code 7, element 1: code 8
    sf = np.array([[0x3C]], np.uint8)
    for backend in BACKENDS:
        out = run(F.e2m1_and_ufp8sf_scale_to_float, codes, sf, 2.0, 16, 1, False,
                  platform=platform, backend=backend)
        assert out[0, 0] == 18.0 and np.signbit(out[0, 1]) and out[0, 1] == 0
        for byte, first, second in ((127, 6.0, -0.0), (0, 0.0, -0.0), (255, np.inf, np.nan)):
            out = run(F.e2m1_and_ufp8sf_scale_to_float, codes, np.array([[byte]], np.uint8),
                      None, 16, 0, False, platform=platform, backend=backend)
            assert out[0, 0] == first
            if np.isnan(second):
                assert np.isnan(out[0, 1])  # -0 * inf
            else:
                assert out[0, 1] == 0 and np.signbit(out[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mxfp4_dequantize(layout, backend, platform):
    rng = np.random.default_rng(seed_of("mxfp4_dequantize", layout))
    M, C = 37, 3
    codes = rng.integers(0, 256, (M, C * 16), dtype=np.uint8)
    sf = random_scale_buffer(rng, layout, M, C, two_d=True)
    sf.reshape(-1)[:4] = [0, 255, 1, 254]
    sf_layout = LAYOUTS[layout][2]
    want = R.mxfp4_dequantize(codes, sf, int(sf_layout))
    got = run(F.mxfp4_dequantize, codes, sf, sf_layout, platform=platform, backend=backend)
    assert_f32_bits_equal(got, want, f"mxfp4_dequantize {layout}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("group_size", [32, 16])
def test_mxfp4_dequantize_host(group_size, backend, platform):
    rng = np.random.default_rng(seed_of("mxfp4_dequantize_host", group_size))
    N, C = 21, 4
    codes = rng.integers(0, 256, (N, C * group_size // 2), dtype=np.uint8)
    scale = rng.integers(0, 256, (N, C), dtype=np.uint8)
    scale[0, :4] = [0, 255, 127, 1]
    codes[0, 0] = 0x82  # element 0: code 2 (1.0), element 1: code 8
    codes[0, group_size // 2] = 0x82
    codes[0, group_size] = 0x82
    want = R.mxfp4_dequantize_host(codes, scale, group_size)
    got = run(F.mxfp4_dequantize_host, codes, scale, group_size, platform=platform,
              backend=backend)
    assert_f32_bits_equal(got, want, "mxfp4_dequantize_host")
    bits = got.view(np.uint32)
    # scale 0 -> 2^-127 kept as a subnormal: 1.0 * 2^-127 has bits 0x00400000; code 8 -> +0.
    assert bits[0, 0] == 0x00400000 and bits[0, 1] == 0
    # scale 255 -> NaN for every element of the group
    assert np.isnan(got[0, group_size:2 * group_size]).all()
    # scale 127 -> 1.0: code 2 -> 1.0, code 8 -> +0.0 (not -0.0)
    assert got[0, 2 * group_size] == 1.0 and bits[0, 2 * group_size + 1] == 0
    assert (bits[got == 0] == 0).all(), "mxfp4_dequantize_host never returns -0.0"


MXFP8_LAYOUTS = {
    "128x4": {"is_sf_swizzled_layout": True},
    "8x4": {"sf_swizzle_layout": SfLayout.layout_8x4},
    "linear": {"is_sf_swizzled_layout": False},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", MXFP8_LAYOUTS)
@pytest.mark.parametrize("input_dtype", ["uint8", "float8"])
def test_mxfp8_dequantize_host(input_dtype, layout, backend, platform):
    rng = np.random.default_rng(seed_of("mxfp8_dequantize_host", input_dtype, layout))
    M, C = 35, 3
    codes = rng.integers(0, 256, (M, 32 * C), dtype=np.uint8)
    codes[0, :4] = [0x7F, 0xFF, 0x80, 0x00]
    sl = {"128x4": 0, "8x4": 1, "linear": 2}[layout]
    scale = rng.integers(0, 256, R.sf_buffer_size(sl, M, C), dtype=np.uint8)
    want = R.mxfp8_dequantize_host(codes, scale, sf_swizzle_layout=sl)
    arg = codes if input_dtype == "uint8" else codes.view(E4M3)
    got = run(F.mxfp8_dequantize_host, arg, scale, platform=platform, backend=backend,
              **MXFP8_LAYOUTS[layout])
    assert np.isnan(got[0, :2]).all()
    assert_f32_bits_equal(got, want, f"mxfp8_dequantize_host {input_dtype} {layout}")


# ---------------------------------------------------------------------------
# Round trips (sanity tolerances)
# ---------------------------------------------------------------------------


def _block_amax(x, vec):
    xf = np.abs(x.astype(np.float32))
    return np.repeat(xf.reshape(x.shape[0], -1, vec).max(-1), vec, axis=1)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_round_trip_nvfp4(dtype, layout, platform):
    backends = BACKENDS if layout == "128x4" else ("auto",)  # the twin: one layout
    rng = np.random.default_rng(seed_of("rt-nvfp4", dtype, layout))
    x = random_input(rng, (67, 128), DTYPES[dtype], spread=1.0)
    s = typical_scale(x)
    sw, is8x4, _ = LAYOUTS[layout]
    for backend in backends:
        q, sf = run(F.fp4_quantize, x, np.float32(s), 16, False, sw, is8x4,
                    platform=platform, backend=backend)
        xh = run(F.e2m1_and_ufp8sf_scale_to_float, q, sf, np.float32(1) / s, 16, 1, sw,
                 is8x4, platform=platform, backend=backend)
        xf = x.astype(np.float32)
        err = np.abs(xh - xf)
        amax = _block_amax(x, 16)
        assert (err <= 0.2 * amax).all(), float((err / np.maximum(amax, 1e-30)).max())
        rel = np.linalg.norm(xh - xf) / np.linalg.norm(xf)
        assert rel < 0.15, rel


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_mxfp4(layout, platform):
    rng = np.random.default_rng(seed_of("rt-mxfp4", layout))
    x = random_input(rng, (67, 128), DTYPES["bf16"], spread=4.0)
    sl = LAYOUTS[layout][2]
    for backend in BACKENDS:
        q, sf = run(F.mxfp4_quantize, x, platform=platform, backend=backend, sfLayout=sl)
        xh = run(F.mxfp4_dequantize, q, sf, sl, platform=platform, backend=backend)
        xf = x.astype(np.float32)
        err = np.abs(xh - xf)
        assert (err <= 0.35 * _block_amax(x, 32)).all()
        assert np.linalg.norm(xh - xf) / np.linalg.norm(xf) < 0.25
        if layout == "linear":
            xh2 = run(F.mxfp4_dequantize_host, q, sf, platform=platform, backend=backend)
            np.testing.assert_array_equal(np.abs(xh2), np.abs(xh))


@pytest.mark.parametrize("layout", MXFP8_LAYOUTS)
@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_round_trip_mxfp8(dtype, layout, platform):
    backends = BACKENDS if layout == "128x4" else ("auto",)  # the twin: one layout
    rng = np.random.default_rng(seed_of("rt-mxfp8", dtype, layout))
    x = random_input(rng, (45, 96), DTYPES[dtype], spread=3.5)  # finite in fp16
    kw = MXFP8_LAYOUTS[layout]
    for backend in backends:
        q, sf = run(F.mxfp8_quantize, x, platform=platform, backend=backend, **kw)
        xh = run(F.mxfp8_dequantize_host, q, sf, platform=platform, backend=backend, **kw)
        xf = x.astype(np.float32)
        assert np.isfinite(xf).all()
        err = np.abs(xh - xf)
        assert (err <= 0.0625 * np.abs(xf) + 1e-4 * _block_amax(x, 32)).all()


# ---------------------------------------------------------------------------
# 16-bit outputs on random codes and every scale byte
# ---------------------------------------------------------------------------

# Encode scales S for nvfp4_dequantize (outputs e2m1 * e4m3(sf) / S): 0.01 sends the largest
# products past float16's 65504 (to inf), 1e6 puts the small ones among float16's subnormals.
NVFP4_DECODE_SCALES = [0.01, 1e6]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("op", ["nvfp4", "mxfp8"])
def test_dequantize_to_16_bits_on_every_scale_byte(op, dtype, backend, platform):
    """The float32 results rounded to bfloat16 / float16 (round to nearest even, NaN stays
    NaN) on random codes under every scale byte: NaN codes and scales, overflow to inf,
    float16 subnormals and ties. 16-element groups, so the CPU handler takes its vector
    paths where the CPU has them."""
    rng = np.random.default_rng(seed_of("deq16", op, dtype))
    M, C = 64, 16  # 1024 scale bytes: every value 0..255 several times
    out_dtype = jnp.dtype(dtype)
    outputs = []
    if op == "nvfp4":
        codes = rng.integers(0, 256, (M, 16 * C // 2), dtype=np.uint8)
        scales = random_scale_buffer(rng, "128x4", M, C, two_d=True)
        for s in map(np.float32, NVFP4_DECODE_SCALES):
            want = R.e2m1_and_ufp8sf_scale_to_float(codes, scales, np.float32(1) / s)
            outputs.append((run(F.nvfp4_dequantize, codes, scales, s, SfLayout.layout_128x4,
                                out_dtype, platform=platform, backend=backend), want, f"S={s}"))
    else:
        codes = rng.integers(0, 256, (M, 32 * C // 2), dtype=np.uint8)
        scales = random_scale_buffer(rng, "128x4", M, C // 2, two_d=True)
        want = R.mxfp8_dequantize_host(codes, scales)
        outputs.append((run(F.mxfp8_dequantize, codes, scales, SfLayout.layout_128x4, out_dtype,
                            platform=platform, backend=backend), want, op))
    for got, want, what in outputs:
        assert got.dtype == out_dtype
        with np.errstate(over="ignore"):  # float16 overflow to inf is part of the test
            want16 = want.astype(out_dtype)
        assert_f32_bits_equal(np.asarray(got).astype(np.float32), want16.astype(np.float32), what)
    # The special cases the test is for are there.
    values = np.concatenate([np.asarray(g).astype(np.float32).ravel() for g, _, _ in outputs])
    assert np.isnan(values).any()
    if dtype == "float16":
        tiny = np.float32(2.0**-14)  # float16's smallest normal
        assert np.isinf(values).any() and ((values != 0) & (np.abs(values) < tiny)).any()


# ---------------------------------------------------------------------------
# The large-problem CUDA kernel (bulk stores; row tiles for the swizzled layouts)
# ---------------------------------------------------------------------------

# Problems of more than one full wave of the GPU (over ~4.3M elements on an H100) take the
# bulk-store kernel, whose tiles follow rows in bands of 128 (or 8) rows when the layout is
# swizzled and a row splits into whole 4096-element segments: shapes with a partial last
# band, a batch that splits a band, rows that do not split into whole segments (flat tiles),
# and each element recipe and output width. (op, batch, M, K, layout, output dtype)
LARGE_CASES = {
    "nvfp4-128x4-partial-band": ("nvfp4", 0, 1100, 8192, "128x4", "float32"),
    "nvfp4-8x4-partial-band": ("nvfp4", 0, 700, 16384, "8x4", "float32"),
    "nvfp4-128x4-flat-tiles": ("nvfp4", 0, 1200, 4608, "128x4", "float32"),
    "nvfp4-128x4-bf16-vmap": ("nvfp4", 2, 600, 8192, "128x4", "bfloat16"),
    "mxfp8-128x4-f16": ("mxfp8", 0, 1030, 8192, "128x4", "float16"),
    "mxfp8-8x4-f32": ("mxfp8", 0, 520, 12288, "8x4", "float32"),
    "mxfp4-linear-f32": ("mxfp4", 0, 640, 8192, "linear", "float32"),
    "nvfp4-kv-bf16": ("kv", 0, 40000, 128, "linear", "bfloat16"),
}


def _large_case_fn(op: str, layout: str, out_dtype):
    sl = LAYOUTS[layout][2]
    if op == "nvfp4":
        return lambda q, sf: F.nvfp4_dequantize(q, sf, np.float32(3.0), sl, out_dtype)
    if op == "mxfp8":
        return lambda q, sf: F.mxfp8_dequantize(q, sf, sf_swizzle_layout=sl, dtype=out_dtype)
    if op == "mxfp4":
        return lambda q, sf: F.mxfp4_dequantize(q, sf, sl)
    return lambda q, sf: F.nvfp4_kv_dequantize(q, sf, np.float32(0.37), out_dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("case", LARGE_CASES)
def test_large_dequantize_on_gpu_matches_cpu(case, gpu="cuda"):
    require_platform(gpu)
    op, batch, M, K, layout, out_dtype = LARGE_CASES[case]
    rng = np.random.default_rng(seed_of("large-dequantize", case))
    code_cols, vec = (K, 32) if op == "mxfp8" else (K // 2, 32 if op == "mxfp4" else 16)
    lead = (batch,) if batch else ()
    codes = rng.integers(0, 256, (*lead, M, code_cols), dtype=np.uint8)
    if op == "kv":
        scales = rng.integers(0, 256, (*lead, M, K // vec), dtype=np.uint8)
    else:
        size = R.sf_buffer_size(int(LAYOUTS[layout][2]), M, K // vec)
        scales = rng.integers(0, 256, (*lead, size), dtype=np.uint8)
    fn = _large_case_fn(op, layout, jnp.dtype(out_dtype))
    if batch:
        fn = jax.vmap(fn)
    fn = jax.jit(fn)
    got = fn(*on(gpu, codes, scales))
    want = fn(*on("cpu", codes, scales))
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == jnp.float32:
        assert_f32_bits_equal(got, want, case)
    else:  # 16-bit: the bits, NaN positions compared as in assert_f32_bits_equal
        assert_f32_bits_equal(np.asarray(got).astype(np.float32),
                              np.asarray(want).astype(np.float32), case)
