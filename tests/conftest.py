"""Shared pytest setup and helpers for the jax_fp4 test suite.

* Forces 8 CPU devices (before any computation) so sharding tests have devices to use.
* Registers the ``cuda`` and ``slow`` markers.
* ``platform`` fixture: every backend-comparing test runs on ``"cpu"`` and, when
  ``jax_fp4.cuda_available()``, on ``"cuda"``. GPU cases carry the ``cuda`` marker and are
  skipped without a GPU; with ``JAX_FP4_REQUIRE_CUDA=1`` a missing GPU or CUDA handler is a
  failure instead (unless ``JAX_PLATFORMS`` deliberately hides CUDA, e.g. the CPU pass of
  the GPU run, where the GPU cases are skipped).
* Helpers (plain functions, imported with ``from conftest import ...``): placing arrays on
  a platform, running a public op with a backend, bitwise comparisons, random inputs.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from functools import partial

import jax

# Must happen before any computation; jax >= 0.4.31 has the option. Older/newer jax without
# it raises AttributeError; a backend that is already up raises RuntimeError.
with contextlib.suppress(AttributeError, RuntimeError, ValueError):
    jax.config.update("jax_num_cpu_devices", 8)

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jax_fp4

F32 = np.float32
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn

REQUIRE_CUDA = os.environ.get("JAX_FP4_REQUIRE_CUDA", "") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cuda: needs a CUDA GPU and the CUDA handlers (skipped otherwise; required with "
        "JAX_FP4_REQUIRE_CUDA=1)")
    config.addinivalue_line("markers", "slow: larger shapes")


# ---------------------------------------------------------------------------
# Platforms
# ---------------------------------------------------------------------------


def _cuda_hidden_on_purpose() -> bool:
    plats = os.environ.get("JAX_PLATFORMS", "").lower()
    return bool(plats) and not any(p in plats for p in ("cuda", "gpu"))


def _cpu_visible() -> bool:
    try:
        return bool(jax.devices("cpu"))
    except RuntimeError:
        return False


PLATFORMS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


def require_platform(platform: str) -> None:
    """Skips (or, for CUDA with JAX_FP4_REQUIRE_CUDA=1, fails) when ``platform`` is absent."""
    if platform == "cpu":
        if not _cpu_visible():
            pytest.skip("no CPU device visible to JAX (JAX_PLATFORMS excludes cpu)")
        return
    if jax_fp4.cuda_available():
        return
    why = ("jax_fp4's CUDA handlers are not compiled/registered" if not jax_fp4.cuda_compiled()
           else "JAX sees no CUDA GPU")
    if REQUIRE_CUDA and not _cuda_hidden_on_purpose():
        pytest.fail(f"JAX_FP4_REQUIRE_CUDA=1 but {why}")
    pytest.skip(why)


@pytest.fixture(params=PLATFORMS)
def platform(request) -> str:
    """``"cpu"`` always, ``"cuda"`` when a GPU and the CUDA handlers are available."""
    require_platform(request.param)
    return request.param


def device(platform: str):
    return jax.devices(platform)[0]


# For compute-sanitizer's initcheck: host-to-device transfers of test inputs were reported as
# uninitialized device memory (run 6 of benchmarks/results/2026-11-22_h100_session4.md), so
# with this set every placed input is rewritten by a device kernel first (same bits).
DEVICE_WRITTEN_INPUTS = os.environ.get("JAX_FP4_DEVICE_WRITTEN_INPUTS", "") == "1"


@jax.jit
def _rewritten_on_device(a, zero):
    if a.dtype == jnp.bool_:
        return a ^ (zero != 0)
    bits = jnp.dtype(f"uint{8 * a.dtype.itemsize}")
    word = jax.lax.bitcast_convert_type(a, bits)
    return jax.lax.bitcast_convert_type(word ^ zero.astype(bits), a.dtype)


def _put(a, dev):
    x = jax.device_put(a, dev)
    if DEVICE_WRITTEN_INPUTS and x.size and x.dtype.itemsize in (1, 2, 4, 8) \
            and x.dtype != jnp.dtype("float4_e2m1fn"):
        x = _rewritten_on_device(x, jax.device_put(np.uint32(0), dev))
    return x


def on(platform: str, *arrays):
    """Puts NumPy/JAX arrays (None passes through) on the first device of ``platform``."""
    dev = device(platform)
    out = tuple(a if a is None or isinstance(a, (float, int))
                else _put(a, dev) for a in arrays)
    return out if len(out) != 1 else out[0]


# ---------------------------------------------------------------------------
# Sharding (tests/test_sharding*.py)
# ---------------------------------------------------------------------------

# ``JAX_FP4_SHARD_PLATFORM=cuda`` runs the sharding tests on a mesh of the machine's GPUs.
SHARD_PLATFORM = os.environ.get("JAX_FP4_SHARD_PLATFORM", "cpu")
COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "all-reduce")


def shard_devices() -> list:
    """A power-of-two number (>= 2) of ``SHARD_PLATFORM`` devices; skips the test without."""
    try:
        devices = jax.devices(SHARD_PLATFORM)
    except RuntimeError:
        devices = []
    if len(devices) < 2:
        pytest.skip(f"needs several {SHARD_PLATFORM} devices (CPU: jax_num_cpu_devices)")
    return devices[:1 << (len(devices).bit_length() - 1)]


# ---------------------------------------------------------------------------
# Running ops
# ---------------------------------------------------------------------------

BACKENDS = ("auto", "xla")


def with_backends(argnames: str, values, twin=None, ids=None):
    """``parametrize(argnames + ",backend")``: every value tuple with ``"auto"``, and with
    ``"xla"`` only where ``twin(*values)`` is true (the twin compiles once per case, ~0.5 s;
    a representative subset keeps the suite fast). ``ids(value)`` names one value."""
    names = [n.strip() for n in argnames.split(",")]
    params = []
    for v in values:
        v = tuple(v) if len(names) > 1 else (v,)
        vid = "-".join((ids or _default_id)(x) for x in v)
        for backend in BACKENDS:
            if backend == "xla" and twin is not None and not twin(*v):
                continue
            params.append(pytest.param(*v, backend, id=f"{vid}-{backend}"))
    return pytest.mark.parametrize(",".join(names + ["backend"]), params)


def _default_id(x) -> str:
    if isinstance(x, tuple):
        return "x".join(map(_default_id, x))
    return getattr(x, "name", None) or str(x)


def run(fn, *args, backend: str, platform: str, jit: bool | None = None, **kwargs):
    """``fn(*args, backend=backend, **kwargs)`` with array args on ``platform``.

    Array arguments are traced (jit) or passed eagerly; the twin (``backend="xla"``) is
    jitted by default because its eager op-by-op execution compiles every small op.
    Returns NumPy (tuples stay tuples).
    """
    placed = [on(platform, a) if isinstance(a, (np.ndarray, jax.Array)) else a for a in args]
    if jit is None:
        jit = backend == "xla"
    f = partial(fn, backend=backend, **kwargs)
    if jit:
        arr_idx = [i for i, a in enumerate(placed) if isinstance(a, jax.Array)]

        def traced(*arrs):
            full = list(placed)
            for i, a in zip(arr_idx, arrs):
                full[i] = a
            return f(*full)

        out = jax.jit(traced)(*[placed[i] for i in arr_idx])
    else:
        out = f(*placed)
    return to_np(out)


def to_np(out):
    if isinstance(out, (tuple, list)):
        return tuple(to_np(o) for o in out)
    return np.asarray(out)


def result_platform(x) -> str:
    (dev,) = x.devices()
    return dev.platform


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------


def as_bytes(x) -> np.ndarray:
    """Any 1-byte array (uint8, float8) as uint8; 2-byte as uint16; 4-byte as uint32."""
    x = np.asarray(x)
    view = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
    return x.view(view)


def assert_bytes_equal(got, want, what: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    g, w = as_bytes(got), as_bytes(want)
    if not np.array_equal(g, w):
        bad = np.argwhere(g != w)
        first = [tuple(int(i) for i in b) for b in bad[:8]]
        detail = ", ".join(f"{i}: got {g[i]:#x} want {w[i]:#x}" for i in first)
        raise AssertionError(f"{what}: {len(bad)} of {g.size} differ; first {detail}")


def assert_f32_bits_equal(got, want, what: str = "") -> None:
    """float32 bit patterns equal, including the sign of zero; NaN positions equal (any
    payload)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    gn, wn = np.isnan(got), np.isnan(want)
    if not np.array_equal(gn, wn):
        bad = np.argwhere(gn != wn)[:8]
        raise AssertionError(f"{what}: NaN positions differ at {bad.tolist()}")
    g = np.where(gn, np.uint32(0), got.view(np.uint32))
    w = np.where(wn, np.uint32(0), want.view(np.uint32))
    if not np.array_equal(g, w):
        bad = np.argwhere(g != w)
        first = [tuple(int(i) for i in b) for b in bad[:8]]
        detail = ", ".join(
            f"{i}: got {got[i]!r} ({g[i]:#010x}) want {want[i]!r} ({w[i]:#010x})"
            for i in first)
        raise AssertionError(f"{what}: {len(bad)} of {g.size} differ; first {detail}")


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

