"""JAX transformations of every op: ``jit`` equals eager; ``vmap`` (axis 0, ``in_axes=1``,
nested, only the global scale, data only) equals a Python loop over the mapped axis with the
results stacked (SPEC 8.6: one scale matrix per batch element, never folded into M); the
vmapped program contains exactly one custom call of the op; sharded inputs give the same
results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import BF16, assert_bytes_equal, on, seed_of, with_backends
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jax_fp4 as F
from jax_fp4 import SfLayout


@dataclass(frozen=True)
class Op:
    fn: Callable  # fn(*arrays, backend=...) -> array or tuple of arrays
    make: Callable  # make(rng) -> tuple of NumPy arrays: one unbatched problem
    target: str  # FFI target of the primitive
    scale_arg: int | None = None  # index of the global-scale argument, if any


def _bf16(rng, shape, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(BF16)


def _codes(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


M = 13  # rows of one problem: not a multiple of 8 or 128, so folding a batch into M differs

OPS = {
    "fp4_quantize_nvfp4": Op(
        lambda x, s, backend: F.fp4_quantize(x, s, backend=backend),
        lambda rng: (_bf16(rng, (M, 48)), np.array([rng.uniform(50, 200)], np.float32)),
        "fp4_quantize", scale_arg=1),
    "fp4_quantize_nvfp4_rows_inverse": Op(
        lambda x, s, backend: F.fp4_quantize(x, s, is_global_scale_inversed=True,
                                             is_sf_swizzled_layout=False, backend=backend),
        lambda rng: (_bf16(rng, (M, 32)), rng.uniform(0.005, 0.02, M).astype(np.float32)),
        "fp4_quantize", scale_arg=1),
    "fp4_quantize_mxfp4_8x4": Op(
        lambda x, backend: F.fp4_quantize(x, None, 32, True, True, True, backend=backend),
        lambda rng: (_bf16(rng, (M, 96)),), "fp4_quantize"),
    "fp4_quantize_fp8": Op(
        lambda x, s, backend: F.fp4_quantize(x, s, backend=backend),
        lambda rng: (_bf16(rng, (M, 32)).astype(np.float32).astype(jnp.float8_e4m3fn),
                     np.array([rng.uniform(0.5, 2)], np.float32)),
        "fp4_quantize", scale_arg=1),
    "nvfp4_quantize": Op(
        lambda x, s, backend: F.nvfp4_quantize(x, s, SfLayout.layout_linear, backend=backend,
                                               exact=True),
        lambda rng: (_bf16(rng, (M, 64)).astype(np.float16),
                     np.array([rng.uniform(50, 200)], np.float32)),
        "fp4_quantize", scale_arg=1),
    "mxfp4_quantize": Op(
        lambda x, backend: F.mxfp4_quantize(x, backend=backend),
        lambda rng: (_bf16(rng, (M, 64)),), "fp4_quantize"),
    "nvfp4_batched_quantize": Op(
        lambda x, s, backend: F.nvfp4_batched_quantize(x, s, backend=backend),
        lambda rng: (_bf16(rng, (2, M, 32)), np.array([rng.uniform(50, 200)], np.float32)),
        "fp4_quantize", scale_arg=1),
    "mxfp8_quantize": Op(
        lambda x, backend: F.mxfp8_quantize(x, alignment=64, backend=backend),
        lambda rng: (_bf16(rng, (M, 96)),), "mxfp8_quantize"),
    "e2m1_and_ufp8sf_scale_to_float": Op(
        lambda q, sf, g, backend: F.e2m1_and_ufp8sf_scale_to_float(q, sf, g, backend=backend),
        lambda rng: (_codes(rng, (M, 24)), _codes(rng, (128, 4)),
                     np.array([rng.uniform(0.001, 1)], np.float32)),
        "block_dequantize", scale_arg=2),
    "mxfp4_dequantize": Op(
        lambda q, sf, backend: F.mxfp4_dequantize(q, sf, SfLayout.layout_8x4, backend=backend),
        lambda rng: (_codes(rng, (M, 48)), _codes(rng, (16, 4))), "block_dequantize"),
    "mxfp4_dequantize_host": Op(
        lambda q, sf, backend: F.mxfp4_dequantize_host(q, sf, backend=backend),
        lambda rng: (_codes(rng, (M, 32)), _codes(rng, (M, 2))), "block_dequantize"),
    "mxfp8_dequantize_host": Op(
        lambda q, sf, backend: F.mxfp8_dequantize_host(q, sf, backend=backend),
        lambda rng: (_codes(rng, (M, 64)), _codes(rng, (128 * 4,))), "block_dequantize"),
    "block_scale_interleave": Op(
        lambda x, backend: F.block_scale_interleave(x, backend=backend),
        lambda rng: (_codes(rng, (M, 3)),), "block_scale_interleave"),
    "packbits": Op(
        lambda x, backend: F.packbits(x, "little", backend=backend),
        lambda rng: (rng.random(29) < 0.5,), "packbits"),
    "segment_packbits": Op(
        lambda x, p, backend: F.segment_packbits(x, p, total_bytes=9, backend=backend),
        lambda rng: (rng.random(40) < 0.5,
                     np.concatenate([[0], np.sort(rng.integers(0, 41, 4)), [40]])
                     .astype(np.int32)),
        "segment_packbits"),
}
SCALE_OPS = [k for k, op in OPS.items() if op.scale_arg is not None]


def _leaves(out):
    return [np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,))]


def _assert_same(got, want, what):
    g, w = _leaves(got), _leaves(want)
    assert len(g) == len(w)
    for i, (a, b) in enumerate(zip(g, w)):
        assert a.dtype == b.dtype, f"{what}[{i}] dtype {a.dtype} != {b.dtype}"
        assert_bytes_equal(a, b, f"{what}[{i}]")


def _stack(results, axis=0):
    per = [_leaves(r) for r in results]
    return [np.stack([p[i] for p in per], axis=axis) for i in range(len(per[0]))]


def _problems(name, n, seed_extra=()):
    rng = np.random.default_rng(seed_of(name, *seed_extra))
    return [OPS[name].make(rng) for _ in range(n)]


def _bind(name, backend):
    return partial(OPS[name].fn, backend=backend)


# ---------------------------------------------------------------------------
# jit
# ---------------------------------------------------------------------------


# The eager twin compiles every jnp op separately (~17 s for fp4_quantize on 2 cores): the
# cheap ops cover it.
@with_backends("name", OPS, twin=lambda name: name in ("packbits", "block_scale_interleave",
                                                     "mxfp4_dequantize_host"))
def test_jit_equals_eager(name, backend, platform):
    (args,) = _problems(name, 1)
    args = on_all(args, platform)
    f = _bind(name, backend)
    _assert_same(jax.jit(f)(*args), f(*args), f"{name} jit vs eager")


# ---------------------------------------------------------------------------
# vmap == Python loop
# ---------------------------------------------------------------------------

B = 3


def on_all(args, platform):
    return tuple(on(platform, a) for a in args)


@with_backends("name", OPS, twin=lambda name: name in (
    "fp4_quantize_nvfp4_rows_inverse", "mxfp8_quantize", "e2m1_and_ufp8sf_scale_to_float",
    "block_scale_interleave", "segment_packbits"))
def test_vmap_axis0(name, backend, platform):
    problems = _problems(name, B)
    f = _bind(name, backend)
    want = _stack([jax.jit(f)(*on_all(p, platform)) for p in problems])
    stacked = on_all([np.stack(a) for a in zip(*problems)], platform)
    got = jax.jit(jax.vmap(f))(*stacked)
    _assert_same(got, want, f"{name} vmap(axis 0)")


@pytest.mark.parametrize("name", OPS)
def test_vmap_in_axes_1(name, platform):
    problems = _problems(name, B, ("axis1",))
    f = _bind(name, "auto")
    want = _stack([f(*on_all(p, platform)) for p in problems])
    # the mapped axis is axis 1 of every argument (1-D arguments become [n, B])
    stacked = on_all([np.stack(a, axis=1) for a in zip(*problems)], platform)
    got = jax.vmap(f, in_axes=1)(*stacked)
    _assert_same(got, want, f"{name} vmap(in_axes=1)")
    # out_axes=1 puts the batch axis back where it came from
    got = jax.vmap(f, in_axes=1, out_axes=1)(*stacked)
    _assert_same(got, _stack([f(*on_all(p, platform)) for p in problems], axis=1),
                 f"{name} vmap(in_axes=1, out_axes=1)")


@with_backends("name", OPS, twin=lambda name: name in ("fp4_quantize_mxfp4_8x4",
                                                     "mxfp4_dequantize"))
def test_vmap_nested(name, backend, platform):
    B1, B2 = 2, 3
    problems = _problems(name, B1 * B2, ("nested",))
    f = _bind(name, backend)
    want = [w.reshape(B1, B2, *w.shape[1:]) for w in
            _stack([jax.jit(f)(*on_all(p, platform)) for p in problems])]
    stacked = on_all([np.stack(a).reshape(B1, B2, *a[0].shape) for a in zip(*problems)],
                     platform)
    got = jax.jit(jax.vmap(jax.vmap(f)))(*stacked)
    _assert_same(got, want, f"{name} vmap(vmap)")
    if backend == "auto":
        got = jax.vmap(jax.vmap(f))(*stacked)
        _assert_same(got, want, f"{name} vmap(vmap) eager")
        # outer over axis 1 of [B2, B1, ...], inner over axis 0 of what remains: [B1, B2]
        swapped = [np.swapaxes(np.asarray(a), 0, 1) for a in stacked]
        got = jax.vmap(jax.vmap(f), in_axes=1)(*on_all(swapped, platform))
        _assert_same(got, want, f"{name} vmap(vmap, in_axes=1)")


@pytest.mark.parametrize("name", SCALE_OPS)
def test_vmap_only_global_scale(name, platform):
    problems = _problems(name, B, ("scale",))
    op = OPS[name]
    f = _bind(name, "auto")
    base = problems[0]
    scales = [p[op.scale_arg] for p in problems]
    in_axes = [None] * len(base)
    in_axes[op.scale_arg] = 0

    def call(args):
        return f(*on_all(args, platform))

    want = _stack([call(base[:op.scale_arg] + (s,) + base[op.scale_arg + 1:])
                   for s in scales])
    args = list(on_all(base, platform))
    args[op.scale_arg] = on(platform, np.stack(scales))
    got = jax.jit(jax.vmap(f, in_axes=tuple(in_axes)))(*args)
    _assert_same(got, want, f"{name} vmap over the global scale only")


@pytest.mark.parametrize("name", OPS)
def test_vmap_data_only(name, platform):
    """Batched data, shared (unbatched) remaining arguments."""
    problems = _problems(name, B, ("data",))
    f = _bind(name, "auto")
    shared = problems[0][1:]
    want = _stack([f(*on_all((p[0],) + shared, platform)) for p in problems])
    args = on_all((np.stack([p[0] for p in problems]),) + shared, platform)
    got = jax.vmap(f, in_axes=(0,) + (None,) * len(shared))(*args)
    _assert_same(got, want, f"{name} vmap over the first argument only")


def test_vmap_fp4_quantize_is_not_folded_into_rows():
    """SPEC 8.6: vmap gives per-element 128x4 matrices ([B, 128, 4] for M = 13), unlike
    fp4_quantize on the 3-D input (one matrix over B*M rows); it equals
    nvfp4_batched_quantize."""
    rng = np.random.default_rng(0)
    x = _bf16(rng, (B, M, 64))
    s = np.float32(100.0)
    q_v, sf_v = jax.vmap(lambda a: F.fp4_quantize(a, s))(x)
    _q_3, sf_3 = F.fp4_quantize(x, s)
    assert sf_v.shape == (B, 128, 4) and sf_3.shape == (128, 4)
    assert not np.array_equal(np.asarray(sf_v).reshape(-1)[:512], np.asarray(sf_3).reshape(-1))
    q_b, sf_b = F.nvfp4_batched_quantize(x, s)
    assert_bytes_equal(np.asarray(q_v), np.asarray(q_b), "codes")
    assert_bytes_equal(np.asarray(sf_v).reshape(B, -1), np.asarray(sf_b), "scales")


# ---------------------------------------------------------------------------
# One custom call per vmapped op
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
def test_vmapped_hlo_has_one_custom_call(name, platform):
    problems = _problems(name, B, ("hlo",))
    f = _bind(name, "auto")
    stacked = on_all([np.stack(a) for a in zip(*problems)], platform)
    for g, what in ((jax.vmap(f), "vmap"), (jax.vmap(jax.vmap(f)), "nested vmap")):
        args = stacked if what == "vmap" else tuple(a[None] for a in stacked)
        text = jax.jit(g).lower(*args).as_text()
        target = f"@jax_fp4_{OPS[name].target}("
        assert text.count(target) == 1, f"{what}: {text.count(target)} x {target}"
        assert text.count("@jax_fp4_") == 1, f"{what}: other jax_fp4 calls in\n{text}"


# ---------------------------------------------------------------------------
# Sharded inputs on the forced CPU devices
# ---------------------------------------------------------------------------


def _mesh():
    devs = jax.devices("cpu")
    if len(devs) < 4:
        pytest.skip("needs jax_num_cpu_devices=4 (conftest)")
    return Mesh(np.array(devs[:4]), ("b",))


@pytest.mark.parametrize("name", ["fp4_quantize_nvfp4", "mxfp8_quantize",
                                  "e2m1_and_ufp8sf_scale_to_float", "packbits"])
def test_sharded_batch_matches_unsharded(name):
    mesh = _mesh()
    problems = _problems(name, 8, ("shard",))
    f = jax.jit(jax.vmap(_bind(name, "auto")))
    stacked = [np.stack(a) for a in zip(*problems)]
    sharded = [jax.device_put(a, NamedSharding(mesh, PartitionSpec("b"))) for a in stacked]
    _assert_same(f(*sharded), f(*stacked), f"{name} sharded")


@pytest.mark.parametrize("name", ["fp4_quantize_nvfp4", "nvfp4_batched_quantize",
                                  "mxfp8_quantize", "mxfp4_dequantize", "packbits"])
def test_sharded_batch_has_no_collectives(name):
    """A vmapped op on a batch sharded over the 4 CPU devices stays sharded: no all-gather
    (or other collective) in the compiled HLO, outputs sharded along the batch."""
    mesh = _mesh()
    problems = _problems(name, 8, ("shard",))
    f = jax.jit(jax.vmap(_bind(name, "auto")))
    sharding = NamedSharding(mesh, PartitionSpec("b"))
    stacked = [jax.device_put(np.stack(a), sharding) for a in zip(*problems)]
    text = f.lower(*stacked).compile().as_text()
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
        assert collective not in text, f"{collective} in the compiled HLO of {name}"
    for out in _leaves_arrays(f(*stacked)):
        assert out.sharding.is_equivalent_to(sharding, out.ndim), out.sharding


def _leaves_arrays(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]
