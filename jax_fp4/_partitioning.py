"""Row partitioning of one matrix under ``jax.jit``: a ``custom_partitioning`` in the lowering.

The batch axes of every op are handled by XLA's batch partitioner (``_primitives._define``).
The rows of a single ``[M, K]`` matrix are not a batch axis: the 128x4 and 8x4 scale layouts
tie 128 or 8 rows together. But the layouts are row-tile-major, so when every shard holds a
whole number of row tiles, each device's scale buffer is exactly its slice of the global one
along the first axis, and the op needs no communication.

``lower_rows`` lowers such a primitive (no batch axes) through ``custom_partitioning``: the
partitioner hands it the operand shardings and the mesh, and it either keeps the rows sharded
(each device runs the FFI handler on its own rows) or, when the shards do not hold whole
tiles, asks for replicated rows, so XLA gathers them first: always the unsharded bytes.

It lives in the lowering rather than around the public functions because
``custom_partitioning`` has no batching rule: ``vmap`` still meets the primitive and its
batching rule, and only the final, unbatched call is partitioned. The per-shard computation
binds a second, plain primitive (the guard against lowering into the same rule again).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental.custom_partitioning import (
    ArrayMapping,
    CompoundFactor,
    SdyShardingRule,
    custom_partitioning,
)
from jax.interpreters import mlir
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_fp4._shapes import SfLayout

# Kinds of operands and results, as they relate to the rows M of the matrix.
ROWS = "rows"  # [*lead, last]: the leading axes of the input, whose product is M
PER_ROW = "per_row"  # [M] (one value per row: a row-wise scale or mask), else replicated
SCALES = "scales"  # a scale buffer, [Mp, Cp] or 1-D [Mp * Cp] (Mp = M padded to the tile)
REPLICATED = "replicated"  # needed whole by every shard (a single global scale)

_TILE_ROWS = {SfLayout.layout_128x4: 128, SfLayout.layout_8x4: 8, SfLayout.layout_linear: 1}


def tile_rows(layout: int) -> int:
    """Rows one tile of ``layout`` ties together: a shard must hold a multiple of them."""
    return _TILE_ROWS[SfLayout(int(layout))]


class RowSpec(NamedTuple):
    """How an op's operands and results follow the rows of its first operand."""

    tile: int
    ins: tuple[str, ...]
    outs: tuple[str, ...]


class _Plan(NamedTuple):
    lead: tuple[int, ...]  # leading axes of the first operand; their product is M
    tile: int
    kinds: tuple[str, ...]  # operands then results
    shapes: tuple[tuple[int, ...], ...]
    n_in: int
    aligned: bool  # M is a multiple of the tile: the scale buffers carry no padded rows


def _plan(spec: RowSpec, avals_in, avals_out) -> _Plan:
    lead = tuple(avals_in[0].shape[:-1])
    rows = math.prod(lead)
    return _Plan(lead, spec.tile, spec.ins + spec.outs,
                 tuple(tuple(a.shape) for a in (*avals_in, *avals_out)), len(avals_in),
                 rows % spec.tile == 0)


def _is_per_row(plan: _Plan, shape) -> bool:
    rows = math.prod(plan.lead)
    return len(shape) == 1 and shape[0] == rows and rows > 1


def _sharding_rule(plan: _Plan) -> SdyShardingRule:
    """The Shardy rule: one factor ``m`` for the first axis of the rows, shared by every value
    that holds rows; all other factors must stay replicated. With padded scale rows (M not a
    multiple of the tile) ``m`` must be replicated too: XLA gathers the rows."""
    rest = [f"a{i}" for i in range(1, len(plan.lead))]
    row_dim = CompoundFactor("m", *rest) if rest else "m"
    own = iter(f"f{i}" for i in range(10_000))
    sizes: dict[str, int] = {}
    mappings = []
    for kind, shape in zip(plan.kinds, plan.shapes):
        if kind == ROWS:
            dims = ["m", *rest, next(own)]
        elif kind == PER_ROW and _is_per_row(plan, shape):
            dims = [row_dim]
        elif kind == SCALES and plan.aligned and len(shape) == 2:
            dims = [row_dim, next(own)]
        elif kind == SCALES and plan.aligned:
            cols = next(own)  # 1-D buffer: the rows times the padded scale columns
            sizes[cols] = shape[0] // math.prod(plan.lead)
            dims = [CompoundFactor("m", *rest, cols)]
        else:
            dims = [next(own) for _ in shape]
        mappings.append(ArrayMapping(*dims))
    # In the order of first use: Shardy wants the special factors sorted by index.
    used = dict.fromkeys(f for m in mappings for d in m for f in ((d,) if isinstance(d, str)
                                                                 else d))
    replicated = tuple(f for f in used if f != "m" or not plan.aligned)
    return SdyShardingRule(tuple(mappings[:plan.n_in]), tuple(mappings[plan.n_in:]),
                           need_replication_factors=replicated, **sizes)


