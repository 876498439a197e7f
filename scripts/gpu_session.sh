#!/usr/bin/env bash
# Everything one device call does, in one command on the GPU machine (no network): build for
# the local GPU only, run the CUDA tests and the cross-check, time the large kernels with ncu
# (plus ncu's detail sections for a few), run the benchmark suite, and optionally the
# >2^31-element test ("large") and compute-sanitizer ("sanitize"); logs packed under $OUT
# (the device tool returns at most 8 files). Knobs: STEPS (default "build test cross ncu
# detail bench"; also bwmix dqvariants qab ablation decode cmdbuf legacy shardcpu large sanitize sansuite probe pdl), ARCHS (default 90a), NCU_DETAIL (targets), BENCH_ARGS, PYTEST_ARGS.
set -uo pipefail
OUT=${OUT:-/tmp/jax_fp4_session}
LOG=$OUT/logs
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
STEPS=${STEPS:-"build test cross ncu detail bench"}
cd "$(dirname "$0")/.."
has() { [[ " $STEPS " == *" $1 "* ]]; }
stamp() { echo "== $1: $(date -u +%T)"; }

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -1; git log --oneline -1 2>/dev/null
  $PY -c "import sys, jax, jaxlib, numpy; print(sys.version.split()[0], 'jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'numpy', numpy.__version__); print(jax.devices())"
} > "$LOG/env.txt" 2>&1
cat "$LOG/env.txt"

if has build; then
  stamp build; t0=$(date +%s)
  $PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu \
      -Ccmake.define.JAX_FP4_CUDA_ARCHS="${ARCHS:-90a}" > "$LOG/build.log" 2>&1
  echo "build: exit $? in $(( $(date +%s) - t0 )) s"; tail -n 2 "$LOG/build.log"
  $PY -c "import jax_fp4; print('cuda_available', jax_fp4.cuda_available())"
fi
if has test; then
  stamp test
  JAX_FP4_REQUIRE_CUDA=1 timeout 300 $PY -m pytest ${PYTEST_ARGS:-tests -m cuda -n 8} -q \
      -p no:cacheprovider > "$LOG/test_gpu.log" 2>&1
  echo "tests: exit $?"; tail -n 3 "$LOG/test_gpu.log"; grep -m 20 "^FAILED" "$LOG/test_gpu.log"
fi
if has cross; then
  stamp cross
  timeout 240 $PY scripts/cross_check.py ${CROSS_ARGS:-auto} > "$LOG/cross_check.log" 2>&1
  echo "cross_check: exit $?"; tail -n 3 "$LOG/cross_check.log"
fi
if has ncu; then
  stamp ncu
  NCU_TARGETS=${NCU_TARGETS:-"nvfp4_128x4,16384,16384 mxfp8_128x4,16384,16384 mxfp4_128x4,16384,16384 nvfp4_dequant,16384,16384 mxfp8_dequant,16384,16384 packbits,16384,16384"} \
  OUT=$LOG timeout 240 bash scripts/gpu_perf.sh > "$LOG/ncu_run.log" 2>&1
  cat "$LOG/ncu_summary.txt" 2>/dev/null
fi
if has bwmix; then
  stamp "bandwidth of read:write mixes (no format math)"
  nvcc -O3 -std=c++17 -arch=sm_90a benchmarks/experiments/bandwidth_mix.cu -o /tmp/bwmix \
      && timeout 120 /tmp/bwmix | tee "$LOG/bandwidth_mix.txt"
fi
if has dqvariants; then
  stamp "dequantize variants"
  OUT=$LOG/variants bash benchmarks/experiments/dequant_variants.sh 2>&1 | tee "$LOG/dequant_variants.txt"
fi
if has qab; then
  stamp "decode quantizers: tree vs base vs ablations"
  OUT=$LOG/qab bash benchmarks/experiments/quantize_decode_ab.sh 2>&1 | tee "$LOG/quantize_decode_ab.txt"
fi
if has ablation; then
  stamp "dequantize ablation"
  OUT=$LOG/ablation bash benchmarks/experiments/dequant_ablation.sh 2>&1 | tee "$LOG/dequant_ablation.txt"
