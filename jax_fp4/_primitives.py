"""The JAX primitives of jax_fp4: abstract evaluation, batching and lowering of every op.

Each primitive is one FFI target (the same name on CPU and CUDA). Its default lowering is the
pure-JAX twin in ``_reference.py``, so every JAX platform works; CPU lowers to the C++
handler and CUDA to the CUDA handler when ``_jax_fp4_cuda`` is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax._src import dispatch
from jax.interpreters import batching, mlir, xla
from jaxlib.mlir import ir

from jax_fp4 import _partitioning, _reference, _registry
from jax_fp4._partitioning import PER_ROW, REPLICATED, ROWS, SCALES, RowSpec, tile_rows
from jax_fp4._shapes import sf_buffer_size, sf_padded_shape


def _ffi_attr(value):
    # XLA FFI decodes attributes by exact type: int64, bool, float32.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float32(value)
    raise TypeError(f"unsupported FFI attribute {value!r}")


def _vmapped(fn: Callable, num_batch_dims: int) -> Callable:
    """fn applied independently over the leading ``num_batch_dims`` axes of every operand."""
    for _ in range(num_batch_dims):
        fn = jax.vmap(fn)
    return fn


def _batch_sharding_rule(ctx, num_batch: int) -> ir.Attribute:
    """``#sdy.op_sharding_rule`` with the first ``num_batch`` axes shared by all values."""
    # Shardy's factor symbols: i..z, then z_1, z_2, ...
    names = iter([chr(c) for c in range(ord("i"), ord("z") + 1)]
                 + [f"z_{k}" for k in range(1, 1000)])
    batch = [next(names) for _ in range(num_batch)]
    sizes = {}

    def factors(aval) -> str:
        out = []
        for axis, size in enumerate(aval.shape):
            name = batch[axis] if axis < num_batch else next(names)
            sizes[name] = size
            out.append(name)
        return "[" + ", ".join(out) + "]"

    ins = ", ".join(factors(a) for a in ctx.avals_in)
    outs = ", ".join(factors(a) for a in ctx.avals_out)
    size_list = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return ir.Attribute.parse(f"#sdy.op_sharding_rule<({ins})->({outs}) {{{size_list}}}, custom>")


def _require_devices(prim: Primitive) -> None:
    """Lowerings of ``prim`` see the devices: ``custom_partitioning`` needs them (as jax's own
    users of it register). The price: ``jax.export`` with only an ``AbstractMesh`` refuses
    programs with these ops. A jax without the registry lowers them unpartitioned."""
    registry = getattr(dispatch, "prim_requires_devices_during_lowering", None)
    if registry is not None:
        registry.add(prim)


