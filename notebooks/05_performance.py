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
# # Performance: bandwidth against the copy ceiling
#
# Quantization reads a 16-bit tensor and writes a quarter (FP4) or half (FP8) of its bytes,
# plus the scale bytes: it is bound by memory bandwidth. The natural yardstick is a
# device-to-device copy of the same bytes, and an op's *effective bandwidth* is
# `(input bytes + output bytes) / time`.
#
# The GPU benchmark suite (`benchmarks/`, run on a GPU machine) writes
# `benchmarks/results/bench_*.json`: one record per op, layout, dtype and shape with the
# time `us`, the effective bandwidth `gbps`, the copy ceiling `copy_gbps` measured the same
# way and `ratio = gbps / copy_gbps`, for jax_fp4 and for its peers (XLA-fused `jnp`
# versions of the same formats, `jnp.packbits`, ...). This notebook plots the newest such
# file. When there is none (a fresh clone, Colab) it says so and times a few sizes on the
# CPU instead, which shows the method but not GPU numbers.

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

import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jax_fp4

CUDA = jax_fp4.cuda_available()
print(f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}, devices: {jax.devices()}")
print(f"CUDA handlers compiled: {jax_fp4.cuda_compiled()}; GPU + CUDA handlers: {CUDA}")

# %% [markdown]
# ## Find the newest benchmark results
#
# The notebook looks in `benchmarks/results/` of the clone it runs in (from the repository
# root or from `notebooks/`); the environment variable `JAX_FP4_BENCH_JSON` names a file
# explicitly.

# %%
def find_results() -> Path | None:
    explicit = os.environ.get("JAX_FP4_BENCH_JSON")
    if explicit:
        return Path(explicit)
    for root in (Path.cwd(), Path.cwd().parent):
        found = sorted((root / "benchmarks" / "results").glob("bench_*.json"),
                       key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


RESULTS = find_results()
print(f"benchmark results: {RESULTS}" if RESULTS else
      "no benchmarks/results/bench_*.json found (the suite writes one: "
      "`python benchmarks/bench.py` on a GPU machine); timing a few sizes on the CPU below")

# %% [markdown]
# ## Reading the file defensively
#
# The suite writes `{"meta": {...}, "results": [...]}` (`benchmarks/README.md` has the
# schema); each record has `op`, `layout`, `dtype`, `shape`, a time (`us_median`, or
# `us`), the effective bandwidth `gbps`, the copy ceiling `copy_gbps` for the same bytes,
# `ratio_to_copy` (or `ratio`), and its peers' numbers under `peers`. The reader below
# takes what it finds: a bare list of records works too, a record may name its own
# implementation (`impl`, `peer`, ...), and records without a usable `gbps` are skipped
# and counted, so a file from an older or newer suite still plots what it can. The x axis
# is the bytes one call moves (`bytes_moved`, else `gbps * us`).

# %%
ITEMSIZE = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "f16": 2, "float32": 4,
            "fp32": 4, "f32": 4, "float8_e4m3fn": 1, "e4m3": 1, "fp8": 1, "uint8": 1,
            "bool": 1, "int8": 1}
IMPL_KEYS = ("impl", "implementation", "peer", "backend", "variant")


def number(rec, *keys):
    """The first of ``keys`` in ``rec`` that is a finite number, else None."""
    for key in keys:
        try:
            value = float(rec[key])
        except (TypeError, KeyError, ValueError):
            continue
        if math.isfinite(value):
            return value
    return None


def as_shape(value):
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    if isinstance(value, str):
        parts = value.replace("(", "").replace(")", "").replace("x", ",").split(",")
        return tuple(int(p) for p in parts if p.strip())
    if isinstance(value, (int, float)):
        return (int(value),)
    raise ValueError(f"shape {value!r}")


