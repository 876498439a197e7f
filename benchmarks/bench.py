#!/usr/bin/env python3
"""JAX-level benchmark of every jax_fp4 op against the copy ceiling and its peers.

What is timed (see ``benchmarks/NOTES.md`` for why, and ``/work/shared/PERF.md`` for the traps):

* For each (op, config, shape) the op is applied to ``R`` distinct inputs inside **one**
  ``jax.jit`` function that returns every output (nothing is dead code). ``R`` is chosen so
  the inputs and outputs of one call together exceed ~2x the L2 cache (so each op reads its
  input from DRAM, not from what the previous call left in L2) and so the fixed per-call
  cost (dispatch, output allocation, sync: ~0.4 ms at 512 MiB on an H200) is shared by
  ``R`` ops; it is capped by ``--max-rot`` and by memory (``--mem-gib``).
* Every variant is AOT-compiled first, in a thread pool (XLA compiles without the GIL; the
  twins' compiles would dominate the run otherwise), then everything is timed in turn.
* Warm-up: the first call and 2 more calls are not timed. Then ``N`` calls are timed one
  by one with ``block_until_ready``; per-op time = wall / R.
  Median, min, max, p10 and p90 are reported.
* Beside each op, in the same run and timed the same way: the **copy ceiling**
  (``device_copy_p``, one ``cudaMemcpyAsync`` device-to-device through the same FFI path,
  on a uint8 buffer of ~half the op's bytes moved, rounded up to 64 KiB: see
  ``copy_buffer_bytes``; so the copy also reads + writes about ``bytes_moved``), and the
  **peers**: the ``backend="xla"`` twin of every op, ``jnp.packbits`` for packbits, JAX's
  own MXFP8 quantizer for MXFP8.
* Bytes moved = every input's bytes + every output's bytes of one op call (input, codes,
  scale bytes in their padded layout, the 4-byte global scale), from ``jax.eval_shape``.

This is what a jitted model sees, not kernel time. Kernel time comes from Nsight Compute:
``--ncu-target OP,M,K`` runs one warm op a few times for ``ncu``, ``--ncu-script`` prints
the loop to paste into the GPU script, and ``benchmarks/ncu_parse.py`` reads ncu's CSV.

Usage:
    python3 benchmarks/bench.py --quick               # CPU/CI sanity, seconds
    python3 benchmarks/bench.py --out DIR             # default grid (GPU: < 4 min)
    python3 benchmarks/bench.py --full --budget-s 0   # every op on the whole grid
    python3 benchmarks/bench.py --ncu-script          # shell loop for ncu
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

T_START = time.perf_counter()  # the time budget counts from here (JAX start-up included)

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4
from jax_fp4 import _primitives as prims

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results"

# Predicted copy ceilings (PERF.md): the H200 figure is a measured CUDA-events copy, the H100
# one is the datasheet peak. Used only for the floor column; the measured copy of this run
# is what every ratio uses.
PREDICTED_CEILING_GBPS = {"H200": 4180.0, "H100": 3350.0}
L2_MIB = {"H200": 60, "H100": 50}  # H100 SXM: 50 MiB; unknown GPUs use 60

# Global encode scale for NVFP4 inputs: 448 * 6 / amax with amax ~ 5 for N(0, 1) data. Its
# value does not change the work; it is passed as an argument so XLA cannot fold it.
NVFP4_GS = 448.0 * 6.0 / 5.0

NCU_KERNEL_REGEX = "BlockQuantize|BlockDequantize|Pack|Interleave|Segment|memcpy"
NCU_METRICS = "gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum"

# ---------------------------------------------------------------------------------------------
# Grids. Each entry: op key -> list of (M, K, batch). M x K is the logical problem for every
# op: the quantizers read [M, K], the dequantizers read its codes and scales, interleave reads
# its [M, K / 16] scale matrix, packbits packs M * K elements. batch=None: no batch axis.
# ---------------------------------------------------------------------------------------------

M_GRID = (1, 16, 128, 1024, 4096, 16384)
K_GRID = (4096, 16384)
FULL_MK = [(m, k, None) for m in M_GRID for k in K_GRID]
REDUCED_MK = [(16, 4096, None), (2048, 4096, None), (16384, 16384, None)]
VMAP_MK = [(16, 4096, 8), (512, 4096, 8), (2048, 4096, 8)]

OP_ORDER = ("nvfp4_128x4", "mxfp8_128x4", "nvfp4_8x4", "nvfp4_linear", "mxfp4_128x4",
            "nvfp4_dequant", "mxfp8_dequant", "interleave", "packbits", "segment_packbits",
            "nvfp4_vmap8")

PLANS: dict[str, dict[str, list]] = {
    "quick": {
        **{k: [(8, 256, None)] for k in OP_ORDER},
        "nvfp4_128x4": [(8, 256, None), (130, 512, None)],  # a partial 128-row tile too
        "interleave": [(130, 512, None)],
        "nvfp4_vmap8": [(8, 256, 8)],
    },
    "default": {
        "nvfp4_128x4": FULL_MK,
        "mxfp8_128x4": FULL_MK,
        **{k: REDUCED_MK for k in OP_ORDER[2:-1]},
        "nvfp4_vmap8": VMAP_MK,
    },
    "full": {
        **{k: FULL_MK for k in OP_ORDER[:-1]},
        "interleave": FULL_MK + [(4096, 4096, 8)],  # per-expert scale matrices
        "nvfp4_vmap8": [(m, 4096, 8) for m in M_GRID[:5]] + [(m, 16384, 8) for m in M_GRID[:4]],
    },
}

NCU_TARGETS = [  # (target, backend): the large configs the ncu loop profiles
    ("nvfp4_128x4,16384,16384", "auto"),
    ("mxfp8_128x4,16384,16384", "auto"),
    ("mxfp4_128x4,16384,16384", "auto"),
    ("nvfp4_dequant,16384,16384", "auto"),
    ("mxfp8_dequant,16384,16384", "auto"),
    ("packbits,16384,16384", "auto"),
    ("nvfp4_128x4,16384,16384", "xla"),
    ("mxfp8_128x4,16384,16384", "xla"),
    ("packbits,16384,16384", "jnp_packbits"),
]


# ---------------------------------------------------------------------------------------------
# Input generators: jitted once per shape, called with a different seed per rotation, so the
# R inputs are distinct random data (never zeros: they hide unwritten outputs and can run
# faster than real data).
# ---------------------------------------------------------------------------------------------


def _key(seed):
    return jax.random.key(seed)


@cache
def _gen_normal(shape: tuple, dtype) -> Callable:
    return jax.jit(lambda seed: jax.random.normal(_key(seed), shape, jnp.float32).astype(dtype))


@cache
def _gen_bytes(shape: tuple) -> Callable:
    return jax.jit(lambda seed: jax.random.bits(_key(seed), shape, jnp.uint8))


@cache
def _gen_bools(shape: tuple) -> Callable:
    return jax.jit(lambda seed: jax.random.bernoulli(_key(seed), 0.5, shape))


@cache
def _gen_nvfp4_codes(m: int, k: int) -> Callable:
    # Real NVFP4 data (codes + 128x4 E4M3 scales) from our own quantizer: realistic bytes.
    def gen(seed):
        x = jax.random.normal(_key(seed), (m, k), jnp.float32).astype(jnp.bfloat16)
        return jax_fp4.fp4_quantize(x, jnp.float32(NVFP4_GS))
    return jax.jit(gen)


@cache
def _gen_mxfp8_codes(m: int, k: int) -> Callable:
    def gen(seed):
        x = jax.random.normal(_key(seed), (m, k), jnp.float32).astype(jnp.bfloat16)
        return jax_fp4.mxfp8_quantize(x, True)
    return jax.jit(gen)


def _jax_mxfp8_peer() -> tuple[str, Callable] | None:
    """JAX's own MXFP8 quantizer, or None when this jax has none.

    jax.nn has no public quantize function (0.10/0.11); ``jax.nn.scaled_dot_general`` quantizes
    with ``quantize(x, config)`` from ``jax._src.cudnn.scaled_matmul_stablehlo`` and the public
    ``jax.nn.get_scaled_dot_general_config("mxfp8")``. That is the MXFP8 quantizer a JAX user
    gets today, so it is the peer (private: it may move; then the peer is skipped). It writes
    linear E8M0 scales (no swizzle) and float8 codes, so it does slightly less work than ours.
    """
    public = [n for n in dir(jax.nn) if "quantiz" in n.lower() and not n.startswith("_")]
    if public:  # a future public quantizer: report it so the next version can adopt it
        print(f"note: jax.nn has {public}; bench.py still uses the scaled_dot_general quantizer",
              file=sys.stderr)
    try:
        from jax._src.cudnn.scaled_matmul_stablehlo import quantize
        cfg = jax.nn.get_scaled_dot_general_config("mxfp8")
    except Exception:  # noqa: BLE001 - absent or moved: skip the peer
        return None
    return "jax_mxfp8", lambda x: quantize(x, cfg)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One (op, config, shape): how to make one rotation's inputs and what to time on them."""

    key: str
    op: str
    layout: str
    dtype: str
    m: int
    k: int
    batch: int | None
    make_inputs: Callable[[int], tuple]  # seed -> tuple of device arrays
    variants: dict[str, Callable]  # "ours", "xla", peer names -> fn(*inputs)
    tier: int = 1  # run order under the time budget: tier 0 first

    @property
    def shape_str(self) -> str:
        return (f"{self.batch}x" if self.batch else "") + f"{self.m}x{self.k}"


