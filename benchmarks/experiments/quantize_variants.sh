#!/usr/bin/env bash
# Times kernel variants of the NVFP4 quantizer with ncu, one rebuild each (H100/H200):
#   A: the committed kernel;  B: one block per thread per trip, <= 40 registers.
# Also times a write-only XLA kernel (1 GiB of float32 from iota) as the write ceiling.
# Usage on the GPU machine, after a build: bash benchmarks/experiments/quantize_variants.sh
set -uo pipefail
OUT=${OUT:-/tmp/variants}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
ncu_time() {  # $1 tag, $2 target
  ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      --csv -k regex:'BlockQuantize|BlockDequantize' --log-file "$OUT/$1.csv" \
      $PY benchmarks/bench.py --ncu-target "$2" --ncu-reps 5 --out "$OUT" > "$OUT/$1.log" 2>&1
  $PY benchmarks/ncu_parse.py --min-count 5 "$OUT/$1.csv" | grep "per call"
}
echo "A nvfp4:"; ncu_time A_nvfp4 nvfp4_128x4,16384,16384
cp ffi/cuda/quantize.cu /tmp/quantize.cu.orig
sed -i 's/static constexpr int kPerTrip = kLoads >= 4 ? 1 : 4 \/ kLoads;/static constexpr int kPerTrip = kLoads >= 2 ? 1 : 2;/; s/__launch_bounds__(kThreads, 4)/__launch_bounds__(kThreads, 6)/' ffi/cuda/quantize.cu
grep -n "kPerTrip =\|launch_bounds__(kThreads, 6)" ffi/cuda/quantize.cu
$PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu -Ccmake.define.JAX_FP4_CUDA_ARCHS=90a > "$OUT/build_B.log" 2>&1
echo "B nvfp4:"; ncu_time B_nvfp4 nvfp4_128x4,16384,16384
echo "B mxfp8:"; ncu_time B_mxfp8 mxfp8_128x4,16384,16384
cp /tmp/quantize.cu.orig ffi/cuda/quantize.cu
cat > /tmp/write_only.py <<'PY'
import jax, jax.numpy as jnp
f = jax.jit(lambda v: (jnp.arange(16384 * 16384, dtype=jnp.float32) * v).reshape(16384, 16384))
x = jnp.float32(1.5)
for _ in range(6): f(x).block_until_ready()
PY
ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    --csv --log-file "$OUT/write_only.csv" $PY /tmp/write_only.py > /dev/null 2>&1
echo "write-only (XLA iota*v, 1 GiB float32):"; grep -i "duration\|bytes" "$OUT/write_only.csv" | tail -n 6 | cut -c1-220
