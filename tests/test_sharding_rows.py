"""Rows of one matrix sharded under plain ``jax.jit`` (``P("x", None)``) on the forced CPU
devices (conftest).

When every shard holds whole row tiles of the scale layout (128 rows for 128x4, 8 for 8x4,
any number for linear) and the scale buffers carry no padded rows, the quantizers and
dequantizers stay sharded: each device runs the handler on its own rows, the outputs come back
sharded along the rows, the compiled HLO has no collective, and the bytes equal the unsharded
result. Otherwise the op falls back to replicated rows: the bytes still equal the unsharded
result, and the compiled HLO may gather (it usually does; these tests do not forbid it).

``JAX_FP4_SHARD_PLATFORM=cuda`` runs the same tests on a mesh of the machine's GPUs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import BF16, COLLECTIVES, assert_bytes_equal, random_input, shard_devices
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jax_fp4 as F
from jax_fp4 import SfLayout

L128, L8, LIN = SfLayout.layout_128x4, SfLayout.layout_8x4, SfLayout.layout_linear
TILE = {L128: 128, L8: 8, LIN: 1}
_devices = shard_devices


def _mesh():
    devices = _devices()
    return Mesh(np.array(devices), ("x",)), len(devices)


def _rows(mesh, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, P("x", *(None,) * (ndim - 1)))


def _collectives(fn, *args) -> list[str]:
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    return [c for c in COLLECTIVES if c in hlo]


def _unsharded(fn, mesh, *args):
    one = mesh.devices.flat[0]
    return jax.jit(fn)(*(jax.device_put(np.asarray(a), one) for a in args))


def _assert_same(got, want, name):
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_bytes_equal(np.asarray(g), np.asarray(w), f"{name} output {i}")


def _assert_row_sharded(out, name):
    for i, o in enumerate(jax.tree.leaves(out)):
        assert tuple(o.sharding.spec)[:1] == ("x",), f"{name} output {i}: {o.sharding.spec}"


def _fp4(layout, **kw):
    return lambda a: F.fp4_quantize(a, 300.0, is_sf_swizzled_layout=layout != LIN,
                                    is_sf_8x4_layout=layout == L8, **kw)


def _some_rows(rows):
    """A permutation-like row selection: every third entry -1 (selects nothing)."""
    i = jnp.arange(rows, dtype=jnp.int32)
    return jnp.where(i % 3 == 0, -1, (i * 7) % rows)


# name -> (function of the input, scale layout, input dtype)
QUANTIZERS = {
    "nvfp4 128x4": (_fp4(L128), L128, BF16),
    "nvfp4 8x4": (_fp4(L8), L8, BF16),
    "nvfp4 linear": (_fp4(LIN), LIN, BF16),
    "nvfp4 fp16 exact 4over6": (_fp4(L128, exact=True, four_over_six=True), L128, np.float16),
    "nvfp4 row-wise global scale": (
        lambda a: F.fp4_quantize(a, F.nvfp4_global_scale(a, per_row=True)), L128, BF16),
    "mxfp4 128x4": (lambda a: F.mxfp4_quantize(a), L128, BF16),
    "mxfp4 8x4": (lambda a: F.mxfp4_quantize(a, sfLayout=L8), L8, BF16),
    "mxfp4 linear": (lambda a: F.mxfp4_quantize(a, sfLayout=LIN), LIN, BF16),
    "mxfp8 128x4": (lambda a: F.mxfp8_quantize(a), L128, BF16),
    "mxfp8 8x4": (lambda a: F.mxfp8_quantize(a, sf_swizzle_layout=L8), L8, np.float32),
    "mxfp8 linear alignment 128": (lambda a: F.mxfp8_quantize(a, False, alignment=128), LIN,
                                   BF16),
    "per-token 128x4": (lambda a: F.nvfp4_quantize(a, 1 / 2688, per_token_activation=True),
                        L128, BF16),
    "per-token linear": (lambda a: F.nvfp4_quantize(a, 1 / 2688, LIN,
                                                    per_token_activation=True), LIN, BF16),
    "per-token masked rows": (lambda a: F.nvfp4_quantize(
        a, 1 / 2688, per_token_activation=True,
        expanded_idx_to_permuted_idx=_some_rows(a.shape[0])), L128, BF16),
}


def _input(name, rows, k=64, seed=0):
    dtype = QUANTIZERS[name][2]
    return random_input(np.random.default_rng(seed), (rows, k), dtype, spread=2.0)


@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_quantize_rows_in_whole_tiles_stay_sharded(name):
    mesh, n = _mesh()
    fn, layout, _ = QUANTIZERS[name]
    x = _input(name, 2 * TILE[layout] * n)  # two row tiles per shard
    xs = jax.device_put(x, _rows(mesh, 2))
    got = jax.jit(fn)(xs)
    _assert_same(got, _unsharded(fn, mesh, x), name)
    _assert_row_sharded(got, name)
    assert not _collectives(fn, xs), name


def test_quantize_3d_input_rows_sharded_along_first_axis():
    """[A, B, K]: the rows are A * B; sharding A keeps whole 128-row tiles per shard."""
    mesh, n = _mesh()
    fn = _fp4(L128)
    x = random_input(np.random.default_rng(1), (2 * n, 64, 32), BF16)
    xs = jax.device_put(x, _rows(mesh, 3))
    got = jax.jit(fn)(xs)
    _assert_same(got, _unsharded(fn, mesh, x), "3-D")
    _assert_row_sharded(got, "3-D")
    assert not _collectives(fn, xs)


def _fallback_rows(layout, n):
    """Row counts whose shards do not hold whole tiles (or whose scales are padded)."""
    tile = TILE[layout]
    # Shards of tile/2 + 3 rows (the scales padded too unless n * that is whole tiles), and
    # M a multiple of the tile with half a tile per shard.
    cases = [n * (tile // 2 + 3), n * tile // 2]
    return [m for m in cases if (m // n) % tile]


@pytest.mark.parametrize("name", [k for k, v in QUANTIZERS.items() if v[1] != LIN])
def test_quantize_rows_not_in_whole_tiles_fall_back_to_the_same_bytes(name):
    """Shards that do not hold whole tiles: replicated rows (the HLO may gather), same bytes."""
    mesh, n = _mesh()
    fn, layout, _ = QUANTIZERS[name]
    for rows in _fallback_rows(layout, n):
        x = _input(name, rows, seed=rows)
        got = jax.jit(fn)(jax.device_put(x, _rows(mesh, 2)))
        _assert_same(got, _unsharded(fn, mesh, x), f"{name} M={rows}")


@pytest.mark.parametrize("name", ["nvfp4 128x4", "mxfp8 8x4", "nvfp4 linear"])
def test_quantize_uneven_rows_fall_back_to_the_same_bytes(name):
    """M not a multiple of the shard count (a sharding constraint inside jit pads the last
    shard): replicated rows, same bytes."""
    mesh, n = _mesh()
    fn, _, _ = QUANTIZERS[name]
    x = _input(name, 8 * n + 3)

    def constrained(a):
        return fn(jax.lax.with_sharding_constraint(a, _rows(mesh, 2)))

    got = jax.jit(constrained)(jax.device_put(x, NamedSharding(mesh, P())))
    _assert_same(got, _unsharded(fn, mesh, x), name)


# ---- dequantizers: codes and scales sharded along the rows ----

def _nvfp4_pair(layout):
    return (_fp4(layout),
            lambda q, sf: F.nvfp4_dequantize(q, sf, 300.0, layout, jnp.bfloat16))


DEQUANTIZERS = {
    # name -> (quantizer, dequantizer of (codes, scales), scale layout)
    "nvfp4 128x4": (*_nvfp4_pair(L128), L128),
    "nvfp4 8x4": (*_nvfp4_pair(L8), L8),
    "nvfp4 linear": (*_nvfp4_pair(LIN), LIN),
    "e2m1 E4M3 scales 128x4": (
        _fp4(L128), lambda q, sf: F.e2m1_and_ufp8sf_scale_to_float(q, sf, 1 / 300.0), L128),
    "mxfp4 8x4": (lambda a: F.mxfp4_quantize(a, sfLayout=L8),
                  lambda q, sf: F.mxfp4_dequantize(q, sf, L8), L8),
    "mxfp4 host linear": (
        lambda a: F.mxfp4_quantize(a, sfLayout=LIN),
        lambda q, sf: F.mxfp4_dequantize_host(q, sf), LIN),
    "mxfp8 128x4": (lambda a: F.mxfp8_quantize(a),
                    lambda q, sf: F.mxfp8_dequantize(q, sf, L128), L128),
    "mxfp8 host linear": (lambda a: F.mxfp8_quantize(a, False),
                          lambda q, sf: F.mxfp8_dequantize_host(q, sf, False), LIN),
}


@pytest.mark.parametrize("name", list(DEQUANTIZERS))
def test_dequantize_rows_in_whole_tiles_stay_sharded(name):
    mesh, n = _mesh()
    quantize, dequantize, layout = DEQUANTIZERS[name]
    x = random_input(np.random.default_rng(5), (2 * TILE[layout] * n, 64), BF16, spread=2.0)
    q, sf = (np.asarray(a) for a in _unsharded(quantize, mesh, x))
    qs, sfs = jax.device_put(q, _rows(mesh, q.ndim)), jax.device_put(sf, _rows(mesh, sf.ndim))
    got = jax.jit(dequantize)(qs, sfs)
    _assert_same(got, _unsharded(dequantize, mesh, q, sf), name)
    _assert_row_sharded(got, name)
    assert not _collectives(dequantize, qs, sfs), name

    # Quantize and dequantize in one program: still no communication.
    def roundtrip(a):
        return dequantize(*quantize(a))

    xs = jax.device_put(x, _rows(mesh, 2))
    _assert_same(jax.jit(roundtrip)(xs), _unsharded(roundtrip, mesh, x), f"{name} roundtrip")
    assert not _collectives(roundtrip, xs), name


@pytest.mark.parametrize("name", [k for k, v in DEQUANTIZERS.items() if v[2] != LIN])
def test_dequantize_rows_not_in_whole_tiles_fall_back_to_the_same_bytes(name):
    mesh, n = _mesh()
    quantize, dequantize, layout = DEQUANTIZERS[name]
    for rows in _fallback_rows(layout, n):
        x = random_input(np.random.default_rng(rows), (rows, 64), BF16, spread=2.0)
        q, sf = (np.asarray(a) for a in _unsharded(quantize, mesh, x))
        qs = jax.device_put(q, _rows(mesh, q.ndim))
        # The scales along the rows too where their size allows, else replicated.
        sfs = jax.device_put(sf, _rows(mesh, sf.ndim) if sf.shape[0] % n == 0
                             else NamedSharding(mesh, P()))
        got = jax.jit(dequantize)(qs, sfs)
        _assert_same(got, _unsharded(dequantize, mesh, q, sf), f"{name} M={rows}")


# ---- transformations, jit shardings, the twin ----

def test_vmap_of_row_sharded_input_is_one_batched_call():
    """vmap still meets the primitive's batching rule (one call with one more batch axis);
    with the rows sharded, XLA's batch partitioner gathers them: the same bytes."""
    mesh, n = _mesh()
    fn = jax.vmap(_fp4(L128))
    x = random_input(np.random.default_rng(6), (3, 128 * n, 64), BF16)
    jaxpr = jax.make_jaxpr(fn)(x)
    calls = [e for e in jaxpr.eqns if e.primitive.name == "jax_fp4_fp4_quantize"]
    assert len(calls) == 1 and calls[0].params["num_batch_dims"] == 1, jaxpr
    xs = jax.device_put(x, NamedSharding(mesh, P(None, "x", None)))
    _assert_same(jax.jit(fn)(xs), _unsharded(fn, mesh, x), "vmap")


