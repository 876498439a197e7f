"""Cross-checks every op on every available platform against the NumPy oracle (bitwise).

A quick standalone check for a GPU machine (the pytest suite is the full version):
    python scripts/cross_check.py [auto,xla]
JAX_FP4_CROSS_PLATFORMS=cuda limits it to the GPU (compute-sanitizer runs it that way).
"""

import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import np_reference as R  # noqa: E402

import jax_fp4 as F  # noqa: E402

BACKENDS = sys.argv[1].split(",") if len(sys.argv) > 1 else ["auto", "xla"]
platforms = ["cpu"] + (["cuda"] if F.cuda_available() else [])
if os.environ.get("JAX_FP4_CROSS_PLATFORMS"):  # e.g. "cuda" under compute-sanitizer
    platforms = [p for p in platforms if p in os.environ["JAX_FP4_CROSS_PLATFORMS"].split(",")]
rng = np.random.default_rng(1234)
failures, checks = [], 0


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.float32:
        return bool(((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))).all())
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def check(name, got, want):
    global checks
    checks += 1
    ok = all(same_bits(g, w) for g, w in zip(got, want))
    if not ok:
        failures.append(name)
        if len(failures) < 20:
            print("MISMATCH", name)


for platform in platforms:
    dev = jax.devices(platform)[0]
    put = lambda a: jax.device_put(a, dev)  # noqa: E731
    for backend in BACKENDS:
        tag = f"{platform}/{backend}"
        for dt in (np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn):
            for m, k in ((3, 48), (130, 64), (1, 16), (33, 96), (257, 256)):
                for layout in (0, 1, 2):
                    for sv in (16, 32):
                        if k % sv:
                            continue
                        x = (rng.standard_normal((m, k)) * rng.choice([1e-3, 1, 100])).astype(dt)
                        x.reshape(-1)[rng.integers(0, x.size, 3)] = 0
                        rowwise = rng.random() < 0.5
                        gs = (2688 / np.abs(x.astype(np.float32)).max()
                              * rng.uniform(0.5, 2, m if rowwise else 1)).astype(np.float32)
                        for inv in (False, True):
                            for exact in (False, True):
                                g = (1 / gs).astype(np.float32) if inv else gs
                                kw = dict(sf_vec_size=sv, sf_use_ue8m0=sv == 32,
                                          is_sf_swizzled_layout=layout != 2,
                                          is_sf_8x4_layout=layout == 1,
                                          is_global_scale_inversed=inv)
                                want = R.fp4_quantize(x, g, exact=exact, **kw)
                                got = F.fp4_quantize(put(x), put(g), exact=exact, backend=backend,
                                                     **kw)
                                check(f"{tag} fp4 {np.dtype(dt).name} {m}x{k} l{layout} sv{sv} "
                                      f"inv{inv} exact{exact} rowwise{rowwise}", got, want)
        for dt in (np.float16, ml_dtypes.bfloat16, np.float32):
            for m, k in ((3, 64), (130, 96), (1, 32)):
                for layout in (0, 1, 2):
                    for al in (32, 128):
                        x = (rng.standard_normal((m, k)) * rng.choice([1e-3, 1, 100])).astype(dt)
                        want = R.mxfp8_quantize(x, sf_swizzle_layout=layout, alignment=al)
                        q, s = F.mxfp8_quantize(put(x), sf_swizzle_layout=F.SfLayout(layout),
                                                alignment=al, backend=backend)
                        check(f"{tag} mxfp8 {np.dtype(dt).name} {m}x{k} l{layout} a{al}",
                              (np.asarray(q).view(np.uint8), s), want)
                        if al == 32:
                            qq = np.asarray(q).view(np.uint8)
                            check(f"{tag} mxfp8 dequant {m}x{k} l{layout}",
                                  (F.mxfp8_dequantize_host(put(qq), put(s), sf_swizzle_layout=F.SfLayout(layout), backend=backend),),
                                  (R.mxfp8_dequantize_host(qq, want[1], sf_swizzle_layout=layout),))
        for layout in (0, 1, 2):
            for sv, ut in ((16, 1), (32, 0), (16, 0), (32, 1)):
                m, k = 37, 64
                codes = rng.integers(0, 256, (m, k // 2), dtype=np.uint8)
                sf = rng.integers(0, 256, F.sf_buffer_size(layout, m, k // sv), dtype=np.uint8)
                g = np.float32(rng.choice([1e-30, 0.37, 3e5]))
                want = R.e2m1_and_ufp8sf_scale_to_float(codes, sf, np.array([g]), sv, ut,
                                                        layout != 2, layout == 1)
                got = F.e2m1_and_ufp8sf_scale_to_float(put(codes), put(sf), g, sv, ut, layout != 2,
                                                       layout == 1, backend=backend)
                check(f"{tag} e2m1 dequant l{layout} sv{sv} t{ut}", (got,), (want,))
        w = rng.integers(0, 256, (9, 32), dtype=np.uint8)
        sc = rng.integers(0, 256, (9, 2), dtype=np.uint8)
        sc[0] = [0, 255]
        check(f"{tag} mxfp4_dequantize_host", (F.mxfp4_dequantize_host(put(w), put(sc), backend=backend),),
              (R.mxfp4_dequantize_host(w, sc),))
        for shape in ((5, 7), (3, 130, 9)):
            for dt in (np.uint8, ml_dtypes.bfloat16):
                x = rng.integers(0, 200, shape).astype(dt)
                check(f"{tag} interleave {shape} {np.dtype(dt).name}",
                      (F.block_scale_interleave(put(x), backend=backend),), (R.block_scale_interleave(x),))
        bits = rng.integers(0, 2, 1001).astype(bool)
        for order in ("big", "little"):
            check(f"{tag} packbits {order}", (F.packbits(put(bits), order, backend=backend),),
                  (np.packbits(bits, bitorder=order),))
            ind = np.array([0, 3, 3, 20, 1001])
            check(f"{tag} segment_packbits {order}", F.segment_packbits(put(bits), ind, order, backend=backend),
                  R.segment_packbits(bits, ind, order))
        # vmap: one scale matrix per batch element, one launch.
        xb = rng.standard_normal((3, 130, 64)).astype(ml_dtypes.bfloat16)
        gb = np.float32(700.0)
        got = jax.vmap(lambda a: F.fp4_quantize(a, gb, backend=backend))(put(xb))
        want = [np.stack(t) for t in zip(*[R.fp4_quantize(xb[i], np.array([gb])) for i in range(3)])]
        check(f"{tag} vmap fp4", got, want)

        # Issue 4 surface: per-token, shuffles, grouped, KV cache.
        for m, k in ((128, 64), (256, 128), (3, 48)):
            x = (rng.standard_normal((m, k)) * rng.choice([1e-2, 1, 50])).astype(ml_dtypes.bfloat16)
            x[1] = 0  # a zero row: scale bytes 0x7F in the fast recipe
            s_inv = np.float32(1 / 2688)
            for exact in (False, True):
                for layout in (0, 1, 2):
                    shuffle = layout == 0 and m % 128 == 0 and exact
                    want = R.nvfp4_quantize(x, s_inv, layout, shuffle, per_token_activation=True,
                                            exact=exact)
                    got = F.nvfp4_quantize(put(x), s_inv, F.SfLayout(layout), shuffle,
                                           per_token_activation=True, exact=exact, backend=backend)
                    check(f"{tag} per-token {m}x{k} l{layout} exact{exact} shuffle{shuffle}", got, want)
            idx = rng.integers(-2, m, m).astype(np.int32)
            want = R.nvfp4_quantize(x, s_inv, 0, per_token_activation=True,
                                    expanded_idx_to_permuted_idx=idx)
            got = F.nvfp4_quantize(put(x), s_inv, F.SfLayout(0), per_token_activation=True,
                                   expanded_idx_to_permuted_idx=put(idx), backend=backend)
            check(f"{tag} per-token idx {m}x{k}", got, want)
            if m % 128 == 0:
                gs = np.float32(2688 / 50)
                check(f"{tag} do_shuffle {m}x{k}",
                      F.nvfp4_quantize(put(x), gs, do_shuffle=True, backend=backend),
                      R.nvfp4_quantize(x, gs, do_shuffle=True))
                for tile in (128, 64):
                    check(f"{tag} shuffle_matrix_a {tile}",
                          (F.shuffle_matrix_a(put(x), tile, backend=backend),), (R.shuffle_matrix_a(x, tile),))
                sfl = rng.integers(0, 255, (m, 5)).astype(np.uint8)
                check(f"{tag} shuffle_matrix_sf_a", (F.shuffle_matrix_sf_a(put(sfl), 128, backend=backend),),
                      (R.shuffle_matrix_sf_a(sfl, 128),))
            g = np.float32(np.abs(x.astype(np.float32)).max() / 2688)
            if k % 16 == 0:
                want = R.nvfp4_kv_quantize(x, g)
                got = F.nvfp4_kv_quantize(put(x), g, backend=backend)
                check(f"{tag} kv quantize {m}x{k}", got, want)
                for odt in (ml_dtypes.bfloat16, np.float16):
                    check(f"{tag} kv dequantize {m}x{k} {np.dtype(odt).name}",
                          (F.nvfp4_kv_dequantize(put(np.asarray(got[0])), put(np.asarray(got[1])), g, odt, backend=backend),),
                          (R.nvfp4_kv_dequantize(want[0], want[1], g, odt),))
        # 4over6 (SPEC 4.4): all 16 switch combinations, global and per-token scales.
        x46 = (rng.standard_normal((130, 64)) * np.exp(rng.standard_normal((130, 1)))).astype(np.float16)
        x46[2] = 0
        for bits in range(8):
            fos = dict(err_mode="MSE" if bits & 1 else "MAE", err_fast_math=bool(bits & 2),
                       e4m3_use_256=bool(bits & 4))
            for exact in (False, True):
                gs = np.float32((1536 if bits & 4 else 2688) / np.abs(x46.astype(np.float32)).max())
                check(f"{tag} 4over6 {bits} exact{exact}",
                      F.nvfp4_quantize(put(x46), gs, F.SfLayout(2), exact=exact, four_over_six=fos, backend=backend),
                      R.nvfp4_quantize(x46, gs, 2, exact=exact, four_over_six=fos))
                check(f"{tag} 4over6 per-token {bits} exact{exact}",
                      F.nvfp4_quantize(put(x46), np.float32(1 / 2688), F.SfLayout(0), per_token_activation=True,
                                       exact=exact, four_over_six=fos, backend=backend),
                      R.nvfp4_quantize(x46, np.float32(1 / 2688), 0, per_token_activation=True, exact=exact,
                                       four_over_six=fos))
        xg = rng.standard_normal((3, 130, 64)).astype(np.float16)
        mask = np.array([0, 57, 200], np.int32)
        gsg = np.float32([100, 300, 700])
        check(f"{tag} grouped", F.scaled_fp4_grouped_quantize(put(xg), put(mask), put(gsg), backend=backend),
              R.scaled_fp4_grouped_quantize(xg, mask, gsg))
        kc = rng.standard_normal((3, 4, 8, 64)).astype(ml_dtypes.bfloat16)
        vc = rng.standard_normal((3, 4, 8, 64)).astype(ml_dtypes.bfloat16)
        for lay in ("HND", "NHD"):
            (kq, vq), (ks, vs), kd, vd = F.nvfp4_quantize_paged_kv_cache(put(kc), put(vc), lay, backend=backend)
            (rkq, rvq), (rks, rvs), rkd, rvd = R.nvfp4_quantize_paged_kv_cache(kc, vc, lay)
            check(f"{tag} paged kv cache {lay}", (kq, vq, ks, vs, kd, vd),
                  (rkq, rvq, rks, rvs, np.float32(rkd), np.float32(rvd)))

print(f"{checks} checks on {platforms}: {len(failures)} mismatches")
sys.exit(1 if failures else 0)