def load_results(path: Path):
    """``(meta, rows, skipped)`` from a benchmark JSON file; one row per implementation."""
    raw = json.loads(path.read_text())
    meta, records = {}, raw
    if isinstance(raw, dict):
        for source in (raw, raw.get("meta") if isinstance(raw.get("meta"), dict) else {}):
            meta.update({k: v for k, v in source.items()
                         if isinstance(v, (str, int, float, bool))})
        records = next((raw[k] for k in ("results", "records", "rows", "benchmarks", "data")
                        if isinstance(raw.get(k), list)), [])
    rows, skipped = [], 0
    for rec in records if isinstance(records, list) else []:
        if not isinstance(rec, dict) or (number(rec, "gbps") or 0) <= 0:
            skipped += 1
            continue
        try:
            shape = as_shape(rec.get("shape"))
        except (TypeError, ValueError):
            shape = None
        us, gbps = number(rec, "us_median", "us"), number(rec, "gbps")
        size = number(rec, "bytes_moved")
        if size is None and us is not None:
            size = gbps * us * 1e3  # GB/s x us = bytes
        itemsize = ITEMSIZE.get(str(rec.get("dtype", "")).lower())
        if size is None and shape and itemsize:
            size = math.prod(shape) * itemsize  # the input alone: a lower bound
        copy_gbps = number(rec, "copy_gbps")
        base = {"op": str(rec.get("op", "?")), "layout": str(rec.get("layout", "")),
                "dtype": str(rec.get("dtype", "")), "shape": shape, "size": size,
                "copy_gbps": copy_gbps}
        impl = next((str(rec[k]) for k in IMPL_KEYS if isinstance(rec.get(k), str)),
                    "jax_fp4")
        rows.append({**base, "impl": impl, "us": us, "gbps": gbps,
                     "ratio": number(rec, "ratio_to_copy", "ratio")})
        peers = rec.get("peers") if isinstance(rec.get("peers"), dict) else {}
        for name, peer in peers.items():  # same bytes, another implementation
            peer_gbps = number(peer, "gbps") if isinstance(peer, dict) else None
            if peer_gbps and peer_gbps > 0:
                rows.append({**base, "impl": str(name), "us": number(peer, "us_median", "us"),
                             "gbps": peer_gbps,
                             "ratio": peer_gbps / copy_gbps if copy_gbps else None})
    return meta, rows, skipped


def plot_results(rows, title):
    """One panel per op: bandwidth vs bytes moved, one line per implementation / layout /
    dtype, the copy ceiling dashed."""
    ops = sorted({r["op"] for r in rows})
    cols = min(3, len(ops))
    nrows = -(-len(ops) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4 * nrows), squeeze=False)
    for ax, op in zip(axes.ravel(), ops):
        lines, ceiling = defaultdict(list), defaultdict(list)
        for r in rows:
            if r["op"] == op and r["size"]:
                label = " ".join(p for p in (r["impl"], r["layout"], r["dtype"]) if p)
                lines[label].append((r["size"], r["gbps"]))
                if r["copy_gbps"]:
                    ceiling[r["size"]].append(r["copy_gbps"])
        for label, points in sorted(lines.items()):
            points.sort()
            ax.plot([p[0] / 2**20 for p in points], [p[1] for p in points], "o-", ms=3,
                    label=label, lw=2 if label.startswith("jax_fp4") else 1)
        if ceiling:
            sizes = sorted(ceiling)
            ax.plot([s / 2**20 for s in sizes], [max(ceiling[s]) for s in sizes], "k--",
                    marker="_", ms=14, label="copy ceiling")
        ax.set_xscale("log")
        values = ([v for points in lines.values() for _, v in points]
                  + [v for vs in ceiling.values() for v in vs])
        if values and max(values) > 20 * min(values):
            ax.set_yscale("log")  # peers or the ceiling far apart: ratios matter
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("bytes moved per call (MiB)")
        ax.set_ylabel("effective bandwidth (GB/s)")
        ax.set_title(op)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(ops):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


def print_table(rows):
    """The largest size of every op / implementation / layout / dtype."""
    best = {}
    for r in rows:
        key = (r["op"], r["impl"], r["layout"], r["dtype"])
        if key not in best or (r["size"] or 0) > (best[key]["size"] or 0):
            best[key] = r
    print(f"{'op':24} {'impl':16} {'layout':14} {'dtype':9} {'shape':>14} {'us':>10} "
          f"{'GB/s':>8} {'of copy':>8}")
    for key in sorted(best):
        r = best[key]
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "?"
        us = f"{r['us']:.1f}" if r["us"] is not None else "-"
        ratio = r["ratio"] if r["ratio"] is not None else (
            r["gbps"] / r["copy_gbps"] if r["copy_gbps"] else None)
        print(f"{r['op'][:24]:24} {r['impl'][:16]:16} {r['layout'][:14]:14} {r['dtype'][:9]:9} "
              f"{shape:>14} {us:>10} {r['gbps']:8.1f} "
              f"{'-' if ratio is None else f'{ratio:.0%}':>8}")


# %% [markdown]
# ## The GPU benchmark results

