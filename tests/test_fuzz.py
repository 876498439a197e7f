"""Property tests (hypothesis): random shapes, dtypes, layouts, special values and scales,
every quantizer bitwise against the NumPy oracle; random invalid arguments give a clear
Python error, never a crash. Bounded for CI (JAX_FP4_FUZZ_EXAMPLES raises the count)."""

from __future__ import annotations

import os

import ml_dtypes
import np_reference as R
import numpy as np
import pytest
from conftest import assert_bytes_equal, require_platform, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jax_fp4 as F

EXAMPLES = int(os.environ.get("JAX_FP4_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 0.25, 0.75, 1.25, 1.75, 2.5,
           3.5, 5.0, 448.0, 464.0, 6.0, 65504.0, 1e-8, 3e38]
DTYPES = [np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn]


@st.composite
def quant_case(draw, block):
    m = draw(st.sampled_from([0, 1, 2, 7, 33, 129]))
    k = block * draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)) * 10.0 ** rng.uniform(-6, 4, (m, 1))
    if x.size:
        n = draw(st.integers(0, min(8, x.size)))
        flat = x.reshape(-1)
        flat[rng.integers(0, x.size, n)] = rng.choice(SPECIAL, n)
    if np.dtype(dtype) == np.dtype(ml_dtypes.float8_e4m3fn):
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=448.0, neginf=-448.0), -448, 448)
    with np.errstate(all="ignore"):
        x = x.astype(np.float32).astype(dtype)
    layout = draw(st.sampled_from([0, 1, 2]))
    scale = np.float32(draw(st.sampled_from([1e-30, 1e-3, 1.0, 2688.0, 1e30, 0.0])))
    return x, layout, scale


def _nan_free_blocks(x, block):
    # NaN blocks' scale bytes are outside the bit-exact contract (SPEC 1.6).
    xf = np.asarray(x, np.float32)
    return not np.isnan(xf).any()


@FUZZ
@given(case=quant_case(16), exact=st.booleans(), inverse=st.booleans())
def test_fuzz_nvfp4(case, exact, inverse):
    x, layout, scale = case
    require_platform("cpu")
    kw = dict(sf_vec_size=16, sf_use_ue8m0=False, is_sf_swizzled_layout=layout != 2,
              is_sf_8x4_layout=layout == 1, is_global_scale_inversed=inverse)
    got = run(F.fp4_quantize, x, scale, backend="auto", platform="cpu", exact=exact, **kw)
    want = R.fp4_quantize(x, scale, exact=exact, **kw)
    assert_bytes_equal(got[0], want[0], "codes")
    if _nan_free_blocks(x, 16):
        assert_bytes_equal(got[1], want[1], "scales")


@FUZZ
@given(case=quant_case(32))
def test_fuzz_mxfp4_and_mxfp8(case):
    x, layout, _ = case
    require_platform("cpu")
    got = run(F.mxfp4_quantize, x, backend="auto", platform="cpu", sfLayout=F.SfLayout(layout))
    want = R.mxfp4_quantize(x, layout)
    assert_bytes_equal(got[0], want[0], "mxfp4 codes")
    if _nan_free_blocks(x, 32):
        assert_bytes_equal(got[1], want[1], "mxfp4 scales")
    if x.dtype != ml_dtypes.float8_e4m3fn:
        got8 = run(F.mxfp8_quantize, x, backend="auto", platform="cpu",
                   sf_swizzle_layout=F.SfLayout(layout))
        want8 = R.mxfp8_quantize(x, sf_swizzle_layout=layout)
        assert_bytes_equal(got8[0], want8[0], "mxfp8 codes")
        if _nan_free_blocks(x, 32):
            assert_bytes_equal(got8[1], want8[1], "mxfp8 scales")


BAD_CALLS = [
    lambda: F.fp4_quantize(np.ones((4, 30), np.float16), 1.0),
    lambda: F.fp4_quantize(np.ones((4, 32), np.int32), 1.0),
    lambda: F.fp4_quantize(np.ones((32,), np.float16), 1.0),
    lambda: F.fp4_quantize(np.ones((4, 32), np.float16), np.ones(3, np.float32)),
    lambda: F.fp4_quantize(np.ones((4, 32), np.float16), 1.0, 16, True),
    lambda: F.fp4_quantize(np.ones((4, 32), np.float16), 1.0, 8),
    lambda: F.fp4_quantize(np.ones((4, 32), np.float16), 1.0, is_sf_swizzled_layout=False,
                           is_sf_8x4_layout=True),
    lambda: F.fp4_quantize(np.ones((4, 32), np.float16), 1.0, backend="cute-dsl"),
    lambda: F.mxfp8_quantize(np.ones((4, 32), np.float16), alignment=48),
    lambda: F.mxfp8_dequantize_host(np.ones((4, 32), np.uint8), np.ones(3, np.uint8)),
    lambda: F.e2m1_and_ufp8sf_scale_to_float(np.ones((4, 8), np.uint8), np.ones(5, np.uint8)),
    lambda: F.packbits(np.ones(8), "middle"),
    lambda: F.segment_packbits(np.ones(8), np.array([0, 5, 3])),
    lambda: F.nvfp4_kv_quantize(np.ones((4, 30), np.float16), 1.0),
    lambda: F.block_scale_interleave(np.ones((4,), np.uint8)),
    lambda: F.nvfp4_quantize(np.ones((4, 32), np.float16), 1.0, sfLayout=7),
]


@pytest.mark.parametrize("index", range(len(BAD_CALLS)))
def test_bad_arguments_raise_python_errors(index):
    with pytest.raises((ValueError, TypeError, NotImplementedError)) as err:
        BAD_CALLS[index]()
    assert str(err.value).split(":")[0].replace("jax_fp4.", "") in {
        "fp4_quantize", "mxfp8_quantize", "mxfp8_dequantize_host", "nvfp4_quantize",
        "e2m1_and_ufp8sf_scale_to_float", "packbits", "segment_packbits", "nvfp4_kv_quantize",
        "block_scale_interleave"}, str(err.value)
