#!/usr/bin/env python3
"""Turns Nsight Compute CSV output into per-kernel median time, DRAM bytes and GB/s.

Input: what ``ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,
dram__bytes_write.sum ...`` prints (the default "details" page: one row per kernel launch
and metric) or ``--page raw`` (one row per launch, a units row under the header). Lines that
are not CSV (``==PROF==`` messages, the program's own output) are skipped. Units are
converted to seconds and bytes whatever ``--print-units`` was.

For ``ncu_<tag>.csv`` written by the loop ``bench.py --ncu-script`` prints, the sibling
``ncu_<tag>.meta.json`` (op, shape, logical bytes moved) is read when present, so each file
also shows the effective bandwidth (logical bytes / kernel time, the number PERF.md quotes)
beside the DRAM bandwidth the counters saw.

Usage:
    python3 benchmarks/ncu_parse.py OUT/ncu_*.csv [--min-count 5] [--ceiling-gbps 4180]
        [--json summary.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import statistics
import sys
from pathlib import Path

TIME = "gpu__time_duration.sum"
READ = "dram__bytes_read.sum"
WRITE = "dram__bytes_write.sum"

_TIME_UNITS = {"nsecond": 1e-9, "ns": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3,
               "ms": 1e-3, "second": 1.0, "s": 1.0, "cycle": math.nan}
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
           "ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30, "ti": 2.0**40}


def to_base(value: str, unit: str) -> float:
    """A metric value in seconds or bytes; NaN when it is not a number (e.g. ``n/a``)."""
    try:
        v = float(value.replace(",", ""))  # ncu may print thousands separators
    except ValueError:
        return math.nan
    u = unit.strip()
    if u in _TIME_UNITS:
        return v * _TIME_UNITS[u]
    m = re.fullmatch(r"([KMGTkmgt]i?)?(byte|B)", u)
    if m:
        return v * _PREFIX[(m.group(1) or "").lower()]
    return v  # unitless or unknown: as printed


def short_name(name: str) -> str:
    """``void ns::(anonymous namespace)::Kernel<...>(args)`` -> ``Kernel``."""
    n = re.sub(r"^void\s+", "", name.strip())
    n = n.replace("(anonymous namespace)::", "")
    n = re.split(r"[<(]", n, maxsplit=1)[0]
    return n.split("::")[-1] or name


def _csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and data rows of the first CSV table in ``text``."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    for i, row in enumerate(rows):
        if "Kernel Name" in row:
            width = len(row)
            return row, [r for r in rows[i + 1:] if len(r) == width and r != row]
    return [], []


def read_launches(text: str) -> list[dict]:
    """One dict per kernel launch: name, grid, block, and TIME/READ/WRITE in base units."""
    header, rows = _csv_rows(text)
    if not header:
        return []
    col = {h: i for i, h in enumerate(header)}
    launches: dict[tuple, dict] = {}
    if "Metric Name" in col:  # details page: one row per (launch, metric)
        for r in rows:
            lid = (r[col["ID"]], r[col.get("Process ID", col["ID"])])
            d = launches.setdefault(lid, {
                "name": r[col["Kernel Name"]],
                "grid": r[col["Grid Size"]] if "Grid Size" in col else "",
                "block": r[col["Block Size"]] if "Block Size" in col else ""})
            d[r[col["Metric Name"]]] = to_base(r[col["Metric Value"]], r[col["Metric Unit"]])
        return list(launches.values())
    # raw page: the first data row after the header holds the units
    units, data = (rows[0], rows[1:]) if rows and not rows[0][col["ID"]].strip().isdigit() \
        else ([""] * len(header), rows)
    out = []
    for r in data:
        d = {"name": r[col["Kernel Name"]],
             "grid": r[col["Grid Size"]] if "Grid Size" in col else "",
             "block": r[col["Block Size"]] if "Block Size" in col else ""}
        for metric in (TIME, READ, WRITE):
            if metric in col:
                d[metric] = to_base(r[col[metric]], units[col[metric]])
        out.append(d)
    return out


def _median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


# XLA's own helper kernels (autotuning, buffer checks): listed, never part of an op's time.
XLA_HELPERS = r"Redzone|DelayKernel|RepeatBuffer|BufferComparator|xla_\w*comparison"


def summarize(launches: list[dict], min_count: int = 1, ceiling_gbps: float | None = None,
              logical_bytes: int | None = None, exclude: str | None = XLA_HELPERS) -> dict:
    """Per-kernel medians (grouped by full kernel name) and the per-call total.

    The total adds the median time of every kernel seen at least ``min_count`` times whose
    name does not match ``exclude``: for a target that launches k kernels per call, that is
    one call's kernel time.
    """
    groups: dict[str, list[dict]] = {}
    for d in launches:
        groups.setdefault(d["name"], []).append(d)
    kernels = []
    shorts: dict[str, int] = {}
    for name, ds in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        s = short_name(name)
        shorts[s] = shorts.get(s, 0) + 1
        t = _median([d.get(TIME, math.nan) for d in ds])
        rd = _median([d.get(READ, math.nan) for d in ds])
        wr = _median([d.get(WRITE, math.nan) for d in ds])
        per = [(d.get(READ, math.nan) + d.get(WRITE, math.nan)) / d[TIME] / 1e9
               for d in ds if d.get(TIME)]
        k = {"kernel": s if shorts[s] == 1 else f"{s}#{shorts[s]}", "full_name": name,
             "count": len(ds), "excluded": bool(exclude and re.search(exclude, name)), "grid": ds[0]["grid"], "block": ds[0]["block"],
             "us_median": t * 1e6, "us_min": min(d.get(TIME, math.inf) for d in ds) * 1e6,
             "dram_read_bytes": rd, "dram_write_bytes": wr, "dram_bytes": rd + wr,
             "dram_gbps": _median(per)}
        if ceiling_gbps:
            k["pct_of_ceiling"] = 100 * k["dram_gbps"] / ceiling_gbps
        kernels.append(k)
    sel = [k for k in kernels if k["count"] >= min_count and not k["excluded"]]
    total = {"kernels": len(sel), "us": sum(k["us_median"] for k in sel),
             "dram_bytes": sum(k["dram_bytes"] for k in sel)}
    total["dram_gbps"] = total["dram_bytes"] / (total["us"] * 1e3) if total["us"] else math.nan
    if logical_bytes:
        total["logical_bytes"] = logical_bytes
        total["effective_gbps"] = logical_bytes / (total["us"] * 1e3) if total["us"] else math.nan
        total["dram_over_logical"] = total["dram_bytes"] / logical_bytes
    if ceiling_gbps:
        total["pct_of_ceiling"] = 100 * total.get("effective_gbps", total["dram_gbps"]) \
            / ceiling_gbps
        if logical_bytes:
            total["floor_us"] = logical_bytes / (ceiling_gbps * 1e3)
    return {"kernels": kernels, "total": total}


def _fmt(x, spec):
    width = int(re.match(r"\d*", spec).group() or 0)  # keep the column width for "-"
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-".rjust(width)
    return format(x, spec)


def render(name: str, meta: dict | None, s: dict, min_count: int) -> str:
    lines = [f"== {name}" + (f": {meta['op']} {meta['layout']} {meta['dtype']} "
                             f"{'x'.join(map(str, meta['shape']))} backend={meta['backend']}"
                             if meta else "")]
    lines.append(f"  {'kernel':<34} {'n':>4} {'us med':>10} {'us min':>10} {'DRAM rd MB':>11} "
                 f"{'DRAM wr MB':>11} {'DRAM GB/s':>10} {'%ceil':>6}")
    for k in s["kernels"]:
        mark = ("  (XLA helper, not in total)" if k["excluded"] else ""
                if k["count"] >= min_count else "  (below --min-count, not in total)")
        lines.append(
            f"  {k['kernel'][:34]:<34} {k['count']:>4} {_fmt(k['us_median'], '10.2f')} "
            f"{_fmt(k['us_min'], '10.2f')} {_fmt(k['dram_read_bytes'] / 1e6, '11.1f')} "
            f"{_fmt(k['dram_write_bytes'] / 1e6, '11.1f')} {_fmt(k['dram_gbps'], '10.1f')} "
            f"{_fmt(k.get('pct_of_ceiling'), '6.1f')}{mark}")
    t = s["total"]
    extra = ""
    if "logical_bytes" in t:
        extra = (f"; logical {t['logical_bytes'] / 1e6:.1f} MB -> effective "
                 f"{_fmt(t['effective_gbps'], '.1f')} GB/s, DRAM/logical "
                 f"{_fmt(t['dram_over_logical'], '.3f')}")
    if "floor_us" in t:
        extra += f"; floor {t['floor_us']:.1f} us, {_fmt(t['pct_of_ceiling'], '.1f')}% of ceiling"
    lines.append(f"  per call: {t['kernels']} kernel(s), {_fmt(t['us'], '.2f')} us, DRAM "
                 f"{t['dram_bytes'] / 1e6:.1f} MB at {_fmt(t['dram_gbps'], '.1f')} GB/s{extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="ncu CSV files (ncu_<tag>.csv)")
    p.add_argument("--min-count", type=int, default=1,
                   help="kernels launched fewer times are listed but left out of the total")
    p.add_argument("--ceiling-gbps", type=float, default=None,
                   help="copy ceiling for %% columns (PERF.md: 4180 on an H200)")
    p.add_argument("--json", default=None, help="write the summary here too")
    p.add_argument("--exclude", default=XLA_HELPERS,
                   help="regex of kernel names left out of totals (default: XLA's helpers)")
    args = p.parse_args(argv)
    out, status = [], 0
    for f in args.files:
        path = Path(f)
        meta_path = path.with_name(path.name[:-len(path.suffix)] + ".meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        launches = read_launches(path.read_text(errors="replace"))
        if not launches:
            print(f"== {path.name}: no kernel rows (did ncu run? see the .log beside it)")
            status = 1
            continue
        s = summarize(launches, args.min_count, args.ceiling_gbps,
                      meta.get("bytes_moved") if meta else None, args.exclude or None)
        print(render(path.name, meta, s, args.min_count))
        out.append({"file": path.name, "meta": meta, **s})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
