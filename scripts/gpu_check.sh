#!/usr/bin/env bash
# One call on a GPU machine with no network: build the CUDA module, run the whole suite with
# the CUDA tests required, run the demo and the benchmarks, and write every log under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/jax_fp4_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -1;
  $PY -c "import sys, jax, jaxlib, numpy; print(sys.version.split()[0], 'jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'numpy', numpy.__version__); print(jax.devices())"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

t0=$(date +%s)
$PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu > "$OUT/build.log" 2>&1
echo "build: exit $? in $(( $(date +%s) - t0 )) s"; tail -n 3 "$OUT/build.log"
$PY -c "import jax_fp4; print('cuda_compiled', jax_fp4.cuda_compiled(), 'cuda_available', jax_fp4.cuda_available())"

$PY scripts/cross_check.py ${CROSS_ARGS:-auto,xla} > "$OUT/cross_check.log" 2>&1
echo "cross_check: exit $?"; tail -n 5 "$OUT/cross_check.log"

JAX_FP4_REQUIRE_CUDA=1 $PY -m pytest ${PYTEST_ARGS:-tests} -q -p no:cacheprovider > "$OUT/test_gpu.log" 2>&1
echo "tests (CPU and CUDA cases, CUDA required): exit $?"; tail -n 3 "$OUT/test_gpu.log"

if [ -f benchmarks/bench.py ] && [ -z "${SKIP_BENCH:-}" ]; then
  $PY benchmarks/bench.py --out "$OUT" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
  echo "bench: exit $?"; tail -n 40 "$OUT/bench.log"
fi
