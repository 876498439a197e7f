"""``packbits`` against ``numpy.packbits`` and ``segment_packbits`` against the oracle."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import np_reference as R
import numpy as np
import pytest
from conftest import BACKENDS, assert_bytes_equal, on, run, seed_of, with_backends

import jax_fp4 as F

SIZES = [0, 1, 7, 8, 9, 63, 1000]
BITORDERS = ["big", "little"]


def _values(rng, n, dtype):
    if dtype == "bool":
        return rng.random(n) < 0.5
    if dtype == "uint8":  # non-0/1 bytes must count as 1
        return rng.choice(np.array([0, 1, 2, 128, 255], np.uint8), n)
    if dtype == "int8":
        return rng.choice(np.array([0, 1, -1, -128, 127], np.int8), n)
    if dtype == "int32":
        return rng.choice(np.array([0, 1, -7, 1 << 20], np.int32), n)
    if dtype == "float32":  # -0.0 is 0, NaN and inf are 1 (subnormals: separate test)
        return rng.choice(np.array([0.0, -0.0, 1.0, np.nan, -np.inf, 1e-30, -2.5], np.float32),
                          n)
    if dtype == "bfloat16":
        return rng.choice(np.array([0.0, -0.0, 1.0, np.nan], np.float32), n).astype(
            jnp.bfloat16)
    raise AssertionError(dtype)


@with_backends("n, dtype", itertools.product(SIZES, ["bool", "uint8", "int8", "int32",
                                                    "float32", "bfloat16"]),
               twin=lambda n, dtype: n in (0, 9, 1000) and dtype in ("bool", "float32"))
def test_packbits_vs_numpy(n, dtype, backend, platform):
    rng = np.random.default_rng(seed_of("packbits", n, dtype))
    x = _values(rng, n, dtype)
    for order in BITORDERS:
        want = np.packbits(np.asarray(x, np.float32) != 0 if dtype != "bool" else x,
                           bitorder=order)
        got = run(F.packbits, x, order, platform=platform, backend=backend)
        assert got.dtype == np.uint8 and got.shape == ((n + 7) // 8,)
        assert_bytes_equal(got, want, f"{dtype} n={n} {order}")
        assert_bytes_equal(got, R.packbits(x, order), "oracle")


@pytest.mark.parametrize("order", BITORDERS)
def test_packbits_long_rows_under_vmap(order, platform):
    """Rows long enough that the CPU handler splits each into pieces over its threads (2^16
    output bytes a piece), with a tail that is not a whole 64-element group."""
    rng = np.random.default_rng(seed_of("packbits-long", order))
    x = rng.random((3, (1 << 20) + 13)) < 0.5
    got = jax.jit(jax.vmap(lambda r: F.packbits(r, order)))(on(platform, x))
    want = np.stack([np.packbits(r, bitorder=order) for r in x])
    assert_bytes_equal(got, want, order)


def test_packbits_special_floats(platform):
    x = np.array([-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, -0.0, 1.0], np.float32)
    for backend in BACKENDS:
        assert run(F.packbits, x, platform=platform, backend=backend).tolist() == [0b00111101]
        assert run(F.packbits, x, "little", platform=platform,
                   backend=backend).tolist() == [0b10111100]
    assert run(F.packbits, np.array([1, 0, 1, 1, 0, 0, 1, 1]), platform=platform,
               backend="auto").tolist() == [0b10110011]  # SPEC 5.18 example
    assert run(F.packbits, np.array([1, 0, 1, 1, 0, 0, 1, 1]), "little", platform=platform,
               backend="auto").tolist() == [0b11001101]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.float16])
def test_packbits_subnormals_are_nonzero(dtype, backend, platform):
    """NumPy semantics (SPEC 5.18): a subnormal is non-zero, so its bit is 1 (a
    flush-to-zero comparison would drop it)."""
    tiny = {np.dtype(np.float32): 1e-45, np.dtype(jnp.bfloat16): 1e-39,
            np.dtype(np.float16): 6e-8}[np.dtype(dtype)]
    x = np.array([tiny, 0.0, -tiny, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32).astype(dtype)
    assert (np.asarray(x, np.float32) != 0).sum() == 2
    got = run(F.packbits, x, platform=platform, backend=backend)
    assert got.tolist() == [0b10100000]
    y, ptr = run(F.segment_packbits, x, np.array([0, 3, 8], np.int32), platform=platform,
                 backend=backend, jit=False)
    assert y.tolist() == [0b10100000, 0] and ptr.tolist() == [0, 1, 2]


@with_backends("shape", [(3, 5), (2, 3, 4), (4, 0), (1, 1, 9)],
               twin=lambda shape: shape in ((2, 3, 4), (4, 0)))
def test_packbits_flattens(shape, backend, platform):
    rng = np.random.default_rng(seed_of("flat", shape))
    x = rng.integers(0, 3, shape).astype(np.int32)
    for order in BITORDERS:
        got = run(F.packbits, x, order, platform=platform, backend=backend)
        assert_bytes_equal(got, np.packbits(x.reshape(-1) != 0, bitorder=order), f"{shape}")


def test_packbits_default_bitorder_is_big():
    x = np.array([1, 0, 0, 0, 0, 0, 0, 0], bool)
    assert np.asarray(F.packbits(x)).tolist() == [128]


# ---------------------------------------------------------------------------
# segment_packbits
# ---------------------------------------------------------------------------


def _random_indptr(rng, n_segments, max_len=30, empty_frac=0.3):
    lens = rng.integers(0, max_len, n_segments)
    lens[rng.random(n_segments) < empty_frac] = 0
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)


def _check_against_oracle(x, indptr, backend, platform):
    for order in BITORDERS:
        want_y, want_ptr = R.segment_packbits(x, indptr, order)
        # concrete indptr: eager call (jit would trace it)
        y, ptr = run(F.segment_packbits, x, indptr, order, platform=platform,
                     backend=backend, jit=False)
        assert_bytes_equal(y, want_y, f"y {order}")
        assert_bytes_equal(ptr, want_ptr, f"new_indptr {order}")
        assert ptr.dtype == np.int32


def test_segment_packbits_spec_example(platform):
    x = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], bool)
    indptr = np.array([0, 4, 7, 11], np.int32)
    for backend in BACKENDS:
        y, ptr = run(F.segment_packbits, x, indptr, platform=platform, backend=backend,
                     jit=False)
        assert y.tolist() == [0b10110000, 0b00100000, 0b11010000]
        assert ptr.tolist() == [0, 1, 2, 3] and ptr.dtype == np.int32


@with_backends("dtype, n_segments", itertools.product(["bool", "uint8", "float32"], [1, 5, 40]),
               twin=lambda dtype, n_segments: dtype == "bool")
def test_segment_packbits_vs_oracle(dtype, n_segments, backend, platform):
    rng = np.random.default_rng(seed_of("seg", dtype, n_segments))
    indptr = _random_indptr(rng, n_segments)
    _check_against_oracle(_values(rng, int(indptr[-1]), dtype), indptr, backend, platform)


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_packbits_long_segments(backend, platform):
    """Segments of hundreds of elements at unaligned starts, and a tail within 16 bytes of
    the input's end (the CUDA kernel reads 8-byte windows, byte by byte near the end)."""
    rng = np.random.default_rng(seed_of("seg-long"))
    indptr = _random_indptr(rng, 257, max_len=600, empty_frac=0.1)
    x = _values(rng, int(indptr[-1]) + 3, "bool")  # 3 trailing elements in no segment
    _check_against_oracle(x, indptr, backend, platform)


