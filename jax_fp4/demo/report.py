"""Shared pieces of the demos: the three formats' round trips, error statistics, tables,
a progress bar and the plot.

Every round trip goes through jax_fp4's public API inside ``jax.jit``: quantize to codes and
scale bytes, dequantize back to float32, and reduce the error to two sums in the same
compiled function, so only scalars (and the dequantized weights, where a caller needs them)
leave the device.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Self, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

import jax_fp4
from jax_fp4 import SfLayout

T = TypeVar("T")


class DemoError(Exception):
    """A problem the user can fix (missing file or package); ``main`` prints it, exits 2."""


@dataclass(frozen=True)
class FormatSpec:
    """One block-scaled format as the demos describe it.

    Attributes:
        name: display name, e.g. ``"NVFP4"``.
        block: elements sharing one scale.
        element: element type (``"E2M1"`` or ``"E4M3"``).
        scale: scale type (``"E4M3"`` or ``"UE8M0"``).
    """

    name: str
    block: int
    element: str
    scale: str

    @property
    def label(self) -> str:
        """``"E2M1 x16 / E4M3"``: element type, block size and scale type."""
        return f"{self.element} x{self.block} / {self.scale}"


NVFP4 = FormatSpec("NVFP4", 16, "E2M1", "E4M3")
MXFP4 = FormatSpec("MXFP4", 32, "E2M1", "UE8M0")
MXFP8 = FormatSpec("MXFP8", 32, "E4M3", "UE8M0")
FORMATS: tuple[FormatSpec, ...] = (NVFP4, MXFP4, MXFP8)

# Bytes of NVFP4's per-tensor float32 global scale; it is part of the stored weight.
_GLOBAL_SCALE_BYTES = 4


def _quantize(fmt: FormatSpec, w: jax.Array, backend: str) -> tuple[tuple[jax.Array, ...],
                                                                     jax.Array]:
    """Quantizes ``w`` [M, K] and dequantizes it again.

    Returns:
        ``(stored, w_hat)``: ``stored`` is every array a real deployment keeps (codes,
        scale bytes and, for NVFP4, the global scale), ``w_hat`` the float32 dequantization.
    """
    if fmt is NVFP4:
        # FlashInfer's recipe: S maps amax onto the largest E4M3 scale (448) times the
        # largest E2M1 value (6). An all-zero tensor would give S = inf, so use 1 there.
        amax = jnp.max(jnp.abs(w.astype(jnp.float32)))
        s = jnp.where(amax > 0, 448.0 * 6.0 / amax, 1.0).astype(jnp.float32).reshape(1)
        x_q, sf = jax_fp4.nvfp4_quantize(w, s, SfLayout.layout_128x4, backend=backend)
        w_hat = jax_fp4.e2m1_and_ufp8sf_scale_to_float(x_q, sf, 1.0 / s, 16, 1,
                                                       backend=backend)
        return (x_q, sf, s), w_hat
    if fmt is MXFP4:
        x_q, sf = jax_fp4.mxfp4_quantize(w, backend=backend)
        return (x_q, sf), jax_fp4.mxfp4_dequantize(x_q, sf, backend=backend)
    if fmt is MXFP8:
        x_q, sf = jax_fp4.mxfp8_quantize(w, backend=backend)
        return (x_q, sf), jax_fp4.mxfp8_dequantize_host(x_q, sf, backend=backend)
    raise ValueError(f"unknown format {fmt!r}")


@cache
def roundtrip_fn(fmt: FormatSpec, backend: str = "auto") -> Callable[..., Any]:
    """A jitted ``(w, ref) -> (stored, w_hat, err_sq, ref_sq)`` for one format and backend.

    ``w`` is the 16-bit tensor that gets quantized and ``ref`` the float32 tensor the error
    is measured against (the same values for a bf16 sample; the float32 checkpoint for a
    model, so the bf16 cast is counted in the error). Cached so that every shape compiles
    once per format.
    """

    def fn(w: jax.Array, ref: jax.Array):
        stored, w_hat = _quantize(fmt, w, backend)
        diff = w_hat - ref
        return stored, w_hat, jnp.sum(diff * diff), jnp.sum(ref * ref)

    return jax.jit(fn)


@jax.jit
def _bf16_roundtrip(w: jax.Array, ref: jax.Array):
    """The bf16 cast alone, the floor under every format's error (same outputs as above)."""
    w_hat = w.astype(jnp.float32)
    diff = w_hat - ref
    return (w,), w_hat, jnp.sum(diff * diff), jnp.sum(ref * ref)


