# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # jax_fp4 quickstart
#
# jax_fp4 quantizes JAX arrays to the block-scaled formats of NVIDIA's FP4/FP8 GEMMs, with
# the function names, arguments and output bytes of FlashInfer's `flashinfer.quantization`:
#
# | format | element | block | scale |
# |---|---|---|---|
# | NVFP4 | E2M1 (4 bit) | 16 | E4M3 (8 bit), times a float32 global scale |
# | MXFP4 | E2M1 (4 bit) | 32 | UE8M0 (a power of two) |
# | MXFP8 | E4M3 (8 bit) | 32 | UE8M0 |
#
# This notebook quantizes a matrix in the three formats, looks at the codes and the scale
# bytes, dequantizes, measures the error, and shows `jax.jit`, `jax.vmap`, the pure-JAX twin
# (`backend="xla"`) and the errors that bad inputs raise. It runs on a CPU; the last cell
# also runs on a GPU when jax_fp4's CUDA handlers are available.
# `docs/formats_and_layouts.md` explains the formats and `docs/api.md` every function.

# %%
# Setup. In Colab this installs jax_fp4 from its repository (pip compiles the C++ CPU
# handlers, and the CUDA handlers too when nvcc is on PATH: a few minutes). Elsewhere it
# uses the jax_fp4 that is installed (`pip install -e .` in a clone).
import subprocess
import sys

REPO_URL = "https://github.com/<org>/jax_fp4"  # the jax_fp4 repository (a fork works too)

try:
    import google.colab  # noqa: F401

    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"jax_fp4 @ git+{REPO_URL}"], check=True)

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4
from jax_fp4 import SfLayout

CUDA = jax_fp4.cuda_available()  # CUDA handlers compiled *and* a GPU visible to JAX
print(f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}, devices: {jax.devices()}")
print(f"CUDA handlers compiled: {jax_fp4.cuda_compiled()}; GPU + CUDA handlers: {CUDA}")

# %% [markdown]
# ## A sample matrix
#
# Gaussian values with a few large outliers, in bfloat16: the situation block scales are
# made for (an outlier only coarsens the 16 or 32 values of its own block).

# %%
M, K = 128, 256
key_values, key_outliers, key_mask = jax.random.split(jax.random.key(0), 3)
x32 = jax.random.normal(key_values, (M, K), jnp.float32)
outliers = jax.random.uniform(key_outliers, (M, K), minval=20.0, maxval=100.0)
x32 = jnp.where(jax.random.uniform(key_mask, (M, K)) < 2e-3, x32 * outliers, x32)
x = x32.astype(jnp.bfloat16)  # the input to quantize
x_ref = x.astype(jnp.float32)  # the same values in float32, to measure errors against
print(x.shape, x.dtype, "amax", float(jnp.max(jnp.abs(x_ref))))


def rel_err(x_hat):
    """Relative Frobenius error ||x_hat - x|| / ||x||."""
    return float(jnp.linalg.norm(x_hat - x_ref) / jnp.linalg.norm(x_ref))


# %% [markdown]
# ## NVFP4
#
# NVFP4 needs a float32 *global* (encode) scale `S`. FlashInfer's recipe maps the tensor's
# largest magnitude onto the largest block scale (448, E4M3) times the largest element
# (6, E2M1): `S = 448 * 6 / amax`. `fp4_quantize` returns two uint8 arrays, exactly the
# bytes FlashInfer returns:
#
# * `x_q` `[M, K/2]`: E2M1 codes, two per byte, the element with the lower index in the
#   **low** nibble;
# * `sf` `[round_up(M, 128), round_up(K/16, 4)]`: one E4M3 scale byte per 16-element
#   block, in the swizzled 128x4 layout (a 2-D *view* of a tiled buffer, zero padding).

# %%
amax = jnp.max(jnp.abs(x_ref))
S = (448.0 * 6.0 / amax).astype(jnp.float32)
x_q, sf = jax_fp4.fp4_quantize(x, S)  # = nvfp4_quantize(x, S) with sfLayout=layout_128x4
print("x_q", x_q.shape, x_q.dtype, "  sf", sf.shape, sf.dtype)

