"""The CPU handlers' code for targets without the AVX2 paths (aarch64, other compilers).

The x86-64 build compiles the AVX2 paths and the portable ones side by side, but code under
``#if JAX_FP4_CPU_AVX2`` can hide a use of a name it alone declares. Each handler source is
compiled here (syntax and types only) with the macro forced to 0, as a non-x86 build sees it.
"""

import pathlib
import shutil
import subprocess

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
