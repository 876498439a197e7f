"""CPU handlers against the pure-JAX twin on the CPU (issue 5's "3x faster than the twin").

Times one jitted call of each quantizer (on a [M, K] bfloat16 matrix) and dequantizer (on
that matrix's codes and scales), of packbits / segment_packbits (on 4 M K bools),
block_scale_interleave (on 4 M x K/16 scale bytes) and the NVFP4 KV-cache pair, with the CPU
handler (backend="auto") and with the twin (backend="xla"), median of --reps calls after a
warm-up, and prints both and their ratio.
The two are called in turn (handler, twin, handler, ...), so that both see the same state of
a shared machine; the ratio is the median of the per-pair ratios.

For scale, each line also gives a host copy of the same bytes: the op's input and output
bytes together, moved by a `numpy.copyto` of half that size on every core (each thread
copies its own slice, numpy releases the GIL), so reads + writes equal the op's. "copy /
handler" near 1 means the handler runs at memory-copy speed.

    python3 benchmarks/cpu_vs_twin.py [--m 4096 --k 4096 --reps 5 --only mxfp8]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4 as F

GLOBAL_SCALE = 300.0


def _quantizers():
    return {
        "nvfp4 (fp4_quantize)": lambda a, b: F.fp4_quantize(a, GLOBAL_SCALE, backend=b),
        "mxfp4 (mxfp4_quantize)": lambda a, b: F.mxfp4_quantize(a, backend=b),
        "mxfp8 (mxfp8_quantize)": lambda a, b: F.mxfp8_quantize(a, True, backend=b),
    }


def _dequantizers(x: jax.Array):
    """Dequantizers with their inputs, made from `x` by the quantizers' CPU handlers.

    Args:
        x: the [M, K] bfloat16 matrix.

    Returns:
        {name: (fn(backend, *inputs) -> output, inputs)}.
    """
    nv_q, nv_sf = F.fp4_quantize(x, GLOBAL_SCALE)
    mx4_q, mx4_sf = F.mxfp4_quantize(x)
    mx4l_q, mx4l_sf = F.mxfp4_quantize(x, sfLayout=F.SfLayout.layout_linear)
    mx4l_sf = mx4l_sf.reshape(x.shape[0], x.shape[1] // 32)
    mx8_q, mx8_sf = F.mxfp8_quantize(x, True)  # float8_e4m3fn, as users pass it
    mx8_u8 = jax.lax.bitcast_convert_type(mx8_q, jnp.uint8)
    return {
        "nvfp4 e2m1_and_ufp8sf..": (
            lambda b, q, s: F.e2m1_and_ufp8sf_scale_to_float(q, s, 1.0 / GLOBAL_SCALE, backend=b),
            (nv_q, nv_sf)),
        "mxfp4 (mxfp4_dequantize)": (
            lambda b, q, s: F.mxfp4_dequantize(q, s, backend=b), (mx4_q, mx4_sf)),
        "mxfp4 dequantize_host": (
            lambda b, q, s: F.mxfp4_dequantize_host(q, s, backend=b), (mx4l_q, mx4l_sf)),
        "mxfp8 dequantize_host": (
            lambda b, q, s: F.mxfp8_dequantize_host(q, s, backend=b), (mx8_u8, mx8_sf)),
        "mxfp8 dequantize_host f8": (
            lambda b, q, s: F.mxfp8_dequantize_host(q, s, backend=b), (mx8_q, mx8_sf)),
        "nvfp4_dequantize to bf16": (
            lambda b, q, s: F.nvfp4_dequantize(q, s, GLOBAL_SCALE, dtype=jnp.bfloat16, backend=b),
            (nv_q, nv_sf)),
        "mxfp8_dequantize to f16": (
            lambda b, q, s: F.mxfp8_dequantize(q, s, dtype=jnp.float16, backend=b),
            (mx8_q, mx8_sf)),
    }


def _time_once_ms(f) -> float:
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1e3


def _other_ops(x: jax.Array):
    """The data-movement ops and the KV-cache pair, on inputs sized like `x`'s bytes.

    Returns:
        {name: (fn(backend, *inputs) -> output, inputs)}.
    """
    rng = np.random.default_rng(1)
    n_bits = x.size * 4  # as many bytes as the bf16 matrix has, times 2
    bits = jnp.asarray(rng.random(n_bits) < 0.5)
    indptr = jnp.asarray(np.sort(np.concatenate(
        [[0, n_bits], rng.integers(0, n_bits, 63)])).astype(np.int32))
    sf = jnp.asarray(rng.integers(0, 256, (x.shape[0] * 4, x.shape[1] // 16), dtype=np.uint8))
    kv_q, kv_sf = F.nvfp4_kv_quantize(x, 0.01)
    return {
        "packbits": (lambda b, a: F.packbits(a, backend=b), (bits,)),
        "segment_packbits (64)": (
            lambda b, a, p: F.segment_packbits(a, p, total_bytes=n_bits // 8 + 64, backend=b),
            (bits, indptr)),
        "block_scale_interleave": (lambda b, a: F.block_scale_interleave(a, backend=b), (sf,)),
        "nvfp4_kv_quantize": (lambda b, a: F.nvfp4_kv_quantize(a, 0.01, backend=b), (x,)),
        "nvfp4_kv_dequantize bf16": (
            lambda b, q, s: F.nvfp4_kv_dequantize(q, s, 0.01, backend=b), (kv_q, kv_sf)),
    }


def _median_ms(f, reps: int) -> float:
    """Median time of `reps` calls of `f` after a warm-up call, in ms."""
    f()
    return statistics.median(_time_once_ms(f) for _ in range(reps))


def _paired_ms(fs: dict, reps: int) -> dict:
    """{name: [ms of each call]}: after a warm-up call of each, the functions of `fs` are
    called in turn, `reps` rounds."""
    for f in fs.values():
        f()
    times = {name: [] for name in fs}
    for _ in range(reps):
        for name, f in fs.items():
            times[name].append(_time_once_ms(f))
    return times


def _copy_ms(nbytes: int, reps: int, pool: concurrent.futures.ThreadPoolExecutor) -> float:
    """Median time of a parallel host copy that reads and writes `nbytes` in all."""
    n = max(1, nbytes // 2)
    src = np.ones(n, np.uint8)
    dst = np.empty_like(src)
    workers = pool._max_workers  # noqa: SLF001 - the pool is ours
    bounds = np.linspace(0, n, workers + 1).astype(np.int64)

    def copy():
        futures = [pool.submit(np.copyto, dst[lo:hi], src[lo:hi])
                   for lo, hi in zip(bounds[:-1], bounds[1:])]
        for fut in futures:
            fut.result()

    return _median_ms(copy, reps)


def _nbytes(tree) -> int:
    return sum(int(a.size) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(tree))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--k", type=int, default=4096)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", default="", help="run the ops whose name contains this")
    args = p.parse_args()
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(jnp.asarray(
        np.random.default_rng(0).standard_normal((args.m, args.k)), jnp.bfloat16), cpu)
    print(f"CPU: {os.cpu_count()} cores; jax {jax.__version__}; [{args.m}, {args.k}] bfloat16")
    cases = {name: (lambda b, a, op=op: op(a, b), (x,)) for name, op in _quantizers().items()}
    cases.update(_dequantizers(x))
    cases.update(_other_ops(x))
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)
    for name, (op, inputs) in cases.items():
        if args.only not in name:
            continue
        calls = {}
        for backend in ("auto", "xla"):
            f = jax.jit(lambda *a, b=backend, op=op: op(b, *a))
            out = jax.block_until_ready(f(*inputs))
            calls[backend] = lambda f=f: jax.block_until_ready(f(*inputs))
        times = _paired_ms(calls, args.reps)
        ms = {b: statistics.median(t) for b, t in times.items()}
        ratio = statistics.median(x / a for a, x in zip(times["auto"], times["xla"]))
        copy = _copy_ms(_nbytes(inputs) + _nbytes(out), args.reps, pool)
        print(f"{name:25s} handler {ms['auto']:7.1f} ms   twin {ms['xla']:7.1f} ms   "
              f"twin / handler {ratio:5.2f}x   "
              f"copy {copy:5.1f} ms, copy / handler {copy / ms['auto']:.2f}")
    pool.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