def test_vmap_inside_row_partitioned_program():
    """A vmapped op next to a row-partitioned one in the same jit: both give the unsharded
    bytes."""
    mesh, n = _mesh()
    x = random_input(np.random.default_rng(7), (128 * n, 64), BF16)

    def both(a):
        rows = _fp4(L128)(a)
        per_block = jax.vmap(_fp4(LIN))(a.reshape(n, 128, 64))
        return rows, per_block

    xs = jax.device_put(x, _rows(mesh, 2))
    got = jax.jit(both)(xs)
    _assert_same(got, _unsharded(both, mesh, x), "both")
    _assert_row_sharded(got[0], "rows")


def test_jit_in_and_out_shardings():
    mesh, n = _mesh()
    fn = _fp4(L8)
    x = random_input(np.random.default_rng(8), (8 * n, 64), BF16)
    rows = _rows(mesh, 2)
    jitted = jax.jit(fn, in_shardings=rows, out_shardings=(rows, rows))
    got = jitted(x)
    _assert_same(got, _unsharded(fn, mesh, x), "in/out shardings")
    _assert_row_sharded(got, "in/out shardings")
    hlo = jitted.lower(x).compile().as_text()
    assert not [c for c in COLLECTIVES if c in hlo]


def test_replicated_input_with_row_sharded_outputs_quantizes_only_local_rows():
    """out_shardings along the rows of a replicated input: each device slices its rows and
    quantizes only those (the custom call sees M / n rows), no communication."""
    mesh, n = _mesh()
    fn = _fp4(L128)
    x = random_input(np.random.default_rng(13), (128 * n, 64), BF16)
    rows = _rows(mesh, 2)
    jitted = jax.jit(fn, out_shardings=(rows, rows))
    xr = jax.device_put(x, NamedSharding(mesh, P()))
    got = jitted(xr)
    _assert_same(got, _unsharded(fn, mesh, x), "replicated in")
    _assert_row_sharded(got, "replicated in")
    hlo = jitted.lower(xr).compile().as_text()
    assert not [c for c in COLLECTIVES if c in hlo]
    call = next(line for line in hlo.splitlines() if "custom_call_target=\"jax_fp4_" in line)
    assert "(u8[128,32]" in call and "u8[128,4]" in call, call


