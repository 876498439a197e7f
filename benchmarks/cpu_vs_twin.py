"""CPU handlers against the pure-JAX twin on the CPU (issue 5's "3x faster than the twin").

Times one jitted quantize of a [M, K] bfloat16 matrix with the CPU handler (backend="auto")
and with the twin (backend="xla"), median of --reps calls after a warm-up, and prints both
and their ratio.

    python3 benchmarks/cpu_vs_twin.py [--m 4096 --k 4096 --reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4 as F

OPS = {
    "nvfp4 (fp4_quantize)": lambda a, b: F.fp4_quantize(a, 300.0, backend=b),
    "mxfp4 (mxfp4_quantize)": lambda a, b: F.mxfp4_quantize(a, backend=b),
    "mxfp8 (mxfp8_quantize)": lambda a, b: F.mxfp8_quantize(a, True, backend=b),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--k", type=int, default=4096)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(jnp.asarray(
        np.random.default_rng(0).standard_normal((args.m, args.k)), jnp.bfloat16), cpu)
    print(f"CPU: {os.cpu_count()} cores; jax {jax.__version__}; [{args.m}, {args.k}] bfloat16")
    for name, op in OPS.items():
        ms = {}
        for backend in ("auto", "xla"):
            f = jax.jit(lambda a, b=backend, op=op: op(a, b))
            jax.block_until_ready(f(x))
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                jax.block_until_ready(f(x))
                times.append(time.perf_counter() - t0)
            ms[backend] = statistics.median(times) * 1e3
        print(f"{name:24s} handler {ms['auto']:7.1f} ms   twin {ms['xla']:7.1f} ms   "
              f"twin / handler {ms['xla'] / ms['auto']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