def _row_axes(plan: _Plan, sharding, ndim: int):
    """The mesh axes that shard the rows, when each shard then holds whole tiles; else None."""
    if not plan.aligned or not isinstance(sharding, NamedSharding):
        return None
    spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
    if spec[0] is None or any(d is not None for d in spec[1:]):
        return None
    names = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    shards = math.prod(sharding.mesh.shape[a] for a in names)
    first, rest = plan.lead[0], math.prod(plan.lead[1:])
    if first % shards or (first // shards * rest) % plan.tile:
        return None
    return spec[0]


def _shardings(plan: _Plan, mesh, axes):
    """Per value: rows (and per-row values, scale buffers) along ``axes``, else replicated."""
    out = []
    for kind, shape in zip(plan.kinds, plan.shapes):
        holds_rows = axes is not None and (
            kind in (ROWS, SCALES) or (kind == PER_ROW and _is_per_row(plan, shape)))
        out.append(NamedSharding(mesh, P(axes) if holds_rows else P()))
    return out


def _mesh_of(sharding) -> Mesh:
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, Mesh):
        return sharding.mesh
    # Without a mesh (GSPMD shardings) a replicated layout is all we ask for.
    devices = sorted(sharding.device_set, key=lambda d: d.id)
    return Mesh(np.array(devices), ("rows",))


def _decide(plan: _Plan, arg_shapes, result_shapes=()):
    """``(mesh, operand shardings, result shardings)`` for the partitioned call: the rows
    along the input's row axes when the tile rule holds, else everything replicated (XLA
    gathers; the bytes stay those of the unsharded op)."""
    first = arg_shapes[0]
    mesh = _mesh_of(first.sharding)
    axes = _row_axes(plan, first.sharding, len(first.shape))
    out = result_shapes[0].sharding if result_shapes else None
    if axes is None and first.sharding.is_fully_replicated and out is not None:
        # A replicated input whose results are wanted row-sharded: each device takes its
        # rows of the input (a local slice) instead of quantizing everything.
        axes = _row_axes(plan, out, len(result_shapes[0].shape))
        if axes is not None:
            mesh = out.mesh
    shardings = _shardings(plan, mesh, axes)
    return mesh, tuple(shardings[:plan.n_in]), tuple(shardings[plan.n_in:])


def applies(ctx) -> bool:
    """Whether to lower through ``custom_partitioning``.

    Not for ``jax.export``, which cannot serialize its partitioning callback (exported code
    keeps the plain custom call, for which XLA gathers row-sharded operands), nor where the
    lowering has no devices (``custom_partitioning`` needs them; the primitives ask for them
    through ``_primitives._require_devices``).
    """
    params = getattr(ctx.module_context, "lowering_parameters", None)
    if getattr(params, "for_export", False):
        return False
    axis_context = ctx.module_context.axis_context
    return getattr(axis_context, "device_assignment", True) is not None


def lower_rows(ctx, args, local, params: dict, spec: RowSpec):
    """Lowers ``local.bind(*args, **params)`` with row partitioning (see the module doc).

    Args:
        ctx: the lowering context of the public primitive (its avals fix the shapes).
        args: the lowered operands.
        local: the per-shard primitive: the op's shapes and plain custom-call lowering.
        params: the primitive's parameters (no batch axes).
        spec: how the operands and results follow the rows.

    Returns:
        The lowered results: a ``CustomSPMDPartitioning`` call on several devices, the plain
        custom call on one device or inside ``shard_map``.
    """
    plan = _plan(spec, ctx.avals_in, ctx.avals_out)

    def per_shard(*a):
        return tuple(local.bind(*a, **params))

    def partition(mesh, arg_shapes, result_shape):
        del mesh
        mesh, ins, outs = _decide(plan, arg_shapes, result_shape)
        return mesh, per_shard, outs, ins

    def infer_sharding_from_operands(mesh, arg_shapes, result_shape):
        del mesh, result_shape  # the GSPMD partitioner (jax_use_shardy_partitioner=False)
        return _decide(plan, arg_shapes)[2]

    op = custom_partitioning(per_shard)
    op.def_partition(partition=partition,
                     infer_sharding_from_operands=infer_sharding_from_operands,
                     propagate_user_sharding=lambda mesh, user_shape: jax.tree.map(
                         lambda s: s.sharding, user_shape),
                     sharding_rule=_sharding_rule(plan))
    return mlir.lower_fun(op, multiple_results=True)(ctx, *args)
