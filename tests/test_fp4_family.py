"""The rest of FlashInfer's FP4 surface, bitwise against the NumPy oracle on every platform
and backend: per-token NVFP4 (with row selection), ``do_shuffle``, the shuffles, the masked
grouped quantizer, the 4over6 recipe, the FP4 KV cache, SwiGLU + NVFP4, and the dequantizers
to 16-bit types. Plus jit/vmap, bad input and a KV-cache round trip in a jitted attention
step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import np_reference as R
import numpy as np
import pytest
from conftest import (
    BF16,
    assert_bytes_equal,
    assert_f32_bits_equal,
    random_input,
    run,
    seed_of,
    typical_scale,
    with_backends,
)

import jax_fp4 as F
from jax_fp4 import SfLayout

S_INV = np.float32(1.0 / 2688.0)
FOS_SETTINGS = [dict(err_mode=m, err_fast_math=f, e4m3_use_256=u)
                for m in ("MAE", "MSE") for f in (False, True) for u in (False, True)]


def _fos_id(fos):
    return f"{fos['err_mode']}{'-fast' if fos['err_fast_math'] else ''}" \
           f"{'-256' if fos['e4m3_use_256'] else ''}"


def _assert_all(got, want, what):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        if w.dtype == np.float32:
            assert_f32_bits_equal(g, w, f"{what}[{i}]")
        else:
            assert_bytes_equal(g, w, f"{what}[{i}]")


# ---- per-token NVFP4 (SPEC 4.2.2, 4.3) ----


@pytest.mark.parametrize("layout", list(SfLayout), ids=lambda v: v.name)
@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@with_backends("shape,dtype", [((130, 64), np.float16), ((3, 48), BF16)],
               twin=lambda shape, dtype: shape[0] == 3)
def test_per_token(platform, shape, dtype, backend, layout, exact):
    rng = np.random.default_rng(seed_of("per_token", shape, layout, exact))
    x = random_input(rng, shape, dtype)
    x[1] = 0  # a zero row: scale bytes 0x7F (fast) as FlashInfer's CUDA kernel writes
    got = run(F.nvfp4_quantize, x, S_INV, layout, per_token_activation=True, exact=exact,
              backend=backend, platform=platform)
    want = R.nvfp4_quantize(x, S_INV, int(layout), per_token_activation=True, exact=exact)
    _assert_all(got, want, "per-token")
    assert got[2][1] == 0.0  # the zero row's per-token scale


@with_backends("rows", [128, 5], twin=lambda rows: rows == 5)
def test_per_token_row_selection(platform, rows, backend):
    rng = np.random.default_rng(seed_of("idx", rows))
    x = random_input(rng, (rows, 32), BF16)
    idx = rng.integers(-3, rows, rows + 4).astype(np.int32)  # negatives select nothing
    got = run(F.nvfp4_quantize, x, S_INV, SfLayout.layout_128x4, per_token_activation=True,
              expanded_idx_to_permuted_idx=idx, backend=backend, platform=platform)
    want = R.nvfp4_quantize(x, S_INV, 0, per_token_activation=True,
                            expanded_idx_to_permuted_idx=idx)
    _assert_all(got, want, "per-token idx")
    unselected = np.setdiff1d(np.arange(rows), idx[:rows])
    assert (got[0][unselected] == 0).all() and (got[2][unselected] == 0).all()


def test_per_token_row_selection_out_of_range_is_rejected():
    x = np.ones((4, 32), np.float16)
    with pytest.raises(ValueError, match=r"nvfp4_quantize: expanded_idx_to_permuted_idx.*>= M = 4"):
        F.nvfp4_quantize(x, S_INV, per_token_activation=True,
                         expanded_idx_to_permuted_idx=np.array([0, 4, 1, 2], np.int32))


def test_per_token_row_selection_traced_out_of_range_is_dropped():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 32)), jnp.float16)
    idx = jnp.array([0, 9, -1, 2], jnp.int32)
    q, sf, p = jax.jit(lambda i: F.nvfp4_quantize(
        x, S_INV, per_token_activation=True, expanded_idx_to_permuted_idx=i))(idx)
    want = R.nvfp4_quantize(np.asarray(x), S_INV, 0, per_token_activation=True,
                            expanded_idx_to_permuted_idx=np.array([0, -1, -1, 2], np.int32))
    _assert_all((q, sf, p), want, "dropped indices")


# ---- do_shuffle and the shuffles (SPEC 5.3, 5.11, 5.12) ----


@with_backends("per_token", [False, True], twin=lambda per_token: not per_token)
def test_do_shuffle(platform, per_token, backend):
    rng = np.random.default_rng(seed_of("shuffle", per_token))
    x = random_input(rng, (256, 128), BF16)
    scale = S_INV if per_token else typical_scale(x)
    got = run(F.nvfp4_quantize, x, scale, SfLayout.layout_128x4, True,
              per_token_activation=per_token, backend=backend, platform=platform)
    want = R.nvfp4_quantize(x, scale, 0, True, per_token_activation=per_token)
    _assert_all(got, want, "do_shuffle")
    assert got[1].shape == (256, 8)  # 128x4 bytes in the linear shape (SPEC 7.14)


@with_backends("tile,dtype", [(128, np.float32), (64, np.uint8), (256, BF16)],
               twin=lambda tile, dtype: tile == 64)
def test_shuffle_matrix_a(platform, tile, dtype, backend):
    rng = np.random.default_rng(seed_of("sma", tile))
    x = rng.integers(0, 100, (96, 40)).astype(dtype)
    got = run(F.shuffle_matrix_a, x, tile, backend=backend, platform=platform)
    assert_bytes_equal(got, R.shuffle_matrix_a(x, tile), "shuffle_matrix_a")


@with_backends("dtype,cols", [(np.uint8, 5), (BF16, 8), (np.uint8, 48)],
               twin=lambda dtype, cols: cols == 5)
def test_shuffle_matrix_sf_a(platform, dtype, cols, backend):
    rng = np.random.default_rng(seed_of("smsfa", cols))
    x = rng.integers(0, 255, (256, cols)).astype(dtype)
    got = run(F.shuffle_matrix_sf_a, x, 128, backend=backend, platform=platform)
    assert_bytes_equal(got, R.shuffle_matrix_sf_a(x, 128), "shuffle_matrix_sf_a")


def test_shuffle_errors():
    with pytest.raises(ValueError, match=r"shuffle_matrix_a: M = 20 is not a multiple of .* 16"):
        F.shuffle_matrix_a(np.zeros((20, 4), np.uint8), 64)
    with pytest.raises(ValueError, match=r"shuffle_matrix_sf_a: M = 64 is not a multiple of 128"):
        F.shuffle_matrix_sf_a(np.zeros((64, 4), np.uint8), 128)
    with pytest.raises(ValueError, match=r"do_shuffle=True needs a 2-D input with M % 128"):
        F.nvfp4_quantize(np.zeros((64, 64), np.float16), 1.0, do_shuffle=True)
    with pytest.raises(ValueError, match=r"do_shuffle=True needs sfLayout=layout_128x4"):
        F.nvfp4_quantize(np.zeros((128, 64), np.float16), 1.0, SfLayout.layout_8x4, True)


# ---- masked grouped quantizer (SPEC 5.10) ----


@with_backends("shape,mask", [((3, 130, 48), (0, 57, 200)), ((2, 8, 32), (8, 3))],
               twin=lambda shape, mask: shape[1] == 8)
def test_grouped(platform, shape, mask, backend):
    rng = np.random.default_rng(seed_of("grouped", shape))
    x = random_input(rng, shape, np.float16)
    gs = np.array([typical_scale(x[i]) for i in range(shape[0])], np.float32)
    m = np.array(mask, np.int32)
    got = run(F.scaled_fp4_grouped_quantize, x, m, gs, backend=backend, platform=platform)
    want = R.scaled_fp4_grouped_quantize(x, m, gs)
    _assert_all(got, want, "grouped")
    assert got[1].dtype == jnp.float8_e4m3fn


# ---- 4over6 (SPEC 4.4) ----


@pytest.mark.parametrize("fos", FOS_SETTINGS, ids=_fos_id)
@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize("per_token", [False, True], ids=["global", "per_token"])
def test_four_over_six(platform, fos, exact, per_token):
    rng = np.random.default_rng(seed_of("4over6", _fos_id(fos), exact, per_token))
    x = random_input(rng, (40, 64), np.float16)
    x[3] = 0
    scale = S_INV if per_token else typical_scale(x, 1536.0 if fos["e4m3_use_256"] else 2688.0)
    kw = dict(per_token_activation=per_token, exact=exact, four_over_six=fos)
    got = run(F.nvfp4_quantize, x, scale, SfLayout.layout_128x4, backend="auto",
              platform=platform, **kw)
    want = R.nvfp4_quantize(x, scale, 0, **kw)
    _assert_all(got, want, "4over6")


def test_four_over_six_twin_and_batched(platform):
    rng = np.random.default_rng(7)
    x = random_input(rng, (2, 24, 32), BF16)
    fos = dict(err_mode="MSE", err_fast_math=False, e4m3_use_256=False)
    want = R.nvfp4_batched_quantize(x, np.float32(300.0), four_over_six=fos)
    for backend in ("auto", "xla"):
        got = run(F.nvfp4_batched_quantize, x, np.float32(300.0), backend=backend,
                  platform=platform, four_over_six=fos)
        _assert_all(got, want, f"batched 4over6 {backend}")


def test_four_over_six_errors():
    x = np.ones((4, 32), np.float16)
    with pytest.raises(ValueError, match=r"four_over_six\['err_mode'\]='L1'"):
        F.fp4_quantize(x, 1.0, four_over_six={"err_mode": "L1"})
    with pytest.raises(ValueError, match=r"fp4_quantize: four_over_six needs NVFP4"):
        F.fp4_quantize(x, None, 32, True, four_over_six=True)


# ---- FP4 KV cache (SPEC 5.13-5.15) ----


@with_backends("shape,dtype", [((37, 64), BF16), ((8, 128), np.float16)],
               twin=lambda shape, dtype: shape[0] == 8)
def test_kv_quantize_dequantize(platform, shape, dtype, backend):
    rng = np.random.default_rng(seed_of("kv", shape))
    x = random_input(rng, shape, dtype, spread=1.0)
    g = np.float32(np.abs(x.astype(np.float32)).max() / 2688.0)
    q, sf = run(F.nvfp4_kv_quantize, x, g, backend=backend, platform=platform)
    rq, rsf = R.nvfp4_kv_quantize(x, g)
    assert_bytes_equal(q, rq, "kv codes")
    assert_bytes_equal(sf, rsf, "kv scales")
    for out in (BF16, np.float16):
        got = run(F.nvfp4_kv_dequantize, q, sf, g, out, backend=backend, platform=platform)
        assert_bytes_equal(got, R.nvfp4_kv_dequantize(rq, rsf, g, out), "kv dequantize")


@pytest.mark.parametrize("kv_layout", ["HND", "NHD"])
def test_quantize_paged_kv_cache(platform, kv_layout):
    rng = np.random.default_rng(seed_of("paged", kv_layout))
    k = random_input(rng, (3, 4, 8, 64), BF16, spread=1.0)
    v = random_input(rng, (3, 4, 8, 64), BF16, spread=1.0)
    for backend in ("auto", "xla"):
        (kq, vq), (ks, vs), kd, vd = run(F.nvfp4_quantize_paged_kv_cache, k, v, kv_layout,
                                         backend=backend, platform=platform)
        (rkq, rvq), (rks, rvs), rkd, rvd = R.nvfp4_quantize_paged_kv_cache(k, v, kv_layout)
        for got, want, what in ((kq, rkq, "k"), (vq, rvq, "v"), (ks, rks, "k sf"),
                                (vs, rvs, "v sf")):
            assert_bytes_equal(got, want, f"{kv_layout} {what} ({backend})")
        assert_f32_bits_equal(np.float32([kd, vd]), np.float32([rkd, rvd]), "decode scales")


def test_kv_dequantize_paged_matches_per_page_dequantize(platform):
    rng = np.random.default_rng(11)
    pages, page_size, heads, dim = 5, 4, 2, 64
    k = random_input(rng, (pages * page_size, heads * dim), BF16, spread=1.0)
    g = np.float32(np.abs(k.astype(np.float32)).max() / 2688.0)
    q, sf = R.nvfp4_kv_quantize(k, g)
    q_cache = q.reshape(pages, page_size, heads, dim // 2)        # NHD
    s_cache = sf.reshape(pages, page_size, heads, dim // 16)
    tables = np.array([[3, 0, 9], [1, -1, 4]], np.int32)          # 9 and -1: out of range
    lens = np.array([10, 7], np.int32)
    out0 = np.full((2, 12, heads, dim), 7.0, BF16)
    ok, ov = F.nvfp4_kv_dequantize_paged((q_cache, q_cache), (s_cache, s_cache), tables, lens,
                                         g, g, out0, out0)
    deq = R.nvfp4_kv_dequantize(q, sf, g, BF16).reshape(pages, page_size, heads, dim)
    want = out0.copy()
    for b in range(2):
        for t in range(lens[b]):
            page = tables[b, t // page_size]
            if 0 <= page < pages:
                want[b, t] = deq[page, t % page_size]
    assert_bytes_equal(np.asarray(ok), want, "paged k")
    assert_bytes_equal(np.asarray(ov), want, "paged v")


def test_kv_cache_round_trip_in_jitted_attention():
    """An FP4 KV cache inside a jitted toy decode step: quantize K/V, dequantize, attend."""
    rng = np.random.default_rng(3)
    seq, heads, dim = 64, 2, 64
    q = jnp.asarray(rng.standard_normal((heads, dim)), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal((seq, heads * dim)), jnp.bfloat16)
    v = jnp.asarray(rng.standard_normal((seq, heads * dim)), jnp.bfloat16)

    def attend(k, v):
        kk = k.reshape(seq, heads, dim).astype(jnp.float32)
        vv = v.reshape(seq, heads, dim).astype(jnp.float32)
        w = jax.nn.softmax(jnp.einsum("hd,shd->hs", q.astype(jnp.float32), kk) / 8.0, -1)
        return jnp.einsum("hs,shd->hd", w, vv)

    @jax.jit
    def step(k, v):
        gk = jnp.max(jnp.abs(k)).astype(jnp.float32) / 2688.0
        gv = jnp.max(jnp.abs(v)).astype(jnp.float32) / 2688.0
        kq, ks = F.nvfp4_kv_quantize(k, gk)
        vq, vs = F.nvfp4_kv_quantize(v, gv)
        return attend(F.nvfp4_kv_dequantize(kq, ks, gk), F.nvfp4_kv_dequantize(vq, vs, gv))

    exact = attend(k, v)
    approx = step(k, v)
    rel = float(jnp.linalg.norm(approx - exact) / jnp.linalg.norm(exact))
    assert 0.0 < rel < 0.15, rel
    assert "jax_fp4_fp4_quantize" in step.lower(k, v).as_text()


def test_kv_errors():
    with pytest.raises(TypeError, match=r"nvfp4_kv_quantize: input has dtype float32"):
        F.nvfp4_kv_quantize(np.zeros((4, 32), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"nvfp4_kv_dequantize: block_scales has shape \(4, 1\)"):
        F.nvfp4_kv_dequantize(np.zeros((4, 16), np.uint8), np.zeros((4, 1), np.uint8), 1.0)
    with pytest.raises(ValueError, match=r"page_size = 6 must be a multiple of 4"):
        F.nvfp4_quantize_paged_kv_cache(np.zeros((1, 2, 6, 64), np.float16),
                                        np.zeros((1, 2, 6, 64), np.float16))


# ---- SwiGLU + NVFP4 (not bit-exact with FlashInfer's fast exp: tolerance) ----


def test_silu_and_mul_nvfp4_quantize(platform):
    rng = np.random.default_rng(5)
    x = random_input(rng, (16, 128), BF16, spread=0.5)
    q, sf = run(F.silu_and_mul_nvfp4_quantize, x, np.float32(100.0), backend="auto",
                platform=platform)
    g, u = x[:, :64].astype(np.float32), x[:, 64:].astype(np.float32)
    h = (g / (1 + np.exp(-g)) * u).astype(BF16)
    rq, rsf = R.fp4_quantize(h, np.float32(100.0))
    # The 16-bit intermediate may differ in the last bit from NumPy's exp: compare the
    # dequantized values with a tolerance instead of bytes.
    deq = R.e2m1_and_ufp8sf_scale_to_float(q, sf, np.float32([0.01]))
    rdeq = R.e2m1_and_ufp8sf_scale_to_float(rq, rsf, np.float32([0.01]))
    assert np.mean(deq == rdeq) > 0.98
    assert np.abs(deq - rdeq).max() <= np.abs(rdeq).max() * 0.35


# ---- dequantizers to 16-bit types (model code) ----


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16],
                         ids=lambda d: jnp.dtype(d).name)
def test_dequantize_to_dtype(platform, dtype):
    rng = np.random.default_rng(seed_of("deq", jnp.dtype(dtype).name))
    x = random_input(rng, (2, 33, 64), BF16, spread=1.0)
    s = typical_scale(x)
    q, sf = R.fp4_quantize(x, s)
    want = R.e2m1_and_ufp8sf_scale_to_float(q.reshape(66, 32), sf, np.float32(1) / s)
    for backend in ("auto", "xla"):
        got = run(F.nvfp4_dequantize, q, sf, s, SfLayout.layout_128x4, dtype, backend=backend,
                  platform=platform)
        assert got.shape == (2, 33, 64)
        assert_bytes_equal(got, want.reshape(2, 33, 64).astype(dtype), f"nvfp4 {backend}")
    q8, sf8 = R.mxfp8_quantize(x)
    want8 = R.mxfp8_dequantize_host(q8.reshape(66, 64), sf8)
    got8 = run(F.mxfp8_dequantize, q8, sf8, SfLayout.layout_128x4, dtype, backend="auto",
               platform=platform)
    assert_bytes_equal(got8, want8.reshape(2, 33, 64).astype(dtype), "mxfp8")


# ---- vmap of the new primitives: a Python loop, one custom call ----


def test_vmap_per_token_and_kv():
    rng = np.random.default_rng(9)
    x = random_input(rng, (3, 20, 32), BF16, spread=1.0)
    f = jax.vmap(lambda a: F.nvfp4_quantize(a, S_INV, per_token_activation=True))
    got = f(x)
    for i in range(3):
        _assert_all(tuple(np.asarray(o[i]) for o in got),
                    R.nvfp4_quantize(x[i], S_INV, 0, per_token_activation=True), f"row {i}")
    assert jax.jit(f).lower(x).as_text().count("jax_fp4_nvfp4_per_token_quantize") == 1
    g = np.float32([0.01, 0.02, 0.03])
    kv = jax.vmap(F.nvfp4_kv_quantize)(x, g)
    for i in range(3):
        _assert_all(tuple(np.asarray(o[i]) for o in kv), R.nvfp4_kv_quantize(x[i], g[i]),
                    f"kv {i}")


# ---- jax.nn.scaled_matmul interop (issue 3) ----


def _dequantized(data, scales, block):
    return np.asarray(data.astype(jnp.float32)) * np.repeat(
        np.asarray(scales.astype(jnp.float32)), block, axis=-1)


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "mxfp8"])
def test_scaled_matmul_operands_match_dequantize(fmt):
    rng = np.random.default_rng(seed_of("interop", fmt))
    x = random_input(rng, (130, 64), BF16, spread=1.0)
    s = typical_scale(x)
    if fmt == "nvfp4":
        q, sf = F.nvfp4_quantize(x, s)
        d, sc = F.nvfp4_to_scaled_matmul(q, sf)
        want = R.e2m1_and_ufp8sf_scale_to_float(np.asarray(q), np.asarray(sf), np.float32([1.0]))
        block = 16
        assert d.dtype == jnp.float4_e2m1fn and sc.dtype == jnp.float8_e4m3fn
    elif fmt == "mxfp4":
        q, sf = F.mxfp4_quantize(x)
        d, sc = F.mxfp4_to_scaled_matmul(q, sf)
        want = R.mxfp4_dequantize(np.asarray(q), np.asarray(sf))
        block = 32
        assert sc.dtype == jnp.float8_e8m0fnu
    else:
        q, sf = F.mxfp8_quantize(x)
        d, sc = F.mxfp8_to_scaled_matmul(q, sf)
        want = R.mxfp8_dequantize_host(np.asarray(q).view(np.uint8), np.asarray(sf))
        block = 32
    np.testing.assert_array_equal(_dequantized(d, sc, block), want)


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp8"])
def test_scaled_matmul_on_gpu(fmt):
    from conftest import require_platform

    require_platform("cuda")
    gpu = jax.devices("cuda")[0]
    rng = np.random.default_rng(seed_of("scaled_matmul", fmt))
    a = jax.device_put(random_input(rng, (128, 256), BF16, spread=0.5), gpu)
    b = jax.device_put(random_input(rng, (64, 256), BF16, spread=0.5), gpu)
    if fmt == "nvfp4":
        sa, sb = typical_scale(a), typical_scale(b)
        (da, ca), (db, cb) = (F.nvfp4_to_scaled_matmul(*F.nvfp4_quantize(a, sa)),
                              F.nvfp4_to_scaled_matmul(*F.nvfp4_quantize(b, sb)))
        ref_a = F.nvfp4_dequantize(*F.nvfp4_quantize(a, sa), sa)
        ref_b = F.nvfp4_dequantize(*F.nvfp4_quantize(b, sb), sb)
        post = 1.0 / (float(sa) * float(sb))
    else:
        (da, ca), (db, cb) = (F.mxfp8_to_scaled_matmul(*F.mxfp8_quantize(a)),
                              F.mxfp8_to_scaled_matmul(*F.mxfp8_quantize(b)))
        ref_a = F.mxfp8_dequantize(*F.mxfp8_quantize(a))
        ref_b = F.mxfp8_dequantize(*F.mxfp8_quantize(b))
        post = 1.0
    out = jax.nn.scaled_matmul(da[None], db[None], ca[None], cb[None])[0] * post
    ref = ref_a @ ref_b.T
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=2e-2,
                               atol=2e-2 * float(jnp.max(jnp.abs(ref))))


def test_nvfp4_global_scale_helper():
    x = np.array([[1.0, -4.0, np.nan], [0.5, 2.0, -np.inf], [0.0, 0.0, 0.0]], np.float32)
    got = np.asarray(F.nvfp4_global_scale(x))
    assert got.dtype == np.float32 and got.tolist() == [2688.0 / 4.0]
    rows = np.asarray(F.nvfp4_global_scale(x, per_row=True))
    assert rows.tolist() == [2688.0 / 4.0, 2688.0 / 2.0, 1.0]  # NaN/inf ignored, zero row 1.0
    assert np.asarray(F.nvfp4_global_scale(np.zeros((4, 16), np.float16))).tolist() == [1.0]
    with pytest.raises(TypeError, match="nvfp4_global_scale.*x"):
        F.nvfp4_global_scale(np.zeros((4, 16), np.int32))
