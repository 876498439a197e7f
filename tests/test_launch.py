"""Launch options that must not change results.

* CUDA graphs: with XLA's command buffers on for custom calls (the CUDA handlers are marked
  command-buffer compatible), a jitted step of jax_fp4 ops gives the same bytes on every call
  as running the ops one by one. jax 0.11 converts thunks to command buffers after HLO, so
  the optimized HLO no longer shows it (the worker's CAPTURED count is 0 there);
  ``test_custom_calls_are_captured_in_a_command_buffer`` reads XLA's own log of the
  conversion instead.
* ``enable_pdl``: programmatic dependent launch on the GPU (ignored on CPU) gives the same
  bytes, alone and in a jitted chain of quantizers.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import (
    BF16,
    PLATFORMS,
    assert_bytes_equal,
    on,
    random_input,
    require_platform,
)

import jax_fp4 as F

WORKER = Path(__file__).parent / "helpers" / "command_buffer_worker.py"


@pytest.mark.cuda
def test_command_buffers_on_give_the_same_bytes():
    require_platform("cuda")
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_gpu_enable_command_buffer=FUSION,CUSTOM_CALL"
                        " --xla_gpu_graph_min_graph_size=1").strip()
    run = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines()
                 if line.startswith(("CAPTURED", "SAME")))
    print("custom calls inside HLO command-buffer computations:", lines["CAPTURED"])
    assert lines["SAME"] == "True", run.stdout


CAPTURE_WORKER = """
import jax, jax.numpy as jnp, numpy as np, jax_fp4
x = jax.random.normal(jax.random.key(0), (16, 4096), jnp.bfloat16)
g = jnp.full((1,), 300.0, jnp.float32)
f = jax.jit(lambda x, g: [jax_fp4.fp4_quantize(x, g * (1 + i / 64)) for i in range(8)])
for _ in range(3):
    jax.block_until_ready(f(x, g))
"""


@pytest.mark.cuda
def test_custom_calls_are_captured_in_a_command_buffer():
    """XLA's command-buffer conversion logs the thunks it records into one command buffer
    (a CUDA graph); with CUSTOM_CALL enabled, that list holds our quantize calls."""
    require_platform("cuda")
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_gpu_enable_command_buffer=FUSION,CUSTOM_CALL"
                        " --xla_gpu_graph_min_graph_size=1").strip()
    env.update(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="command_buffer_conversion_pass=2")
    run = subprocess.run([sys.executable, "-c", CAPTURE_WORKER], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    recorded = [line.split("following thunks:", 1)[1] for line in run.stderr.splitlines()
                if "Creating command buffer thunk" in line and "following thunks:" in line]
    if not any("command_buffer_conversion_pass" in line for line in run.stderr.splitlines()):
        pytest.skip("this XLA does not log a thunk-level command-buffer conversion")
    ours = max((thunks.count("jax_fp4_fp4_quantize") for thunks in recorded), default=0)
    assert ours == 8, f"quantize calls in one command buffer: {ours}; logged: {recorded}"


PDL_OPS = {
    "fp4_quantize": lambda x, pdl: F.fp4_quantize(x, 300.0, enable_pdl=pdl),
    "mxfp4_quantize": lambda x, pdl: F.mxfp4_quantize(x, enable_pdl=pdl),
    "mxfp8_quantize": lambda x, pdl: F.mxfp8_quantize(x, True, enable_pdl=pdl),
    "nvfp4_quantize per-token": lambda x, pdl: F.nvfp4_quantize(
        x, 1 / 2688, per_token_activation=True, enable_pdl=pdl),
}


@pytest.mark.parametrize("platform_name", PLATFORMS)
@pytest.mark.parametrize("name", list(PDL_OPS))
def test_enable_pdl_gives_the_same_bytes(name, platform_name):
    require_platform(platform_name)
    rng = np.random.default_rng(11)
    xs = [on(platform_name, random_input(rng, (m, 256), BF16)) for m in (1, 130, 512)]
    op = PDL_OPS[name]
    for x in xs:
        want = op(x, False)
        got = op(x, True)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert_bytes_equal(np.asarray(g), np.asarray(w), f"{name} {x.shape}")
    # A jitted chain: each launch may overlap the previous kernel's tail.
    chain = jax.jit(lambda *xs: [op(x, True) for x in xs])
    for x, got in zip(xs, chain(*xs)):
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(op(x, False))):
            assert_bytes_equal(np.asarray(g), np.asarray(w), f"{name} chain {x.shape}")
