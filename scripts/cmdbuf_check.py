#!/usr/bin/env python3
"""Does XLA capture jax_fp4's CUDA custom calls in a command buffer (a CUDA graph)?

XLA 0.11 forms command buffers after HLO, from thunks, so the HLO cannot show it. Two
observables instead, each in a fresh process (XLA_FLAGS are read at start-up):

1. XLA's own log lines from its command-buffer code (TF_CPP_VMODULE), which name the thunks
   and commands it records; we count those that mention a jax_fp4 target.
2. Time: one jitted function of 32 decode-sized quantize calls. Captured, the 32 kernels are
   one graph launch; not captured, 32 separate launches. Per-call wall time, median of 200.

Run on a GPU: ``python3 scripts/cmdbuf_check.py [LOG_DIR]``; prints one line per
configuration and keeps each child's full log under LOG_DIR.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

CONFIGS = {
    "command buffers with CUSTOM_CALL": "--xla_gpu_enable_command_buffer=FUSION,CUSTOM_CALL "
                                        "--xla_gpu_graph_min_graph_size=1",
    "command buffers off": "--xla_gpu_enable_command_buffer=",
}
VMODULE = ("command_buffer_thunk=2,command_buffer_cmd=2,command_buffer_conversion_pass=2,"
           "command_buffer_scheduling=2,custom_call_thunk=2")


def child() -> None:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jax_fp4

    n_ops, m, k = 32, 16, 4096
    x = jax.random.normal(jax.random.key(0), (m, k), jnp.bfloat16)
    gs = jnp.full((1,), 300.0, jnp.float32)

    def quantize_many(x, g, backend="auto"):
        # 32 different global scales, so XLA cannot merge the calls.
        return [jax_fp4.fp4_quantize(x, g * (1.0 + i / 64), backend=backend)
                for i in range(n_ops)]

    f = jax.jit(quantize_many)
    want = jax.jit(lambda x, g: quantize_many(x, g, "xla"))(x, gs)
    got = f(x, gs)
    same = all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    for _ in range(20):
        jax.block_until_ready(f(x, gs))
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x, gs))
        times.append(time.perf_counter() - t0)
    times.sort()
    print("RESULT " + json.dumps({"per_call_us": times[len(times) // 2] * 1e6,
                                  "per_op_us": times[len(times) // 2] * 1e6 / n_ops,
                                  "same_bytes_as_twin": same}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child()
        return 0
    log_dir = sys.argv[1] if len(sys.argv) > 1 else None
    for i, (name, flags) in enumerate(CONFIGS.items()):
        env = {**os.environ, "XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "0",
               "TF_CPP_VMODULE": VMODULE}
        p = subprocess.run([sys.executable, __file__, "child"], env=env, capture_output=True,
                           text=True, timeout=300)
        result = next((json.loads(ln[7:]) for ln in p.stdout.splitlines()
                       if ln.startswith("RESULT ")), {"error": p.stderr[-2000:]})
        logs = p.stderr.splitlines()
        if log_dir:
            with open(os.path.join(log_dir, f"cmdbuf_child{i}.log"), "w") as fh:
                fh.write(p.stderr)
        ours = [ln for ln in logs if "jax_fp4" in ln and re.search(r"[Cc]ommand", ln)]
        print(f"{name}: {json.dumps(result)}; XLA command-buffer log lines: "
              f"{sum('ommand' in ln for ln in logs)}, naming a jax_fp4 target: {len(ours)}")
        for ln in ours[:5]:
            print("   ", ln[-220:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
