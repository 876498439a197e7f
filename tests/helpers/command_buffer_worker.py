"""Runs jax_fp4 ops in one jitted function with XLA's CUDA command buffers (graphs) on.

Started by tests/test_launch.py with XLA_FLAGS set before JAX starts. Prints "CAPTURED <n>"
(custom calls inside command-buffer computations of the optimized HLO, where an XLA version
shows them there) and "SAME <bool>" (three calls equal the same function run op by op).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4 as F


def step(x, bits):
    q, sf = F.fp4_quantize(x, 448.0 * 6 / 4)
    m, msf = F.mxfp8_quantize(x, True)
    y = F.e2m1_and_ufp8sf_scale_to_float(q, sf, 4 / (448.0 * 6))
    p = F.packbits(bits)
    return q, sf, m, msf, y, p


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((256, 512)), jnp.bfloat16)
    bits = jnp.asarray(rng.random((64, 256)) < 0.5)
    fn = jax.jit(step)
    hlo = fn.lower(x, bits).compile().as_text()
    # Command-buffer computations are outlined; count jax_fp4 custom calls inside them.
    captured = 0
    for block in re.split(r"\n(?=\S)", hlo):
        if "command_buffer" in block.split("\n", 1)[0]:
            captured += block.count('custom_call_target="jax_fp4_')
    print("CAPTURED", captured)
    got = [fn(x, bits) for _ in range(3)]  # replays of the captured graph
    with jax.disable_jit():
        want = step(x, bits)
    same = all(np.array_equal(np.asarray(g), np.asarray(w))
               for run in got for g, w in zip(run, want))
    print("SAME", same)


if __name__ == "__main__":
    main()