DTYPES = {"f16": np.float16, "bf16": BF16, "e4m3": E4M3, "f32": np.float32}


def cast(x, dtype) -> np.ndarray:
    """float64/float32 values to ``dtype``; E4M3 is clipped first (no cast overflow)."""
    x = np.asarray(x, np.float64)
    if np.dtype(dtype) == np.dtype(E4M3):
        x = np.where(np.isinf(x), np.sign(x) * 448.0, x)
        x = np.clip(x, -448.0, 448.0)
    with np.errstate(over="ignore"):  # fp16 overflow to inf is intended
        return x.astype(np.float32).astype(dtype)


def random_input(rng: np.random.Generator, shape, dtype, *, spread: float = 3.0):
    """Normal values with a per-row magnitude spread over 10^[-spread, spread], plus some
    exact zeros, cast to ``dtype``."""
    shape = tuple(shape)
    rows = shape[:-1] + (1,)
    mag = 10.0 ** rng.uniform(-spread, spread, rows)
    if np.dtype(dtype) == np.dtype(E4M3):
        mag = np.minimum(mag, 60.0)
    x = rng.standard_normal(shape) * mag
    x[rng.random(shape) < 0.03] = 0.0
    return cast(x, dtype)


def seed_of(*parts) -> int:
    """A stable seed from test parameters (``hash()`` of str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def typical_scale(x, fmt_max: float = 448.0 * 6.0) -> np.float32:
    """FlashInfer's usual encode scale ``2688 / amax`` (1.0 for an all-zero tensor)."""
    amax = float(np.max(np.abs(np.asarray(x, np.float32)), initial=0.0))
    return np.float32(fmt_max / amax) if amax > 0 else np.float32(1.0)


__all__ = [
    "BACKENDS",
    "BF16",
    "DTYPES",
    "E4M3",
    "F32",
    "PLATFORMS",
    "REQUIRE_CUDA",
    "as_bytes",
    "assert_bytes_equal",
    "assert_f32_bits_equal",
    "cast",
    "device",
    "jnp",
    "on",
    "random_input",
    "require_platform",
    "result_platform",
    "run",
    "seed_of",
    "to_np",
    "typical_scale",
    "with_backends",
]