def _define(
    name: str,
    abstract_eval: Callable,
    reference: Callable,
    *,
    batch_param: str | None = "num_batch_dims",
    ffi_attrs: Callable[[dict], dict] = lambda params: params,
    independent_dims: Callable[[dict, int], int] | None = None,
    cuda_only_params: tuple[str, ...] = (),
    row_spec: Callable[[dict], RowSpec | None] | None = None,
) -> Primitive:
    """A multiple-results primitive named and targeted ``jax_fp4_<name>``.

    ``reference(*operands, **params)`` is the twin for one unbatched problem; operands carry
    ``params[batch_param]`` leading batch axes (vmap), which the FFI handlers take as is.
    Without ``batch_param`` the handlers treat every leading axis as independent rows.
    ``independent_dims(params, rank_of_first_operand)`` says how many leading axes of every
    operand and result are independent problems; XLA may then shard along them without
    gathering (the target is registered batch-partitionable). The default is the batch axes.
    ``cuda_only_params`` are launch options (``pdl``) that only the CUDA handlers take; the
    shapes, the twin and the CPU handlers never see them.
    ``row_spec(params)``, for calls without batch axes, says how the operands and results
    follow the rows of the first operand; the CPU/CUDA lowering then partitions the rows of a
    row-sharded input under ``jit`` (``_partitioning.lower_rows``). None: no row partitioning.
    """
    target = f"jax_fp4_{name}"
    prim = Primitive(target)
    prim.multiple_results = True
    prim.def_impl(partial(xla.apply_primitive, prim))

    def without_launch_params(params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in cuda_only_params}

    prim.def_abstract_eval(lambda *args, **params: abstract_eval(
        *args, **without_launch_params(params)))

    def twin(*args, **params):
        params = without_launch_params(params)
        n = params.pop(batch_param, 0) if batch_param else 0
        return _vmapped(lambda *a: reference(*a, **params), n)(*args)

    def twin_lowering(ctx, *args, **params):
        return mlir.lower_fun(lambda *a: twin(*a, **params), multiple_results=True)(ctx, *args)

    if independent_dims is None:
        independent_dims = (lambda params, rank: params.get(batch_param, 0)) if batch_param \
            else (lambda params, rank: 0)

    def ffi_call(ctx, *args, platform, **params):
        if platform != "cuda":
            params = without_launch_params(params)
        attrs = {k: _ffi_attr(v) for k, v in ffi_attrs(params).items()}
        results = jax.ffi.ffi_lowering(target)(ctx, *args, **attrs)
        n = independent_dims(params, len(ctx.avals_in[0].shape))
        if n > 0:
            # XLA's batch partitioner splits a batch-partitionable custom call along this
            # many leading axes (jax.ffi.register_ffi_target_as_batch_partitionable).
            call = results[0].owner
            call.attributes["mhlo.frontend_attributes"] = ir.DictAttr.get(
                {"num_batch_dims": ir.StringAttr.get(str(n))})
            # Shardy propagates shardings through the call only with a rule: the leading
            # axes are one factor shared by every operand and result.
            call.attributes["sdy.sharding_rule"] = _batch_sharding_rule(ctx, n)
        return results

    local = None
    if row_spec is not None:
        # The per-shard call of a row-partitioned op binds this second primitive: the same
        # shapes and handlers, lowered as the plain custom call (no recursion into the
        # partitioning; a single-device program inlines it too).
        local = Primitive(f"{target}_shard")
        local.multiple_results = True
        local.def_abstract_eval(lambda *args, **params: abstract_eval(
            *args, **without_launch_params(params)))

    def ffi_lowering(ctx, *args, platform, **params):
        if any(np.prod(aval.shape) == 0 for aval in ctx.avals_out):
            return twin_lowering(ctx, *args, **params)  # empty outputs: no custom call
        spec = row_spec(params) if row_spec else None
        if (spec is not None and independent_dims(params, len(ctx.avals_in[0].shape)) == 0
                and _partitioning.applies(ctx)):
            return _partitioning.lower_rows(ctx, args, local, params, spec)
        return ffi_call(ctx, *args, platform=platform, **params)

    def batch_rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)  # None: unmapped
        # Every operand gets the new axis in front (unmapped ones are broadcast), so the
        # handlers see one more batch axis: one launch for the whole batch.
        moved = [
            batching.bdim_at_front(a, d, size) if d is not None
            else jnp.broadcast_to(a, (size, *a.shape))
            for a, d in zip(args, dims)
        ]
        if batch_param:
            params = {**params, batch_param: params[batch_param] + 1}
        outs = prim.bind(*moved, **params)
        return outs, [0] * len(outs)

    jax.ffi.register_ffi_target_as_batch_partitionable(target)
    for p, lowering in ((prim, ffi_lowering), (local, ffi_call)):
        if p is None:
            continue
        mlir.register_lowering(p, twin_lowering)
        mlir.register_lowering(p, partial(lowering, platform="cpu"), platform="cpu")
        if target in _registry.CUDA_TARGETS:
            mlir.register_lowering(p, partial(lowering, platform="cuda"), platform="cuda")
    if row_spec is not None:
        _require_devices(prim)
    batching.primitive_batchers[prim] = batch_rule
    prim.twin = twin  # the pure-JAX computation for backend="xla"
    return prim


# ---- fp4_quantize: NVFP4 / MXFP4 (SPEC 5.2), masked rows, KV-cache scales ----

SCALE_ENCODE, SCALE_INVERSE, SCALE_KV_DECODE = 0, 1, 2  # ScaleMode in block_scale.h