# %% [markdown]
# ### The codes
#
# `fp4_codes_to_float4` unpacks the bytes into a `float4_e2m1fn` array `[M, K]` (the
# values are the 16 E2M1 numbers 0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6). Unpacking by hand
# shows the nibble order.

# %%
codes = jax_fp4.fp4_codes_to_float4(x_q)
print(codes.dtype, codes.shape)
print("row 0, first 16 elements:", codes[0, :16].astype(jnp.float32))
b = int(x_q[0, 0])
print(f"byte x_q[0, 0] = {b:#04x}: low nibble {b & 0xF:#x} is element 0 "
      f"({float(codes[0, 0])}), high nibble {b >> 4:#x} is element 1 ({float(codes[0, 1])})")
values, counts = np.unique(np.asarray(codes.astype(jnp.float32)), return_counts=True)
print("how often each E2M1 value occurs:", dict(zip(values.tolist(), counts.tolist())))

# %% [markdown]
# ### The scales
#
# `scales_as_e4m3` views the bytes as `float8_e4m3fn` (same bits, same shape). Because of
# the 128x4 swizzle, row `r` of the returned 2-D `sf` is *not* the scales of row `r`:
# `block_scale_interleave_reverse` reads the logical `[M, K/16]` scale matrix back out
# (quantizing with `is_sf_swizzled_layout=False` would return it directly).

