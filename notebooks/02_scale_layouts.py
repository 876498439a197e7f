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
# # Scale-factor layouts: 128x4, 8x4 and linear
#
# A block-scaled quantizer produces one scale byte per (row `r`, block column `k`): the
# logical scale matrix `[M, C]` with `C = K / block`. FlashInfer (and jax_fp4) store it in
# one of three layouts, `SfLayout`:
#
# | layout | tile | padding | byte offset of `(r, k)` |
# |---|---|---|---|
# | `layout_128x4` (0, default) | 128 rows x 4 columns, 512 bytes | rows to 128, columns to 4 | `((r//128)*(Cp/4) + k//4)*512 + (r%32)*16 + ((r%128)//32)*4 + k%4` |
# | `layout_8x4` (1) | 8 rows x 4 columns, 32 bytes | rows to 8, columns to 4 | `((r//8)*(Cp/4) + k//4)*32 + (r%8)*4 + k%4` |
# | `layout_linear` (2) | none | none | `r*C + k` |
#
# (`Cp = round_up(C, 4)`.) The tiled layouts are what the tensor cores' block-scaled GEMMs
# read. This notebook draws where each `(r, k)` lands, checks the formulas against the
# library and against SPEC 3.2's examples, and shows `block_scale_interleave` and its
# inverse.

# %%
# Setup (see 01_quickstart): in Colab, install jax_fp4 from its repository.
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
import matplotlib.pyplot as plt
import numpy as np

import jax_fp4
from jax_fp4 import SfLayout

CUDA = jax_fp4.cuda_available()
print(f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}, devices: {jax.devices()}")
print(f"CUDA handlers compiled: {jax_fp4.cuda_compiled()}; GPU + CUDA handlers: {CUDA}")

LAYOUTS = (SfLayout.layout_128x4, SfLayout.layout_8x4, SfLayout.layout_linear)

# %% [markdown]
# ## Where does each `(row, block column)` land?
#
# `block_scale_interleave_reverse(buffer, rows, cols, layout)` reads a buffer in a layout
# back into the logical `[rows, cols]` matrix, for any dtype. Feeding it the buffer
# `0, 1, 2, ...` therefore returns, for every `(r, k)`, its byte offset: the library's own
# map. Inverting it gives, for every byte of the buffer, the `(r, k)` stored there (or
# padding).
#
# The example: NVFP4 of a `[203, 96]` matrix, so `M = 203` rows and `C = 6` block columns,
# which pads to 256 x 8 (128x4), 208 x 8 (8x4) or stays 203 x 6 (linear).

# %%
M, C = 203, 6


def offsets(layout, rows=M, cols=C):
    """[rows, cols] int32: the buffer offset of every (r, k), from jax_fp4."""
    size = jax_fp4.sf_buffer_size(layout, rows, cols)
    buf = jnp.arange(size, dtype=jnp.int32)
    return np.asarray(jax_fp4.block_scale_interleave_reverse(buf, rows, cols, layout))


def who_is_where(layout, rows=M, cols=C):
    """The buffer as FlashInfer's 2-D sf shape, holding the row and the column stored in
    each byte (-1 for padding)."""
    shape = jax_fp4.sf_padded_shape(layout, rows, cols)
    row_of = np.full(shape[0] * shape[1], -1)
    col_of = np.full(shape[0] * shape[1], -1)
    off = offsets(layout, rows, cols)
    r, k = np.indices((rows, cols))
    row_of[off], col_of[off] = r, k
    return row_of.reshape(shape), col_of.reshape(shape)


for layout in LAYOUTS:
    shape = jax_fp4.sf_padded_shape(layout, M, C)
    print(f"{layout.name:14} sf shape {shape}, {jax_fp4.sf_buffer_size(layout, M, C)} bytes")

# %% [markdown]
# The pictures show the scale array exactly as `fp4_quantize` returns it (2-D,
# `[Mp, Cp]`), colored by the logical row (top) and block column (bottom) whose scale each
# byte holds; padding is white. The 128x4 panels mark the 512-byte tiles, in buffer order:
# tile 0 = rows 0-127 x block columns 0-3, tile 1 = rows 0-127 x columns 4-7, tile 2 =
# rows 128-255 x columns 0-3, ... In the linear layout row `r` of the array is row `r` of
# the matrix. In the tiled layouts it is not: the 2-D shape is only a view of a flat
# buffer of consecutive tiles.

