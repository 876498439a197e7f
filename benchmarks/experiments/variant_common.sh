# Shared by the variant scripts (sourced from the repository root): rebuild the package for
# sm_90a, and time one rebuilt variant's kernels with ncu against a same-bytes copy kernel.
# Expects OUT and TARGETS set by the caller; sets PY and UNITS.
PY=${PYTHON:-python3}
UNITS=$(ncu --help 2>/dev/null | grep -q -- '--print-units' && echo '--print-units base')

rebuild() {  # rebuild LOG
  $PY -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu \
      -Ccmake.define.JAX_FP4_CUDA_ARCHS=90a > "$1" 2>&1
}

time_variant() {  # time_variant TAG TITLE: rebuild, profile, print the op/copy table
  rebuild "$OUT/build_$1.log" || { echo "build failed"; return 1; }
  timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv $UNITS \
      --profile-from-start off --log-file "$OUT/$1.csv" \
      $PY benchmarks/kernel_vs_copy.py run --manifest "$OUT/$1.json" --targets "$TARGETS" \
      > "$OUT/$1.log" 2>&1
  echo "== $2"
  $PY benchmarks/kernel_vs_copy.py parse "$OUT/$1.csv" --manifest "$OUT/$1.json" | tail -n +3
}