# %%
scales = jax_fp4.block_scale_interleave_reverse(sf, M, K // 16, SfLayout.layout_128x4)
scales_e4m3 = jax_fp4.scales_as_e4m3(scales)
print(scales_e4m3.dtype, scales_e4m3.shape)
print("row 0 scales:", scales_e4m3[0].astype(jnp.float32))

_, sf_linear = jax_fp4.fp4_quantize(x, S, is_sf_swizzled_layout=False)
print("same bytes as the linear layout:", bool(jnp.array_equal(scales, sf_linear)))

# Block 0 of row 0: its scale is E4M3(S * amax_block / 6), its elements x * 6 / amax_block.
block = x_ref[0, :16]
print("S * amax(block) / 6 =", float(S * jnp.max(jnp.abs(block)) / 6),
      "-> stored E4M3 scale", float(scales_e4m3[0, 0].astype(jnp.float32)))

# %% [markdown]
# ### Dequantize and measure the error
#
# `e2m1_and_ufp8sf_scale_to_float(x_q, sf, g)` computes `e2m1(code) * (scale * g)` in
# float32 with `g = 1/S`, FlashInfer's host dequantizer. The same number by hand, from the
# typed views, is bit-identical.

# %%
x_nv = jax_fp4.e2m1_and_ufp8sf_scale_to_float(x_q, sf, 1.0 / S)
block_scale = jnp.repeat(scales_e4m3.astype(jnp.float32), 16, axis=1)  # [M, K]
by_hand = codes.astype(jnp.float32) * (block_scale * (1.0 / S))
print("dequantized", x_nv.shape, x_nv.dtype, "| by hand identical:",
      bool(jnp.array_equal(x_nv, by_hand)))
print(f"NVFP4 relative error {rel_err(x_nv):.2%}, "
      f"max |error| {float(jnp.max(jnp.abs(x_nv - x_ref))):.3f}")

# %% [markdown]
# ## MXFP4 and MXFP8
#
# Both use 32-element blocks with UE8M0 scales: a byte `c` is the power of two
# `2^(c - 127)`, so no global scale is needed. MXFP8's elements are E4M3 bytes returned as
# `float8_e4m3fn`, and its scales come back as a 1-D buffer (FlashInfer's shapes).

# %%
x_q4, sf4 = jax_fp4.mxfp4_quantize(x)
print("MXFP4 x_q", x_q4.shape, x_q4.dtype, "  sf", sf4.shape, sf4.dtype)
ue8m0 = jax_fp4.scales_as_ue8m0(
    jax_fp4.block_scale_interleave_reverse(sf4, M, K // 32))
print("row 0 scales (float8_e8m0fnu):", ue8m0[0].astype(jnp.float32))
x_mx4 = jax_fp4.mxfp4_dequantize(x_q4, sf4)

x_q8, sf8 = jax_fp4.mxfp8_quantize(x)
print("MXFP8 x_q", x_q8.shape, x_q8.dtype, "  sf", sf8.shape, sf8.dtype)
x_mx8 = jax_fp4.mxfp8_dequantize_host(x_q8, sf8)

print(f"\n{'format':7} {'rel err':>8} {'bytes':>7} {'bits/value':>10}")
for name, x_hat, stored in [("bf16", x_ref, (x,)),
                            ("NVFP4", x_nv, (x_q, sf, S)),
                            ("MXFP4", x_mx4, (x_q4, sf4)),
                            ("MXFP8", x_mx8, (x_q8, sf8))]:
    nbytes = sum(a.nbytes for a in stored)
    print(f"{name:7} {rel_err(x_hat):8.2%} {nbytes:7d} {8 * nbytes / x.size:10.2f}")
print("bits/value counts the scale bytes (and NVFP4's float32 global scale); here M = 128 "
      "and K/block is a multiple of 4, so the swizzled scale buffers have no padding")

# %% [markdown]
# ## `jax.jit`
#
# Every op is a JAX primitive, so a whole round trip compiles into one XLA program. On
# the CPU the quantizer is a call to jax_fp4's C++ handler, visible in the lowered HLO as
# a custom call.

# %%
import re


@jax.jit
def nvfp4_roundtrip(x):
    amax = jnp.max(jnp.abs(x.astype(jnp.float32)))
    s = (448.0 * 6.0 / amax).astype(jnp.float32)
    x_q, sf = jax_fp4.nvfp4_quantize(x, s)
    return jax_fp4.e2m1_and_ufp8sf_scale_to_float(x_q, sf, 1.0 / s)


print("jit == eager:", bool(jnp.array_equal(nvfp4_roundtrip(x), x_nv)))
hlo = nvfp4_roundtrip.lower(x).as_text()
print("custom calls in the StableHLO:", sorted(set(re.findall(r"custom_call @(\w+)", hlo))))

# %% [markdown]
# ## `jax.vmap`: one scale matrix per batch element
#
# `fp4_quantize` treats *all* leading dimensions as rows of one scale matrix, as FlashInfer
# does. Under `jax.vmap` every batch element is its own problem: its own (padded) scale
# matrix and, with `in_axes`, its own global scale. `nvfp4_batched_quantize` returns the
# same bytes with FlashInfer's flat `[B, Mp * Cp]` scale shape.

# %%
B = 3
xb = jax.random.normal(jax.random.key(1), (B, 40, 64), jnp.bfloat16) * jnp.array(
    [1.0, 10.0, 100.0], jnp.bfloat16)[:, None, None]
sb = (448.0 * 6.0 / jnp.max(jnp.abs(xb.astype(jnp.float32)), axis=(1, 2))).astype(jnp.float32)

q_v, sf_v = jax.vmap(jax_fp4.fp4_quantize)(xb, sb)  # per-element global scales
print("vmap:        x_q", q_v.shape, " sf", sf_v.shape)
q_all, sf_all = jax_fp4.fp4_quantize(xb, sb[0])  # one matrix for all B * 40 rows
print("no vmap:     x_q", q_all.shape, " sf", sf_all.shape)

loop = [jax_fp4.fp4_quantize(xb[i], sb[i]) for i in range(B)]
print("vmap == loop:", all(bool(jnp.array_equal(q_v[i], q) & jnp.array_equal(sf_v[i], s))
                           for i, (q, s) in enumerate(loop)))
q_b, sf_b = jax_fp4.nvfp4_batched_quantize(xb, sb[0])
q_v0, sf_v0 = jax.vmap(lambda a: jax_fp4.fp4_quantize(a, sb[0]))(xb)
print("batched:     x_q", q_b.shape, " sf", sf_b.shape, "| == vmap with one scale:",
      bool(jnp.array_equal(q_b, q_v0) & jnp.array_equal(sf_b, sf_v0.reshape(B, -1))))

# %% [markdown]
# ## The pure-JAX twin: `backend="xla"`
#
# Every op also exists as plain `jax.numpy` code (the fallback lowering on platforms
# without a handler). It produces the same bits as the C++/CUDA handlers, also for
# FlashInfer's optional NVFP4 recipes, here `exact=True` and `four_over_six=True` (its
# `FLASHINFER_DISABLE_FP4_QUANT_FAST_MATH` and `FLASHINFER_NVFP4_4OVER6` switches). Run it under
# `jax.jit`: eagerly it dispatches hundreds of small ops one by one.

# %%
def all_formats(x, backend):
    s = (448.0 * 6.0 / jnp.max(jnp.abs(x.astype(jnp.float32)))).astype(jnp.float32)
    return {"NVFP4": jax_fp4.fp4_quantize(x, s, backend=backend),
            "NVFP4 exact": jax_fp4.fp4_quantize(x, s, backend=backend, exact=True),
            "NVFP4 4over6": jax_fp4.fp4_quantize(x, s, backend=backend, four_over_six=True),
            "MXFP4": jax_fp4.mxfp4_quantize(x, backend=backend),
            "MXFP8": jax_fp4.mxfp8_quantize(x, backend=backend)}


FORMAT_NAMES = ("NVFP4", "NVFP4 exact", "NVFP4 4over6", "MXFP4", "MXFP8")
handler = jax.jit(all_formats, static_argnums=1)(x, "auto")
twin = jax.jit(all_formats, static_argnums=1)(x, "xla")
for name in FORMAT_NAMES:
    same = all(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
               for a, b in zip(handler[name], twin[name]))
    print(f"{name:12} handler == twin: {same}")

# %% [markdown]
# ## Bad inputs fail at trace time with a clear message

# %%
bad_calls = {
    "K not a multiple of 16": lambda: jax_fp4.fp4_quantize(x[:, :40], S),
    "float32 input": lambda: jax_fp4.fp4_quantize(x_ref, S),
    "NVFP4 without a global scale": lambda: jax_fp4.fp4_quantize(x, None),
    "block 32 with E4M3 scales": lambda: jax_fp4.fp4_quantize(x, S, sf_vec_size=32),
    "a 1-D input": lambda: jax_fp4.fp4_quantize(x[0], S),
    "one global scale per row, wrong count": lambda: jax_fp4.fp4_quantize(x, jnp.ones(3)),
    "scale buffer of the wrong size": lambda: jax_fp4.e2m1_and_ufp8sf_scale_to_float(
        x_q, sf[:64], 1.0 / S),
    "unknown backend": lambda: jax_fp4.mxfp4_quantize(x, backend="cute-dsl"),
    "segment_packbits under jit, no total_bytes": lambda: jax.jit(jax_fp4.segment_packbits)(
        jnp.ones(11, jnp.uint8), jnp.array([0, 4, 7, 11])),
}
for what, call in bad_calls.items():
    try:
        call()
        print(f"{what}: no error?!")
    except (ValueError, TypeError, NotImplementedError) as err:
        print(f"{what}:\n    {type(err).__name__}: {err}")

# %% [markdown]
# ## On the GPU
#
# With the CUDA handlers (`jax_fp4.cuda_available()`), the same calls on GPU arrays run
# CUDA kernels, and the bytes equal the CPU handler's: also on Hopper (sm_90), where
# FlashInfer's FP4 kernels return uninitialised memory.

# %%
if CUDA:
    cpu, gpu = jax.devices("cpu")[0], jax.devices("cuda")[0]
    on_cpu = jax.jit(all_formats, static_argnums=1)(jax.device_put(x, cpu), "auto")
    on_gpu = jax.jit(all_formats, static_argnums=1)(jax.device_put(x, gpu), "auto")
    print(gpu.device_kind)
    for name in FORMAT_NAMES:
        same = all(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
                   for a, b in zip(on_cpu[name], on_gpu[name]))
        print(f"{name:12} GPU == CPU: {same}")
else:
    print("skipped: no GPU with jax_fp4's CUDA handlers (jax_fp4.cuda_available() is False)")