def make_case(key: str, m: int, k: int, batch: int | None) -> Case:
    """Builds the case ``key`` on the logical ``m x k`` problem (see the grid comment)."""
    gs = jnp.full((1,), NVFP4_GS, jnp.float32)
    bf16 = jnp.bfloat16

    def both(fn):  # ours (FFI handler of this platform) and the pure-JAX twin
        return {"ours": lambda *a: fn(*a, backend="auto"), "xla": lambda *a: fn(*a, backend="xla")}

    if key.startswith("nvfp4_") and key.split("_")[1] in ("128x4", "8x4", "linear"):
        lay = key.split("_")[1]
        swz, is8 = lay != "linear", lay == "8x4"
        fn = lambda x, g, backend: jax_fp4.fp4_quantize(
            x, g, 16, False, swz, is8, backend=backend)
        return Case(key, "fp4_quantize", lay, "bfloat16", m, k, batch,
                    lambda s: (_gen_normal((m, k), bf16)(s), gs), both(fn))
    if key == "mxfp4_128x4":
        fn = lambda x, backend: jax_fp4.mxfp4_quantize(x, backend)
        return Case(key, "mxfp4_quantize", "128x4", "bfloat16", m, k, batch,
                    lambda s: (_gen_normal((m, k), bf16)(s),), both(fn))
    if key == "mxfp8_128x4":
        fn = lambda x, backend: jax_fp4.mxfp8_quantize(x, True, backend=backend)
        variants = both(fn)
        peer = _jax_mxfp8_peer()
        if peer is not None:
            variants[peer[0]] = peer[1]
        return Case(key, "mxfp8_quantize", "128x4", "bfloat16", m, k, batch,
                    lambda s: (_gen_normal((m, k), bf16)(s),), variants)
    if key == "nvfp4_dequant":
        g = jnp.full((1,), 1.0 / NVFP4_GS, jnp.float32)
        fn = lambda c, sf, g, backend: jax_fp4.e2m1_and_ufp8sf_scale_to_float(
            c, sf, g, 16, 1, True, False, backend)
        return Case(key, "e2m1_and_ufp8sf_scale_to_float", "128x4", "e2m1+e4m3->f32", m, k,
                    batch, lambda s: (*_gen_nvfp4_codes(m, k)(s), g), both(fn))
    if key == "mxfp8_dequant":
        fn = lambda c, sf, backend: jax_fp4.mxfp8_dequantize_host(
            c, sf, True, backend=backend)
        return Case(key, "mxfp8_dequantize_host", "128x4", "e4m3+ue8m0->f32", m, k, batch,
                    lambda s: tuple(_gen_mxfp8_codes(m, k)(s)), both(fn))
    if key == "interleave":
        shape = ((batch,) if batch else ()) + (m, k // 16)
        fn = lambda x, backend: jax_fp4.block_scale_interleave(x, backend)
        return Case(key, "block_scale_interleave", "linear->128x4", "uint8", m, k, batch,
                    lambda s: (_gen_bytes(shape)(s),), both(fn))
    if key == "packbits":
        n = m * k
        fn = lambda x, backend: jax_fp4.packbits(x, "big", backend)
        variants = both(fn)
        variants["jnp_packbits"] = lambda x: jnp.packbits(x, bitorder="big")
        return Case(key, "packbits", "big", "bool", m, k, batch,
                    lambda s: (_gen_bools((n,))(s),), variants)
    if key == "segment_packbits":
        n = m * k
        # 64 segments with random cut points (ragged, some not byte-aligned), the same for
        # every rotation; the bits differ. total_bytes is static, as under jit it must be.
        cuts = np.sort(np.random.default_rng(n).integers(0, n + 1, 63))
        indptr_np = np.concatenate([[0], cuts, [n]]).astype(np.int32)
        total = int(((np.diff(indptr_np) + 7) // 8).sum())
        indptr = jnp.asarray(indptr_np)
        fn = lambda x, p, backend: jax_fp4.segment_packbits(
            x, p, "big", total_bytes=total, backend=backend)
        return Case(key, "segment_packbits", "big", "bool", m, k, batch,
                    lambda s: (_gen_bools((n,))(s), indptr), both(fn))
    if key == "nvfp4_vmap8":
        b = batch or 8

        def fn(x, g, backend):
            return jax.vmap(lambda xi: jax_fp4.fp4_quantize(xi, g, backend=backend))(x)
        return Case(key, "vmap(fp4_quantize)", "128x4", "bfloat16", m, k, b,
                    lambda s: (_gen_normal((b, m, k), bf16)(s), gs), both(fn))
    raise ValueError(f"unknown op key {key!r}; known: {', '.join(OP_ORDER)}")


def plan_cases(preset: str, ops: list[str] | None, max_elems: int | None) -> list[Case]:
    """The cases of a preset, filtered, in run order (tier 0, one flagship per op, first)."""
    cases = []
    for key in OP_ORDER:
        if ops and key not in ops:
            continue
        grid = PLANS[preset].get(key, [])
        for m, k, b in grid:
            if max_elems and m * k * (b or 1) > max_elems:
                continue
            cases.append(make_case(key, m, k, b))
    # Under a time budget the largest shape of each op runs first (it is the one the
    # bandwidth target is about), then the rest in grid order.
    seen = set()
    for c in sorted(cases, key=lambda c: -c.m * c.k * (c.batch or 1)):
        if c.key not in seen:
            c.tier = 0
            seen.add(c.key)
    return sorted(cases, key=lambda c: c.tier)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass
class Opts:
    """Rotation and repetition settings (platform dependent defaults, see ``main``)."""

    l2_bytes: int
    target_bytes: int  # footprint of one call to aim for: max(2 x L2, amortisation)
    mem_bytes: int  # cap on the footprint of one call
    min_rot: int
    max_rot: int
    n_min: int
    n_max: int
    time_per_variant_s: float
    warmup: int = 2


def rotations(bytes_moved: int, o: Opts) -> int:
    """R: enough distinct inputs to exceed the target footprint, within memory and the cap."""
    r = max(o.min_rot, min(o.max_rot, math.ceil(o.target_bytes / max(bytes_moved, 1))))
    return max(1, min(r, o.mem_bytes // max(bytes_moved, 1)))


def _struct(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def bytes_moved_of(fn: Callable, inputs: tuple) -> int:
    """Bytes read + written by one call: all inputs once, all outputs once."""
    outs = jax.eval_shape(fn, *[_struct(x) for x in inputs])
    leaves = list(inputs) + jax.tree.leaves(outs)
    return int(sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves))


def _pct(sorted_vals: list[float], q: float) -> float:
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def _multi(fn: Callable) -> Callable:
    # One jitted function over all R rotations, every output returned (nothing is dead code).
    return jax.jit(lambda inputs: [fn(*a) for a in inputs])


def compile_variant(fn: Callable, rot_structs: list[tuple]) -> tuple[object, float]:
    """AOT-compiles ``fn`` over R rotations of inputs shaped like ``rot_structs``.

    Returns the executable and the wall time of trace + compile. Called from a thread pool:
    XLA compiles without the GIL, so the twins' compiles (~0.35 s per NVFP4 instance on an
    H200, linear in R) overlap instead of eating the GPU run's time budget.
    """
    t0 = time.perf_counter()
    compiled = _multi(fn).lower(rot_structs).compile()
    return compiled, time.perf_counter() - t0


def time_variant(compiled, rot_inputs: list[tuple], o: Opts) -> dict:
    """Times a compiled R-rotation executable; per-op microseconds (wall / R)."""
    r = len(rot_inputs)
    # Untimed: the first call (first-use allocations, lazy loading) and o.warmup more.
    warm = []
    for _ in range(1 + o.warmup):
        t0 = time.perf_counter()
        out = compiled(rot_inputs)
        jax.block_until_ready(out)
        warm.append(time.perf_counter() - t0)
        del out  # before the next call: no two sets of outputs alive at once
    per_call = sorted(warm[1:] or warm)[len(warm[1:] or warm) // 2]
    n = int(min(o.n_max, max(o.n_min, o.time_per_variant_s / max(per_call, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = compiled(rot_inputs)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / r * 1e6)
        del out
    times.sort()
    return {
        "us_median": float(np.median(times)), "us_min": times[0], "us_max": times[-1],
        "us_p10": _pct(times, 0.1), "us_p90": _pct(times, 0.9), "n_runs": n,
    }


@dataclass
class Prepared:
    """A case with its sizes worked out abstractly (no device memory used yet)."""

    case: Case
    nbytes: int  # bytes moved by one op call
    r: int  # rotations
    rot_structs: list[tuple]  # R copies of the inputs' ShapeDtypeStructs
    copy_bytes: int  # the copy buffer: half the bytes moved, see copy_buffer_bytes
    compiled: dict = field(default_factory=dict)  # variant -> (executable | None, secs, err)


def prepare(c: Case, o: Opts) -> Prepared:
    structs = tuple(jax.eval_shape(c.make_inputs, 1))
    nbytes = bytes_moved_of(c.variants["ours"], structs)
    r = rotations(nbytes, o)
    return Prepared(c, nbytes, r, [structs] * r, copy_buffer_bytes(nbytes))


def copy_buffer_bytes(nbytes: int) -> int:
    """Size of the copy-ceiling buffer for an op moving ``nbytes`` (read + write).

    Half of ``nbytes``, rounded up to 64 KiB from 1 MiB on (else to 256 B): on an H200
    (2026-11-22, R = 7, ~344 MB) cudaMemcpyAsync device-to-device ran at 3.1-3.5 TB/s for
    sizes that are multiples of 64 KiB and at 2.15-2.2 TB/s for sizes 2-512 B off one, e.g.
    NVFP4's byte counts (the 4-byte global scale). The ceiling is the good copy. Copy GB/s
    is computed from the bytes actually copied, so the rounding (<= 6%) does not bias it.
    """
    half = max(1, -(-nbytes // 2))
    step = 65536 if half >= 2**20 else 256
    return -(-half // step) * step


def _copy_fn(b):
    return prims.device_copy_p.bind(b)[0]


def compile_all(preps: list[Prepared], workers: int, prog: Progress) -> dict:
    """Compiles every variant of every case, and one copy per (bytes, R), in a thread pool.

    Returns the copy executables keyed by (copy_bytes, R); the variants land in each
    ``Prepared.compiled``. Failures are kept as error strings (a peer that cannot run here).
    """
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    copies: dict[tuple, list] = {}
    for p in preps:
        for name, fn in p.case.variants.items():
            jobs.append((p.compiled, name, fn, p.rot_structs, f"{p.case.key} {p.case.shape_str}"))
        key = (p.copy_bytes, p.r)
        if key not in copies:
            copies[key] = {}
            st = (jax.ShapeDtypeStruct((p.copy_bytes,), jnp.uint8),)
            jobs.append((copies[key], "copy", _copy_fn, [st] * p.r, f"copy {p.copy_bytes} B"))

    def run(job):
        slot, name, fn, structs, what = job
        try:
            slot[name] = (*compile_variant(fn, structs), None)
        except Exception as e:  # noqa: BLE001
            slot[name] = (None, 0.0, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return f"compile {what} {name}"

    with ThreadPoolExecutor(max(1, workers)) as ex:
        for what in ex.map(run, jobs):
            prog.step(what)
    return {k: v["copy"] for k, v in copies.items()}


# ---------------------------------------------------------------------------------------------
# Progress (tqdm when installed and on a terminal; one line per step otherwise, which reads
# better in a log file)
# ---------------------------------------------------------------------------------------------


class Progress:
    """A minimal progress bar; uses tqdm when available and stderr is a terminal."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.n, self.enabled = total, 0, enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, what: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_description_str(what[:60])
            self._bar.update(1)
            return
        width = 20
        done = int(width * self.n / max(self.total, 1))
        el = time.perf_counter() - T_START
        print(f"[{'#' * done}{'.' * (width - done)}] {self.n:3d}/{self.total} {el:6.1f}s  {what}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def device_info() -> dict:
    dev = jax.devices()[0]
    kind = dev.device_kind if dev.platform != "cpu" else (platform.processor() or "cpu")
    gpu_name = next((g for g in PREDICTED_CEILING_GBPS if g in dev.device_kind), None)
    try:
        import jaxlib
        jaxlib_version = jaxlib.__version__
    except Exception:  # noqa: BLE001
        jaxlib_version = "?"
    try:
        git = ["git", "-C", str(REPO)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "ffi", "jax_fp4"],
                               check=False, capture_output=True, text=True, timeout=5).stdout
        commit += "+dirty" if dirty.strip() else ""
    except Exception:  # noqa: BLE001
        commit = ""
    return {
        "device": dev.device_kind, "platform": dev.platform, "device_label": kind,
        "gpu": gpu_name, "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "jaxlib": jaxlib_version, "jax_fp4": jax_fp4.__version__,
        "git": commit, "python": platform.python_version(),
        "cuda_handlers": jax_fp4.cuda_available(),
        "predicted_ceiling_gbps": PREDICTED_CEILING_GBPS.get(gpu_name),
    }


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_") or "device"


# ---------------------------------------------------------------------------------------------
# The benchmark loop
# ---------------------------------------------------------------------------------------------


def _err(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def run_case(p: Prepared, o: Opts, info: dict, copies: dict, copy_times: dict,
             prog: Progress) -> dict:
    """Times every variant of one prepared case and the copy ceiling; its JSON record."""
    c = p.case
    rec = {"op": c.op, "key": c.key, "layout": c.layout, "dtype": c.dtype,
           "shape": [x for x in (c.batch, c.m, c.k) if x], "device": info["device"],
           "jax": info["jax"], "jaxlib": info["jaxlib"], "date": info["date"],
           "input_shapes": [list(x.shape) for x in p.rot_structs[0]], "rotations": p.r,
           "bytes_moved": p.nbytes, "footprint_bytes": p.nbytes * p.r,
           "l2_resident": bool(p.nbytes * p.r < 2 * o.l2_bytes)}
    # R distinct random inputs (a different seed each), generated on the device.
    rot_inputs = [c.make_inputs(seed) for seed in range(1, p.r + 1)]
    variants = {}
    for name in c.variants:
        prog.step(f"time {c.key} {c.shape_str} {name}")
        exe, secs, err = p.compiled[name]
        if exe is None:
            variants[name] = {"error": err}
            continue
        try:
            variants[name] = {**time_variant(exe, rot_inputs, o), "compile_s": round(secs, 3)}
        except Exception as e:  # noqa: BLE001 - a peer that cannot run here: say so, go on
            variants[name] = {"error": _err(e)}
    del rot_inputs  # free the op's buffers before the copy's

    # The copy ceiling: a uint8 buffer of ~half the bytes moved, copied (read + write), the
    # same R, timed the same way. Equal (bytes, R) share one timing.
    prog.step(f"time {c.key} {c.shape_str} copy")
    key = (p.copy_bytes, p.r)
    if key not in copy_times:
        exe, secs, err = copies[key]
        if exe is None:
            copy_times[key] = {"error": err}
        else:
            bufs = [(_gen_bytes((p.copy_bytes,))(1000 + i),) for i in range(p.r)]
            try:
                copy_times[key] = {**time_variant(exe, bufs, o), "compile_s": round(secs, 3),
                                   "bytes_moved": 2 * p.copy_bytes}
            except Exception as e:  # noqa: BLE001
                copy_times[key] = {"error": _err(e)}
            del bufs
    cp = copy_times[key]

    ours = variants.pop("ours")
    rec.update(ours)
    gb = lambda nbytes, t: nbytes / (t * 1e3)
    rec["copy"] = cp
    rec["peers"] = variants
    if "us_median" not in ours:
        return rec
    rec["gbps"] = gb(p.nbytes, ours["us_median"])
    if "us_median" in cp:
        rec["copy_gbps"] = gb(cp["bytes_moved"], cp["us_median"])
        rec["ratio_to_copy"] = rec["gbps"] / rec["copy_gbps"]  # share of the ceiling
    ceil = info.get("predicted_ceiling_gbps")
    if ceil:
        rec["floor_us_predicted"] = p.nbytes / (ceil * 1e3)
    rec["speedup_vs_peer"] = {}  # peer time / our time: > 1 means ours is faster
    for name, v in variants.items():
        if "us_median" in v:
            v["gbps"] = gb(p.nbytes, v["us_median"])  # effective: our byte count
            rec["speedup_vs_peer"][name] = v["us_median"] / ours["us_median"]
    return rec


def render_table(records: list[dict], skipped: list[str]) -> str:
    """The human summary, printed last (the GPU log keeps only its tail)."""
    peers = sorted({p for r in records for p in r.get("peers", {})})
    head = (f"{'op':<30} {'layout':<13} {'dtype':<15} {'shape':<15} {'R':>3} {'us':>10} "
            f"{'+-%':>5} {'GB/s':>8} {'copyGB/s':>8} {'%copy':>6}  speedup (peer us / ours us)")
    lines = [head, "-" * len(head)]
    order = {k: i for i, k in enumerate(OP_ORDER)}
    for r in sorted(records, key=lambda r: (order.get(r["key"], 99), math.prod(r["shape"]))):
        shape = "x".join(map(str, r["shape"]))
        if "us_median" not in r:
            err = r.get("error", "failed")
            lines.append(f"{r['op']:<30} {r['layout']:<13} {r['dtype']:<15} {shape:<15} {err}")
            continue
        spread = 100 * (r["us_p90"] - r["us_p10"]) / (2 * r["us_median"])
        cg = r.get("copy_gbps")
        rc = r.get("ratio_to_copy")
        sp = "  ".join(f"{p} {r['speedup_vs_peer'][p]:.2f}x" if p in r["speedup_vs_peer"]
                       else f"{p} ERR" for p in peers if p in r.get("peers", {}))
        lines.append(
            f"{r['op']:<30} {r['layout']:<13} {r['dtype']:<15} {shape:<15} {r['rotations']:>3} "
            f"{r['us_median']:>10.2f} {spread:>5.1f} {r['gbps']:>8.1f} "
            f"{(f'{cg:8.1f}' if cg else '       -')} {(f'{100 * rc:5.1f}%' if rc else '     -')}"
            f"  {sp}" + ("  [L2]" if r.get("l2_resident") else ""))
    errors = sorted({f"{r['key']} {p}: {v['error']}" for r in records
                     for p, v in r.get("peers", {}).items() if "error" in v})
    errors += sorted({f"{r['key']} copy: {r['copy']['error']}" for r in records
                      if "error" in r.get("copy", {})})
    for e in errors[:12]:  # one line per distinct failure (they repeat across shapes)
        lines.append(f"ERR {e[:200]}")
    if skipped:
        lines.append(f"skipped (time budget): {', '.join(skipped)}")
    lines.append("us: median per op (wall / R); +-%: (p90 - p10) / 2 / median; GB/s: bytes moved"
                 " (read + write) / time; %copy: op GB/s / copy GB/s (device_copy_p, same run,"
                 " same R); [L2]: R x bytes < 2 x L2, numbers include cache hits.")
    return "\n".join(lines)


PEER_COLORS = {"xla": "C1", "jnp_packbits": "C2", "jax_mxfp8": "C3"}  # same in every panel


def write_plot(records: list[dict], info: dict, path: Path) -> bool:
    """Achieved GB/s vs bytes moved, one panel per op key, copy ceiling drawn. False if no mpl."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [k for k in OP_ORDER if any(r["key"] == k and "gbps" in r for r in records)]
    if not keys:
        return False
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        rs = sorted((r for r in records if r["key"] == key and "gbps" in r),
                    key=lambda r: r["bytes_moved"])
        x = [r["bytes_moved"] for r in rs]
        ax.plot(x, [r["gbps"] for r in rs], "o-", label="jax_fp4", color="C0")
        ax.plot(x, [r.get("copy_gbps") or np.nan for r in rs], "k:", marker=".",
                label="copy (device_copy_p)")
        for p in sorted({p for r in rs for p in r.get("peers", {})}):
            ax.plot(x, [r["peers"].get(p, {}).get("gbps") or np.nan for r in rs], "s--",
                    label=p, color=PEER_COLORS.get(p, "C5"), markersize=3)
        if info.get("predicted_ceiling_gbps"):
            ax.axhline(info["predicted_ceiling_gbps"], color="grey", lw=0.8, ls="-.",
                       label="predicted ceiling")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{rs[0]['op']} {rs[0]['layout']}", fontsize=9)
        ax.set_xlabel("bytes moved per op")
        ax.set_ylabel("GB/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"jax_fp4, JAX-level, {info['device_label']}, jax {info['jax']}, {info['date']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# ncu helpers
# ---------------------------------------------------------------------------------------------


def parse_target(target: str) -> tuple[str, int, int, int | None]:
    parts = target.split(",")
    if len(parts) not in (3, 4):
        raise SystemExit(f"--ncu-target wants OP,M,K[,BATCH], got {target!r}")
    key, m, k = parts[0], int(parts[1]), int(parts[2])
    batch = int(parts[3]) if len(parts) == 4 else (8 if key == "nvfp4_vmap8" else None)
    return key, m, k, batch


def cuda_profiler(start: bool) -> str:
    """cuProfilerStart/Stop through the driver API; what happened, as text.

    Lets ``ncu --profile-from-start off`` profile only the calls we mean (not compile-time
    autotuning, input generation or the warm call). Best effort: without libcuda (CPU) or a
    profiler attached it does nothing harmful.
    """
    import ctypes
    try:
        cu = ctypes.CDLL("libcuda.so.1")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        # The primary context is the one XLA uses; make it current on this thread.
        rcs = [cu.cuInit(0), cu.cuDeviceGet(ctypes.byref(dev), 0),
               cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), cu.cuCtxSetCurrent(ctx),
               cu.cuProfilerStart() if start else cu.cuProfilerStop()]
        return "ok" if not any(rcs) else f"CUresult {rcs}"
    except (OSError, AttributeError) as e:
        return f"unavailable ({e})"


def ncu_run(args) -> int:
    """One warm op (or peer) call, then ``--ncu-reps`` calls: what ncu profiles."""
    key, m, k, batch = parse_target(args.ncu_target)
    c = make_case(key, m, k, batch)
    name = "ours" if args.ncu_backend == "auto" else args.ncu_backend
    if name not in c.variants:
        raise SystemExit(f"{key} has no variant {name!r}; it has {sorted(c.variants)}")
    fn = jax.jit(c.variants[name])
    inputs = c.make_inputs(1)
    jax.block_until_ready(inputs)
    jax.block_until_ready(fn(*inputs))  # compile + first run: not what we want to read
    started = cuda_profiler(True) if jax.devices()[0].platform == "gpu" else "cpu"
    for _ in range(args.ncu_reps):
        jax.block_until_ready(fn(*inputs))
    # The copy ceiling for the same bytes (cudaMemcpyAsync: ncu does not list it as a
    # kernel, nsys does; it is here so a trace of this process has the ceiling beside the op).
    nbytes = bytes_moved_of(c.variants["ours"], inputs)
    buf = _gen_bytes((copy_buffer_bytes(nbytes),))(7)
    jax.block_until_ready(prims.device_copy_p.bind(buf))
    for _ in range(args.ncu_reps):
        jax.block_until_ready(prims.device_copy_p.bind(buf))
    if started == "ok":
        cuda_profiler(False)
    meta = {"profiler_range": started, "target": args.ncu_target, "backend": args.ncu_backend, "op": c.op,
            "layout": c.layout, "dtype": c.dtype, "shape": [x for x in (batch, m, k) if x],
            "bytes_moved": nbytes, "reps": args.ncu_reps, "warm_calls": 1,
            "device": jax.devices()[0].device_kind, "jax": jax.__version__}
    if args.out and args.ncu_tag:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.ncu_tag}.meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), file=sys.stderr)
    return 0


def ncu_script(targets: str | None = None) -> str:
    """The shell loop for the GPU script ($OUT set, run from the repository root).

    Args:
        targets: space-separated ``OP,M,K[,B][:backend]``; default ``NCU_TARGETS``.
    """
    pairs = NCU_TARGETS
    if targets:
        pairs = [(t.split(":")[0], t.split(":")[1] if ":" in t else "auto")
                 for t in targets.split()]
    t_ours = " ".join(t for t, b in pairs if b == "auto")
    peers = " ".join(f"{t}:{b}" for t, b in pairs if b != "auto")
    n = len(pairs)
    return f"""\
# jax_fp4 kernel-level timing with Nsight Compute ({n} profiled processes, ~20-40 s each:
# JAX start-up, input generation, compile, then 1 warm + 5 profiled calls).
# Leaves the clocks alone (--clock-control none). DRAM bytes come from the counters.
NCU_METRICS={NCU_METRICS}
NCU_UNITS=$(ncu --help 2>/dev/null | grep -q -- '--print-units' && echo '--print-units base')
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # leave device memory for ncu's replay buffers
for t in {t_ours}; do
  tag=ncu_${{t//,/_}}
  ncu --clock-control none --metrics "$NCU_METRICS" --csv $NCU_UNITS \\
      -k regex:'{NCU_KERNEL_REGEX}' --log-file "$OUT/$tag.csv" \\
      python3 benchmarks/bench.py --ncu-target "$t" --ncu-tag "$tag" --out "$OUT" \\
      > "$OUT/$tag.log" 2>&1
  echo "$tag: exit $?"
done
# XLA twins and peers: their kernels have XLA's names, so no -k filter; instead bench.py
# brackets the 5 profiled calls with cuProfilerStart/Stop (--profile-from-start off), which
# leaves out compile-time autotuning, input generation and the warm call. ncu_parse also
# drops XLA's own helper kernels (Redzone..., DelayKernel) from the totals.
for tb in {peers}; do
  t=${{tb%%:*}}; b=${{tb##*:}}; tag=ncu_${{t//,/_}}_$b
  ncu --clock-control none --metrics "$NCU_METRICS" --csv $NCU_UNITS \\
      --profile-from-start off --log-file "$OUT/$tag.csv" \\
      python3 benchmarks/bench.py --ncu-target "$t" --ncu-backend "$b" --ncu-tag "$tag" \\
      --out "$OUT" > "$OUT/$tag.log" 2>&1
  echo "$tag: exit $?"
done
python3 benchmarks/ncu_parse.py --min-count 5 "$OUT"/ncu_*.csv --json "$OUT/ncu_summary.json" \\
    | tee "$OUT/ncu_summary.txt"
"""


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="tiny shapes, seconds (CPU / CI sanity)")
    g.add_argument("--full", action="store_true", help="every op on the whole M x K grid")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for JSON and PNG")
    p.add_argument("--ops", default="", help=f"comma list of op keys ({','.join(OP_ORDER)})")
    p.add_argument("--max-elems", type=int, default=None,
                   help="skip shapes with more elements (CPU default 2^22, GPU none)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new cases after this many seconds since start "
                        "(GPU default 180, leaving room for output; 0 = no limit)")
    p.add_argument("--max-rot", type=int, default=None, help="cap on R (GPU 16, CPU 8)")
    p.add_argument("--min-rot", type=int, default=None, help="floor on R (GPU 4, CPU 2)")
    p.add_argument("--mem-gib", type=float, default=None,
                   help="cap on one call's footprint R x bytes (GPU 12, CPU 1)")
    p.add_argument("--l2-mib", type=float, default=None,
                   help="L2 size for the rotation rule (H200 60, H100 50, CPU 32)")
    p.add_argument("--reps", type=int, default=None, help="fixed timed calls per variant")
    p.add_argument("--workers", type=int, default=None,
                   help="compile threads (default min(16, CPUs))")
    p.add_argument("--platform", default=None, help="force a JAX platform, e.g. cpu")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ncu-target", default=None, metavar="OP,M,K[,B]",
                   help="run one warm op a few times for ncu (no timing, no table)")
    p.add_argument("--ncu-backend", default="auto",
                   help="auto (ours), xla (the twin) or a peer name (jnp_packbits, jax_mxfp8)")
    p.add_argument("--ncu-reps", type=int, default=5)
    p.add_argument("--ncu-tag", default=None, help="file stem for the meta JSON in --out")
    p.add_argument("--ncu-script", action="store_true", help="print the ncu shell loop, exit")
    p.add_argument("--ncu-targets", default=None, metavar='"OP,M,K[:BACKEND] ..."',
                   help="targets for --ncu-script (default: the large configs in NCU_TARGETS)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.ncu_script:
        print(ncu_script(args.ncu_targets))
        return 0
    if args.platform:
        jax.config.update("jax_platforms", args.platform)
    if args.ncu_target:
        return ncu_run(args)

    info = device_info()
    info["date"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    gpu = info["platform"] != "cpu"
    if gpu and not info["cuda_handlers"]:
        # Without the CUDA handlers the primitives lower to the twin: "ours" would be XLA.
        print("WARNING: jax_fp4's CUDA handlers are not loaded; 'ours' runs the XLA twin",
              file=sys.stderr)
    preset = "quick" if args.quick else "full" if args.full else "default"
    l2 = (args.l2_mib or (L2_MIB.get(info["gpu"], 60) if gpu else 32)) * 2**20
    o = Opts(
        l2_bytes=int(l2),
        # GPU: also >= 4 GiB per call so the ~0.2-0.5 ms per-call cost is spread over R ops.
        target_bytes=int(max(2 * l2, 4 * 2**30 if gpu else 0)),
        mem_bytes=int((args.mem_gib or (12 if gpu else 1)) * 2**30),
        min_rot=args.min_rot or (2 if args.quick else 4 if gpu else 2),
        # GPU: 16. Small shapes cost ~15 us per op at the JAX level whatever R (per-op, not
        # per-call, overhead), and each twin instance costs ~0.35 s of compile.
        max_rot=args.max_rot or (2 if args.quick else 16 if gpu else 8),
        n_min=args.reps or (3 if args.quick else 10 if gpu else 5),
        n_max=args.reps or (3 if args.quick else 100 if gpu else 20),
        time_per_variant_s=0.0 if args.quick else 0.25 if gpu else 0.5,
    )
    budget = args.budget_s if args.budget_s is not None else (180.0 if gpu else 0.0)
    max_elems = args.max_elems if args.max_elems is not None else (None if gpu else 2**22)
    ops = [s for s in args.ops.split(",") if s] or None
    cases = plan_cases(preset, ops, max_elems)
    workers = args.workers or min(16, os.cpu_count() or 1)
    # Phase 1: compile everything in parallel (nothing is timed meanwhile). Phase 2: time
    # the cases one by one, largest shape of each op first, until the budget runs out.
    preps = [prepare(c, o) for c in cases]
    n_copies = len({(p.copy_bytes, p.r) for p in preps})
    n_compiles = sum(len(c.variants) for c in cases) + n_copies
    n_steps = n_compiles + sum(len(c.variants) + 1 for c in cases)
    print(f"jax_fp4 bench: {preset} grid, {len(cases)} cases, {n_compiles} compiles "
          f"({n_copies} copies) on {workers} threads, then {n_steps - n_compiles} timings, on "
          f"{info['device_label']} ({info['platform']}), jax {info['jax']}, "
          f"budget {budget or 'none'} s", file=sys.stderr, flush=True)
    prog = Progress(n_steps, enabled=not args.no_progress)
    t_c = time.perf_counter()
    copies = compile_all(preps, workers, prog)
    compile_wall = time.perf_counter() - t_c
    records, skipped, copy_times = [], [], {}
    for p in preps:
        c = p.case
        if budget and time.perf_counter() - T_START > budget:
            skipped.append(f"{c.key} {c.shape_str}")
            prog.n += len(c.variants) + 1
            continue
        try:
            records.append(run_case(p, o, info, copies, copy_times, prog))
        except Exception as e:  # noqa: BLE001 - one broken case must not lose the others
            records.append({"op": c.op, "key": c.key, "layout": c.layout, "dtype": c.dtype,
                            "shape": [x for x in (c.batch, c.m, c.k) if x], "error": _err(e)})
        p.compiled.clear()  # drop the executables of finished cases
    prog.close()

    elapsed = time.perf_counter() - T_START
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench_{slug(info['device_label'] if not gpu else info['device'])}_" \
           f"{info['date'][:10]}_{info['date'][11:19].replace(':', '')}"
    doc = {"schema": 1, "meta": {**info, "preset": preset, "elapsed_s": round(elapsed, 1),
                                 "compile_wall_s": round(compile_wall, 1), "workers": workers,
                                 "opts": o.__dict__, "skipped": skipped,
                                 "argv": sys.argv[1:]},
           "results": records}
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    png = None
    if not args.no_plot and write_plot(records, info, out / f"{stem}.png"):
        png = out / f"{stem}.png"
    print(f"\nwrote {json_path}" + (f" and {png}" if png else "") + f" in {elapsed:.1f} s")
    print(render_table(records, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