def bf16_roundtrip_fn() -> Callable[..., Any]:
    """The bf16 baseline with ``roundtrip_fn``'s signature."""
    return _bf16_roundtrip


@dataclass
class ErrorStats:
    """Accumulated error and size of one or more tensors under one format.

    Attributes:
        err_sq: sum of squared errors against the reference.
        ref_sq: sum of squared reference values.
        bytes_before: bytes of the reference representation.
        bytes_after: bytes of everything the format stores (codes, scales, global scale).
    """

    err_sq: float = 0.0
    ref_sq: float = 0.0
    bytes_before: int = 0
    bytes_after: int = 0

    def __iadd__(self, other: ErrorStats) -> Self:
        self.err_sq += other.err_sq
        self.ref_sq += other.ref_sq
        self.bytes_before += other.bytes_before
        self.bytes_after += other.bytes_after
        return self

    @property
    def rel_err(self) -> float:
        """Relative Frobenius error ``||w_hat - w|| / ||w||``."""
        return math.sqrt(self.err_sq / self.ref_sq) if self.ref_sq > 0 else 0.0

    @property
    def snr_db(self) -> float:
        """Signal-to-noise ratio ``10 log10(||w||^2 / ||w_hat - w||^2)`` in dB."""
        if self.err_sq == 0:
            return math.inf
        return 10.0 * math.log10(self.ref_sq / self.err_sq) if self.ref_sq > 0 else -math.inf

    @property
    def ratio(self) -> float:
        """Compression ratio ``bytes_before / bytes_after``."""
        return self.bytes_before / self.bytes_after if self.bytes_after else math.inf

    @property
    def saved(self) -> int:
        """Bytes saved."""
        return self.bytes_before - self.bytes_after


def measure(fn: Callable[..., Any], w: jax.Array, ref: jax.Array,
            bytes_before: int) -> tuple[ErrorStats, jax.Array, tuple[jax.Array, ...]]:
    """Runs one jitted round trip and turns its outputs into ``ErrorStats``.

    Args:
        fn: from ``roundtrip_fn`` or ``bf16_roundtrip_fn``.
        w: the tensor to quantize (16-bit).
        ref: the float32 reference.
        bytes_before: size of the reference representation to compare against.

    Returns:
        ``(stats, w_hat, stored)``.
    """
    stored, w_hat, err_sq, ref_sq = fn(w, ref)
    bytes_after = sum(int(a.nbytes) for a in stored)
    stats = ErrorStats(float(err_sq), float(ref_sq), bytes_before, bytes_after)
    return stats, w_hat, stored


# --------------------------------------------------------------------------- devices


def pick_device() -> tuple[jax.Device, str | None]:
    """The device to run on, and a note when it is not JAX's default.

    jax_fp4's ``backend="auto"`` runs the FFI handler of the platform the computation runs
    on. A GPU without jax_fp4's CUDA handlers (a CPU-only build) cannot run them, so the
    demos fall back to the CPU rather than fail.
    """
    default = jax.devices()[0]
    if default.platform == "cpu" or jax_fp4.cuda_available():
        return default, None
    return jax.devices("cpu")[0], (
        f"note: JAX's default device is {default.platform} but jax_fp4's CUDA handlers are "
        "not available (CPU-only build?); running on the CPU")


