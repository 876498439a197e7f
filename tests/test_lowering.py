"""Lowering: ``backend="auto"`` lowers to the op's FFI target (``jax_fp4_<name>``) on CPU
and, iff the CUDA handlers are compiled, for CUDA; ``backend="xla"`` never does. Zero-size
inputs return empty outputs of the right shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import np_reference as R
import numpy as np
import pytest
from conftest import BACKENDS, BF16, E4M3, assert_bytes_equal, on, run

import jax_fp4 as F
from jax_fp4 import SfLayout

U8 = np.uint8

# name -> (function of arrays and backend, example arrays, FFI target)
LOWERING_CASES = {
    "fp4_quantize": (lambda x, s, backend: F.fp4_quantize(x, s, backend=backend),
                     (np.ones((4, 32), BF16), np.ones(1, np.float32)), "fp4_quantize"),
    "fp4_quantize_mxfp4_fp8": (
        lambda x, backend: F.fp4_quantize(x, None, 32, True, backend=backend),
        (np.ones((4, 32), E4M3),), "fp4_quantize"),
    "nvfp4_quantize": (lambda x, s, backend: F.nvfp4_quantize(x, s, backend=backend),
                       (np.ones((4, 32), np.float16), np.ones(1, np.float32)),
                       "fp4_quantize"),
    "mxfp4_quantize": (lambda x, backend: F.mxfp4_quantize(x, backend=backend),
                       (np.ones((4, 32), BF16),), "fp4_quantize"),
    "nvfp4_batched_quantize": (
        lambda x, s, backend: F.nvfp4_batched_quantize(x, s, backend=backend),
        (np.ones((2, 4, 32), BF16), np.ones(1, np.float32)), "fp4_quantize"),
    "mxfp8_quantize": (lambda x, backend: F.mxfp8_quantize(x, backend=backend),
                       (np.ones((4, 32), np.float32),), "mxfp8_quantize"),
    "e2m1_and_ufp8sf_scale_to_float": (
        lambda q, sf, backend: F.e2m1_and_ufp8sf_scale_to_float(q, sf, backend=backend),
        (np.ones((4, 8), U8), np.ones((128, 4), U8)), "block_dequantize"),
    "mxfp4_dequantize": (lambda q, sf, backend: F.mxfp4_dequantize(q, sf, backend=backend),
                         (np.ones((4, 16), U8), np.ones((128, 4), U8)), "block_dequantize"),
    "mxfp4_dequantize_host": (
        lambda q, sf, backend: F.mxfp4_dequantize_host(q, sf, backend=backend),
        (np.ones((4, 16), U8), np.ones((4, 1), U8)), "block_dequantize"),
    "mxfp8_dequantize_host": (
        lambda q, sf, backend: F.mxfp8_dequantize_host(q, sf, backend=backend),
        (np.ones((4, 32), U8), np.ones(512, U8)), "block_dequantize"),
    "mxfp8_dequantize_host_fp8": (
        lambda q, sf, backend: F.mxfp8_dequantize_host(q, sf, backend=backend),
        (np.ones((4, 32), E4M3), np.ones(512, U8)), "block_dequantize"),
    "block_scale_interleave": (
        lambda x, backend: F.block_scale_interleave(x, backend=backend),
        (np.ones((4, 3), U8),), "block_scale_interleave"),
    "packbits": (lambda x, backend: F.packbits(x, backend=backend), (np.ones(20, bool),),
                 "packbits"),
    "segment_packbits": (
        lambda x, p, backend: F.segment_packbits(x, p, total_bytes=4, backend=backend),
        (np.ones(20, bool), np.array([0, 5, 20], np.int32)), "segment_packbits"),
}
ALL_TARGETS = ("fp4_quantize", "mxfp8_quantize", "block_dequantize",
               "block_scale_interleave", "packbits", "segment_packbits")


def _count(text, target):
    return text.count(f"@jax_fp4_{target}(")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOWERING_CASES)
def test_cpu_lowering_uses_ffi_target(name, backend):
    fn, args, target = LOWERING_CASES[name]
    placed = [on("cpu", a) for a in args]
    text = jax.jit(lambda *a: fn(*a, backend=backend)).lower(*placed).as_text()
    if backend == "auto":
        assert _count(text, target) == 1, text
    else:
        assert "jax_fp4_" not in text, text
    others = [t for t in ALL_TARGETS if t != target]
    assert not any(_count(text, t) for t in others)


def test_registered_targets():
    from jax_fp4 import _registry  # the set the lowering rules consult

    assert {f"jax_fp4_{t}" for t in ALL_TARGETS} <= set(_registry.CPU_TARGETS)
    assert F.cuda_compiled() == bool(_registry.CUDA_TARGETS)
    if F.cuda_compiled():
        assert {f"jax_fp4_{t}" for t in ALL_TARGETS} <= set(_registry.CUDA_TARGETS)
    if F.cuda_available():
        assert F.cuda_compiled()


# XLA:CPU compiles a bitcast-convert to a copy of the whole tensor, so the MXFP8 codes
# cross the FFI boundary typed float8_e4m3fn instead.
NO_BITCAST_CASES = {
    "mxfp8_quantize": (lambda x: F.mxfp8_quantize(x), (np.ones((256, 64), BF16),)),
    "mxfp8_dequantize_host": (lambda q, sf: F.mxfp8_dequantize_host(q, sf),
                              (np.ones((256, 64), E4M3), np.ones(1024, U8))),
    "mxfp8_dequantize": (lambda q, sf: F.mxfp8_dequantize(q, sf, dtype=jnp.bfloat16),
                         (np.ones((2, 128, 64), E4M3), np.ones(1024, U8))),
    "mxfp8 round trip": (lambda x: F.mxfp8_dequantize(*F.mxfp8_quantize(x)),
                         (np.ones((256, 64), BF16),)),
}


@pytest.mark.parametrize("name", NO_BITCAST_CASES)
def test_mxfp8_codes_need_no_bitcast_on_cpu(name):
    fn, args = NO_BITCAST_CASES[name]
    text = jax.jit(fn).lower(*[on("cpu", a) for a in args]).compile().as_text()
    assert "custom_call_target=\"jax_fp4_" in text, text
    assert "bitcast-convert(" not in text, text


def _lower_for_cuda(f, args):
    traced = jax.jit(f).trace(*args)
    try:
        return traced.lower(lowering_platforms=("cuda",)).as_text()
    except TypeError as err:  # pragma: no cover - a jax without lowering_platforms
        pytest.skip(f"this jax cannot cross-lower: {err}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOWERING_CASES)
def test_cuda_lowering_uses_target_iff_compiled(name, backend):
    """Cross-lowering for CUDA needs no GPU: the FFI target appears iff jax_fp4's CUDA
    handlers are compiled (else the twin is inlined); ``backend="xla"`` never uses it."""
    fn, args, target = LOWERING_CASES[name]
    text = _lower_for_cuda(lambda *a: fn(*a, backend=backend), args)
    expected = 1 if (backend == "auto" and F.cuda_compiled()) else 0
    assert _count(text, target) == expected, text[:4000]
    if expected == 0:
        assert "jax_fp4_" not in text


# ---------------------------------------------------------------------------
# Zero-size inputs
# ---------------------------------------------------------------------------

ZERO_CASES = {
    # name: (function, args, expected output shapes)
    "fp4 M=0 128x4": (lambda x, backend: F.fp4_quantize(x, 1.0, backend=backend),
                      (np.zeros((0, 32), BF16),), [(0, 16), (0, 4)]),
    "fp4 M=0 8x4": (lambda x, backend: F.fp4_quantize(x, 1.0, is_sf_8x4_layout=True,
                                                      backend=backend),
                    (np.zeros((0, 48), np.float16),), [(0, 24), (0, 4)]),
    "fp4 M=0 linear": (lambda x, backend: F.fp4_quantize(x, 1.0, is_sf_swizzled_layout=False,
                                                         backend=backend),
                       (np.zeros((0, 48), E4M3),), [(0, 24), (0, 3)]),
    "fp4 3-D with 0": (lambda x, backend: F.fp4_quantize(x, 1.0, backend=backend),
                       (np.zeros((2, 0, 32), BF16),), [(2, 0, 16), (0, 4)]),
    "fp4 K=0": (lambda x, backend: F.fp4_quantize(x, 1.0, backend=backend),
                (np.zeros((5, 0), BF16),), [(5, 0), (128, 0)]),
    "fp4 K=0 linear": (lambda x, backend: F.fp4_quantize(x, 1.0, is_sf_swizzled_layout=False,
                                                         backend=backend),
                       (np.zeros((5, 0), BF16),), [(5, 0), (5, 0)]),
    "fp4 rows scale M=0": (lambda x, s, backend: F.fp4_quantize(x, s, backend=backend),
                           (np.zeros((0, 16), BF16), np.zeros(1, np.float32)),
                           [(0, 8), (0, 4)]),
    "mxfp4 M=0": (lambda x, backend: F.mxfp4_quantize(x, backend=backend),
                  (np.zeros((0, 64), BF16),), [(0, 32), (0, 4)]),
    "batched B=0": (lambda x, backend: F.nvfp4_batched_quantize(x, 1.0, backend=backend),
                    (np.zeros((0, 5, 32), BF16),), [(0, 5, 16), (0, 512)]),
    "batched M=0": (lambda x, backend: F.nvfp4_batched_quantize(x, 1.0, backend=backend),
                    (np.zeros((2, 0, 32), BF16),), [(2, 0, 16), (2, 0)]),
    "mxfp8 M=0": (lambda x, backend: F.mxfp8_quantize(x, alignment=64, backend=backend),
                  (np.zeros((0, 32), np.float32),), [(0, 64), (0,)]),
    "mxfp8 K=0": (lambda x, backend: F.mxfp8_quantize(x, backend=backend),
                  (np.zeros((3, 0), BF16),), [(3, 0), (0,)]),
    "mxfp8 K=0 linear": (lambda x, backend: F.mxfp8_quantize(x, False, backend=backend),
                         (np.zeros((3, 0), BF16),), [(3, 0), (0,)]),
    "e2m1 dequant M=0": (
        lambda q, sf, backend: F.e2m1_and_ufp8sf_scale_to_float(q, sf, backend=backend),
        (np.zeros((0, 8), U8), np.zeros((0, 4), U8)), [(0, 16)]),
    "mxfp4_dequantize M=0": (
        lambda q, sf, backend: F.mxfp4_dequantize(q, sf, SfLayout.layout_linear,
                                                  backend=backend),
        (np.zeros((0, 32), U8), np.zeros((0, 2), U8)), [(0, 64)]),
    "mxfp4_dequantize_host N=0": (
        lambda q, sf, backend: F.mxfp4_dequantize_host(q, sf, backend=backend),
        (np.zeros((0, 16), U8), np.zeros((0, 1), U8)), [(0, 32)]),
    "mxfp8_dequantize_host M=0": (
        lambda q, sf, backend: F.mxfp8_dequantize_host(q, sf, backend=backend),
        (np.zeros((0, 32), U8), np.zeros(0, U8)), [(0, 32)]),
    "interleave R=0": (lambda x, backend: F.block_scale_interleave(x, backend=backend),
                       (np.zeros((0, 3), U8),), [(0,)]),
    "interleave E=0": (lambda x, backend: F.block_scale_interleave(x, backend=backend),
                       (np.zeros((0, 5, 3), BF16),), [(0,)]),
    "interleave C=0": (lambda x, backend: F.block_scale_interleave(x, backend=backend),
                       (np.zeros((5, 0), U8),), [(0,)]),
    "packbits N=0": (lambda x, backend: F.packbits(x, backend=backend),
                     (np.zeros(0, bool),), [(0,)]),
    "segment_packbits empty": (
        lambda x, p, backend: F.segment_packbits(x, p, total_bytes=0, backend=backend),
        (np.zeros(0, bool), np.zeros(1, np.int32)), [(0,), (1,)]),
    "segment_packbits empty segments": (
        lambda x, p, backend: F.segment_packbits(x, p, total_bytes=0, backend=backend),
        (np.zeros(0, bool), np.zeros(4, np.int32)), [(0,), (4,)]),
}


@pytest.mark.parametrize("backend, jit", [("auto", False), ("auto", True), ("xla", True)],
                         ids=["auto-eager", "auto-jit", "xla-jit"])
@pytest.mark.parametrize("name", ZERO_CASES)
def test_zero_size(name, backend, jit, platform):
    fn, args, shapes = ZERO_CASES[name]
    out = run(fn, *args, platform=platform, backend=backend, jit=jit)
    out = out if isinstance(out, tuple) else (out,)
    assert [o.shape for o in out] == shapes
    for o in out:
        if o.size:  # segment_packbits' new_indptr: all zero
            assert (o == 0).all()


def test_zero_size_matches_oracle_shapes():
    """The oracle agrees on the zero-size shapes of the quantizers."""
    for lead, K, layout in [((0,), 32, 0), ((5,), 0, 0), ((0,), 48, 1), ((2, 0), 32, 2)]:
        x = np.zeros((*lead, K), BF16)
        q, sf = run(F.fp4_quantize, x, np.ones(1, np.float32), platform="cpu",
                    backend="auto", is_sf_swizzled_layout=layout != 2,
                    is_sf_8x4_layout=layout == 1)
        rq, rsf = R.fp4_quantize(x, np.ones(1, np.float32), 16, False, layout != 2,
                                 layout == 1)
        assert q.shape == rq.shape and sf.shape == rsf.shape
        assert_bytes_equal(sf, rsf, "scale padding")


def test_empty_segment_values_under_jit():
    """Traced indptr with all segments empty: zero bytes of output, new_indptr all 0."""
    f = jax.jit(lambda x, p: F.segment_packbits(x, p, total_bytes=3))
    y, ptr = f(jnp.ones(6, bool), jnp.array([0, 0, 0], jnp.int32))
    assert np.asarray(y).tolist() == [0, 0, 0] and np.asarray(ptr).tolist() == [0, 0, 0]