fi
if has twinncu; then
  # Kernel time of an op and of its pure-JAX twin (all the twin's kernels), same shape.
  stamp "ncu: ours vs the twin"
  mkdir -p "$LOG/twin"
  $PY benchmarks/bench.py --ncu-script --ncu-targets "${TWIN_TARGETS:-nvfp4_128x4,16384,16384 nvfp4_128x4,16384,16384:xla}" \
      > "$LOG/twin/ncu_twin.sh"
  OUT=$LOG/twin timeout ${TWIN_TIMEOUT:-150} bash "$LOG/twin/ncu_twin.sh" > "$LOG/twin/run.log" 2>&1
  echo "twin ncu: exit $?"; tail -n 12 "$LOG/twin/run.log"
fi
if has detail; then
  stamp detail
  for t in ${NCU_DETAIL:-nvfp4_128x4,16384,16384 nvfp4_dequant,16384,16384}; do
    timeout 120 ncu --clock-control none --profile-from-start off -c 1 \
        -k regex:'BlockQuantize|BlockDequantize|PerToken|Pack|Interleave' \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats --section Occupancy --section LaunchStats \
        --section MemoryWorkloadAnalysis \
        --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_miss.sum \
        $PY benchmarks/bench.py --ncu-target "$t" --ncu-reps 1 --out "$LOG" \
        > "$LOG/detail_${t//,/_}.txt" 2>&1
    echo "detail $t: exit $?"
    grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Issue Slots Busy|Issued Ipc|Achieved Occupancy|Registers Per|No Eligible|Warp Cycles Per Issued|dram__bytes|lts__t_sectors" \
        "$LOG/detail_${t//,/_}.txt" | head -24
  done
fi
if has decode; then
  # Kernel time vs an XLA copy kernel of the same bytes (ncu, one process per set): the
  # decode grid (M <= 128) and the 16384 x 16384 set.
  UNITS=$(ncu --help 2>/dev/null | grep -q -- '--print-units' && echo '--print-units base')
  for set in decode large; do
    stamp "kernel vs copy: $set"
    targets=""; [ "$set" = large ] && targets="--targets large"
    timeout 240 ncu --clock-control none --metrics gpu__time_duration.sum --csv $UNITS \
        --profile-from-start off --log-file "$LOG/vscopy_$set.csv" \
        $PY benchmarks/kernel_vs_copy.py run --manifest "$LOG/vscopy_$set.json" $targets \
        > "$LOG/vscopy_${set}_run.log" 2>&1
    rc=$?
    # When ncu itself crashes (it has, at start-up) the profiled process lives on and would
    # share the GPU with the next step.
    pkill -f "kernel_vs_copy.py run" && sleep 2
    echo "kernel vs copy ($set): exit $rc"
    $PY benchmarks/kernel_vs_copy.py parse "$LOG/vscopy_$set.csv" --manifest "$LOG/vscopy_$set.json" \
        | tee "$LOG/vscopy_${set}_summary.txt"
  done
fi
if has cmdbuf; then
  stamp cmdbuf
  timeout 240 $PY scripts/cmdbuf_check.py "$LOG" > "$LOG/cmdbuf.log" 2>&1
  echo "cmdbuf: exit $?"; cut -c1-400 "$LOG/cmdbuf.log"
fi
if has legacy; then
  # The software paths of GPUs below sm_89 (E4M3 in software) and below sm_100 (E2M1):
  # PTX for compute_75 only, JIT-compiled by the driver for this GPU with __CUDA_ARCH__ 750.
  stamp legacy
  $PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu75 \
      -Ccmake.define.JAX_FP4_CUDA_ARCHS=75-virtual > "$LOG/build75.log" 2>&1
  echo "build compute_75 PTX: exit $?"
  JAX_FP4_REQUIRE_CUDA=1 timeout 300 $PY -m pytest tests -m cuda -n 8 -q -p no:cacheprovider \
      > "$LOG/test_gpu_compute75.log" 2>&1
  echo "tests (compute_75 PTX): exit $?"; tail -n 2 "$LOG/test_gpu_compute75.log"
  grep -m 10 "^FAILED" "$LOG/test_gpu_compute75.log"
  $PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu \
      -Ccmake.define.JAX_FP4_CUDA_ARCHS="${ARCHS:-90a}" > /dev/null 2>&1
fi
if has shardcpu; then
  # The sharding tests under this machine's jax (8 forced CPU devices, as in CI).
  stamp "sharding tests on CPU devices"
  JAX_PLATFORMS=cpu timeout 300 $PY -m pytest tests/test_sharding.py tests/test_sharding_rows.py \
      tests/test_distributed.py -q -n 4 -p no:cacheprovider > "$LOG/test_sharding_cpu.log" 2>&1
  echo "sharding (CPU devices): exit $?"; tail -n 2 "$LOG/test_sharding_cpu.log"
  grep -m 10 "^FAILED" "$LOG/test_sharding_cpu.log"
fi
if has large; then
  stamp large
  JAX_FP4_REQUIRE_CUDA=1 timeout 300 $PY -m pytest tests/test_large.py -q -p no:cacheprovider \
      > "$LOG/test_large.log" 2>&1
  echo "large: exit $?"; tail -n 3 "$LOG/test_large.log"
fi
if has sanitize; then
  # compute-sanitizer over scripts/cross_check.py on the GPU: every op, awkward shapes (odd
  # rows, padding, masks, batches), results compared with the NumPy oracle as well.
  for tool in ${SAN_TOOLS:-memcheck initcheck racecheck}; do
    stamp "sanitize $tool"
    JAX_FP4_CROSS_PLATFORMS=cuda timeout ${SAN_TIMEOUT:-200} compute-sanitizer --tool "$tool" \
        --error-exitcode 99 --print-limit 1000 $PY scripts/cross_check.py auto \
        > "$LOG/sanitize_$tool.log" 2>&1
    echo "sanitize $tool: exit $?"; grep -E "ERROR SUMMARY|checks|MISMATCH" "$LOG/sanitize_$tool.log" | tail -n 4
    # Where the reported accesses come from: kernels (device side) and Python call sites.
    grep -oE "(by thread \([^)]*\) in block \([^)]*\)|Uninitialized access|Invalid [a-z_ ]+|access by cudaMemcpy source)" \
        "$LOG/sanitize_$tool.log" | sort | uniq -c | head
    grep -oE "(Device Frame:[^ ]+|in [a-zA-Z_0-9]+\.py:[0-9]+$)" "$LOG/sanitize_$tool.log" \
        | grep -vE "pxla|profiler|pjit|traceback_util|dispatch|core\.py|lax\.py|array_methods" \
        | sort | uniq -c | sort -rn | head
  done
fi
if has sansuite; then
  # compute-sanitizer over the whole CUDA test suite: one process per (tool, chunk of tests),
  # SAN_JOBS at a time, a dead process resumed after the test it died in
  # (scripts/sanitize_suite.py). SAN_XLA_FLAGS: XLA's command buffers and autotuning off
  # under the tools by default (knob to compare).
  stamp "sanitize the CUDA test suite"
  XLA_FLAGS="${SAN_XLA_FLAGS---xla_gpu_enable_command_buffer= --xla_gpu_autotune_level=0}" \
      timeout "${SAN_WALL:-560}" $PY scripts/sanitize_suite.py --out "$LOG/san" \
      --tools ${SAN_TOOLS:-memcheck racecheck initcheck} --chunk "${SAN_CHUNK:-30}" \
      --jobs "${SAN_JOBS:-10}" --timeout "${SAN_TIMEOUT:-400}" --budget "${SAN_BUDGET:-420}" \
      > "$LOG/sansuite.log" 2>&1
  echo "sansuite: exit $?"; cat "$LOG/san/summary.txt" 2>/dev/null || tail -n 20 "$LOG/sansuite.log"
  cp "$LOG/san/summary.txt" "$OUT/sansuite_summary.txt" 2>/dev/null
  tar czf "$OUT/sansuite_logs.tgz" -C "$LOG" san
fi
if has probe; then
  stamp "initcheck probe"
  timeout 120 compute-sanitizer --tool initcheck --print-limit 50 $PY scripts/initcheck_probe.py \
      > "$LOG/initcheck_probe.log" 2>&1
  echo "initcheck probe (no jax_fp4 code): exit $?"; grep -E "ERROR SUMMARY" "$LOG/initcheck_probe.log"
  grep -oE "(Uninitialized [a-z_ ]+|at [a-z_]+fusion)" "$LOG/initcheck_probe.log" | sort | uniq -c | head -5
fi
if has pdl; then
  stamp pdl
  timeout 200 $PY benchmarks/pdl.py > "$LOG/pdl.log" 2>&1
  echo "pdl: exit $?"; cat "$LOG/pdl.log" | tail -n 12
fi
if has bench; then
  stamp bench
  timeout 300 $PY benchmarks/bench.py --out "$LOG" --budget-s 200 ${BENCH_ARGS:-} \
      > "$LOG/bench.log" 2>&1
  echo "bench: exit $?"; tail -n 45 "$LOG/bench.log"
fi
stamp pack
cp "$LOG"/bench_*.json "$LOG"/bench_*.png "$OUT"/ 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOG"
ls -la "$OUT"
