"""The E4M3 encoder shared by the CPU and CUDA kernels, on every float32 input.

The shared encoder rounds with a float add (branch-free, so the CPU handlers vectorize it);
a C++ program (tests/cpp/e4m3_exhaustive.cc) compiles the shared header with the host
compiler and compares it, and its two-byte form, with the plain integer encoder of SPEC 2.2
on all 2^32 bit patterns, as well as the host MXFP8 element encoder (no clamp) with
encode(clamp(y)) (about 15 s on 2 cores). ``JAX_FP4_E4M3_STRIDE`` checks every n-th pattern
instead.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_e4m3_encoder_matches_integer_encoder_on_all_floats(tmp_path):
    exe = tmp_path / "e4m3_exhaustive"
    subprocess.run(
        ["c++", "-O2", "-std=c++17", "-ffp-contract=off", "-pthread", f"-I{ROOT / 'ffi'}",
         str(ROOT / "tests" / "cpp" / "e4m3_exhaustive.cc"), "-o", str(exe)],
        check=True)
    stride = os.environ.get("JAX_FP4_E4M3_STRIDE", "1")
    run = subprocess.run([str(exe), stride], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mismatches 0" in run.stdout