# %%
rows = []
if RESULTS is not None:
    try:
        meta, rows, skipped = load_results(RESULTS)
    except (OSError, ValueError) as err:  # unreadable or not JSON
        print(f"cannot read {RESULTS}: {err}")
        meta, skipped = {}, 0
    if meta:
        print("run:", ", ".join(f"{k}={v}" for k, v in meta.items()))
    print(f"{len(rows)} rows (records and their peers)"
          + (f"; {skipped} records without a usable gbps skipped" if skipped else ""))
    if rows:
        device = meta.get("gpu") or meta.get("device_label") or meta.get("device", "")
        plot_results(rows, f"{RESULTS.name}: {device}")
        print_table(rows)
if not rows:
    print("no GPU benchmark records to plot")

# %% [markdown]
# ## A tiny CPU timing
#
# The same measurement at JAX level on this machine's CPU: jitted calls, warmed up, the
# best of a few repetitions of several calls each. jax_fp4's C++ handlers (`"auto"`) and
# its pure-JAX twin (`"xla"`, i.e. what XLA makes of the recipe written in `jnp`) against a
# NumPy copy of the input (read + write). Small sizes, to stay quick; on the CPU these are
# not the GPU story, only the method. It runs when there are no GPU results (set
# `ALWAYS_TIME_CPU = True` to run it anyway).

# %%
ALWAYS_TIME_CPU = False
SHAPES = [(256, 1024), (512, 2048), (1024, 4096)]


def best_time(fn, *args, calls=5, repeats=3):
    """Seconds per call: the best of ``repeats`` runs of ``calls`` calls."""
    jax.block_until_ready(fn(*args))  # compile and warm up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def out_bytes(out):
    return sum(a.nbytes for a in jax.tree_util.tree_leaves(out))


CPU_OPS = {
    "NVFP4": lambda x, backend: jax_fp4.fp4_quantize(x, jnp.float32(1.0), backend=backend),
    "MXFP4": lambda x, backend: jax_fp4.mxfp4_quantize(x, backend=backend),
    "MXFP8": lambda x, backend: jax_fp4.mxfp8_quantize(x, backend=backend),
}

cpu_rows = []
if not rows or ALWAYS_TIME_CPU:
    cpu = jax.devices("cpu")[0]
    for shape in SHAPES:
        x_np = np.random.default_rng(0).standard_normal(shape, np.float32)
        x = jax.device_put(jnp.asarray(x_np, jnp.bfloat16), cpu)
        src, dst = np.asarray(x).view(np.uint16), np.empty(shape, np.uint16)
        t_copy = best_time(np.copyto, dst, src)
        copy_gbps = 2 * x.nbytes / t_copy / 1e9
        for op, make in CPU_OPS.items():
            for backend, impl in (("auto", "jax_fp4"), ("xla", "pure-JAX twin")):
                fn = jax.jit(lambda a, make=make, backend=backend: make(a, backend))
                t = best_time(fn, x)
                moved = x.nbytes + out_bytes(fn(x))
                cpu_rows.append({"op": op, "impl": impl, "layout": "128x4", "dtype": "bfloat16",
                                 "shape": shape, "size": moved, "us": t * 1e6,
                                 "gbps": moved / t / 1e9, "copy_gbps": copy_gbps,
                                 "ratio": moved / t / 1e9 / copy_gbps})
    plot_results(cpu_rows, f"CPU, JAX level ({os.cpu_count()} cores): a demonstration only")
    print_table(cpu_rows)

# %% [markdown]
# ## On the GPU, at JAX level
#
# With a GPU the same loop gives JAX-level numbers: they include dispatch and allocation
# per call (about half a millisecond at large sizes on an H200), so they sit below the
# kernel-level numbers of the benchmark suite, which times the kernels between CUDA
# events (or with Nsight Compute) against `cudaMemcpy`.

# %%
if CUDA:
    gpu = jax.devices("cuda")[0]
    x = jax.device_put(jnp.ones((8192, 8192), jnp.bfloat16), gpu)
    t_copy = best_time(jax.jit(lambda a: a * 2), x, calls=20)
    print(f"{gpu.device_kind}: XLA elementwise x*2, {2 * x.nbytes / t_copy / 1e9:.0f} GB/s "
          "(not the copy ceiling: XLA's elementwise kernels stay below it)")
    for op, make in CPU_OPS.items():
        fn = jax.jit(lambda a, make=make: make(a, "auto"))
        t = best_time(fn, x, calls=20)
        print(f"{op}: {t * 1e6:8.1f} us per call, "
              f"{(x.nbytes + out_bytes(fn(x))) / t / 1e9:7.0f} GB/s effective")
else:
    print("skipped: no GPU with jax_fp4's CUDA handlers (jax_fp4.cuda_available() is False)")
