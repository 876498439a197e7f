#!/usr/bin/env bash
# Where the dequantizer's time goes: the committed kernel with parts of its work replaced by
# constants (one rebuild each), timed with ncu against a same-bytes copy kernel. A variant
# that gets much faster names the part that limits the kernel.
# Usage on the GPU machine, after a build:
#   VARIANTS="base noscale nocodes noloads" bash benchmarks/experiments/dequant_ablation.sh
set -uo pipefail
OUT=${OUT:-/tmp/ablation}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
source benchmarks/experiments/variant_common.sh
TARGETS=${TARGETS:-"nvfp4_dequant,16384,16384 mxfp8_dequant,16384,16384"}
SRC=ffi/cuda/dequantize.cu
# Each edit covers the per-group loads and, for FP4 row tiles, the shared-memory path.
NOSCALE='s/in.scale_byte = row.sf\[.*\];/in.scale_byte = 0x38u + (g \& 1u);/;s/in\[u\].scale_byte = scale_bytes\[.*\];/in[u].scale_byte = 0x38u + (local \& 1u);/;s/if \(smem_scales\) CopyTileScales/if (false) CopyTileScales/'
NOCODES='s/in(\[u\])?.bits = reinterpret_cast<const uint(32|64)_t\*>\(codes\)\[g\];/in\1.bits = g * 0x9E3779B9u;/'
NOGSCALE='s/in.g_scale = \*row.global_scale;/in.g_scale = 1.0f;/;s/tile.g_scale = \*tile.row.global_scale;/tile.g_scale = 1.0f;/'
cp $SRC /tmp/dequantize.cu.orig
for v in ${VARIANTS:-"base noscale nocodes noloads"}; do
  cp /tmp/dequantize.cu.orig $SRC
  case $v in
    base) ;;
    noscale) sed -i -E "$NOSCALE" $SRC ;;
    nocodes) sed -i -E "$NOCODES" $SRC ;;
    nogscale) sed -i -E "$NOGSCALE" $SRC ;;
    noloads) sed -i -E -e "$NOSCALE" -e "$NOCODES" -e "$NOGSCALE" $SRC ;;
    flat) sed -i "s/constexpr bool kRowTiles = true;/constexpr bool kRowTiles = false;/" $SRC ;;
    bulkmin6) sed -i '/^__global__ void __launch_bounds__(kThreads)$/{N;s/(kThreads)\n    BlockDequantizeBulkKernel/(kThreads, 6)\n    BlockDequantizeBulkKernel/}' $SRC ;;
    bulkmin8) sed -i '/^__global__ void __launch_bounds__(kThreads)$/{N;s/(kThreads)\n    BlockDequantizeBulkKernel/(kThreads, 8)\n    BlockDequantizeBulkKernel/}' $SRC ;;
    minblocks8) sed -i "s/__global__ void __launch_bounds__(kThreads)\$/__global__ void __launch_bounds__(kThreads, 8)/" $SRC ;;
    *) echo "unknown variant $v"; continue ;;
  esac
  diff /tmp/dequantize.cu.orig $SRC | grep '^>' | head -4
  time_variant "a_$v" "$v"
done
cp /tmp/dequantize.cu.orig $SRC
rebuild /dev/null