def describe_backend(device: jax.Device, backend: str) -> list[str]:
    """Lines saying which JAX, devices and jax_fp4 handlers ran."""
    if backend == "xla":
        ran = "jax_fp4's pure-JAX twin (backend='xla')"
    elif device.platform == "cpu":
        ran = "jax_fp4's CPU FFI handlers (backend='auto')"
    else:
        ran = "jax_fp4's CUDA FFI handlers (backend='auto')"
    return [
        f"jax {jax.__version__}, jax_fp4 {jax_fp4.__version__}; jax.devices(): {jax.devices()}",
        (f"jax_fp4.cuda_compiled(): {jax_fp4.cuda_compiled()}, "
         f"jax_fp4.cuda_available(): {jax_fp4.cuda_available()}"),
        (f"running on {'the CPU' if device.platform == 'cpu' else device.device_kind} "
         f"({device}) with {ran}"),
    ]


# --------------------------------------------------------------------------- printing


def fmt_bytes(n: float) -> str:
    """Bytes in binary units, e.g. ``1.00 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_pct(x: float) -> str:
    """A relative error as a percentage with 3 significant digits."""
    return f"{100 * x:.3g}%"


def fmt_db(x: float) -> str:
    """Decibels with one decimal."""
    return "inf" if math.isinf(x) else f"{x:.1f}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                 title: str | None = None, right: Sequence[bool] | None = None) -> str:
    """Formats a plain-text table with a header rule.

    Args:
        headers: column titles.
        rows: cells, converted with ``str``; a row that is ``None`` becomes a rule.
        title: optional line above the table.
        right: per column, right-align (default: every column but the first).

    Returns:
        The table, lines joined with newlines (no trailing newline).
    """
    body = [None if r is None else [str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        if r is not None:
            widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    right = right if right is not None else [i > 0 for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [title] if title else []
    out += [line(headers), rule]
    out += [rule if r is None else line(r) for r in body]
    return "\n".join(out)


class _SimpleBar:
    """A minimal stand-in for tqdm when it is not installed: one line on stderr."""

    def __init__(self, items: Sequence[T], desc: str) -> None:
        self.items, self.desc = items, desc
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator[T]:
        n = len(self.items)
        for i, item in enumerate(self.items):
            self._draw(i, n)
            yield item
        self._draw(n, n)
        sys.stderr.write("\n")

    def _draw(self, i: int, n: int) -> None:
        filled = 30 * i // max(n, 1)
        dt = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.desc}: [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{i}/{n} {dt:.1f}s")
        sys.stderr.flush()


def progress(items: Sequence[T], desc: str) -> Iterable[T]:
    """Iterates ``items`` with a progress bar on stderr: tqdm when importable."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _SimpleBar(items, desc)
    return tqdm(items, desc=desc, unit="weight", file=sys.stderr, leave=True)


# --------------------------------------------------------------------------- plot


def plot_layer_errors(names: Sequence[str], errors: dict[str, Sequence[float]],
                      out: Path, title: str, overall: dict[str, float] | None = None) -> Path:
    """Saves a PNG of relative error per layer, one line per format (log scale).

    Args:
        names: x tick labels, one per weight.
        errors: format name -> relative error per weight (``"BF16"`` is drawn dashed grey
            as the cast-only floor).
        out: PNG path.
        title: figure title.
        overall: format name -> relative error over all weights, shown in the legend.

    Returns:
        The resolved path written.

    Raises:
        DemoError: the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(max(8.0, 0.3 * len(names) + 2), 4.8))
    x = np.arange(len(names))
    overall = overall or {}
    for name, errs in errors.items():
        pct = 100 * np.asarray(errs)
        label = "bf16 cast (floor)" if name == "BF16" else name
        if name in overall:
            label += f", {fmt_pct(overall[name])} overall"
        if name == "BF16":
            ax.plot(x, pct, "--", color="0.6", label=label)
        else:
            ax.plot(x, pct, "o-", markersize=3.5, label=label)
    ax.set_yscale("log")
    # Plain decimal ticks: the errors span ~0.1% to ~20%, where 10^k labels say little.
    ticks = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel("relative error ||W_hat - W|| / ||W||  (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    out = Path(out).expanduser().resolve()
    try:
        fig.savefig(out, dpi=120)
    except OSError as err:
        raise DemoError(f"cannot write the plot to {out}: {err.strerror or err}; "
                        "pass another --out or --no-plot") from None
    finally:
        plt.close(fig)
    return out
