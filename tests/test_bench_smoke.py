"""Smoke tests of the benchmark scripts: they run and write what they promise (no timings
are asserted: CI machines are noisy and the numbers mean nothing on a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
PARSE = ROOT / "benchmarks" / "ncu_parse.py"
CPU_VS_TWIN = ROOT / "benchmarks" / "cpu_vs_twin.py"

RECORD_KEYS = {"op", "key", "layout", "dtype", "shape", "device", "jax", "jaxlib", "date",
               "rotations", "bytes_moved", "us_median", "us_min", "us_max", "gbps", "copy",
               "copy_gbps", "ratio_to_copy", "peers", "speedup_vs_peer"}


def _run(*args, timeout=120):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def test_bench_quick_writes_json(tmp_path):
    # Two ops keep it well under the suite's time budget; --quick covers all of them by hand.
    r = _run(BENCH, "--quick", "--no-plot", "--no-progress", "--out", tmp_path,
             "--ops", "nvfp4_128x4,packbits")
    assert r.returncode == 0, r.stderr[-3000:]
    files = list(tmp_path.glob("bench_*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["schema"] == 1
    assert {"device", "jax", "jaxlib", "date", "opts", "skipped"} <= set(doc["meta"])
    assert {r["key"] for r in doc["results"]} == {"nvfp4_128x4", "packbits"}
    for rec in doc["results"]:
        assert RECORD_KEYS <= set(rec), RECORD_KEYS - set(rec)
        assert rec["us_min"] <= rec["us_median"] <= rec["us_max"]
        assert rec["bytes_moved"] > 0 and rec["rotations"] >= 1
        assert "xla" in rec["peers"]
    pk = next(r for r in doc["results"] if r["key"] == "packbits")
    assert "jnp_packbits" in pk["peers"]
    # the table is printed last
    assert r.stdout.rstrip().splitlines()[-1].startswith("us: median per op")


def test_bench_ncu_modes(tmp_path):
    r = _run(BENCH, "--ncu-script")
    assert r.returncode == 0 and "ncu --clock-control none" in r.stdout
    r = _run(BENCH, "--ncu-target", "packbits,8,256", "--ncu-tag", "ncu_t", "--out", tmp_path,
             "--ncu-reps", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "ncu_t.meta.json").read_text())
    assert meta["bytes_moved"] == 8 * 256 + 8 * 256 // 8


_DETAILS = """==PROF== Connected to process 1
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","1","python3","h","void jax_fp4::cuda::(anonymous namespace)::PackbitsKernel<true>(const unsigned char *)","1","7","(256, 1, 1)","(64, 1, 1)","0","9.0","s","dram__bytes_read.sum","Mbyte","268.44"
"0","1","python3","h","void jax_fp4::cuda::(anonymous namespace)::PackbitsKernel<true>(const unsigned char *)","1","7","(256, 1, 1)","(64, 1, 1)","0","9.0","s","dram__bytes_write.sum","Kbyte","33,554.43"
"0","1","python3","h","void jax_fp4::cuda::(anonymous namespace)::PackbitsKernel<true>(const unsigned char *)","1","7","(256, 1, 1)","(64, 1, 1)","0","9.0","s","gpu__time_duration.sum","usecond","100"
"1","1","python3","h","loop_fusion","1","7","(256, 1, 1)","(64, 1, 1)","0","9.0","s","gpu__time_duration.sum","nsecond","2,000"
==PROF== Disconnected
"""


def test_ncu_parse(tmp_path):
    sys.path.insert(0, str(PARSE.parent))
    try:
        import ncu_parse
    finally:
        sys.path.pop(0)
    launches = ncu_parse.read_launches(_DETAILS)
    s = ncu_parse.summarize(launches, min_count=1, ceiling_gbps=4180.0,
                            logical_bytes=301_989_888)
    k = {k["kernel"]: k for k in s["kernels"]}
    assert set(k) == {"PackbitsKernel", "loop_fusion"}
    pk = k["PackbitsKernel"]
    assert pk["us_median"] == pytest.approx(100.0)
    assert pk["dram_bytes"] == pytest.approx(268.44e6 + 33_554.43e3)
    assert pk["dram_gbps"] == pytest.approx((268.44e6 + 33_554.43e3) / 100e-6 / 1e9)
    assert s["total"]["us"] == pytest.approx(102.0)
    (tmp_path / "ncu_x.csv").write_text(_DETAILS)
    r = _run(PARSE, tmp_path / "ncu_x.csv", "--json", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert "PackbitsKernel" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())[0]["kernels"]


def test_cpu_vs_twin_prints_every_row():
    """benchmarks/cpu_vs_twin.py on a small matrix: one line per op, each with both times,
    the ratio and the copy column (numbers not checked)."""
    r = _run(CPU_VS_TWIN, "--m", "128", "--k", "256", "--reps", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if "twin / handler" in line]
    assert len(rows) == 15, r.stdout
    assert all("handler" in row and "copy / handler" in row for row in rows)

