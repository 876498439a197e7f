#!/usr/bin/env bash
# Decode-shape quantizers: the working tree's kernels against a baseline quantize.cu and
# against ablations of the working tree, each rebuilt and timed with ncu next to a same-bytes
# copy kernel (kernel_vs_copy.py). Variants (VARIANTS, in order):
#   tree     the working tree as it is
#   base     $BASE_QUANTIZE (a quantize.cu from an earlier commit, e.g. carried under build/)
#   nopad    the tree without zeroing the scale buffer's padding rows (wrong bytes: timing only)
#   noencode the tree with the block scale and the codes replaced by bit copies (timing only)
# Usage on the GPU machine, after a build:
#   BASE_QUANTIZE=build/ab/quantize.cu bash benchmarks/experiments/quantize_decode_ab.sh
set -uo pipefail
OUT=${OUT:-/tmp/variants}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
source benchmarks/experiments/variant_common.sh
TARGETS=${TARGETS:-"nvfp4_128x4,1,4096 nvfp4_128x4,1,16384 nvfp4_128x4,16,16384 nvfp4_128x4,128,16384 mxfp4_128x4,1,16384 mxfp4_128x4,128,16384 mxfp8_128x4,1,16384 mxfp8_128x4,16,16384"}
SRC=ffi/cuda/quantize.cu
cp $SRC /tmp/quantize.cu.tree
for v in ${VARIANTS:-"tree base nopad noencode"}; do
  cp /tmp/quantize.cu.tree $SRC
  case $v in
    base) cp "${BASE_QUANTIZE:?set BASE_QUANTIZE}" $SRC ;;
    nopad)
      sed -i 's/; i < p.pad_chunks; i += stride) {$/; i < 0u; i += stride) {/' $SRC ;;
    noencode)
      # Split kernel: no scale, codes are input bits; one-block-per-thread kernel: the same.
      sed -i -e 's/^      const BlockScale bs = q.Scale(amax);$/      const BlockScale bs{__float_as_uint(amax) \& 0xFFu, 1.0f};/' \
             -e 's/^      EncodeCodes<Q, In>(f, raw, amax, nan_free, bs.out_scale, w);$/      w[0] = raw[0].x ^ raw[0].w;/' \
             -e 's/^        code = QuantizeBlock<Q, In, kFourOverSix>(work\[u\].raw, q, w);$/        w[0] = work[u].raw[0].x; code = w[0] \& 0xFFu;/' $SRC ;;
  esac
  echo "variant $v: $(diff /tmp/quantize.cu.tree $SRC | grep -c '^>') lines changed"
  time_variant "q_$v" "quantize variant: $v"
done
cp /tmp/quantize.cu.tree $SRC
rebuild /dev/null