def _fp4_scale_shapes(x, sf_vec_size, layout, num_batch_dims):
    batch = tuple(x.shape[:num_batch_dims])
    inner = x.shape[num_batch_dims:]
    rows = int(np.prod(inner[:-1], dtype=np.int64))
    k = inner[-1]
    codes = jax.core.ShapedArray((*batch, *inner[:-1], k // 2), jnp.uint8)
    scales = jax.core.ShapedArray(
        (*batch, *sf_padded_shape(layout, rows, k // sf_vec_size)), jnp.uint8)
    return batch, rows, codes, scales


def _fp4_quantize_abstract(x, global_scale, row_mask, *, sf_vec_size, use_ue8m0, layout,
                           scale_mode, exact, four_over_six, masked, num_batch_dims):
    del global_scale, row_mask, use_ue8m0, scale_mode, exact, four_over_six, masked
    _, _, codes, scales = _fp4_scale_shapes(x, sf_vec_size, layout, num_batch_dims)
    return codes, scales


def _fp4_quantize_twin(x, global_scale, row_mask, *, masked, **params):
    return _reference.fp4_quantize(x, global_scale, row_mask if masked else None, **params)


fp4_quantize_p = _define(
    "fp4_quantize", _fp4_quantize_abstract, _fp4_quantize_twin, cuda_only_params=("pdl",),
    # x, global scale (1 or M), row mask (1 or M) -> codes, scales.
    row_spec=lambda params: RowSpec(tile_rows(params["layout"]), (ROWS, PER_ROW, PER_ROW),
                                    (ROWS, SCALES)))


def _per_token_abstract(x, s_inv, row_mask, *, layout, exact, four_over_six, masked,
                        num_batch_dims):
    del s_inv, row_mask, exact, four_over_six, masked
    batch, rows, codes, scales = _fp4_scale_shapes(x, 16, layout, num_batch_dims)
    per_token = jax.core.ShapedArray((*batch, rows), jnp.float32)
    return codes, scales, per_token


def _per_token_twin(x, s_inv, row_mask, *, masked, **params):
    return _reference.nvfp4_per_token_quantize(x, s_inv, row_mask if masked else None, **params)


nvfp4_per_token_quantize_p = _define(
    "nvfp4_per_token_quantize", _per_token_abstract, _per_token_twin, cuda_only_params=("pdl",),
    # x, S_inv (1), row mask (1 or M) -> codes, scales, per-token scales [M].
    row_spec=lambda params: RowSpec(tile_rows(params["layout"]), (ROWS, REPLICATED, PER_ROW),
                                    (ROWS, SCALES, PER_ROW)))


# ---- mxfp8_quantize (SPEC 5.16) ----


def _mxfp8_quantize_abstract(x, *, layout, alignment, num_batch_dims):
    batch = tuple(x.shape[:num_batch_dims])
    inner = x.shape[num_batch_dims:]
    rows = int(np.prod(inner[:-1], dtype=np.int64))
    kp = -(-inner[-1] // alignment) * alignment
    # float8_e4m3fn straight from the kernels: a u8 result bitcast afterwards compiled to a
    # copy of the whole code tensor on XLA:CPU.
    codes = jax.core.ShapedArray((*batch, *inner[:-1], kp), jnp.float8_e4m3fn)
    scales = jax.core.ShapedArray((*batch, sf_buffer_size(layout, rows, kp // 32)), jnp.uint8)
    return codes, scales


def _mxfp8_quantize_twin(x, **params):
    codes, scales = _reference.mxfp8_quantize(x, **params)
    return lax.bitcast_convert_type(codes, jnp.float8_e4m3fn), scales


mxfp8_quantize_p = _define(
    "mxfp8_quantize", _mxfp8_quantize_abstract, _mxfp8_quantize_twin,
    cuda_only_params=("pdl",),
    row_spec=lambda params: RowSpec(tile_rows(params["layout"]), (ROWS,), (ROWS, SCALES)))


# ---- block_dequantize: every dequantizer (SPEC 5.6, 5.7, 5.9, 5.14, 5.17) ----

ELEMENT_E2M1, ELEMENT_E4M3 = 0, 1
SCALE_E4M3, SCALE_UE8M0_BITS, SCALE_UE8M0_HOST = 0, 1, 2


def _block_dequantize_abstract(codes, scales, global_scale, *, element_format, scale_format,
                               sf_vec_size, layout, plus_zero_code8, device_math, out_dtype,
                               num_batch_dims):
    del scales, global_scale, scale_format, sf_vec_size, layout, plus_zero_code8, device_math
    del num_batch_dims
    k = codes.shape[-1] * (2 if element_format == ELEMENT_E2M1 else 1)
    return (jax.core.ShapedArray((*codes.shape[:-1], k), jnp.dtype(out_dtype)),)


def _block_dequantize_twin(codes, scales, global_scale, **params):
    if codes.dtype != jnp.uint8:  # float8_e4m3fn codes go to the FFI handlers as they are
        codes = lax.bitcast_convert_type(codes, jnp.uint8)
    return (_reference.block_dequantize(codes, scales, global_scale, **params),)


block_dequantize_p = _define(
    "block_dequantize", _block_dequantize_abstract, _block_dequantize_twin,
    # The output dtype is the result buffer's type, not an attribute.
    ffi_attrs=lambda params: {k: v for k, v in params.items() if k != "out_dtype"},
    # codes, scale buffer, global scale (1) -> values.
    row_spec=lambda params: RowSpec(tile_rows(params["layout"]), (ROWS, SCALES, REPLICATED),
                                    (ROWS,)))


def _rowwise(fn: Callable, *args):
    """fn over the flattened leading axes of its operands (each row one problem)."""
    lead = args[0].shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))  # explicit: reshape(-1, 0) cannot infer it
    flat = [a.reshape(rows, a.shape[-1]) for a in args]
    outs = jax.vmap(fn)(*flat)
    return [o.reshape(*lead, o.shape[-1]) for o in outs]


# ---- block_scale_interleave (SPEC 5.8), shuffles (5.11, 5.12) ----


def _interleave_abstract(x, *, shuffle_block):
    del shuffle_block
    rows, cols = x.shape[-2:]
    return (jax.core.ShapedArray((*x.shape[:-2], sf_buffer_size(0, rows, cols)), x.dtype),)


def _interleave_twin(x, *, shuffle_block):
    rows, cols = x.shape[-2:]
    batch = int(np.prod(x.shape[:-2], dtype=np.int64))
    flat = _reference.block_scale_interleave(x.reshape(batch, rows, cols),
                                             shuffle_block=shuffle_block)
    return (flat.reshape(*x.shape[:-2], sf_buffer_size(0, rows, cols)),)


block_scale_interleave_p = _define("block_scale_interleave", _interleave_abstract,
                                   _interleave_twin, batch_param=None,
                                   independent_dims=lambda params, rank: rank - 2)


def _shuffle_rows_abstract(x, *, block):
    del block
    return (jax.core.ShapedArray(x.shape, x.dtype),)


def _shuffle_rows_twin(x, *, block):
    return (_reference.shuffle_rows(x, block=block),)


shuffle_rows_p = _define("shuffle_rows", _shuffle_rows_abstract, _shuffle_rows_twin,
                         batch_param=None, independent_dims=lambda params, rank: rank - 2)


# ---- packbits / segment_packbits (SPEC 5.18, 5.19) ----


def _packbits_abstract(x, *, little):
    del little
    return (jax.core.ShapedArray((*x.shape[:-1], -(-x.shape[-1] // 8)), jnp.uint8),)


def _packbits_twin(x, *, little):
    order = "little" if little else "big"
    return _rowwise(lambda row: (_reference.packbits(row, bitorder=order),), x)


packbits_p = _define("packbits", _packbits_abstract, _packbits_twin, batch_param=None,
                     independent_dims=lambda params, rank: rank - 1)


def _segment_packbits_abstract(x, indptr, *, little, total_bytes):
    del little
    batch = x.shape[:-1]
    return (jax.core.ShapedArray((*batch, total_bytes), jnp.uint8),
            jax.core.ShapedArray((*batch, indptr.shape[-1]), jnp.int32))


def _segment_packbits_twin(x, indptr, *, little, total_bytes):
    order = "little" if little else "big"
    return _rowwise(
        lambda row, ptr: _reference.segment_packbits(row, ptr, bitorder=order,
                                                     total_bytes=total_bytes), x, indptr)


segment_packbits_p = _define(
    "segment_packbits", _segment_packbits_abstract, _segment_packbits_twin, batch_param=None,
    independent_dims=lambda params, rank: rank - 1,
    # The handler reads the output size off its result buffer.
    ffi_attrs=lambda params: {"little": params["little"]})


# ---- device_copy: the bandwidth ceiling the benchmarks compare against ----


def _device_copy_abstract(x):
    return (jax.core.ShapedArray(x.shape, x.dtype),)


device_copy_p = _define("device_copy", _device_copy_abstract, lambda x: (x + jnp.zeros_like(x),),
                        batch_param=None)