# %%
fig, axes = plt.subplots(2, 3, figsize=(11, 9), constrained_layout=True)
for j, layout in enumerate(LAYOUTS):
    row_of, col_of = who_is_where(layout)
    for i, (grid, what, cmap) in enumerate([(row_of, "row r", "viridis"),
                                            (col_of, "block column k", "tab10")]):
        ax = axes[i, j]
        image = ax.imshow(np.ma.masked_less(grid, 0), cmap=cmap, aspect="auto",
                          interpolation="nearest", vmin=0, vmax=M - 1 if i == 0 else 9)
        if layout == SfLayout.layout_128x4:  # one 512-byte tile = 512 / Cp rows of the view
            per_tile = 512 // grid.shape[1]
            for t in range(grid.shape[0] // per_tile):
                ax.axhline(t * per_tile - 0.5, color="k", lw=0.8)
                ax.text(grid.shape[1] - 0.6, t * per_tile + 2, f"tile {t}", ha="right",
                        va="top", fontsize=8, bbox={"fc": "w", "ec": "none", "alpha": 0.8})
        ax.set_title(f"{layout.name}: {what}", fontsize=10)
        ax.set_xlabel("column of the returned sf")
        ax.set_ylabel("row of the returned sf")
        if j == 2:
            fig.colorbar(image, ax=ax, label=what)
plt.show()

# %% [markdown]
# ### Inside one 128x4 tile
#
# A 512-byte tile holds rows `r0 .. r0+127` and block columns `k0 .. k0+3`. The 128 rows
# are folded as `r = 32*i + o`: the tile is stored as `[o][i][k % 4]`, 32 lines of 16
# bytes, where line `o` holds rows `o, o+32, o+64, o+96`, four columns each. Drawn as 32
# lines of 16 bytes (text: the row; color: the block column):

# %%
row_of, col_of = who_is_where(SfLayout.layout_128x4)
tile_rows = row_of.reshape(-1)[:512].reshape(32, 16)
tile_cols = col_of.reshape(-1)[:512].reshape(32, 16)
fig, ax = plt.subplots(figsize=(9, 12))
ax.imshow(tile_cols, cmap="Pastel1", aspect="auto", interpolation="nearest", vmin=0, vmax=8)
for o in range(32):
    for b in range(16):
        ax.text(b, o, str(tile_rows[o, b]), ha="center", va="center", fontsize=7)
ax.set_xticks(range(16), [f"i={b // 4}\nk={b % 4}" for b in range(16)], fontsize=7)
ax.set_yticks(range(32), [f"o={o}" for o in range(32)], fontsize=7)
ax.set_title("first 128x4 tile: bytes 0..511 as 32 lines x 16 (text = row r)")
plt.show()

# %% [markdown]
# ### 8x4 tiles
#
# The 8x4 layout keeps rows whole: a 32-byte tile is 8 rows x 4 block columns, row-major.
# The first three tiles (rows 0-7, block columns 0-3, then 4-7, then rows 8-15):

# %%
row_of, col_of = who_is_where(SfLayout.layout_8x4)
flat_r, flat_k = row_of.reshape(-1), col_of.reshape(-1)
for t in range(3):
    print(f"tile {t} (bytes {32 * t}..{32 * t + 31}):")
    for line in range(8):
        cells = [(int(flat_r[32 * t + 4 * line + c]), int(flat_k[32 * t + 4 * line + c]))
                 for c in range(4)]
        print("   ", "  ".join("  pad  " if r < 0 else f"({r:3d},{k})" for r, k in cells))

# %% [markdown]
# ## The formulas, checked
#
# The offset formulas of the table above (SPEC 3.1-3.3), written in NumPy, agree with
# jax_fp4 for every `(r, k)` of a few shapes, and SPEC 3.2 / 3.3's worked examples for
# `C = 9` hold.

# %%
def offset_formula(layout, r, k, cols):
    cp = -(-cols // 4) * 4
    if layout == SfLayout.layout_128x4:
        return ((r // 128) * (cp // 4) + k // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + k % 4
    if layout == SfLayout.layout_8x4:
        return ((r // 8) * (cp // 4) + k // 4) * 32 + (r % 8) * 4 + k % 4
    return r * cols + k


for rows, cols in [(1, 1), (203, 6), (300, 9), (128, 4), (37, 17)]:
    r, k = np.indices((rows, cols))
    ok = all(np.array_equal(offsets(layout, rows, cols), offset_formula(layout, r, k, cols))
             for layout in LAYOUTS)
    print(f"[{rows:3d}, {cols:2d}]: formulas == jax_fp4 for all three layouts: {ok}")

SPEC_128x4 = {(0, 0): 0, (0, 1): 1, (1, 0): 16, (31, 0): 496, (32, 0): 4, (33, 2): 22,
              (96, 3): 15, (127, 3): 511, (0, 4): 512, (5, 7): 595, (128, 0): 1536,
              (130, 8): 2592}
SPEC_8x4 = {(1, 0): 4, (0, 4): 32, (31, 0): 316, (32, 0): 384, (5, 7): 55, (128, 0): 1536}
for layout, examples in [(SfLayout.layout_128x4, SPEC_128x4), (SfLayout.layout_8x4, SPEC_8x4)]:
    table = offsets(layout, 131, 9)
    bad = {rk: (int(table[rk]), want) for rk, want in examples.items() if table[rk] != want}
    print(f"SPEC examples, {layout.name}, C = 9: {len(examples) - len(bad)} of "
          f"{len(examples)} match" + (f"; mismatches {bad}" if bad else ""))

# %% [markdown]
# ## The quantizers use these layouts
#
# Quantizing the same matrix with each layout gives the same logical scale matrix: reading
# each buffer back with `block_scale_interleave_reverse` returns the linear bytes, and the
# padding bytes are zero.

# %%
x = jax.random.normal(jax.random.key(0), (M, 16 * C), jnp.bfloat16)
S = jnp.float32(448.0 * 6.0) / jnp.max(jnp.abs(x.astype(jnp.float32)))
results = {layout: jax_fp4.nvfp4_quantize(x, S, layout) for layout in LAYOUTS}
linear = results[SfLayout.layout_linear][1]
for layout, (x_q, sf) in results.items():
    back = jax_fp4.block_scale_interleave_reverse(sf, M, C, layout)
    padding = np.asarray(who_is_where(layout)[0]) < 0
    print(f"{layout.name:14} sf {sf.shape!s:10} reads back to linear: "
          f"{bool(jnp.array_equal(back, linear))}; padding bytes all 0: "
          f"{not np.asarray(sf)[padding].any()}; codes equal: "
          f"{bool(jnp.array_equal(x_q, results[SfLayout.layout_linear][0]))}")

# %% [markdown]
# ## `block_scale_interleave` and `block_scale_interleave_reverse`
#
# `block_scale_interleave` (FlashInfer's name; alias `nvfp4_block_scale_interleave`) turns
# a linear `[R, C]` scale matrix (uint8 or bfloat16) into the flat 128x4 buffer, with zero
# padding. A 3-D input `[E, R, C]` (one matrix per expert) gives the E buffers one after
# the other. FlashInfer only accepts CUDA tensors here; jax_fp4 runs it anywhere.
# `block_scale_interleave_reverse` (a C++-only function in FlashInfer) goes back, for all
# three layouts.

# %%
sf_128x4 = results[SfLayout.layout_128x4][1]
swizzled = jax_fp4.block_scale_interleave(linear)
print("interleave(linear):", swizzled.shape, swizzled.dtype,
      "== quantizer's 128x4 buffer:", bool(jnp.array_equal(swizzled, sf_128x4.reshape(-1))))
print("reverse(interleave(linear)) == linear:",
      bool(jnp.array_equal(jax_fp4.block_scale_interleave_reverse(swizzled, M, C), linear)))

experts = jax.random.randint(jax.random.key(1), (3, 40, 5), 0, 256).astype(jnp.uint8)
flat = jax_fp4.block_scale_interleave(experts)
per_expert = jax_fp4.sf_buffer_size(SfLayout.layout_128x4, 40, 5)
print(f"3 experts of [40, 5]: {flat.shape} = 3 x {per_expert};",
      "expert 2 reads back:", bool(jnp.array_equal(
          jax_fp4.block_scale_interleave_reverse(flat[2 * per_expert:], 40, 5), experts[2])))

bf16 = jnp.arange(6 * 4, dtype=jnp.float32).reshape(6, 4).astype(jnp.bfloat16)
print("bfloat16 works too:", jax_fp4.block_scale_interleave(bf16).dtype)
twin = jax.jit(lambda a: jax_fp4.block_scale_interleave(a, backend="xla"))(experts)
print("handler == pure-JAX twin:", bool(jnp.array_equal(flat, twin)))

# %% [markdown]
# ## On the GPU
#
# The CUDA handler writes the same buffer.

# %%
if CUDA:
    on_cpu = jax_fp4.block_scale_interleave(jax.device_put(experts, jax.devices("cpu")[0]))
    on_gpu = jax_fp4.block_scale_interleave(jax.device_put(experts, jax.devices("cuda")[0]))
    print("GPU == CPU:", bool(np.array_equal(np.asarray(on_gpu), np.asarray(on_cpu))))
else:
    print("skipped: no GPU with jax_fp4's CUDA handlers (jax_fp4.cuda_available() is False)")
