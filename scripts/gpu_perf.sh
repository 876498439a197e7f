#!/usr/bin/env bash
# Kernel-level timings with Nsight Compute for the large quantize/dequantize cases, after a
# build; logs and ncu CSVs under $OUT. Usage on the GPU machine: bash scripts/gpu_perf.sh
set -uo pipefail
OUT=${OUT:-/tmp/jax_fp4_perf}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
cd "$(dirname "$0")/.."
TARGETS=${NCU_TARGETS:-"nvfp4_128x4,16384,16384 mxfp8_128x4,16384,16384 mxfp4_128x4,16384,16384 nvfp4_dequant,16384,16384"}
for t in $TARGETS; do
  tag=ncu_${t//,/_}
  ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      --csv -k regex:'BlockQuantize|BlockDequantize|Pack|Interleave|Segment|memcpy' \
      --log-file "$OUT/$tag.csv" \
      python3 benchmarks/bench.py --ncu-target "$t" --ncu-tag "$tag" --out "$OUT" > "$OUT/$tag.log" 2>&1
  echo "$tag: exit $?"
done
python3 benchmarks/ncu_parse.py --min-count 5 "$OUT"/ncu_*.csv --json "$OUT/ncu_summary.json" \
  | tee "$OUT/ncu_summary.txt"
