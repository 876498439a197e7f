"""Sharded inputs on the forced CPU devices (conftest): batch-sharded ops stay sharded, each
device quantizes its shard, the bytes equal the unsharded result, and the compiled HLO has no
all-gather, all-to-all or collective-permute. Also shard_map and concurrent callers.

``JAX_FP4_SHARD_PLATFORM=cuda`` runs the same tests on a mesh of the machine's GPUs (the
two-GPU run recorded under benchmarks/results/).
"""

from __future__ import annotations

import concurrent.futures

import jax
import numpy as np
import pytest
from conftest import BF16, COLLECTIVES, assert_bytes_equal, random_input, shard_devices
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jax_fp4 as F


def _mesh():
    devices = shard_devices()
    return Mesh(np.array(devices), ("b",)), len(devices)


def _no_collectives(fn, *args):
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    found = [c for c in COLLECTIVES if c in hlo]
    assert not found, f"compiled HLO has {found}"


OPS = {
    "nvfp4 vmap": lambda a: jax.vmap(lambda r: F.fp4_quantize(r, 300.0))(a),
    "nvfp4 batched": lambda a: F.nvfp4_batched_quantize(a, 300.0),
    "mxfp4 vmap": lambda a: jax.vmap(F.mxfp4_quantize)(a),
    "mxfp8 vmap": lambda a: jax.vmap(lambda r: F.mxfp8_quantize(r, False))(a),
    "per-token vmap": lambda a: jax.vmap(
        lambda r: F.nvfp4_quantize(r, 1 / 2688, per_token_activation=True))(a),
    "kv vmap": lambda a: jax.vmap(lambda r: F.nvfp4_kv_quantize(r, 0.01))(a),
    "packbits vmap": lambda a: jax.vmap(lambda r: F.packbits(r > 0))(a),
}


@pytest.mark.parametrize("name", list(OPS))
def test_batch_sharded_ops_stay_sharded(name):
    mesh, n = _mesh()
    rng = np.random.default_rng(1)
    x = random_input(rng, (2 * n, 130, 64), BF16, spread=1.0)
    sharded = jax.device_put(x, NamedSharding(mesh, P("b")))
    op = OPS[name]
    _no_collectives(op, sharded)
    got = jax.jit(op)(sharded)
    want = jax.jit(op)(jax.device_put(x, mesh.devices.flat[0]))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert_bytes_equal(np.asarray(g), np.asarray(w), name)
        assert tuple(g.sharding.spec)[:1] == ("b",), f"{name}: output sharding {g.sharding.spec}"


def test_shard_map_rows_in_128_row_tiles_match_global_layout():
    """Rows sharded in multiples of 128: each device's 128x4 scales are exactly its slice of
    the global buffer (the layout is row-tile-major), so shard_map needs no communication."""
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:  # jax < 0.8
        from jax.experimental.shard_map import shard_map

    mesh, n = _mesh()
    rng = np.random.default_rng(2)
    x = random_input(rng, (128 * n, 64), BF16, spread=1.0)
    quantize = shard_map(lambda a: F.fp4_quantize(a, 300.0), mesh=mesh, in_specs=P("b"),
                         out_specs=(P("b"), P("b")))
    q, sf = jax.jit(quantize)(x)
    wq, wsf = F.fp4_quantize(jax.device_put(x, mesh.devices.flat[0]), 300.0)
    assert_bytes_equal(np.asarray(q), np.asarray(wq), "codes")
    assert_bytes_equal(np.asarray(sf), np.asarray(wsf), "scales")
    _no_collectives(quantize, x)


def test_concurrent_calls_are_deterministic():
    """CPU handlers called from several threads at once give the same bytes every time."""
    rng = np.random.default_rng(3)
    inputs = [random_input(rng, (64, 256), BF16) for _ in range(4)]
    f = jax.jit(lambda a: F.fp4_quantize(a, 123.0) + F.mxfp8_quantize(a, False))
    want = [jax.tree.map(np.asarray, f(a)) for a in inputs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: (i, jax.tree.map(np.asarray, f(inputs[i % 4]))),
                                range(32)))
    for i, got in results:
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want[i % 4])):
            assert_bytes_equal(g.view(np.uint8), w.view(np.uint8), f"call {i}")


def test_global_scale_helper_on_sharded_input():
    """nvfp4_global_scale is plain jnp: on a sharded input it equals the unsharded value, and
    quantizing with it gives the unsharded bytes."""
    mesh, n = _mesh()
    rng = np.random.default_rng(4)
    x = random_input(rng, (2 * n, 130, 64), BF16, spread=2.0)
    sharded = jax.device_put(x, NamedSharding(mesh, P("b")))
    one = jax.device_put(x, mesh.devices.flat[0])

    def quantize(a):
        scale = jax.vmap(F.nvfp4_global_scale)(a)  # one scale per batch entry
        return jax.vmap(F.fp4_quantize)(a, scale), scale

    (got_q, got_sf), got_scale = jax.jit(quantize)(sharded)
    (want_q, want_sf), want_scale = jax.jit(quantize)(one)
    assert_bytes_equal(np.asarray(got_scale), np.asarray(want_scale), "scale")
    assert_bytes_equal(np.asarray(got_q), np.asarray(want_q), "codes")
    assert_bytes_equal(np.asarray(got_sf), np.asarray(want_sf), "scales")
    _no_collectives(quantize, sharded)  # per-entry maxima need no communication
