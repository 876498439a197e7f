#!/usr/bin/env python3
"""Kernel time against a same-bytes copy kernel, under Nsight Compute (decode and large shapes).

At decode sizes (M <= 128) the JAX-level numbers of ``bench.py`` are XLA's per-executable
dispatch (10-30 µs for any op, a copy included), so they cannot say whether a kernel is near
launch cost. This script profiles, in ONE process, every target (the decode grid by default,
``--targets`` for others, e.g. the 16384 x 16384 ones): 5 calls of the op,
then 5 calls of a copy kernel of the same bytes (an XLA elementwise kernel reading and writing
half the op's bytes each, the "same bytes" ceiling of PERF.md, timed by the same counter).
Decode inputs stay in L2 for both, as a decode step's freshly written activations do;
large ones do not fit in it.

Usage on the GPU machine::

    ncu --clock-control none --metrics gpu__time_duration.sum --csv --profile-from-start off \\
        --log-file OUT/decode.csv python3 benchmarks/kernel_vs_copy.py run --manifest OUT/decode.json
    python3 benchmarks/kernel_vs_copy.py parse OUT/decode.csv --manifest OUT/decode.json

``parse`` groups the launches in order: the copy's kernels are known by name (its fusions in
the compiled HLO), everything before them belongs to the op; one row per target (op µs, copy
µs, ratio).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ncu_parse  # stdlib only

REPS = 5
DECODE_OPS = ("nvfp4_128x4", "mxfp8_128x4", "mxfp4_128x4", "nvfp4_dequant", "mxfp8_dequant")
DECODE_TARGETS = [f"{op},{m},{k}" for op in DECODE_OPS for m in (1, 16, 128)
                  for k in (4096, 16384)]
LARGE_TARGETS = [f"{op},16384,16384" for op in (*DECODE_OPS, "packbits")]


def fusion_names(compiled_text: str) -> list[str]:
    """Kernel names of the fusions in a compiled HLO module (XLA names kernels after them)."""
    return sorted({m.replace(".", "_") for m in re.findall(r"%([\w.]+) = \S+ fusion\(",
                                                           compiled_text)})


def run(manifest: Path, targets: list[str]) -> int:
    import bench
    import jax
    import jax.numpy as jnp

    plan = []
    for t in targets:
        key, m, k, batch = bench.parse_target(t)
        case = bench.make_case(key, m, k, batch)
        op = jax.jit(case.variants["ours"])
        inputs = case.make_inputs(1)
        nbytes = bench.bytes_moved_of(case.variants["ours"], inputs)
        # Half the bytes read, half written: an elementwise kernel, as ncu sees kernels only
        # (a cudaMemcpy is not one). 32-bit words: XLA's byte kernels are not vectorized
        # (1.7 TB/s at 400 MB on an H100, and 0.85 TB/s at odd sizes).
        words = max(1, nbytes // 8)
        buf = jax.random.bits(jax.random.key(7), (words,), jnp.uint32)
        copy = jax.jit(lambda b: ~b)
        copy_kernels = fusion_names(copy.lower(buf).compile().as_text())
        jax.block_until_ready((op(*inputs), copy(buf)))  # compile + warm
        plan.append((t, op, inputs, copy, buf, nbytes, 8 * words, copy_kernels))
    started = bench.cuda_profiler(True)
    for _, op, inputs, copy, buf, *_ in plan:
        for _ in range(REPS):
            jax.block_until_ready(op(*inputs))
        for _ in range(REPS):
            jax.block_until_ready(copy(buf))
    bench.cuda_profiler(False)
    manifest.write_text(json.dumps({
        "profiler_range": started, "reps": REPS, "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "targets": [{"target": t, "bytes_moved": n, "copy_bytes_moved": cn, "copy_kernels": c}
                    for t, *_, n, cn, c in plan]}, indent=1))
    print(f"profiled {len(plan)} targets ({started})")
    return 0


def parse(csv_path: Path, manifest: Path) -> int:
    meta = json.loads(manifest.read_text())
    launches = ncu_parse.read_launches(csv_path.read_text(errors="replace"))
    launches = [d for d in launches if not re.search(ncu_parse.XLA_HELPERS, d["name"])]
    # Walk in launch order: the op's kernels, then a run of the copy's, per target.
    groups, i = [], 0
    for t in meta["targets"]:
        copy_names = set(t["copy_kernels"])

        def is_copy(d, names=copy_names):
            return ncu_parse.short_name(d["name"]) in names

        ours, copies = [], []
        while i < len(launches) and not is_copy(launches[i]):
            ours.append(launches[i]); i += 1
        while i < len(launches) and is_copy(launches[i]):
            copies.append(launches[i]); i += 1
        groups.append((ours, copies))
    rows = []
    print(f"{meta['device']}, jax {meta['jax']}, {meta['reps']} calls each; kernel time "
          "(ncu gpu__time_duration); copy = XLA elementwise kernel, same bytes")
    print(f"{'target':<28} {'bytes':>10} {'kernels':>7} {'op us':>8} {'copy us':>8} "
          f"{'op/copy':>8} {'op GB/s':>8} {'copy GB/s':>9}")
    for t, (ours, copies) in zip(meta["targets"], groups):
        op_us, copy_us = _per_call(ours, meta["reps"]), _per_call(copies, meta["reps"])
        ratio = op_us / copy_us if copy_us else math.nan
        rows.append({**t, "op_us": op_us, "copy_us": copy_us, "op_over_copy": ratio,
                     "op_kernels": sorted({ncu_parse.short_name(d["name"]) for d in ours})})
        print(f"{t['target']:<28} {t['bytes_moved']:>10} {len(ours) // meta['reps']:>7} "
              f"{op_us:>8.2f} {copy_us:>8.2f} {ratio:>8.2f} {t['bytes_moved'] / op_us / 1e3:>8.0f} "
              f"{t.get('copy_bytes_moved', t['bytes_moved']) / copy_us / 1e3:>9.0f}")
    out = csv_path.with_suffix(".summary.json")
    out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    return 0


def _per_call(launches: list[dict], reps: int) -> float:
    """Median over calls of the summed kernel time of one call, in µs."""
    if not launches or len(launches) % reps:
        return math.nan
    per = len(launches) // reps
    calls = [sum(d[ncu_parse.TIME] for d in launches[c * per:(c + 1) * per])
             for c in range(reps)]
    return statistics.median(calls) * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--manifest", type=Path, required=True)
    r.add_argument("--targets", default=" ".join(DECODE_TARGETS),
                   help="OP,M,K[,B] list; 'large' for the 16384 x 16384 set")
    q = sub.add_parser("parse")
    q.add_argument("csv", type=Path)
    q.add_argument("--manifest", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "run":
        targets = LARGE_TARGETS if a.targets == "large" else a.targets.split()
        return run(a.manifest, targets)
    return parse(a.csv, a.manifest)


if __name__ == "__main__":
    sys.exit(main())
