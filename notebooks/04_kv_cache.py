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
# # An FP4 KV cache in a jitted decode loop
#
# In decode, attention reads the whole KV cache at every step, so the cache's bytes set the
# speed and the memory. NVFP4 stores a K or V row in 4.5 bits per value (E2M1 codes plus
# one E4M3 scale per 16 values) instead of 16. This notebook keeps the cache of a toy
# single-layer attention model in NVFP4 with `nvfp4_kv_quantize` / `nvfp4_kv_dequantize`,
# runs a jitted decode loop (`lax.fori_loop`) that appends one token per step, and compares
# memory and the attention output with a bfloat16 cache. The KV functions take a **decode**
# scale `g` (value = e2m1 * e4m3(scale) * g), FlashInfer's convention.

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
from jax import lax

import jax_fp4

CUDA = jax_fp4.cuda_available()  # CUDA handlers compiled *and* a GPU visible to JAX
print(f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}, devices: {jax.devices()}")
print(f"CUDA handlers compiled: {jax_fp4.cuda_compiled()}; GPU + CUDA handlers: {CUDA}")

# %% [markdown]
# ## A toy decoder layer
# Random projections stand in for a trained layer: one head group of `HEADS` heads of
# dimension `DIM`; queries, keys and values are linear functions of a random hidden state
# that drifts a little every step, as real hidden states do.

# %%
HEADS, DIM, MAX_LEN, HIDDEN = 4, 64, 256, 256
key = jax.random.PRNGKey(0)
k_wq, k_wk, k_wv, k_h, k_d = jax.random.split(key, 5)
scale_w = 1.0 / np.sqrt(HIDDEN)
Wq = jax.random.normal(k_wq, (HIDDEN, HEADS * DIM)) * scale_w
Wk = jax.random.normal(k_wk, (HIDDEN, HEADS * DIM)) * scale_w
Wv = jax.random.normal(k_wv, (HIDDEN, HEADS * DIM)) * scale_w
h0 = jax.random.normal(k_h, (HIDDEN,))
drift = jax.random.normal(k_d, (MAX_LEN, HIDDEN)) * 0.3

# A fixed decode scale per cache, as a serving system would calibrate it once
# (amax / (448 * 6) over a sample of keys and values).
sample = jnp.stack([h0 + drift[i] for i in range(32)])
G_K = jnp.max(jnp.abs(sample @ Wk)) / 2688.0
G_V = jnp.max(jnp.abs(sample @ Wv)) / 2688.0


def attend(q, k_cache, v_cache, length):
    """Softmax attention of one query over the first `length` cached tokens."""
    q = q.reshape(HEADS, DIM)
    k = k_cache.reshape(MAX_LEN, HEADS, DIM).astype(jnp.float32)
    v = v_cache.reshape(MAX_LEN, HEADS, DIM).astype(jnp.float32)
    logits = jnp.einsum("hd,thd->ht", q, k) / np.sqrt(DIM)
    logits = jnp.where(jnp.arange(MAX_LEN)[None] < length, logits, -jnp.inf)
    return jnp.einsum("ht,thd->hd", jax.nn.softmax(logits, -1), v).reshape(-1)


# %% [markdown]
# ## The decode loop, twice: bfloat16 cache and NVFP4 cache
# The NVFP4 cache holds uint8 codes `[MAX_LEN, HEADS*DIM/2]` and uint8 E4M3 scales
# `[MAX_LEN, HEADS*DIM/16]`. Each step quantizes the new token's K and V row and writes it
# into the cache; attention dequantizes the cache (a real kernel would fuse that).

# %%
@jax.jit
def decode_bf16(steps):
    def body(t, carry):
        kc, vc, outs = carry
        h = h0 + drift[t]
        kc = kc.at[t].set((h @ Wk).astype(jnp.bfloat16))
        vc = vc.at[t].set((h @ Wv).astype(jnp.bfloat16))
        return kc, vc, outs.at[t].set(attend(h @ Wq, kc, vc, t + 1))

    init = (jnp.zeros((MAX_LEN, HEADS * DIM), jnp.bfloat16),
            jnp.zeros((MAX_LEN, HEADS * DIM), jnp.bfloat16),
            jnp.zeros((MAX_LEN, HEADS * DIM)))
    return lax.fori_loop(0, steps, body, init)


