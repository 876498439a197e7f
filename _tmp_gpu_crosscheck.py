import sys, importlib, types
sys.path.insert(0, "tests")
import test_reference_selfcheck as T
R = T.R
import numpy as np, jax, jax.numpy as jnp, ml_dtypes
from functools import partial
print(jax.__version__, jax.devices())
cpu, gpu = jax.devices("cpu")[0], jax.devices("gpu")[0]
rng = np.random.default_rng(11)
def both(fn, *args):
    outs = []
    for d in (cpu, gpu):
        a = [jax.device_put(x, d) for x in args]
        outs.append(jax.tree.map(np.asarray, jax.jit(fn)(*a)))
    return outs
def bits(x):
    x = np.asarray(x)
    return x.view(np.uint32) if x.dtype == np.float32 else x
def check(name, fn, *args):
    c, g = both(fn, *args)
    c, g = jax.tree.leaves(c), jax.tree.leaves(g)
    bad = sum(int((bits(a) != bits(b)).sum()) for a, b in zip(c, g))
    print(f"{name}: {'OK' if bad == 0 else 'MISMATCH %d' % bad}")
M, K = 300, 512
x = rng.standard_normal((M, K)).astype(np.float32) * np.exp2(rng.integers(-40, 40, (M, 1)))
x *= np.exp2(rng.integers(-24, 4, (M, K // 16, 1))).repeat(16, -1).reshape(M, K)
sp = np.array([0, -0.0, np.inf, -np.inf, np.nan, 1e-39, -1e-39, 6, 448, 2.5, 5, 65504, 3e-5, 1.2e-38], np.float32)
x = np.where(rng.random((M, K)) < 0.03, sp[rng.integers(0, len(sp), (M, K))], x).astype(np.float32)
x[:2] = 0; x[2, :16] = -0.0; x[3] = 1.1754944e-38 * rng.random(K)
for dt in (jnp.bfloat16, jnp.float16, jnp.float8_e4m3fn):
    xd = np.clip(np.nan_to_num(x, nan=1.0), -448, 448).astype(ml_dtypes.float8_e4m3fn) if dt == jnp.float8_e4m3fn else x.astype(dt)
    for S in (np.float32([2688 / 3.0]), np.float32([1e-30]), np.float32([3e37]), np.float32([0.0]),
              rng.uniform(1e-3, 1e5, M).astype(np.float32)):
        for inv in (False, True):
            for exact in (False, True):
                for sv, ue in ((16, False), (32, True)):
                    check(f"fp4 {dt.__name__} S={S[0]:.3g} n={S.size} inv={inv} exact={exact} sv={sv}",
                          partial(R.fp4_quantize, sf_vec_size=sv, use_ue8m0=ue, layout=0, inversed=inv, exact=exact), xd, S)
for dt in (np.float32, jnp.bfloat16, jnp.float16):
    check(f"mxfp8 {np.dtype(dt).name}", partial(R.mxfp8_quantize, layout=1, alignment=64), x.astype(dt))
codes = rng.integers(0, 256, (M, K // 2)).astype(np.uint8)
for t in (0, 1):
    for g in (np.float32([1 / 413.5]), np.float32([3e-41]), np.float32([2e-39])):
        sf = rng.integers(0, 256, (R.sf_buffer_size(0, M, K // 16),)).astype(np.uint8)
        check(f"e2m1_to_float t={t} g={g[0]:.3g}", partial(R.e2m1_and_ufp8sf_scale_to_float, sf_vec_size=16, ufp8_type=t, layout=0), codes, sf, g)
check("mxfp4_host", partial(R.mxfp4_dequantize_host, group_size=32), codes, rng.integers(0, 256, (M, K // 32)).astype(np.uint8))
check("mxfp8_host", partial(R.mxfp8_dequantize_host, layout=0), rng.integers(0, 256, (M, K)).astype(np.uint8), rng.integers(0, 256, (R.sf_buffer_size(0, M, K // 32),)).astype(np.uint8))
check("packbits", partial(R.packbits, bitorder="little"), x.reshape(-1))
check("segment_packbits", partial(R.segment_packbits, bitorder="big", total_bytes=100), (rng.random(500) < .5).astype(np.int32), np.array([0, 3, 3, 100, 400, 500], np.int32))
