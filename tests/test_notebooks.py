"""The notebooks: each jupytext ``.py`` runs top to bottom on the CPU, and each ``.ipynb`` is
its ``.py`` without outputs.

The notebooks run as plain scripts (``python notebooks/NN_name.py``) in a subprocess, from
``notebooks/`` as Jupyter would, with ``MPLBACKEND=Agg`` and ``JAX_PLATFORMS=cpu``.
Regenerate a notebook after editing its ``.py`` with ``jupytext --to ipynb notebooks/NN_name.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
SLOW = {"03_real_model", "05_performance"}  # a model to load; timings to take
TIMEOUT_S = 300  # each takes well under a minute; this only stops a hang


def _run(name: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JAX_FP4_BENCH_JSON"}
    env.update(MPLBACKEND="Agg", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **env_extra)
    return subprocess.run([sys.executable, f"{name}.py"], cwd=NOTEBOOKS_DIR, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _check(proc: subprocess.CompletedProcess, name: str) -> None:
    assert proc.returncode == 0, (
        f"{name}.py exited {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}"
        f"\n--- stderr (tail)\n{proc.stderr[-5000:]}")


def test_notebooks_found():
    assert {"01_quickstart", "02_scale_layouts", "03_real_model", "04_kv_cache",
            "05_performance"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NOTEBOOKS])
def test_notebook_runs(name):
    _check(_run(name), name)


@pytest.mark.slow
def test_performance_notebook_reads_bench_json(tmp_path):
    """05 plots a results file (the suite's schema, tolerating records it cannot use)
    instead of timing on the CPU."""
    def record(op, m, us, gbps, **extra):
        return {"op": op, "key": op, "layout": "128x4", "dtype": "bfloat16", "shape": [m, 4096],
                "bytes_moved": m * 4096 * 2.6, "us_median": us, "gbps": gbps,
                "copy_gbps": 4000.0, "ratio_to_copy": gbps / 4000.0, **extra}

    records = [record("fp4_quantize", m, m / 100, 2000.0 + m / 10,
                      peers={"xla": {"us_median": m / 20, "gbps": 500.0},
                             "broken_peer": {"error": "TypeError: ..."}})
               for m in (1024, 4096, 16384)]
    records += [
        record("mxfp8_quantize", 8192, 50.0, 3000.0, peers={}),
        {"op": "packbits", "impl": "jnp_packbits", "dtype": "bool", "shape": "268435456",
         "us": 160.0, "gbps": 1900.0, "copy_gbps": 4180.0, "ratio": 0.45},  # older field names
        {"op": "segment_packbits", "shape": None, "gbps": 900.0},  # no size: not plotted
        {"op": "broken", "gbps": "n/a"},  # skipped
        "not a record",  # skipped
    ]
    path = tmp_path / "bench_test.json"
    path.write_text(json.dumps({"schema": 1, "meta": {"gpu": "Test GPU", "jax": "0.0"},
                                "results": records}))
    proc = _run("05_performance", JAX_FP4_BENCH_JSON=str(path))
    _check(proc, "05_performance")
    # 3 records + 3 xla peers + mxfp8 + packbits + segment_packbits
    assert "9 rows (records and their peers); 2 records without a usable gbps skipped" in \
        proc.stdout, proc.stdout[-3000:]
    assert "gpu=Test GPU" in proc.stdout
    assert "CPU, JAX level" not in proc.stdout


def _cells(nb: dict) -> list[tuple[str, str]]:
    out = []
    for cell in nb["cells"]:
        source = cell["source"]
        out.append((cell["cell_type"], source if isinstance(source, str) else "".join(source)))
    return out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_has_no_outputs_and_matches_py(name):
    ipynb = NOTEBOOKS_DIR / f"{name}.ipynb"
    assert ipynb.is_file(), f"{ipynb.name} is missing: jupytext --to ipynb notebooks/{name}.py"
    nb = json.loads(ipynb.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{ipynb.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{ipynb.name} cell {i} was executed"

    py_text = (NOTEBOOKS_DIR / f"{name}.py").read_text()
    first_code = next(src for kind, src in _cells(nb) if kind == "code")
    assert "REPO_URL = " in first_code and "google.colab" in first_code
    assert "jax_fp4.cuda_available()" in first_code

    jupytext = pytest.importorskip("jupytext")
    from_py = jupytext.reads(py_text, fmt="py:percent")
    assert _cells(from_py) == _cells(nb), (
        f"{ipynb.name} differs from {name}.py: run jupytext --to ipynb notebooks/{name}.py")


def test_every_ipynb_has_a_py():
    stray = [p.name for p in NOTEBOOKS_DIR.glob("*.ipynb") if p.stem not in NOTEBOOKS]
    assert not stray, f"notebooks without a jupytext .py: {stray}"
