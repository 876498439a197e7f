"""The E2M1 encoder shared by the CPU and CUDA kernels, on every float32 input.

The kernels round with a float add instead of SPEC 2.1's threshold table; a C++ program
(tests/cpp/e2m1_exhaustive.cc) compiles the shared header with the host compiler and compares
the two on all 2^32 bit patterns (about 10 s; the packed eight-code form on every 61st). ``JAX_FP4_E2M1_STRIDE`` checks every n-th
pattern instead.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_e2m1_encoder_matches_spec_table_on_all_floats(tmp_path):
    exe = tmp_path / "e2m1_exhaustive"
    subprocess.run(
        ["c++", "-O2", "-std=c++17", "-ffp-contract=off", f"-I{ROOT / 'ffi'}",
         str(ROOT / "tests" / "cpp" / "e2m1_exhaustive.cc"), "-o", str(exe)],
        check=True)
    stride = os.environ.get("JAX_FP4_E2M1_STRIDE", "1")
    run = subprocess.run([str(exe), stride], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mismatches 0" in run.stdout
