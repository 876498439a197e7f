"""The E2M1 and E4M3 encoders shared by the CPU and CUDA kernels, on every float32 input.

Both round with a float add (branch-free, so the CPU handlers vectorize them). A C++ program
per format compiles the shared header with the host compiler and compares it on all 2^32 bit
patterns with a plain reference encoder:

* ``tests/cpp/e2m1_exhaustive.cc``: SPEC 2.1's threshold table (the packed eight-code form
  on every 61st pattern), and the CPU quantizers' AVX2 encoder (``ffi/cpu/simd_formats.h``)
  on every pattern where the CPU has AVX2; about 25 s.
* ``tests/cpp/e4m3_exhaustive.cc``: SPEC 2.2's integer encoder, the two-byte form, the
  host MXFP8 element encoder (no clamp) against encode(clamp(y)), and the AVX2 MXFP8 encoder
  on every non-NaN pattern; about 25 s on 2 cores.

``JAX_FP4_E2M1_STRIDE`` / ``JAX_FP4_E4M3_STRIDE`` check every n-th pattern instead.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("fmt", ["e2m1", "e4m3"])
def test_encoder_matches_reference_on_all_floats(fmt, tmp_path):
    exe = tmp_path / f"{fmt}_exhaustive"
    subprocess.run(
        ["c++", "-O2", "-std=c++17", "-ffp-contract=off", "-pthread", f"-I{ROOT / 'ffi'}",
         str(ROOT / "tests" / "cpp" / f"{fmt}_exhaustive.cc"), "-o", str(exe)],
        check=True)
    stride = os.environ.get(f"JAX_FP4_{fmt.upper()}_STRIDE", "1")
    run = subprocess.run([str(exe), stride], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mismatches 0" in run.stdout