@pytest.mark.parametrize("dtype", ["bool", "uint8"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_packbits_segments_of_thousands(dtype, backend, platform):
    """Segments of thousands of elements at varied start alignments, so that most
    16-byte output groups lie inside one segment (the CUDA kernel's vector path) and the rest
    straddle a boundary or end a segment; uint8 inputs hold values other than 0 and 1."""
    rng = np.random.default_rng(seed_of("seg-thousands", dtype))
    lens = rng.integers(900, 5000, 24)
    lens[:16] += np.arange(16)  # more start offsets mod 16
    lens[5] = 0
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    x = _values(rng, int(indptr[-1]) + 21, dtype)
    _check_against_oracle(x, indptr, backend, platform)


@pytest.mark.parametrize("indptr", [[0], [0, 0], [0, 0, 0], [0, 0, 0, 5], [0, 5, 5, 5],
                                    [2, 2, 10]],
                         ids=str)
def test_segment_packbits_empty_segments(indptr, platform):
    indptr = np.array(indptr, np.int32)
    x = (np.arange(10) % 3 == 0)[:max(int(indptr[-1]), 0)]
    for backend in BACKENDS:
        y, ptr = run(F.segment_packbits, x, indptr, platform=platform, backend=backend,
                     jit=False)
        want_y, want_ptr = R.segment_packbits(x, indptr)
        assert_bytes_equal(y, want_y, "y")
        assert_bytes_equal(ptr, want_ptr, "new_indptr")


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_packbits_traced_indptr_padding(backend, platform):
    """Under jit with traced indptr: output has total_bytes entries, zero padded past the
    needed bytes; a smaller total_bytes drops the tail (new_indptr is unchanged)."""
    rng = np.random.default_rng(8)
    indptr = _random_indptr(rng, 12)
    x = rng.random(int(indptr[-1])) < 0.5
    want_y, want_ptr = R.segment_packbits(x, indptr, "little")
    need = want_y.size
    f = jax.jit(lambda x, p, T=None: F.segment_packbits(x, p, "little", total_bytes=T,
                                                        backend=backend),
                static_argnames="T")
    xd, pd = on(platform, x, indptr)
    for total in (need + 13, need, max(need - 3, 0)):
        y, ptr = f(xd, pd, T=total)
        y, ptr = np.asarray(y), np.asarray(ptr)
        assert y.shape == (total,)
        expect = np.zeros(total, np.uint8)
        expect[:min(total, need)] = want_y[:total]
        assert_bytes_equal(y, expect, f"total_bytes={total}")
        assert_bytes_equal(ptr, want_ptr, "new_indptr")
    # concrete indptr with a larger total_bytes pads too
    y, _ = F.segment_packbits(xd, pd, "little", total_bytes=need + 5, backend=backend)
    assert np.asarray(y)[need:].tolist() == [0] * 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_packbits_int64_indptr(backend, platform):
    rng = np.random.default_rng(9)
    indptr = _random_indptr(rng, 7).astype(np.int64)
    x = rng.random(int(indptr[-1])) < 0.5
    want_y, want_ptr = R.segment_packbits(x, indptr)
    with jax.enable_x64(True):
        xd, pd = on(platform, x, indptr)
        assert pd.dtype == jnp.int64
        y, ptr = F.segment_packbits(xd, pd, backend=backend)
        assert ptr.dtype == jnp.int32
        assert_bytes_equal(np.asarray(y), want_y, "y")
        assert_bytes_equal(np.asarray(ptr), want_ptr, "new_indptr")
        y, ptr = jax.jit(lambda a, b: F.segment_packbits(a, b, total_bytes=want_y.size + 2,
                                                         backend=backend))(xd, pd)
        assert_bytes_equal(np.asarray(y)[:want_y.size], want_y, "y (jit)")
        assert_bytes_equal(np.asarray(ptr), want_ptr, "new_indptr (jit)")


def test_segment_packbits_numpy_indptr_under_jit():
    """A NumPy ``indptr`` closed over inside ``jit`` is concrete (static): the output size
    is computed from it, as outside ``jit``, without ``total_bytes``."""
    x = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], bool)
    indptr = np.array([0, 4, 7, 11], np.int32)
    y, ptr = jax.jit(lambda a: F.segment_packbits(a, indptr))(x)
    assert np.asarray(y).tolist() == [0b10110000, 0b00100000, 0b11010000]
    assert np.asarray(ptr).tolist() == [0, 1, 2, 3]
