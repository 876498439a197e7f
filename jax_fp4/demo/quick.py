"""The quick demo (``python -m jax_fp4``): one sample matrix through all three formats.

Needs nothing beyond jax_fp4's own dependencies. Besides error and size it checks that the
FFI handler that ran (``backend="auto"``) and the pure-JAX twin (``backend="xla"``) produce
the same codes and scale bytes, which is jax_fp4's central promise.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_fp4.demo.report import (
    FORMATS,
    describe_backend,
    fmt_bytes,
    fmt_db,
    fmt_pct,
    format_table,
    measure,
    pick_device,
    roundtrip_fn,
)


def sample_matrix(rows: int = 512, cols: int = 1024, seed: int = 0,
                  outlier_frac: float = 1e-3) -> np.ndarray:
    """A seeded bf16-representable float32 matrix: Gaussian with a few large outliers.

    Outliers (about ``outlier_frac`` of the entries, 20x to 100x the typical magnitude)
    are what make per-block scales worth having: one outlier only coarsens its own block.

    Returns:
        float32 ``[rows, cols]`` whose values are exactly representable in bfloat16.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, cols), dtype=np.float32)
    hit = rng.random((rows, cols)) < outlier_frac
    a[hit] *= rng.uniform(20.0, 100.0, int(hit.sum())).astype(np.float32)
    return np.asarray(jnp.asarray(a, jnp.bfloat16).astype(jnp.float32))


def _same_bits(a: tuple[jax.Array, ...], b: tuple[jax.Array, ...]) -> bool:
    """True when every stored array of two round trips is bit-identical."""
    return all(np.array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
               for x, y in zip(a, b, strict=True))


def run_quick(rows: int = 512, cols: int = 1024, seed: int = 0,
              outlier_frac: float = 1e-3) -> dict[str, Any]:
    """Runs the quick demo and prints its report.

    Args:
        rows: sample rows.
        cols: sample columns (a multiple of 32).
        seed: RNG seed of the sample.
        outlier_frac: fraction of entries made outliers.

    Returns:
        The numbers printed, as a JSON-friendly dict.
    """
    t0 = time.perf_counter()
    device, note = pick_device()
    print("jax_fp4 quick demo: NVFP4, MXFP4 and MXFP8 round trips inside jax.jit")
    for line in describe_backend(device, "auto"):
        print("  " + line)
    if note:
        print("  " + note)

    results: dict[str, Any] = {"device": str(device), "platform": device.platform,
                               "shape": [rows, cols], "formats": {}}
    table = []
    with jax.default_device(device):
        ref = jnp.asarray(sample_matrix(rows, cols, seed, outlier_frac))
        w = ref.astype(jnp.bfloat16)  # exact: the sample is bf16-representable
        n_outliers = int(jnp.sum(jnp.abs(ref) > 10.0))
        amax = float(jnp.max(jnp.abs(ref)))
        print(f"  sample: {rows}x{cols} bfloat16, seed {seed}, N(0, 1) with about "
              f"{outlier_frac:.1%} of entries scaled 20-100x ({n_outliers} with |x| > 10), "
              f"amax {amax:.1f}\n")
        for fmt in FORMATS:
            stats, _, stored = measure(roundtrip_fn(fmt, "auto"), w, ref, int(w.nbytes))
            _, _, twin_stored = measure(roundtrip_fn(fmt, "xla"), w, ref, int(w.nbytes))
            same = _same_bits(stored, twin_stored)
            table.append([fmt.name, fmt.label, fmt_pct(stats.rel_err), fmt_db(stats.snr_db),
                          fmt_bytes(stats.bytes_before), fmt_bytes(stats.bytes_after),
                          f"{stats.ratio:.2f}x", "yes" if same else "NO"])
            results["formats"][fmt.name] = {
                "rel_err": stats.rel_err, "snr_db": stats.snr_db,
                "bytes_before": stats.bytes_before, "bytes_after": stats.bytes_after,
                "ratio": stats.ratio, "ffi_equals_twin": same}
    print(format_table(
        ["format", "element x block / scale", "rel err", "SNR dB", "bytes before",
         "bytes after", "ratio", "FFI == twin"], table, right=[False, False] + [True] * 6))
    print("\nrel err = ||W_hat - W|| / ||W|| (Frobenius); bytes after = codes + scale bytes"
          " (+ NVFP4's float32 global scale); FFI == twin: backend='auto' and backend='xla'"
          " give bit-identical codes and scales.")
    results["seconds"] = time.perf_counter() - t0
    print(f"done in {results['seconds']:.1f}s (including compilation). "
          "Next: `python -m jax_fp4 demo` quantizes a real model (all-MiniLM-L6-v2).")
    if not all(f["ffi_equals_twin"] for f in results["formats"].values()):
        print("WARNING: the FFI handler and the pure-JAX twin disagree; please report this.")
    return results
