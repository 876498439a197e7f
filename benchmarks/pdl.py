"""Programmatic dependent launch (enable_pdl) on the GPU: a chain of decode-sized quantizes.

One jitted function runs N quantizer calls back to back on one stream (inputs of decode
size, where launch gaps dominate); with ``enable_pdl=True`` each of our kernels lets the next
one launch as soon as it has issued its work (griddepcontrol), and the next waits for it in
its prologue. Prints wall time per call (median of --reps jitted calls / N) for both
settings; results are checked equal.

    python3 benchmarks/pdl.py [--n 64 --shapes 16x4096,128x4096,1x16384]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4 as F

OPS = {
    "fp4_quantize (NVFP4)": lambda x, pdl: F.fp4_quantize(x, 300.0, enable_pdl=pdl),
    "mxfp8_quantize": lambda x, pdl: F.mxfp8_quantize(x, True, enable_pdl=pdl),
}


def per_call_us(fn, xs, reps):
    jax.block_until_ready(fn(*xs))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*xs))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(xs) * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64, help="quantizer calls per jitted function")
    p.add_argument("--shapes", default="16x4096,128x4096,1x16384,2048x4096")
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind}; jax {jax.__version__}; {args.n} calls per jitted call")
    print(f"{'op':24s} {'shape':>10s} {'pdl off us':>11s} {'pdl on us':>10s} {'gain':>7s} same")
    for name, op in OPS.items():
        for shape in args.shapes.split(","):
            m, k = (int(v) for v in shape.split("x"))
            keys = jax.random.split(jax.random.key(0), args.n)
            xs = [jax.random.normal(kk, (m, k), jnp.bfloat16) for kk in keys]
            results = {}
            times = {}
            for pdl in (False, True):
                fn = jax.jit(lambda *xs, pdl=pdl, op=op: [op(x, pdl) for x in xs])
                times[pdl] = per_call_us(fn, xs, args.reps)
                results[pdl] = jax.tree.map(np.asarray, fn(*xs))
            same = all(np.array_equal(a, b) for a, b in
                       zip(jax.tree.leaves(results[False]), jax.tree.leaves(results[True])))
            print(f"{name:24s} {shape:>10s} {times[False]:11.2f} {times[True]:10.2f} "
                  f"{times[False] / times[True]:6.2f}x {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
