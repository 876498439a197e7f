"""Trace-time argument checks shared by the public functions: clear errors, never a crash."""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

BACKENDS = ("auto", "cuda", "xla")


def resolve_backend(op: str, backend: str) -> str:
    """'auto' (FlashInfer's 'cuda' is a synonym) runs the FFI handler; 'xla' the twin."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend={backend!r} is not one of {BACKENDS}")
    return "xla" if backend == "xla" else "auto"


def dtype_name(dtype) -> str:
    return jnp.dtype(dtype).name


def check_dtype(op: str, name: str, x, allowed: Iterable) -> None:
    allowed = tuple(jnp.dtype(a) for a in allowed)
    if jnp.dtype(x.dtype) not in allowed:
        names = ", ".join(a.name for a in allowed)
        raise TypeError(f"{op}: {name} has dtype {dtype_name(x.dtype)}; expected one of {names}")


def check_rank(op: str, name: str, x, ranks: Iterable[int] | None = None, *,
               min_rank: int | None = None) -> None:
    if ranks is not None and x.ndim not in tuple(ranks):
        raise ValueError(f"{op}: {name} must have rank {' or '.join(map(str, ranks))}, "
                         f"got shape {tuple(x.shape)}")
    if min_rank is not None and x.ndim < min_rank:
        raise ValueError(f"{op}: {name} must have rank >= {min_rank}, got shape {tuple(x.shape)}")


def check_multiple(op: str, what: str, value: int, of: int) -> None:
    if value % of != 0:
        raise ValueError(f"{op}: {what} = {value} is not a multiple of {of}")


def as_array(x) -> jax.Array:
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


def concrete_value(x) -> np.ndarray | None:
    """x as NumPy if its value is known at trace time, else None (never a host sync)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # abstract values under transformations
        return None