def test_twin_backend_unaffected():
    """backend="xla" is plain jnp: no custom call and no custom partitioning; same bytes."""
    mesh, n = _mesh()
    x = random_input(np.random.default_rng(9), (128 * n, 64), BF16)
    xs = jax.device_put(x, _rows(mesh, 2))

    def twin(a):
        return F.fp4_quantize(a, 300.0, backend="xla")

    text = jax.jit(twin).lower(xs).as_text()
    assert "jax_fp4_" not in text and "CustomSPMDPartitioning" not in text
    _assert_same(jax.jit(twin)(xs), _unsharded(_fp4(L128), mesh, x), "twin")


def test_single_device_lowers_to_the_plain_custom_call():
    x = random_input(np.random.default_rng(10), (128, 64), BF16)
    text = jax.jit(_fp4(L128)).lower(x).as_text()
    assert "CustomSPMDPartitioning" not in text
    assert text.count("@jax_fp4_fp4_quantize(") == 1


def test_two_axis_mesh():
    """Rows sharded over one axis of a 2-D mesh, or over both: still per shard."""
    devices = _devices()
    if len(devices) < 4:
        pytest.skip("needs 4 devices")
    mesh = Mesh(np.array(devices).reshape(2, -1), ("x", "y"))
    fn = _fp4(L128)
    x = random_input(np.random.default_rng(11), (128 * len(devices), 64), BF16)
    for spec in (P("y", None), P(("x", "y"), None)):
        xs = jax.device_put(x, NamedSharding(mesh, spec))
        got = jax.jit(fn)(xs)
        _assert_same(got, _unsharded(fn, mesh, x), str(spec))
        assert tuple(got[1].sharding.spec)[:1] == tuple(spec)[:1], got[1].sharding.spec
        assert not _collectives(fn, xs), spec


def test_gspmd_partitioner_too():
    """With Shardy off (jax_use_shardy_partitioner=False) the same partitioning applies."""
    mesh, n = _mesh()
    x = random_input(np.random.default_rng(12), (128 * n, 64), BF16)
    xs = jax.device_put(x, _rows(mesh, 2))
    before = jax.config.jax_use_shardy_partitioner
    try:
        jax.config.update("jax_use_shardy_partitioner", False)

        def fn(a):  # a new function: nothing cached from the Shardy runs
            return F.fp4_quantize(a, 300.0)

        got = jax.jit(fn)(xs)
        _assert_row_sharded(got, "gspmd")
        assert not _collectives(fn, xs)
    finally:
        jax.config.update("jax_use_shardy_partitioner", before)
    _assert_same(got, _unsharded(fn, mesh, x), "gspmd")
