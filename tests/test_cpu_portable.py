"""The CPU handlers' code for targets without the AVX2 paths (aarch64, other compilers), and
the baseline x86-64 versions that CPUs without AVX2 run.

The x86-64 build compiles the AVX2 paths and the portable ones side by side, but code under
``#if JAX_FP4_CPU_AVX2`` can hide a use of a name it alone declares. Each handler source is
compiled here (syntax and types only) with the macro forced to 0, as a non-x86 build sees it.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "ffi" / "cpu").glob("*.cc"))


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_cpu_handler_compiles_without_avx2_paths(source):
    run = subprocess.run(
        ["c++", "-std=c++17", "-fsyntax-only", "-DJAX_FP4_CPU_AVX2=0", f"-I{ROOT / 'ffi'}",
         "-isystem", jax.ffi.include_dir(), str(source)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


# The baseline x86-64 versions of the CPU handlers, which machines without AVX2 run: on an
# AVX2 machine JAX_FP4_CPU_BASELINE=1 selects them, and the oracle tests of the ops with
# hand-written AVX2 blocks run again in a child process under it.
BASELINE_TESTS = [
    "tests/test_quantize.py::test_nvfp4_special_values",
    "tests/test_quantize.py::test_mxfp4_special_values",
    "tests/test_quantize.py::test_mxfp8_special_values",
    "tests/test_quantize.py::test_fp4_quantize_matches_oracle",
    "tests/test_dequantize.py",
    "tests/test_packing.py",
]


def test_baseline_isa_versions_match_the_oracle():
    env = {**os.environ, "JAX_FP4_CPU_BASELINE": "1", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "-k", "cpu and not cuda", *BASELINE_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
