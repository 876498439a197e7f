"""Per-device time of sharded quantizers on several GPUs (the issue-7 multi-GPU record).

For each op, a [B, M, K] bfloat16 input is quantized (1) whole on one GPU and (2) sharded
along B over every GPU of the machine (a 1-D mesh), in a jitted function with R rotated
inputs; the "rows" ops see the same data as one [B * M, K] matrix sharded along its rows
(plain jit, the row-partitioning rule: every shard holds whole 128-row tiles). Prints wall time per op (median of N calls / R), the per-device time, the speed-up,
whether the compiled HLO has any collective, and whether the bytes match.

    python3 benchmarks/sharded.py [--batch 8 --rows 4096 --cols 16384]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jax_fp4 as F

COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "all-reduce")
OPS = {
    "nvfp4 (vmap fp4_quantize)": lambda a: jax.vmap(lambda r: F.fp4_quantize(r, 300.0))(a),
    "mxfp8 (vmap mxfp8_quantize)": lambda a: jax.vmap(lambda r: F.mxfp8_quantize(r, False))(a),
    "nvfp4_batched_quantize": lambda a: F.nvfp4_batched_quantize(a, 300.0),
    "nvfp4 rows (fp4_quantize)": lambda a: F.fp4_quantize(a, 300.0),
    "mxfp8 rows (mxfp8_quantize)": lambda a: F.mxfp8_quantize(a, True),
    "nvfp4 rows dequantize": lambda a: F.e2m1_and_ufp8sf_scale_to_float(
        *F.fp4_quantize(a, 300.0), jnp.full((1,), 1 / 300.0, jnp.float32)),
}


def timed(fn, args, reps):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=16384)
    p.add_argument("--rot", type=int, default=4, help="inputs per jitted call")
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    gpus = jax.devices()
    n = len(gpus)
    print(f"devices: {n} x {gpus[0].device_kind}; jax {jax.__version__}")
    mesh = Mesh(np.array(gpus), ("b",))
    shape = (args.batch, args.rows, args.cols)
    keys = jax.random.split(jax.random.key(0), args.rot)
    gen = jax.jit(lambda k: jax.random.normal(k, shape, jnp.bfloat16))
    one = one_b = [jax.device_put(gen(k), gpus[0]) for k in keys]
    sharded = sharded_b = [jax.device_put(a, NamedSharding(mesh, P("b"))) for a in one]
    flat = (args.batch * args.rows, args.cols)
    one_rows = [a.reshape(flat) for a in one]
    sharded_rows = [jax.device_put(a, NamedSharding(mesh, P("b", None))) for a in one_rows]
    gib = args.rot * np.prod(shape) * 2 / 2**30
    print(f"input: {shape} bfloat16 x {args.rot} rotations ({gib:.1f} GiB per call)")
    print(f"{'op':30s} {'1 GPU us':>10s} {f'{n} GPUs us':>10s} {'speed-up':>9s} "
          f"{'per-device us':>14s} {'collectives':>12s} {'bytes equal':>12s}")
    for name, op in OPS.items():
        one, sharded = (one_rows, sharded_rows) if " rows" in name else (one_b, sharded_b)
        fn = jax.jit(lambda *xs, op=op: [op(x) for x in xs])
        t1 = timed(fn, one, args.reps) / args.rot * 1e6
        tn = timed(fn, sharded, args.reps) / args.rot * 1e6
        hlo = fn.lower(*sharded).compile().as_text()
        found = [c for c in COLLECTIVES if c in hlo] or ["none"]
        same = all(np.array_equal(np.asarray(g), np.asarray(w)) for g, w in
                   zip(jax.tree.leaves(fn(*sharded)[0]), jax.tree.leaves(fn(*one)[0])))
        print(f"{name:30s} {t1:10.1f} {tn:10.1f} {t1 / tn:9.2f} {tn:14.1f} "
              f"{','.join(found):>12s} {same!s:>12s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
