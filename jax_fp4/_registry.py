"""Loads the compiled FFI modules once and registers their targets with XLA."""

from __future__ import annotations

import lzma
from functools import lru_cache
from pathlib import Path

import jax
import numpy as np

RCP_TABLE_PATH = Path(__file__).parent / "data" / "rcp_approx_ftz_f32_mismatch.bin.xz"


@lru_cache(maxsize=1)
def rcp_mismatch_table() -> np.ndarray:
    """The 2^23-bit table of SPEC 1.4 as uint32[262144] (bit m: rcp deviates from RN)."""
    raw = lzma.decompress(RCP_TABLE_PATH.read_bytes())
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


try:
    from jax_fp4 import _jax_fp4_cpu
except ImportError as err:  # pragma: no cover - a broken install, say how to fix it
    raise ImportError(
        "jax_fp4's compiled CPU module is missing; reinstall with "
        "`pip install -e .` from the source tree (needs cmake and a C++17 compiler)."
    ) from err

try:
    from jax_fp4 import _jax_fp4_cuda
except ImportError:
    _jax_fp4_cuda = None

_jax_fp4_cpu.set_rcp_table(rcp_mismatch_table())


def _register(module, platform: str) -> frozenset[str]:
    names = []
    for name, capsule in module.registrations().items():
        jax.ffi.register_ffi_target(name, capsule, platform=platform)
        names.append(name)
    return frozenset(names)


CPU_TARGETS = _register(_jax_fp4_cpu, "cpu")
CUDA_TARGETS: frozenset[str] = frozenset()
if _jax_fp4_cuda is not None:
    try:
        CUDA_TARGETS = _register(_jax_fp4_cuda, "CUDA")
    except Exception:  # jaxlib without the CUDA plugin: CPU (and the XLA twin) only
        CUDA_TARGETS = frozenset()


def cuda_compiled() -> bool:
    """True when the CUDA handlers were compiled and registered (no GPU needed)."""
    return bool(CUDA_TARGETS)


def cuda_available() -> bool:
    """True when jax_fp4's CUDA handlers are loaded and JAX has a CUDA GPU to run them on."""
    if not CUDA_TARGETS:
        return False
    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:
        return False
