"""Argument validation: every public function raises the documented exception at trace time
(eagerly and inside ``jax.jit``), with a message that names the op, the argument and the
numbers involved."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np
import pytest
from conftest import BF16, E4M3

import jax_fp4 as F
from jax_fp4 import SfLayout

U8 = np.uint8
F16 = np.float16
F32 = np.float32


def bf16(*shape):
    return np.ones(shape, BF16)


def u8(*shape):
    return np.ones(shape, U8)


def one(v=1.0):
    return np.array([v], F32)


@dataclass
class Case:
    fn: Callable
    args: tuple
    exc: type
    match: str
    kwargs: dict = field(default_factory=dict)
    static: tuple = ()  # indices of array arguments closed over (not traced) under jit
    modes: tuple = ("eager", "jit")


CASES = {
    # ---- fp4_quantize ----
    "fp4/dtype-f32": Case(F.fp4_quantize, (np.ones((4, 32), F32), one()), TypeError,
                          r"fp4_quantize: input has dtype float32; expected one of float16, "
                          r"bfloat16, float8_e4m3fn"),
    "fp4/dtype-int8": Case(F.fp4_quantize, (np.ones((4, 32), np.int8), one()), TypeError,
                           r"fp4_quantize: input has dtype int8"),
    "fp4/rank-1": Case(F.fp4_quantize, (bf16(32), one()), ValueError,
                       r"fp4_quantize: input must have rank >= 2, got shape \(32,\)"),
    "fp4/K-not-16": Case(F.fp4_quantize, (bf16(4, 40), one()), ValueError,
                         r"fp4_quantize: the last dim K of input = 40 is not a multiple of 16"),
    "fp4/K-not-32-mxfp4": Case(F.fp4_quantize, (bf16(4, 48), None, 32, True), ValueError,
                               r"fp4_quantize: the last dim K of input = 48 is not a multiple "
                               r"of 32"),
    "fp4/scale-size": Case(F.fp4_quantize, (bf16(8, 32), np.ones(3, F32)), ValueError,
                           r"fp4_quantize: global_scale has 3 elements; expected 1 or M = 8"),
    "fp4/scale-size-3d": Case(F.fp4_quantize, (bf16(2, 4, 32), np.ones(4, F32)), ValueError,
                              r"fp4_quantize: global_scale has 4 elements; expected 1 or "
                              r"M = 8"),
    "fp4/scale-2d-size": Case(F.fp4_quantize, (bf16(8, 32), np.ones((2, 2), F32)), ValueError,
                              r"fp4_quantize: global_scale has 4 elements; expected 1 or "
                              r"M = 8"),
    "fp4/scale-int": Case(F.fp4_quantize, (bf16(8, 32), np.ones(1, np.int32)), TypeError,
                          r"fp4_quantize: global_scale must be a floating-point .*int32"),
    "fp4/scale-missing": Case(F.fp4_quantize, (bf16(8, 32),), ValueError,
                              r"fp4_quantize: global_scale is required"),
    "fp4/vec-8": Case(F.fp4_quantize, (bf16(8, 32), one(), 8), NotImplementedError,
                      r"fp4_quantize: sf_vec_size=8"),
    "fp4/vec-64": Case(F.fp4_quantize, (bf16(8, 64), one(), 64, True), NotImplementedError,
                       r"fp4_quantize: sf_vec_size=64"),
    "fp4/16-with-ue8m0": Case(F.fp4_quantize, (bf16(8, 32), one(), 16, True), ValueError,
                              r"fp4_quantize: sf_vec_size=16 with sf_use_ue8m0=True"),
    "fp4/32-without-ue8m0": Case(F.fp4_quantize, (bf16(8, 32), one(), 32, False), ValueError,
                                 r"fp4_quantize: sf_vec_size=32 with sf_use_ue8m0=False"),
    "fp4/8x4-not-swizzled": Case(F.fp4_quantize, (bf16(8, 32), one()), ValueError,
                                 r"fp4_quantize: is_sf_8x4_layout=True needs "
                                 r"is_sf_swizzled_layout=True",
                                 {"is_sf_swizzled_layout": False, "is_sf_8x4_layout": True}),
    "fp4/backend": Case(F.fp4_quantize, (bf16(8, 32), one()), ValueError,
                        r"fp4_quantize: backend='triton' is not one of", {"backend": "triton"}),
    # ---- nvfp4_quantize (delegates to fp4_quantize) ----
    "nvfp4/dtype": Case(F.nvfp4_quantize, (np.ones((4, 32), F32), one()), TypeError,
                        r"fp4_quantize: .* has dtype float32"),
    "nvfp4/K": Case(F.nvfp4_quantize, (bf16(4, 24), one()), ValueError,
                    r"nvfp4_quantize: .* = 24 is not a multiple of 16"),
    "nvfp4/layout": Case(F.nvfp4_quantize, (bf16(4, 32), one(), 7), ValueError,
                         r"nvfp4_quantize: sfLayout=7 is not an SfLayout"),
    "nvfp4/vec": Case(F.nvfp4_quantize, (bf16(4, 32), one()), ValueError,
                      r"nvfp4_quantize: sf_vec_size=32", {"sf_vec_size": 32}),
    "nvfp4/scale-size": Case(F.nvfp4_quantize, (bf16(4, 32), np.ones(3, F32)), ValueError,
                             r"nvfp4_quantize: a_global_sf has 3 elements; expected 1 or M = 4"),
    "nvfp4/idx-without-per-token": Case(
        F.nvfp4_quantize, (bf16(4, 32), one()), ValueError,
        r"nvfp4_quantize: expanded_idx_to_permuted_idx needs per_token_activation=True",
        {"expanded_idx_to_permuted_idx": np.arange(4, dtype=np.int32)}),
    "nvfp4/backend": Case(F.nvfp4_quantize, (bf16(4, 32), one()), ValueError,
                          r"backend='cute-dsl' is not one of", {"backend": "cute-dsl"}),
    # ---- mxfp4_quantize ----
    "mxfp4/dtype": Case(F.mxfp4_quantize, (np.ones((4, 32), F32),), TypeError,
                        r"fp4_quantize: .* has dtype float32"),
    "mxfp4/K": Case(F.mxfp4_quantize, (bf16(4, 48),), ValueError,
                    r"fp4_quantize: .* = 48 is not a multiple of 32"),
    "mxfp4/rank": Case(F.mxfp4_quantize, (bf16(64),), ValueError,
                       r"fp4_quantize: .* must have rank >= 2, got shape \(64,\)"),
    "mxfp4/layout": Case(F.mxfp4_quantize, (bf16(4, 32),), ValueError,
                         r"mxfp4_quantize: sfLayout=3 is not an SfLayout", {"sfLayout": 3}),
    "mxfp4/backend": Case(F.mxfp4_quantize, (bf16(4, 32),), ValueError,
                          r"backend='torch' is not one of", {"backend": "torch"}),
    # ---- nvfp4_batched_quantize ----
    "batched/rank-2": Case(F.nvfp4_batched_quantize, (bf16(4, 32), one()), ValueError,
                           r"nvfp4_batched_quantize: a must have rank 3, got shape \(4, 32\)"),
    "batched/rank-4": Case(F.nvfp4_batched_quantize, (bf16(2, 2, 4, 32), one()), ValueError,
                           r"nvfp4_batched_quantize: a must have rank 3, got shape "
                           r"\(2, 2, 4, 32\)"),
    "batched/dtype": Case(F.nvfp4_batched_quantize, (np.ones((2, 4, 32), F32), one()),
                          TypeError, r"nvfp4_batched_quantize: a has dtype float32"),
    "batched/K": Case(F.nvfp4_batched_quantize, (bf16(2, 4, 40), one()), ValueError,
                      r"nvfp4_batched_quantize: the last dim K of a = 40 is not a multiple "
                      r"of 16"),
    "batched/vec": Case(F.nvfp4_batched_quantize, (bf16(2, 4, 32), one(), 32), ValueError,
                        r"nvfp4_batched_quantize: sf_vec_size=32"),
    "batched/scale-size": Case(F.nvfp4_batched_quantize, (bf16(2, 4, 32), np.ones(3, F32)),
                               ValueError, r"nvfp4_batched_quantize: a_global_sf has 3 "
                               r"elements; expected 1 or M = 4"),
    "batched/scale-missing": Case(F.nvfp4_batched_quantize, (bf16(2, 4, 32), None),
                                  ValueError, r"nvfp4_batched_quantize: a_global_sf is "
                                  r"required"),
    "batched/backend": Case(F.nvfp4_batched_quantize, (bf16(2, 4, 32), one()), ValueError,
                            r"nvfp4_batched_quantize: backend='x' is not one of",
                            {"backend": "x"}),
    # ---- mxfp8_quantize ----
    "mxfp8/dtype-e4m3": Case(F.mxfp8_quantize, (np.ones((4, 32), E4M3),), TypeError,
                             r"mxfp8_quantize: input has dtype float8_e4m3fn; expected one "
                             r"of float16, bfloat16, float32"),
    "mxfp8/dtype-int": Case(F.mxfp8_quantize, (np.ones((4, 32), np.int32),), TypeError,
                            r"mxfp8_quantize: input has dtype int32"),
    "mxfp8/rank": Case(F.mxfp8_quantize, (bf16(32),), ValueError,
                       r"mxfp8_quantize: input must have rank >= 2, got shape \(32,\)"),
    "mxfp8/K": Case(F.mxfp8_quantize, (bf16(4, 48),), ValueError,
                    r"mxfp8_quantize: the last dim K of input = 48 is not a multiple of 32"),
    "mxfp8/alignment-48": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                               r"mxfp8_quantize: alignment=48 must be a positive multiple of "
                               r"32", {"alignment": 48}),
    "mxfp8/alignment-0": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                              r"mxfp8_quantize: alignment=0 must be a positive multiple",
                              {"alignment": 0}),
    "mxfp8/alignment-neg": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                                r"mxfp8_quantize: alignment=-32 must be a positive multiple",
                                {"alignment": -32}),
    "mxfp8/alignment-16": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                               r"mxfp8_quantize: alignment=16 must be a positive multiple",
                               {"alignment": 16}),
    "mxfp8/alignment-float": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                                  r"mxfp8_quantize: alignment=64.0 must be a positive "
                                  r"multiple", {"alignment": 64.0}),
    "mxfp8/layout": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                         r"mxfp8_quantize: .*=5 is not an SfLayout",
                         {"sf_swizzle_layout": 5}),
    "mxfp8/backend": Case(F.mxfp8_quantize, (bf16(4, 32),), ValueError,
                          r"mxfp8_quantize: backend='cute-dsl' is not one of",
                          {"backend": "cute-dsl"}),
    # ---- e2m1_and_ufp8sf_scale_to_float ----
    "e2m1/codes-dtype": Case(F.e2m1_and_ufp8sf_scale_to_float,
                             (np.ones((4, 8), np.int8), u8(128, 4)), TypeError,
                             r"e2m1_and_ufp8sf_scale_to_float: e2m1_tensor has dtype int8; "
                             r"expected one of uint8"),
    "e2m1/codes-rank": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(2, 4, 8), u8(128, 4)),
                            ValueError, r"e2m1_and_ufp8sf_scale_to_float: e2m1_tensor must "
                            r"have rank 2, got shape \(2, 4, 8\)"),
    "e2m1/K": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 12), u8(128, 4)), ValueError,
                   r"e2m1_and_ufp8sf_scale_to_float: K \(2 x the last dim of e2m1_tensor\) "
                   r"= 24 is not a multiple of 16"),
    "e2m1/scale-size": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 16), u8(100)),
                            ValueError, r"e2m1_and_ufp8sf_scale_to_float: ufp8_scale_tensor "
                            r"has 100 bytes; a layout_128x4 buffer for M = 4 rows and 2 "
                            r"scale columns has exactly 512"),
    "e2m1/scale-size-linear": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 16), u8(4, 4)),
                                   ValueError, r"ufp8_scale_tensor has 16 bytes; a "
                                   r"layout_linear buffer for M = 4 rows and 2 scale columns "
                                   r"has exactly 8", {"is_sf_swizzled_layout": False}),
    "e2m1/scale-size-8x4": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 16), u8(128, 4)),
                                ValueError, r"ufp8_scale_tensor has 512 bytes; a layout_8x4 "
                                r"buffer for M = 4 rows and 2 scale columns has exactly 32",
                                {"is_sf_8x4_layout": True}),
    "e2m1/scale-dtype": Case(F.e2m1_and_ufp8sf_scale_to_float,
                             (u8(4, 8), np.ones((128, 4), np.int8)), TypeError,
                             r"e2m1_and_ufp8sf_scale_to_float: ufp8_scale_tensor has dtype "
                             r"int8"),
    "e2m1/ufp8-type": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 8), u8(128, 4)),
                           ValueError, r"e2m1_and_ufp8sf_scale_to_float: ufp8_type=2",
                           {"ufp8_type": 2}),
    "e2m1/8x4-not-swizzled": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 8), u8(4)),
                                  ValueError, r"e2m1_and_ufp8sf_scale_to_float: "
                                  r"is_sf_8x4_layout=True needs is_sf_swizzled_layout=True",
                                  {"is_sf_swizzled_layout": False, "is_sf_8x4_layout": True}),
    "e2m1/vec-12": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 12), u8(128, 4)),
                        ValueError, r"e2m1_and_ufp8sf_scale_to_float: sf_vec_size=12 must be "
                        r"a positive multiple of 8", {"sf_vec_size": 12}),
    "e2m1/vec-0": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 12), u8(128, 4)),
                       ValueError, r"e2m1_and_ufp8sf_scale_to_float: sf_vec_size=0",
                       {"sf_vec_size": 0}),
    "e2m1/global-size": Case(F.e2m1_and_ufp8sf_scale_to_float,
                             (u8(4, 8), u8(128, 4), np.ones(2, F32)), ValueError,
                             r"e2m1_and_ufp8sf_scale_to_float: global_scale_tensor must be "
                             r"one float, got float32 \(2,\)"),
    "e2m1/backend": Case(F.e2m1_and_ufp8sf_scale_to_float, (u8(4, 8), u8(128, 4)),
                         ValueError, r"e2m1_and_ufp8sf_scale_to_float: backend='c' is not one",
                         {"backend": "c"}),
    # ---- mxfp4_dequantize (delegates) ----
    "mxfp4_deq/layout": Case(F.mxfp4_dequantize, (u8(4, 16), u8(128, 4), 9), ValueError,
                             r"mxfp4_dequantize: sfLayout=9 is not an SfLayout"),
    "mxfp4_deq/scale-size": Case(F.mxfp4_dequantize, (u8(4, 16), u8(4, 2)), ValueError,
                                 r"has 8 bytes; a layout_128x4 buffer for M = 4 rows and 1 "
                                 r"scale columns has exactly 512"),
    "mxfp4_deq/K": Case(F.mxfp4_dequantize, (u8(4, 8), u8(128, 4)), ValueError,
                        r"= 16 is not a multiple of 32"),
    "mxfp4_deq/dtype": Case(F.mxfp4_dequantize, (np.ones((4, 16), np.int32), u8(128, 4)),
                            TypeError, r"has dtype int32; expected one of uint8"),
    # ---- mxfp4_dequantize_host ----
    "mxfp4_host/weight-dtype": Case(F.mxfp4_dequantize_host, (np.ones((4, 16), np.int8),
                                                             u8(4, 1)), TypeError,
                                    r"mxfp4_dequantize_host: weight has dtype int8; expected "
                                    r"one of uint8"),
    "mxfp4_host/scale-dtype": Case(F.mxfp4_dequantize_host, (u8(4, 16), np.ones((4, 1), F32)),
                                   TypeError, r"mxfp4_dequantize_host: scale has dtype "
                                   r"float32"),
    "mxfp4_host/weight-rank": Case(F.mxfp4_dequantize_host, (u8(2, 4, 16), u8(4, 1)),
                                   ValueError, r"mxfp4_dequantize_host: weight must have rank "
                                   r"2, got shape \(2, 4, 16\)"),
    "mxfp4_host/scale-rank": Case(F.mxfp4_dequantize_host, (u8(4, 16), u8(4)), ValueError,
                                  r"mxfp4_dequantize_host: scale must have rank 2, got shape "
                                  r"\(4,\)"),
    "mxfp4_host/scale-shape": Case(F.mxfp4_dequantize_host, (u8(4, 32), u8(4, 3)),
                                   ValueError, r"mxfp4_dequantize_host: scale has shape "
                                   r"\(4, 3\); expected \[N, K // group_size\] = \(4, 2\)"),
    "mxfp4_host/scale-rows": Case(F.mxfp4_dequantize_host, (u8(4, 32), u8(5, 2)),
                                  ValueError, r"mxfp4_dequantize_host: scale has shape "
                                  r"\(5, 2\); expected .* = \(4, 2\)"),
    "mxfp4_host/K": Case(F.mxfp4_dequantize_host, (u8(4, 24), u8(4, 1)), ValueError,
                         r"mxfp4_dequantize_host: K \(2 x the last dim of weight\) = 48 is "
                         r"not a multiple of 32"),
    "mxfp4_host/group": Case(F.mxfp4_dequantize_host, (u8(4, 24), u8(4, 4), 12), ValueError,
                             r"mxfp4_dequantize_host: group_size=12 must be a positive "
                             r"multiple of 8"),
    "mxfp4_host/backend": Case(F.mxfp4_dequantize_host, (u8(4, 16), u8(4, 1)), ValueError,
                               r"mxfp4_dequantize_host: backend='gpu' is not one of",
                               {"backend": "gpu"}),
    # ---- mxfp8_dequantize_host ----
    "mxfp8_host/dtype": Case(F.mxfp8_dequantize_host, (np.ones((4, 32), F16), u8(512)),
                             TypeError, r"mxfp8_dequantize_host: input has dtype float16; "
                             r"expected one of uint8, float8_e4m3fn"),
    "mxfp8_host/rank": Case(F.mxfp8_dequantize_host, (u8(32), u8(512)), ValueError,
                            r"mxfp8_dequantize_host: input must have rank 2, got shape "
                            r"\(32,\)"),
    "mxfp8_host/K": Case(F.mxfp8_dequantize_host, (u8(4, 48), u8(512)), ValueError,
                         r"mxfp8_dequantize_host: the last dim K of input = 48 is not a "
                         r"multiple of 32"),
    "mxfp8_host/scale-size": Case(F.mxfp8_dequantize_host, (u8(4, 32), u8(10)), ValueError,
                                  r"mxfp8_dequantize_host: scale_tensor has 10 bytes; a "
                                  r"layout_128x4 buffer for M = 4 rows and 1 scale columns "
                                  r"has exactly 512"),
    "mxfp8_host/scale-size-linear": Case(F.mxfp8_dequantize_host, (u8(4, 64), u8(512)),
                                         ValueError, r"scale_tensor has 512 bytes; a "
                                         r"layout_linear buffer for M = 4 rows and 2 scale "
                                         r"columns has exactly 8",
                                         {"is_sf_swizzled_layout": False}),
    "mxfp8_host/scale-dtype": Case(F.mxfp8_dequantize_host,
                                   (u8(4, 32), np.ones(512, np.int32)), TypeError,
                                   r"mxfp8_dequantize_host: scale_tensor has dtype int32"),
    "mxfp8_host/layout": Case(F.mxfp8_dequantize_host, (u8(4, 32), u8(512)), ValueError,
                              r"mxfp8_dequantize_host: .*=4 is not an SfLayout",
                              {"sf_swizzle_layout": 4}),
    "mxfp8_host/backend": Case(F.mxfp8_dequantize_host, (u8(4, 32), u8(512)), ValueError,
                               r"mxfp8_dequantize_host: backend='' is not one of",
                               {"backend": ""}),
    # ---- block_scale_interleave ----
    "interleave/dtype": Case(F.block_scale_interleave, (np.ones((4, 3), F32),), TypeError,
                             r"block_scale_interleave: unswizzled_sf has dtype float32; "
                             r"expected one of uint8, bfloat16"),
    "interleave/dtype-f16": Case(F.block_scale_interleave, (np.ones((4, 3), F16),), TypeError,
                                 r"block_scale_interleave: unswizzled_sf has dtype float16"),
    "interleave/rank-1": Case(F.block_scale_interleave, (u8(5),), ValueError,
                              r"block_scale_interleave: unswizzled_sf must have rank 2 or 3, "
                              r"got shape \(5,\)"),
    "interleave/rank-4": Case(F.block_scale_interleave, (u8(1, 2, 3, 4),), ValueError,
                              r"block_scale_interleave: unswizzled_sf must have rank 2 or 3, "
                              r"got shape \(1, 2, 3, 4\)"),
    "interleave/backend": Case(F.block_scale_interleave, (u8(4, 3),), ValueError,
                               r"block_scale_interleave: backend='cpu' is not one of",
                               {"backend": "cpu"}),
    "interleave-alias/dtype": Case(F.nvfp4_block_scale_interleave, (np.ones((4, 3), F32),),
                                   TypeError, r"unswizzled_sf has dtype float32"),
    # ---- block_scale_interleave_reverse ----
    "reverse/size": Case(F.block_scale_interleave_reverse, (u8(100), 4, 2), ValueError,
                         r"block_scale_interleave_reverse: sf_buffer has 100 elements; a "
                         r"layout_128x4 buffer for \[4, 2\] has 512"),
    "reverse/size-8x4": Case(F.block_scale_interleave_reverse,
                             (u8(512), 4, 2, SfLayout.layout_8x4), ValueError,
                             r"block_scale_interleave_reverse: sf_buffer has 512 elements; a "
                             r"layout_8x4 buffer for \[4, 2\] has 32"),
    # ---- packbits ----
    "packbits/bitorder": Case(F.packbits, (np.ones(8, bool), "middle"), ValueError,
                              r"packbits: bitorder='middle' must be 'big' or 'little'"),
    "packbits/bitorder-case": Case(F.packbits, (np.ones(8, bool), "BIG"), ValueError,
                                   r"packbits: bitorder='BIG' must be 'big' or 'little'"),
    "packbits/backend": Case(F.packbits, (np.ones(8, bool),), ValueError,
                             r"packbits: backend='numpy' is not one of",
                             {"backend": "numpy"}),
    # ---- segment_packbits ----
    "segment/x-rank": Case(F.segment_packbits, (np.ones((2, 5), bool), np.array([0, 5])),
                           ValueError, r"segment_packbits: x must have rank 1, got shape "
                           r"\(2, 5\)", static=(1,)),
    "segment/indptr-rank": Case(F.segment_packbits,
                                (np.ones(10, bool), np.zeros((2, 2), np.int32)), ValueError,
                                r"segment_packbits: indptr must have rank 1, got shape "
                                r"\(2, 2\)", static=(1,)),
    "segment/indptr-float": Case(F.segment_packbits,
                                 (np.ones(10, bool), np.array([0.0, 5.0], F32)), TypeError,
                                 r"segment_packbits: indptr must be an integer array, got "
                                 r"float32", static=(1,)),
    "segment/indptr-empty": Case(F.segment_packbits, (np.ones(10, bool), np.zeros(0, np.int32)),
                                 ValueError, r"segment_packbits: indptr needs at least one "
                                 r"element", static=(1,)),
    "segment/decreasing": Case(F.segment_packbits,
                               (np.ones(10, bool), np.array([0, 5, 3], np.int32)), ValueError,
                               r"segment_packbits: indptr must be non-decreasing from >= 0 to "
                               r"<= len\(x\) = 10, got \[0, 5, 3\]", static=(1,)),
    "segment/past-end": Case(F.segment_packbits,
                             (np.ones(10, bool), np.array([0, 4, 12], np.int32)), ValueError,
                             r"segment_packbits: indptr .* len\(x\) = 10, got \[0, 4, 12\]",
                             modes=("eager",)),
    "segment/negative": Case(F.segment_packbits,
                             (np.ones(10, bool), np.array([-1, 4], np.int32)), ValueError,
                             r"segment_packbits: indptr .* >= 0 .*got \[-1, 4\]",
                             modes=("eager",)),
    "segment/traced-without-total": Case(
        F.segment_packbits, (np.ones(10, bool), np.array([0, 4, 10], np.int32)), ValueError,
        r"segment_packbits: indptr is traced \(under jit\).* total_bytes", modes=("jit",)),
    "segment/total-negative": Case(F.segment_packbits,
                                   (np.ones(10, bool), np.array([0, 10], np.int32)),
                                   ValueError, r"segment_packbits: total_bytes=-1 must be a "
                                   r"non-negative int", {"total_bytes": -1}),
    "segment/total-float": Case(F.segment_packbits,
                                (np.ones(10, bool), np.array([0, 10], np.int32)),
                                ValueError, r"segment_packbits: total_bytes=2.5 must be a "
                                r"non-negative int", {"total_bytes": 2.5}),
    "segment/bitorder": Case(F.segment_packbits,
                             (np.ones(10, bool), np.array([0, 10], np.int32), "lsb"),
                             ValueError, r"segment_packbits: bitorder='lsb' must be 'big' or "
                             r"'little'", static=(1,)),
    "segment/backend": Case(F.segment_packbits, (np.ones(10, bool), np.array([0, 10])),
                            ValueError, r"segment_packbits: backend='triton' is not one of",
                            {"backend": "triton"}, static=(1,)),
}

PARAMS = [pytest.param(name, mode, id=f"{name}-{mode}")
          for name, case in CASES.items() for mode in case.modes]


def _call(case: Case, mode: str):
    if mode == "eager":
        return case.fn(*case.args, **case.kwargs)
    dyn = [i for i, a in enumerate(case.args)
           if isinstance(a, np.ndarray) and i not in case.static]

    def traced(*arrays):
        full = list(case.args)
        for i, a in zip(dyn, arrays):
            full[i] = a
        return case.fn(*full, **case.kwargs)

    return jax.jit(traced)(*[case.args[i] for i in dyn])


@pytest.mark.parametrize("name, mode", PARAMS)
def test_error(name, mode):
    case = CASES[name]
    with pytest.raises(case.exc, match=case.match):
        _call(case, mode)


def test_error_cases_are_valid_when_fixed():
    """Each family of cases above is one argument away from a valid call: the valid
    calls below succeed, so the errors are caused by the argument under test."""
    F.fp4_quantize(bf16(8, 32), one())
    F.fp4_quantize(bf16(8, 32), np.ones(8, F32))
    F.fp4_quantize(bf16(2, 4, 32), np.ones(8, F32))
    F.fp4_quantize(bf16(4, 64), None, 32, True)
    F.nvfp4_quantize(bf16(4, 32), one(), SfLayout.layout_8x4)
    F.mxfp4_quantize(bf16(4, 32), sfLayout=SfLayout.layout_linear)
    F.nvfp4_batched_quantize(bf16(2, 4, 32), np.ones(4, F32))
    F.mxfp8_quantize(bf16(4, 32), alignment=96, sf_swizzle_layout=SfLayout.layout_8x4)
    F.e2m1_and_ufp8sf_scale_to_float(u8(4, 16), u8(128, 4), np.ones(1, F32))
    F.e2m1_and_ufp8sf_scale_to_float(u8(4, 16), u8(4, 2), None, 16, 1, False)
    F.e2m1_and_ufp8sf_scale_to_float(u8(4, 16), u8(8, 4), None, 16, 1, True, True)
    F.mxfp4_dequantize(u8(4, 16), u8(128, 4))
    F.mxfp4_dequantize_host(u8(4, 32), u8(4, 2))
    F.mxfp4_dequantize_host(u8(4, 24), u8(4, 3), 16)
    F.mxfp8_dequantize_host(u8(4, 32), u8(512))
    F.mxfp8_dequantize_host(u8(4, 64), u8(8), False)
    F.block_scale_interleave(bf16(2, 4, 3))
    F.block_scale_interleave_reverse(u8(512), 4, 2)
    F.block_scale_interleave_reverse(u8(32), 4, 2, SfLayout.layout_8x4)
    F.packbits(np.ones(8, bool), "little")
    F.segment_packbits(np.ones(10, bool), np.array([0, 4, 10], np.int32), "little")
    F.segment_packbits(np.ones(10, bool), np.array([0, 4, 10], np.int32), total_bytes=0)
    jax.jit(lambda x, p: F.segment_packbits(x, p, total_bytes=3))(
        np.ones(10, bool), np.array([0, 4, 10], np.int32))


def test_nvfp4_quantize_per_token_and_shuffle_argument_errors():
    """``per_token_activation`` and ``do_shuffle`` (implemented since the first version of
    this file): their extra argument checks (SPEC 5.3)."""
    with pytest.raises(TypeError, match=r"nvfp4_quantize: a has dtype float8_e4m3fn"):
        F.nvfp4_quantize(np.ones((4, 32), E4M3), 0.5, per_token_activation=True)
    with pytest.raises(ValueError, match=r"nvfp4_quantize: a must have rank 2"):
        F.nvfp4_quantize(bf16(2, 4, 32), 0.5, per_token_activation=True)
    with pytest.raises(ValueError, match=r"nvfp4_quantize: do_shuffle=True needs "
                       r"sfLayout=layout_128x4"):
        F.nvfp4_quantize(bf16(128, 64), one(), SfLayout.layout_8x4, do_shuffle=True)
    for shape in ((100, 64), (128, 48), (2, 128, 64)):
        with pytest.raises(ValueError, match=r"nvfp4_quantize: do_shuffle=True needs .*M % 128"
                           r".*K % 64.*got shape " + re.escape(str(shape))):
            F.nvfp4_quantize(bf16(*shape), one(), do_shuffle=True)


# ---------------------------------------------------------------------------
# Error contract beyond the individual checks (SPEC 8.10): the op the user called and the
# argument names of its signature, and TypeError for every wrong dtype.
# ---------------------------------------------------------------------------

NAMING = {
    # name: (callable, exception, regex naming the called op and its own argument)
    "nvfp4_quantize/dtype": (lambda: F.nvfp4_quantize(np.ones((4, 32), F32), one()),
                             TypeError, r"^nvfp4_quantize: a has dtype float32"),
    "nvfp4_quantize/K": (lambda: F.nvfp4_quantize(bf16(4, 24), one()), ValueError,
                         r"^nvfp4_quantize: .*\ba\b.* = 24 is not a multiple of 16"),
    "nvfp4_quantize/scale": (lambda: F.nvfp4_quantize(bf16(4, 32), np.ones(3, F32)),
                             ValueError, r"^nvfp4_quantize: a_global_sf has 3 elements"),
    "mxfp4_quantize/dtype": (lambda: F.mxfp4_quantize(np.ones((4, 32), F32)), TypeError,
                             r"^mxfp4_quantize: a has dtype float32"),
    "mxfp4_dequantize/scale-size": (lambda: F.mxfp4_dequantize(u8(4, 16), u8(4, 2)),
                                    ValueError, r"^mxfp4_dequantize: a_sf has 8 bytes"),
    "mxfp8_quantize/layout": (lambda: F.mxfp8_quantize(bf16(4, 32), sf_swizzle_layout=5),
                              ValueError, r"^mxfp8_quantize: sf_swizzle_layout=5"),
    "mxfp8_dequantize_host/layout": (
        lambda: F.mxfp8_dequantize_host(u8(4, 32), u8(512), sf_swizzle_layout=4), ValueError,
        r"^mxfp8_dequantize_host: sf_swizzle_layout=4"),
    "reverse/layout": (lambda: F.block_scale_interleave_reverse(u8(512), 4, 2, 7), ValueError,
                       r"^block_scale_interleave_reverse: layout=7"),
    "e2m1/global-dtype": (lambda: F.e2m1_and_ufp8sf_scale_to_float(
        u8(4, 8), u8(128, 4), np.ones(1, np.int32)), TypeError,
        r"^e2m1_and_ufp8sf_scale_to_float: global_scale_tensor .*int32"),
}


@pytest.mark.parametrize("name", NAMING)
def test_error_names_the_called_op_and_argument(name):
    fn, exc, match = NAMING[name]
    with pytest.raises(exc, match=match):
        fn()