@jax.jit
def decode_fp4(steps):
    def body(t, carry):
        kq, ks, vq, vs, outs = carry
        h = h0 + drift[t]
        k_new, k_sf = jax_fp4.nvfp4_kv_quantize((h @ Wk).astype(jnp.bfloat16)[None], G_K)
        v_new, v_sf = jax_fp4.nvfp4_kv_quantize((h @ Wv).astype(jnp.bfloat16)[None], G_V)
        kq, ks = kq.at[t].set(k_new[0]), ks.at[t].set(k_sf[0])
        vq, vs = vq.at[t].set(v_new[0]), vs.at[t].set(v_sf[0])
        k = jax_fp4.nvfp4_kv_dequantize(kq, ks, G_K, jnp.bfloat16)
        v = jax_fp4.nvfp4_kv_dequantize(vq, vs, G_V, jnp.bfloat16)
        return kq, ks, vq, vs, outs.at[t].set(attend(h @ Wq, k, v, t + 1))

    codes = jnp.zeros((MAX_LEN, HEADS * DIM // 2), jnp.uint8)
    scales = jnp.zeros((MAX_LEN, HEADS * DIM // 16), jnp.uint8)
    init = (codes, scales, codes, scales, jnp.zeros((MAX_LEN, HEADS * DIM)))
    return lax.fori_loop(0, steps, body, init)


STEPS = 128
kc, vc, out_bf16 = decode_bf16(STEPS)
kq, ks, vq, vs, out_fp4 = decode_fp4(STEPS)

# %% [markdown]
# ## Memory and error

# %%
bf16_bytes = kc.nbytes + vc.nbytes
fp4_bytes = kq.nbytes + ks.nbytes + vq.nbytes + vs.nbytes
print(f"KV cache for {MAX_LEN} tokens: bfloat16 {bf16_bytes / 1024:.0f} KiB, "
      f"NVFP4 {fp4_bytes / 1024:.0f} KiB ({bf16_bytes / fp4_bytes:.2f}x smaller)")

k_hat = jax_fp4.nvfp4_kv_dequantize(kq, ks, G_K, jnp.bfloat16)[:STEPS].astype(jnp.float32)
k_ref = kc[:STEPS].astype(jnp.float32)
rel_k = float(jnp.linalg.norm(k_hat - k_ref) / jnp.linalg.norm(k_ref))
rel_out = jnp.linalg.norm(out_fp4[:STEPS] - out_bf16[:STEPS], axis=-1) / jnp.linalg.norm(
    out_bf16[:STEPS], axis=-1)
cos = jnp.sum(out_fp4[:STEPS] * out_bf16[:STEPS], -1) / (
    jnp.linalg.norm(out_fp4[:STEPS], axis=-1) * jnp.linalg.norm(out_bf16[:STEPS], axis=-1))
print(f"relative error of the cached keys: {rel_k:.3f}")
print(f"attention output vs the bfloat16 cache: relative error mean {float(rel_out.mean()):.3f}"
      f", max {float(rel_out.max()):.3f}; cosine min {float(cos.min()):.4f}")
assert fp4_bytes * 3 < bf16_bytes
assert float(cos.min()) > 0.98, "the FP4 cache should keep attention outputs close"

# %% [markdown]
# ## Per-step error, as a plot

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(np.asarray(rel_out), label="NVFP4 cache vs bfloat16 cache")
ax.set_xlabel("decode step")
ax.set_ylabel("relative error of the attention output")
ax.set_ylim(bottom=0)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paged caches
# Serving systems keep the cache in pages. `nvfp4_quantize_paged_kv_cache` quantizes whole
# paged K/V caches (HND or NHD) with FlashInfer's layout, V's scale bytes interleaved for the
# attention kernels, and returns the decode scales as device arrays (no host sync);
# `nvfp4_kv_dequantize_paged` gathers pages through a block table.

# %%
pages = jax.random.normal(jax.random.PRNGKey(1), (8, HEADS, 16, DIM), jnp.bfloat16)  # HND
(k_fp4, v_fp4), (k_sf, v_sf), k_dec, v_dec = jax_fp4.nvfp4_quantize_paged_kv_cache(
    pages, pages, "HND")
print(k_fp4.shape, k_fp4.dtype, k_sf.shape, k_sf.dtype, float(k_dec))
