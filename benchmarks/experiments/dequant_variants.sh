#!/usr/bin/env bash
# Times dequantize kernel variants with ncu against a same-bytes copy kernel (H100/H200), one
# rebuild each: groups per trip (kGroupsPerTrip) and the minimum resident blocks per SM of
# __launch_bounds__ (register cap: 8 blocks of 256 threads = 32 registers), and for the
# bulk-store (TMA) kernel of large problems its shared-memory stages and groups per trip
# (stages 0: the register-store kernel for large problems too).
# Usage on the GPU machine, after a build:
#   VARIANTS="4:0:0 4:0:1:4 4:0:2:2" bash benchmarks/experiments/dequant_variants.sh
set -uo pipefail
OUT=${OUT:-/tmp/variants}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
source benchmarks/experiments/variant_common.sh
TARGETS=${TARGETS:-"nvfp4_dequant,16384,16384 mxfp8_dequant,16384,16384 nvfp4_dequant,128,16384 nvfp4_dequant,1,4096"}
cp ffi/cuda/dequantize.cu /tmp/dequantize.cu.orig
for v in ${VARIANTS:-"4:0 2:8 2:6 1:8"}; do
  IFS=: read -r trip blocks stages btrip <<< "$v"
  cp /tmp/dequantize.cu.orig ffi/cuda/dequantize.cu
  sed -i "s/constexpr int kGroupsPerTrip = 4;/constexpr int kGroupsPerTrip = $trip;/" ffi/cuda/dequantize.cu
  if [ "${stages:-1}" = 0 ]; then
    sed -i "s/else if (ComputeMajor() >= 9)/else if (false)/" ffi/cuda/dequantize.cu
  elif [ -n "${stages:-}" ]; then
    sed -i -e "s/constexpr int kBulkStages = 1;/constexpr int kBulkStages = $stages;/" \
        -e "s/constexpr int kBulkGroupsPerTrip = 2;/constexpr int kBulkGroupsPerTrip = ${btrip:-2};/" ffi/cuda/dequantize.cu
  fi
  v=${v//:/_}
  [ "$blocks" != 0 ] && sed -i "s/__global__ void __launch_bounds__(kThreads)\$/__global__ void __launch_bounds__(kThreads, $blocks)/" ffi/cuda/dequantize.cu
  grep -n "kGroupsPerTrip = \|__launch_bounds__" ffi/cuda/dequantize.cu | head -4
  time_variant "v_$v" "groups/trip $trip, min blocks/SM $blocks, bulk stages ${stages:-1} x ${btrip:-2} groups"
done
cp /tmp/dequantize.cu.orig ffi/cuda/dequantize.cu
rebuild /dev/null
