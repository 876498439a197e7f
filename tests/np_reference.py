"""Independent NumPy oracle for jax_fp4, written from SPEC.md alone.

Pure NumPy + ml_dtypes (no jax). Device arithmetic (SPEC 1.2) is emulated with
explicit flush-to-zero and the table-driven fast reciprocal of SPEC 1.4; host
functions use plain IEEE float32. The FlashInfer-named operations at the bottom
take and return NumPy arrays with FlashInfer's argument names, defaults and
returned shapes (SPEC 5).

Conventions for the block recipes: ``x`` is a float32 ``[M, K]`` array (inputs
already widened exactly), per-row scales are float32 ``[M]`` arrays, and the
recipes return unpacked element codes ``uint8 [M, K]`` plus the logical scale
matrix ``uint8 [M, C]``.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
from pathlib import Path

import ml_dtypes
import numpy as np

__all__ = [
    "FLT_MAX",
    "ONE_SIXTH",
    "RCP6",
    "RCP448",
    "TABLE_SHA256",
    "ftz",
    "dmul",
    "dadd",
    "dsub",
    "ddiv",
    "hmul",
    "rcp",
    "rcp_table",
    "rcp_table_bit",
    "e2m1_encode",
    "e2m1_decode",
    "e4m3_encode",
    "e4m3_decode",
    "ue8m0_encode",
    "ue8m0_decode_device",
    "ue8m0_decode_bits",
    "ue8m0_decode_host",
    "pack_fp4",
    "unpack_fp4",
    "round_up",
    "LAYOUT_128x4",
    "LAYOUT_8x4",
    "LAYOUT_LINEAR",
    "sf_buffer_size",
    "sf_padded_shape",
    "sf_offsets",
    "swizzle",
    "unswizzle",
    "block_amax",
    "recipe_nvfp4_fast",
    "recipe_nvfp4_exact",
    "recipe_nvfp4_4over6",
    "recipe_nvfp4",
    "recipe_nvfp4_per_token",
    "recipe_mxfp4",
    "recipe_fp8_input",
    "recipe_mxfp8",
    "recipe_kv_quantize",
    "fp4_quantize",
    "nvfp4_quantize",
    "nvfp4_batched_quantize",
    "mxfp4_quantize",
    "mxfp4_dequantize",
    "mxfp4_dequantize_host",
    "block_scale_interleave",
    "block_scale_interleave_reverse",
    "e2m1_and_ufp8sf_scale_to_float",
    "scaled_fp4_grouped_quantize",
    "shuffle_matrix_a",
    "shuffle_matrix_sf_a",
    "nvfp4_kv_quantize",
    "nvfp4_kv_dequantize",
    "nvfp4_quantize_paged_kv_cache",
    "mxfp8_quantize",
    "mxfp8_dequantize_host",
    "packbits",
    "segment_packbits",
]

F32 = np.float32
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn

# SPEC 1.2 constants, given as bit patterns.
FLT_MAX = np.array(0x7F7FFFFF, np.uint32).view(F32)[()]
ONE_SIXTH = np.array(0x3E2AAAAB, np.uint32).view(F32)[()]
RCP6 = np.array(0x3E2AAAAB, np.uint32).view(F32)[()]
RCP448 = np.array(0x3B124925, np.uint32).view(F32)[()]
_TINY = F32(2.0**-126)  # smallest normal float32; below it the device flushes

TABLE_SHA256 = "28b0c3b27627c89c43c9e33adcfd9f1e2410d36e31519724a69208102c057cac"
TABLE_PATH = (
    Path(__file__).resolve().parents[1]
    / "jax_fp4"
    / "data"
    / "rcp_approx_ftz_f32_mismatch.bin.xz"
)
_TABLE: np.ndarray | None = None

LAYOUT_128x4, LAYOUT_8x4, LAYOUT_LINEAR = 0, 1, 2


def _quiet(fn):
    """Silence NumPy floating-point warnings: inf/NaN are expected values here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def _bits(x) -> np.ndarray:
    return _f32(x).view(np.uint32)


def _from_bits(b) -> np.ndarray:
    return np.asarray(b, dtype=np.uint32).view(F32)


def round_up(x: int, m: int) -> int:
    """Rounds ``x`` up to a multiple of ``m``."""
    return (x + m - 1) // m * m


# ---------------------------------------------------------------------------
# 1.2 / 1.4 arithmetic primitives
# ---------------------------------------------------------------------------


def ftz(x) -> np.ndarray:
    """Flushes float32 subnormals to a zero of the same sign (SPEC 1.1)."""
    x = _f32(x)
    return np.where(np.abs(x) < _TINY, np.copysign(F32(0), x), x).astype(F32)


@_quiet
def dmul(a, b) -> np.ndarray:
    """Device float32 product: flush operands, IEEE multiply, flush result."""
    return ftz(ftz(a) * ftz(b))


@_quiet
def dadd(a, b) -> np.ndarray:
    """Device float32 sum with flushing."""
    return ftz(ftz(a) + ftz(b))


@_quiet
def dsub(a, b) -> np.ndarray:
    """Device float32 difference with flushing."""
    return ftz(ftz(a) - ftz(b))


@_quiet
def ddiv(a, b) -> np.ndarray:
    """Device IEEE float32 division (``__fdiv_rn``) with flushing."""
    return ftz(ftz(a) / ftz(b))


@_quiet
def hmul(a, b) -> np.ndarray:
    """Host IEEE float32 product, no flushing."""
    return (_f32(a) * _f32(b)).astype(F32)


def rcp_table() -> np.ndarray:
    """Loads the SPEC 1.4 mismatch table as ``uint32[262144]`` (cached, checked)."""
    global _TABLE
    if _TABLE is None:
        raw = lzma.decompress(TABLE_PATH.read_bytes())
        digest = hashlib.sha256(raw).hexdigest()
        if digest != TABLE_SHA256:
            raise RuntimeError(f"rcp table {TABLE_PATH} has SHA-256 {digest}")
        _TABLE = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    return _TABLE


def rcp_table_bit(m) -> np.ndarray:
    """True where the 23-bit mantissa ``m`` deviates from RN in ``rcp`` (SPEC 1.4)."""
    m = np.asarray(m, dtype=np.uint32)
    return ((rcp_table()[m >> 5] >> (m & 31)) & 1).astype(bool)


@_quiet
def rcp(x) -> np.ndarray:
    """``rcp.approx.ftz.f32`` emulated with the mismatch table (SPEC 1.4)."""
    x = ftz(x)
    ax = np.abs(x)
    ax64 = ax.astype(np.float64)
    r = (1.0 / ax64).astype(F32)  # RN reciprocal; 0 -> inf, inf -> 0, NaN -> NaN
    finite = (ax > 0) & np.isfinite(ax)
    deviates = finite & rcp_table_bit(ax.view(np.uint32) & 0x7FFFFF)
    # ax * r is exact in float64 (24 x 24 bits), so this says exactly on which
    # side of 1/x the RN result lies; exact results (powers of two) never move.
    prod = ax64 * r.astype(np.float64)
    rb = r.view(np.uint32).astype(np.int64)
    rb = rb + (deviates & (prod < 1.0)) - (deviates & (prod > 1.0))
    r = rb.astype(np.uint32).view(F32)
    r = np.where(ax > F32(2.0**126), F32(0), r)  # true result below 2^-126: flushed
    return np.copysign(ftz(r), x).astype(F32)


# ---------------------------------------------------------------------------
# 2. Number formats
# ---------------------------------------------------------------------------

_E2M1_MAG = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], F32)
_E2M1_TABLE = np.concatenate([_E2M1_MAG, -_E2M1_MAG]).astype(F32)  # code 8 = -0.0


def e2m1_encode(y) -> np.ndarray:
    """E2M1 encode ``q4`` (SPEC 2.1): RNE on the grid, saturating, NaN -> 0x7."""
    y = _f32(y)
    a = np.abs(y)
    # Threshold table of SPEC 2.1; ties go to the even code (closed/open ends).
    mag = (
        (a > 0.25).astype(np.uint8)
        + (a >= 0.75)
        + (a > 1.25)
        + (a >= 1.75)
        + (a > 2.5)
        + (a >= 3.5)
        + (a > 5.0)
    ).astype(np.uint8)
    code = mag | (np.signbit(y).astype(np.uint8) << 3)
    return np.where(np.isnan(y), np.uint8(7), code).astype(np.uint8)


def e2m1_decode(codes, plus_zero_for_8: bool = False) -> np.ndarray:
    """E2M1 decode ``d4`` (SPEC 2.1); ``plus_zero_for_8``: the table of 5.7."""
    table = _E2M1_TABLE.copy()
    if plus_zero_for_8:
        table[8] = F32(0.0)
    return table[np.asarray(codes, dtype=np.uint8) & 0xF]


def _e4m3_table() -> np.ndarray:
    c = np.arange(256)
    e = (c >> 3) & 0xF
    m = c & 7
    mag = np.where(e == 0, m * 2.0**-9, (1 + m / 8.0) * 2.0 ** (e - 7))
    val = np.where(c & 0x80, -mag, mag)
    val[(c & 0x7F) == 0x7F] = np.nan
    return val.astype(F32)


_E4M3_TABLE = _e4m3_table()
_E4M3_POS = _E4M3_TABLE[:127].astype(np.float64)  # codes 0x00..0x7E, increasing


def e4m3_decode(codes) -> np.ndarray:
    """E4M3 decode ``d8`` (SPEC 2.2); 0x7F/0xFF -> NaN."""
    return _E4M3_TABLE[np.asarray(codes, dtype=np.uint8)]


@_quiet
def e4m3_encode(x) -> np.ndarray:
    """E4M3 encode ``q8`` (SPEC 2.2): clamp to 448, RNE, keep sign, NaN -> 0x7F."""
    x = _f32(x)
    a = np.minimum(np.abs(x).astype(np.float64), 448.0)  # NaN handled below
    a = np.where(np.isnan(a), 0.0, a)
    hi = np.searchsorted(_E4M3_POS, a, side="left").clip(0, 126)  # first value >= a
    lo = np.maximum(hi - 1, 0)
    vlo, vhi = _E4M3_POS[lo], _E4M3_POS[hi]
    dlo, dhi = a - vlo, vhi - a
    # Nearest grid value; on a tie the even code (codes are consecutive integers).
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    mag = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = mag | (np.signbit(x).astype(np.uint8) << 7)
    return np.where(np.isnan(x), np.uint8(0x7F), code).astype(np.uint8)


@_quiet
def ue8m0_encode(x) -> np.ndarray:
    """UE8M0 encode ``e8`` (SPEC 2.3): smallest c with 2^(c-127) >= |x|, saturating."""
    a = np.abs(_f32(x)).astype(np.float64)
    frac, exp = np.frexp(a)  # a = frac * 2^exp, frac in [0.5, 1)
    # ceil(log2(a)) is exp-1 for exact powers of two, exp otherwise.
    c = np.where(frac == 0.5, exp - 1, exp) + 127
    c = np.where(a <= 2.0**-127, 0, c)
    c = np.where(a > 2.0**127, 254, c)  # includes inf
    c = np.where(np.isnan(a), 255, c)
    return c.astype(np.uint8)


@_quiet
def ue8m0_decode_device(codes) -> np.ndarray:
    """UE8M0 device value (SPEC 2.3): 2^(c-127), c=0 -> 2^-127 (subnormal), 255 NaN."""
    c = np.asarray(codes, dtype=np.uint8).astype(np.int64)
    v = np.ldexp(1.0, c - 127).astype(F32)
    return np.where(c == 255, F32(np.nan), v).astype(F32)


def ue8m0_decode_bits(codes) -> np.ndarray:
    """UE8M0 as float32 bits ``c << 23`` (SPEC 2.3): 0 -> +0.0, 255 -> +inf."""
    c = np.asarray(codes, dtype=np.uint8).astype(np.uint32)
    return (c << 23).view(F32)


def ue8m0_decode_host(codes) -> np.ndarray:
    """UE8M0 host value (SPEC 2.3): 2^(c-127) kept subnormal for c=0, 255 -> NaN."""
    return ue8m0_decode_device(codes)


def pack_fp4(codes) -> np.ndarray:
    """Packs codes ``[..., K]`` to ``[..., K//2]``, lower index in the low nibble."""
    c = np.asarray(codes, dtype=np.uint8)
    if c.shape[-1] % 2:
        raise ValueError(f"pack_fp4: last dim {c.shape[-1]} is odd")
    return ((c[..., 0::2] & 0xF) | ((c[..., 1::2] & 0xF) << 4)).astype(np.uint8)


def unpack_fp4(packed) -> np.ndarray:
    """Inverse of :func:`pack_fp4`: ``[..., K//2]`` -> codes ``[..., K]``."""
    p = np.asarray(packed, dtype=np.uint8)
    out = np.empty(p.shape[:-1] + (2 * p.shape[-1],), np.uint8)
    out[..., 0::2] = p & 0xF
    out[..., 1::2] = p >> 4
    return out


# ---------------------------------------------------------------------------
# 3. Scale-factor layouts
# ---------------------------------------------------------------------------


def _check_layout(layout) -> int:
    layout = int(layout)
    if layout not in (LAYOUT_128x4, LAYOUT_8x4, LAYOUT_LINEAR):
        raise ValueError(f"unknown scale layout {layout}")
    return layout


def sf_buffer_size(layout, M: int, C: int) -> int:
    """Bytes of a scale buffer for a logical ``[M, C]`` matrix (SPEC 3)."""
    layout = _check_layout(layout)
    if layout == LAYOUT_LINEAR:
        return M * C
    return round_up(M, 128 if layout == LAYOUT_128x4 else 8) * round_up(C, 4)


def sf_padded_shape(layout, M: int, C: int) -> tuple[int, int]:
    """The 2-D shape FlashInfer returns for the scale buffer (SPEC 3.5)."""
    layout = _check_layout(layout)
    if layout == LAYOUT_LINEAR:
        return (M, C)
    return (round_up(M, 128 if layout == LAYOUT_128x4 else 8), round_up(C, 4))


def sf_offsets(layout, M: int, C: int) -> np.ndarray:
    """Byte offset of each logical scale ``(r, k)``, ``int64 [M, C]`` (SPEC 3.1-3.3)."""
    layout = _check_layout(layout)
    r = np.arange(M, dtype=np.int64)[:, None]
    k = np.arange(C, dtype=np.int64)[None, :]
    cp4 = round_up(C, 4) // 4
    if layout == LAYOUT_LINEAR:
        off = r * C + k
    elif layout == LAYOUT_128x4:
        off = (
            ((r // 128) * cp4 + k // 4) * 512
            + (r % 32) * 16
            + ((r % 128) // 32) * 4
            + k % 4
        )
    else:
        off = ((r // 8) * cp4 + k // 4) * 32 + (r % 8) * 4 + k % 4
    return np.broadcast_to(off, (M, C)).astype(np.int64)


def swizzle(sf_matrix, layout) -> np.ndarray:
    """Scatters a logical ``[M, C]`` matrix into a flat buffer, padding 0 (SPEC 3.4)."""
    sf = np.asarray(sf_matrix)
    M, C = sf.shape
    buf = np.zeros(sf_buffer_size(layout, M, C), dtype=sf.dtype)
    buf[sf_offsets(layout, M, C)] = sf
    return buf


def unswizzle(buf, layout, M: int, C: int) -> np.ndarray:
    """Gathers the logical ``[M, C]`` matrix from a flat scale buffer."""
    buf = np.asarray(buf).reshape(-1)
    need = sf_buffer_size(layout, M, C)
    if buf.size < need:
        raise ValueError(f"scale buffer has {buf.size} elements, needs {need}")
    return buf[sf_offsets(layout, M, C)]


# ---------------------------------------------------------------------------
# 4. Block recipes
# ---------------------------------------------------------------------------


def _blocks(x, n: int) -> np.ndarray:
    x = _f32(x)
    M, K = x.shape
    if K % n:
        raise ValueError(f"K = {K} is not a multiple of the block size {n}")
    return x.reshape(M, K // n, n)


def block_amax(xb) -> np.ndarray:
    """Block max of |x| over the last axis, NaN ignored (fmax), flushed (SPEC 4.1)."""
    xb = _f32(xb)
    if xb.shape[-1] == 0:
        return np.zeros(xb.shape[:-1], F32)
    return ftz(np.fmax.reduce(np.abs(xb), axis=-1))


def _rows(S, M: int) -> np.ndarray:
    S = _f32(S).reshape(-1)
    if S.size == 1:
        return np.broadcast_to(S, (M,)).astype(F32)
    if S.size != M:
        raise ValueError(f"scale has {S.size} elements; expected 1 or M = {M}")
    return S


@_quiet
def recipe_nvfp4_fast(x, S, dec=None):
    """NVFP4 fast recipe (SPEC 4.2) with per-row encode scale ``S`` ``[M]``.

    ``dec`` overrides the decode factor of step 6 (default ``rcp(S)``); the
    per-token kernel passes ``p`` (SPEC 4.2.2).
    """
    xb = _blocks(x, 16)
    M = xb.shape[0]
    S = _rows(S, M)[:, None]
    dec = rcp(S) if dec is None else _rows(dec, M)[:, None]
    a = block_amax(xb)
    t = dmul(a, RCP6)
    sf = dmul(S, t)
    code = e4m3_encode(sf)
    sfq = e4m3_decode(code)
    os = np.where(a != 0, rcp(dmul(sfq, dec)), F32(0))
    y = dmul(xb, os[..., None])
    return e2m1_encode(y).reshape(M, xb.shape[1] * xb.shape[2]), code


@_quiet
def recipe_nvfp4_exact(x, S):
    """NVFP4 exact recipe (SPEC 4.3), per-row encode scale ``S``."""
    xb = _blocks(x, 16)
    M = xb.shape[0]
    S = _rows(S, M)[:, None]
    a = block_amax(xb)
    sf = np.where(a != 0, dmul(a, dmul(S, ONE_SIXTH)), F32(0))
    code = e4m3_encode(sf)
    sfq = e4m3_decode(code)
    # SPEC 4.3 writes min(); read as fminf (NaN -> FLT_MAX). Differs only for S = 0/NaN.
    inner = np.fmin(ddiv(F32(1), dmul(sfq, ddiv(F32(1), S))), FLT_MAX)
    os = np.where(a != 0, inner, F32(0))
    y = dmul(xb, os[..., None])
    return e2m1_encode(y).reshape(M, xb.shape[1] * xb.shape[2]), code


def _fos_options(four_over_six):
    """Normalises the 4over6 option (SPEC 4.4) to (err_mode, err_fast_math, use_256).

    Accepts None/False, True (defaults), a dict with keys ``err_mode`` ("MAE"/"MSE"),
    ``err_fast_math`` and ``e4m3_use_256``, or a tuple in that order.
    """
    if four_over_six is None or four_over_six is False:
        return None
    if four_over_six is True:
        return ("MAE", False, False)
    if isinstance(four_over_six, dict):
        unknown = set(four_over_six) - {"err_mode", "err_fast_math", "e4m3_use_256"}
        if unknown:
            raise ValueError(f"unknown 4over6 options {sorted(unknown)}")
        opts = (
            four_over_six.get("err_mode", "MAE"),
            four_over_six.get("err_fast_math", False),
            four_over_six.get("e4m3_use_256", False),
        )
    else:
        opts = tuple(four_over_six) + ("MAE", False, False)[len(four_over_six) :]
    mode = str(opts[0]).upper()
    if mode not in ("MAE", "MSE"):
        raise ValueError(f"4over6 err_mode must be MAE or MSE, got {opts[0]!r}")
    return (mode, bool(opts[1]), bool(opts[2]))


@_quiet
def recipe_nvfp4_4over6(
    x,
    S,
    g,
    *,
    exact=False,
    err_mode="MAE",
    err_fast_math=False,
    e4m3_use_256=False,
    row_amax=None,
):
    """NVFP4 4over6 recipe (SPEC 4.4).

    Args:
      x: float32 ``[M, K]``.
      S: per-row encode scale ``[M]`` (or scalar).
      g: per-row decode factor ``[M]``: ``rcp(S)`` (fast), ``div(1, S)`` (exact) or
        ``p`` (per-token fast).
      row_amax: per-row maximum for the per-token kernel, else None (= 0).
    """
    xb = _blocks(x, 16)
    M = xb.shape[0]
    S = _rows(S, M)[:, None]
    g = _rows(g, M)[:, None]
    ramax = np.zeros((M, 1), F32) if row_amax is None else _rows(row_amax, M)[:, None]
    a = block_amax(xb)
    if exact:
        sf6 = dmul(ddiv(a, F32(6)), S)
    else:
        sf6 = dmul(S, dmul(a, RCP6))
    sf4 = dmul(sf6, F32(1.5))
    c4, c6 = e4m3_encode(sf4), e4m3_encode(sf6)
    v4, v6 = e4m3_decode(c4), e4m3_decode(c6)
    if exact:
        os4 = np.fmin(ddiv(F32(1), dmul(v4, g)), FLT_MAX)
        os6 = np.fmin(ddiv(F32(1), dmul(v6, g)), FLT_MAX)
    else:
        os4, os6 = rcp(dmul(v4, g)), rcp(dmul(v6, g))
    q4 = e2m1_encode(dmul(xb, os4[..., None]))
    q6 = e2m1_encode(dmul(xb, os6[..., None]))
    denom = F32(6 * (256 if e4m3_use_256 else 448))

    def error(q, v):
        # d4(q) * v is exact (both few-bit values); accumulate in element order.
        dv = e2m1_decode(q) * v[..., None]
        if err_fast_math:
            d = dsub(dv, dmul(xb, S[..., None]))
        else:
            deq = np.where(
                (ramax > 0)[..., None],
                ddiv(dmul(dv, ramax[..., None]), denom),
                dmul(dv, g[..., None]),
            )
            d = dsub(deq, xb)
        term = dmul(d, d) if err_mode == "MSE" else np.abs(d)
        err = np.zeros(a.shape, F32)
        for i in range(term.shape[-1]):
            err = dadd(err, term[..., i])
        return err

    pick4 = error(q4, v4) < error(q6, v6)
    code = np.where(pick4, c4, c6)
    q = np.where(pick4[..., None], q4, q6)
    zero = a == 0
    code = np.where(zero, np.uint8(0), code).astype(np.uint8)
    q = np.where(zero[..., None], np.uint8(0), q).astype(np.uint8)
    return q.reshape(M, xb.shape[1] * xb.shape[2]), code


def recipe_nvfp4(x, S, *, inverse=False, exact=False, four_over_six=None):
    """NVFP4 with a global/row-wise scale: dispatches 4.2 / 4.2.1 / 4.3 / 4.4."""
    S = _rows(S, _f32(x).shape[0])
    fos = _fos_options(four_over_six)
    if inverse:  # 4.2.1 / 4.3: S = rcp(S_user) (fast) or div(1, S_user) (exact)
        S = ddiv(F32(1), S) if exact else rcp(S)
    if fos is not None:
        g = ddiv(F32(1), S) if exact else rcp(S)
        return recipe_nvfp4_4over6(
            x,
            S,
            g,
            exact=exact,
            err_mode=fos[0],
            err_fast_math=fos[1],
            e4m3_use_256=fos[2],
        )
    if exact:
        return recipe_nvfp4_exact(x, S)
    return recipe_nvfp4_fast(x, S)


@_quiet
def recipe_nvfp4_per_token(x, S_inv, *, exact=False, four_over_six=None):
    """Per-token NVFP4 (SPEC 4.2.2, 4.3, 4.4). Returns ``(codes, sf, p)``."""
    x = _f32(x)
    M, K = x.shape
    S_inv = _f32(S_inv).reshape(-1)[0]
    fos = _fos_options(four_over_six)
    ra = block_amax(x) if K else np.zeros(M, F32)
    if not exact:
        p = dmul(ra, S_inv)
        G = rcp(p)
        dec = p  # rcp(rcp(p)) cancelled by ptxas (SPEC 1.5)
        if fos is not None:
            codes, sf = recipe_nvfp4_4over6(
                x,
                G,
                dec,
                exact=False,
                err_mode=fos[0],
                err_fast_math=fos[1],
                e4m3_use_256=fos[2],
                row_amax=ra,
            )
        else:
            codes, sf = recipe_nvfp4_fast(x, G, dec=dec)
        return codes, sf, p
    gs = ddiv(F32(1), S_inv)
    e = np.fmin(ddiv(gs, ra), FLT_MAX)
    if fos is not None:
        G = np.where(ra != 0, np.where(e != 0, e, F32(1)), F32(0)).astype(F32)
        p = np.where(G != 0, ddiv(F32(1), G), F32(0)).astype(F32)
        codes, sf = recipe_nvfp4_4over6(
            x,
            G,
            ddiv(F32(1), G),
            exact=True,
            err_mode=fos[0],
            err_fast_math=fos[1],
            e4m3_use_256=fos[2],
            row_amax=ra,
        )
        return codes, sf, p
    G = np.where(ra != 0, e, FLT_MAX).astype(F32)
    G = np.where(G == 0, F32(1), G).astype(F32)
    p = ddiv(F32(1), G)
    codes, sf = recipe_nvfp4_exact(x, G)
    return codes, sf, p


@_quiet
def recipe_mxfp4(x):
    """MXFP4 recipe (SPEC 4.5) for fp16/bf16-valued input."""
    xb = _blocks(x, 32)
    M = xb.shape[0]
    t = dmul(block_amax(xb), RCP6)
    code = ue8m0_encode(t)
    # Exact power of two; 2^-127 (code 254) is flushed by the fast exp2.
    pw = ftz(np.ldexp(1.0, 127 - code.astype(np.int64)).astype(F32))
    os = np.where(t != 0, pw, F32(0))
    y = dmul(xb, os[..., None])
    return e2m1_encode(y).reshape(M, xb.shape[1] * xb.shape[2]), code


@_quiet
def recipe_fp8_input(x, S, sf_vec_size=16):
    """FP8 (E4M3) input recipe (SPEC 4.6) for NVFP4 (16) or MXFP4 (32)."""
    x = _f32(x)
    M = x.shape[0]
    S = _rows(S, M)[:, None]
    d = dmul(F32(6), rcp(S))
    h = dmul(x, d).astype(np.float16).astype(F32)  # fp16 RNE, overflow -> inf
    hb = _blocks(h, sf_vec_size)
    a = block_amax(hb)
    v = dmul(S, dmul(a, RCP6))
    if sf_vec_size == 16:
        code = e4m3_encode(v)
        narrow = e4m3_decode(code)
    elif sf_vec_size == 32:
        code = ue8m0_encode(v)
        narrow = ue8m0_decode_device(code)
    else:
        raise ValueError(f"sf_vec_size must be 16 or 32, got {sf_vec_size}")
    os = np.where(v != 0, dmul(S, rcp(narrow)), F32(0))
    y = dmul(hb, os[..., None])
    return e2m1_encode(y).reshape(M, hb.shape[1] * hb.shape[2]), code


@_quiet
def recipe_mxfp8(x):
    """MXFP8 recipe (SPEC 4.7): one E4M3 byte per element, UE8M0 scale per 32."""
    xb = _blocks(x, 32)
    M = xb.shape[0]
    t = dmul(block_amax(xb), RCP448)
    code = ue8m0_encode(t)
    sv = ftz(ue8m0_decode_device(code))  # code 0 -> 2^-127 counts as 0 on the device
    os = np.where(sv != 0, rcp(sv), F32(0))
    y = dmul(xb, os[..., None])
    y = np.fmax(np.fmin(y, F32(448)), F32(-448))  # fminf/fmaxf: NaN -> +448
    return e4m3_encode(y).reshape(M, xb.shape[1] * xb.shape[2]), code


@_quiet
def recipe_kv_quantize(x, g):
    """NVFP4 KV-cache quantize recipe (SPEC 5.13); ``g`` is the decode scale."""
    xb = _blocks(x, 16)
    M = xb.shape[0]
    g = _f32(g).reshape(-1)[0]
    a = block_amax(xb)
    sf = dmul(rcp(g), dmul(a, RCP6))
    code = e4m3_encode(sf)
    sfq = e4m3_decode(code)
    os = np.where(a != 0, rcp(dmul(sfq, g)), F32(0))
    y = dmul(xb, os[..., None])
    return e2m1_encode(y).reshape(M, xb.shape[1] * xb.shape[2]), code


# ---------------------------------------------------------------------------
# 5. FlashInfer-named operations
# ---------------------------------------------------------------------------

_FP4_IN = (np.dtype(np.float16), np.dtype(BF16), np.dtype(E4M3), np.dtype(np.float32))


def _as_input(x, op, allowed=_FP4_IN):
    x = np.asarray(x)
    if x.dtype not in allowed:
        raise TypeError(f"{op}: unsupported input dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have rank >= 2, got shape {x.shape}")
    return x


def _flatten(x):
    """``[..., K]`` -> float32 ``[M, K]`` (exact widening) and the leading shape."""
    lead, K = x.shape[:-1], x.shape[-1]
    M = int(np.prod(lead, dtype=np.int64))
    return x.astype(F32).reshape(M, K), lead


def _layout_of(swizzled: bool, is_8x4: bool) -> int:
    if not swizzled:
        return LAYOUT_LINEAR
    return LAYOUT_8x4 if is_8x4 else LAYOUT_128x4


def _sf_2d(sf_matrix, layout):
    M, C = sf_matrix.shape
    return swizzle(sf_matrix, layout).reshape(sf_padded_shape(layout, M, C))


def fp4_quantize(
    input,
    global_scale=None,
    sf_vec_size=16,
    sf_use_ue8m0=False,
    is_sf_swizzled_layout=True,
    is_sf_8x4_layout=False,
    is_global_scale_inversed=False,
    exact=False,
    four_over_six=None,
):
    """FlashInfer ``fp4_quantize`` (SPEC 5.2). Returns ``(x_q [..., K/2], sf 2-D)``."""
    x = _as_input(input, "fp4_quantize")
    if sf_vec_size not in (16, 32):
        raise NotImplementedError(f"fp4_quantize: sf_vec_size {sf_vec_size}")
    if (sf_vec_size == 16) == bool(sf_use_ue8m0):
        raise ValueError(
            "fp4_quantize: sfVecSize can only be 16 with E4M3 or 32 with UE8M0"
        )
    K = x.shape[-1]
    if K % sf_vec_size:
        raise ValueError(f"fp4_quantize: K = {K} not a multiple of {sf_vec_size}")
    fp8 = x.dtype == np.dtype(E4M3)
    xf, lead = _flatten(x)
    M = xf.shape[0]
    if sf_vec_size == 16 and global_scale is None:
        raise ValueError("fp4_quantize: NVFP4 requires global_scale")
    if sf_vec_size == 32 and not fp8:
        codes, sf = recipe_mxfp4(xf)  # global scale ignored (SPEC 4.5)
    else:
        S = _rows(F32(1) if global_scale is None else global_scale, M)
        if fp8:
            if is_global_scale_inversed:
                S = rcp(S)
            codes, sf = recipe_fp8_input(xf, S, sf_vec_size)
        else:
            codes, sf = recipe_nvfp4(
                xf,
                S,
                inverse=is_global_scale_inversed,
                exact=exact,
                four_over_six=four_over_six,
            )
    layout = _layout_of(is_sf_swizzled_layout, is_sf_8x4_layout)
    return pack_fp4(codes).reshape(lead + (K // 2,)), _sf_2d(sf, layout)


def nvfp4_quantize(
    a,
    a_global_sf,
    sfLayout=0,
    do_shuffle=False,
    sf_vec_size=16,
    per_token_activation=False,
    expanded_idx_to_permuted_idx=None,
    exact=False,
    four_over_six=None,
):
    """FlashInfer ``nvfp4_quantize`` (SPEC 5.3).

    Returns ``(x_q, sf)`` or, with ``per_token_activation``,
    ``(x_q, sf, per_token_scale)``. Rows not selected by
    ``expanded_idx_to_permuted_idx`` are zeros (FlashInfer: uninitialised).
    """
    layout = _check_layout(sfLayout)
    if do_shuffle and layout != LAYOUT_128x4:
        raise ValueError("nvfp4_quantize: do_shuffle requires sfLayout == layout_128x4")
    qlayout = LAYOUT_LINEAR if do_shuffle else layout
    if not per_token_activation:
        if expanded_idx_to_permuted_idx is not None:
            raise ValueError(
                "nvfp4_quantize: expanded_idx_to_permuted_idx needs per-token"
            )
        x_q, sf = fp4_quantize(
            a,
            a_global_sf,
            sf_vec_size,
            False,
            qlayout != LAYOUT_LINEAR,
            qlayout == LAYOUT_8x4,
            exact=exact,
            four_over_six=four_over_six,
        )
        if do_shuffle:
            x_q = shuffle_matrix_a(x_q, 128)
            sf = shuffle_matrix_sf_a(sf, 128).reshape(sf.shape)
        return x_q, sf
    if sf_vec_size != 16:
        raise ValueError(
            f"nvfp4_quantize: per-token needs sf_vec_size 16, got {sf_vec_size}"
        )
    x = _as_input(a, "nvfp4_quantize", _FP4_IN[:2] + _FP4_IN[3:])
    if x.ndim != 2:
        raise ValueError(f"nvfp4_quantize: per-token input must be 2-D, got {x.shape}")
    M, K = x.shape
    if K % 16:
        raise ValueError(f"nvfp4_quantize: K = {K} not a multiple of 16")
    codes, sf, p = recipe_nvfp4_per_token(
        x.astype(F32), a_global_sf, exact=exact, four_over_six=four_over_six
    )
    if expanded_idx_to_permuted_idx is not None:
        idx = np.asarray(expanded_idx_to_permuted_idx).reshape(-1)[:M].astype(np.int64)
        if np.any(idx >= M):
            raise ValueError(
                f"nvfp4_quantize: expanded_idx_to_permuted_idx entry >= M = {M}"
            )
        sel = np.zeros(M, bool)
        sel[idx[idx >= 0]] = True
        codes = np.where(sel[:, None], codes, np.uint8(0))
        sf = np.where(sel[:, None], sf, np.uint8(0))
        p = np.where(sel, p, F32(0)).astype(F32)
    x_q = pack_fp4(codes)
    sf2 = _sf_2d(sf, qlayout)
    if do_shuffle:
        x_q = shuffle_matrix_a(x_q, 128)
        p = shuffle_matrix_a(p[:, None], 128)[:, 0]
        sf2 = shuffle_matrix_sf_a(sf2, 128).reshape(sf2.shape)
    return x_q, sf2, p


def nvfp4_batched_quantize(
    a, a_global_sf, sf_vec_size=16, exact=False, four_over_six=None
):
    """FlashInfer ``nvfp4_batched_quantize`` (SPEC 5.4).

    ``[B, M, K]`` -> ``(uint8 [B, M, K/2], uint8 [B, Mp128 * Cp])``.
    """
    x = _as_input(a, "nvfp4_batched_quantize")
    if x.ndim != 3:
        raise ValueError(f"nvfp4_batched_quantize: input must be 3-D, got {x.shape}")
    if sf_vec_size != 16:
        raise ValueError(
            f"nvfp4_batched_quantize: sf_vec_size must be 16, got {sf_vec_size}"
        )
    B, M, K = x.shape
    C = K // 16 if K % 16 == 0 else 0
    qs = np.zeros((B, M, K // 2), np.uint8)
    sfs = np.zeros((B, sf_buffer_size(LAYOUT_128x4, M, C)), np.uint8)
    for b in range(B):
        q, sf = fp4_quantize(
            x[b],
            a_global_sf,
            16,
            False,
            True,
            False,
            exact=exact,
            four_over_six=four_over_six,
        )
        qs[b], sfs[b] = q, sf.reshape(-1)
    return qs, sfs


def mxfp4_quantize(a, sfLayout=0):
    """FlashInfer ``mxfp4_quantize`` (SPEC 5.5)."""
    layout = _check_layout(sfLayout)
    return fp4_quantize(
        a, None, 32, True, layout != LAYOUT_LINEAR, layout == LAYOUT_8x4
    )


def e2m1_and_ufp8sf_scale_to_float(
    e2m1_tensor,
    ufp8_scale_tensor,
    global_scale_tensor=None,
    sf_vec_size=16,
    ufp8_type=1,
    is_sf_swizzled_layout=True,
    is_sf_8x4_layout=False,
):
    """FlashInfer host dequantization (SPEC 5.9): ``e2m1 * (s * g)`` in IEEE float32."""
    q = np.asarray(e2m1_tensor)
    if q.dtype != np.uint8 or q.ndim != 2:
        raise ValueError(
            f"e2m1_and_ufp8sf_scale_to_float: need uint8 2-D, got {q.dtype} {q.shape}"
        )
    if sf_vec_size <= 0:
        raise ValueError("e2m1_and_ufp8sf_scale_to_float: sf_vec_size must be > 0")
    if is_sf_8x4_layout and not is_sf_swizzled_layout:
        raise ValueError("e2m1_and_ufp8sf_scale_to_float: 8x4 layout needs swizzled")
    M, K = q.shape[0], 2 * q.shape[1]
    if K % sf_vec_size:
        raise ValueError(
            f"e2m1_and_ufp8sf_scale_to_float: K = {K} % {sf_vec_size} != 0"
        )
    C = K // sf_vec_size
    layout = _layout_of(is_sf_swizzled_layout, is_sf_8x4_layout)
    sf = np.asarray(ufp8_scale_tensor).view(np.uint8).reshape(-1)
    if sf.size != sf_buffer_size(layout, M, C):
        raise ValueError(
            f"e2m1_and_ufp8sf_scale_to_float: scale buffer has {sf.size} "
            f"elements, expected {sf_buffer_size(layout, M, C)}"
        )
    b = unswizzle(sf, layout, M, C)
    if ufp8_type == 0:
        s, g = ue8m0_decode_bits(b), F32(1)
    elif ufp8_type == 1:
        s = e4m3_decode(b)
        g = (
            F32(1)
            if global_scale_tensor is None
            else _f32(global_scale_tensor).reshape(-1)[0]
        )
    else:
        raise ValueError(f"e2m1_and_ufp8sf_scale_to_float: ufp8_type {ufp8_type}")
    blockscale = hmul(s, g)  # [M, C]
    return hmul(e2m1_decode(unpack_fp4(q)), np.repeat(blockscale, sf_vec_size, axis=1))


def mxfp4_dequantize(a_fp4, a_sf, sfLayout=0):
    """FlashInfer ``mxfp4_dequantize`` (SPEC 5.6)."""
    layout = _check_layout(sfLayout)
    return e2m1_and_ufp8sf_scale_to_float(
        a_fp4,
        np.asarray(a_sf).reshape(-1),
        np.array([1.0], F32),
        32,
        0,
        layout != LAYOUT_LINEAR,
        layout == LAYOUT_8x4,
    )


def mxfp4_dequantize_host(weight, scale, group_size=32):
    """FlashInfer ``mxfp4_dequantize_host`` (SPEC 5.7): linear scales, d4(8) = +0."""
    w = np.asarray(weight, dtype=np.uint8)
    s = np.asarray(scale, dtype=np.uint8)
    N, K = w.shape[0], 2 * w.shape[1]
    if s.ndim != 2 or s.shape[0] != N or s.shape[1] * group_size != K:
        raise ValueError(
            f"mxfp4_dequantize_host: scale {s.shape} does not fit weight {w.shape}"
            f" with group_size {group_size}"
        )
    vals = e2m1_decode(unpack_fp4(w), plus_zero_for_8=True)
    return hmul(vals, np.repeat(ue8m0_decode_host(s), group_size, axis=1))


def block_scale_interleave(x):
    """FlashInfer ``block_scale_interleave`` (SPEC 5.8): 2-D/3-D -> 1-D 128x4."""
    x = np.asarray(x)
    if x.dtype not in (np.dtype(np.uint8), np.dtype(BF16)):
        raise TypeError(f"block_scale_interleave: dtype {x.dtype} not uint8/bfloat16")
    if x.ndim not in (2, 3):
        raise ValueError(f"block_scale_interleave: rank must be 2 or 3, got {x.shape}")
    x3 = x.reshape((-1,) + x.shape[-2:]) if x.ndim == 3 else x[None]
    bufs = [swizzle(m, LAYOUT_128x4) for m in x3]
    if not bufs:
        return np.zeros(0, x.dtype)
    return np.concatenate(bufs)


def block_scale_interleave_reverse(buf, R, C, E=None):
    """Inverse of :func:`block_scale_interleave` (C++-only in FlashInfer)."""
    buf = np.asarray(buf).reshape(-1)
    n = sf_buffer_size(LAYOUT_128x4, R, C)
    if E is None:
        return unswizzle(buf[:n], LAYOUT_128x4, R, C)
    return (
        np.stack(
            [unswizzle(buf[e * n : (e + 1) * n], LAYOUT_128x4, R, C) for e in range(E)]
        )
        if E
        else np.zeros((0, R, C), buf.dtype)
    )


def scaled_fp4_grouped_quantize(a, mask, a_global_sf, exact=False, four_over_six=None):
    """FlashInfer ``scaled_fp4_grouped_quantize`` (SPEC 5.10), logical permuted shapes.

    Returns ``x_q`` uint8 ``[M, K/2, L]`` and ``sf`` float8_e4m3fn
    ``[32, 4, Mp/128, 4, Cp/4, L]``; masked rows and padding are 0 (unspecified).
    """
    x = _as_input(a, "scaled_fp4_grouped_quantize", _FP4_IN[:2] + _FP4_IN[3:])
    if x.ndim != 3:
        raise ValueError(
            f"scaled_fp4_grouped_quantize: input must be 3-D, got {x.shape}"
        )
    L, M, K = x.shape
    if K % 16:
        raise ValueError(f"scaled_fp4_grouped_quantize: K = {K} not a multiple of 16")
    mask = np.asarray(mask).reshape(-1)
    S = _f32(a_global_sf).reshape(-1)
    if S.size != L or mask.size != L:
        raise ValueError(
            f"scaled_fp4_grouped_quantize: L = {L}, mask {mask.size}, "
            f"global scale {S.size}"
        )
    C = K // 16
    Mp, Cp = round_up(M, 128), round_up(C, 4)
    qs = np.zeros((L, M, K // 2), np.uint8)
    sfs = np.zeros((L, Mp * Cp), np.uint8)
    for grp in range(L):
        n = int(min(max(int(mask[grp]), 0), M))
        codes, sf = recipe_nvfp4(
            x[grp, :n].astype(F32), S[grp], exact=exact, four_over_six=four_over_six
        )
        full = np.zeros((M, C), np.uint8)
        full[:n] = sf
        qs[grp, :n] = pack_fp4(codes)
        sfs[grp] = swizzle(full, LAYOUT_128x4)
    x_q = qs.transpose(1, 2, 0)
    sf6 = sfs.reshape(L, Mp // 128, Cp // 4, 32, 4, 4).transpose(3, 4, 1, 5, 2, 0)
    return np.ascontiguousarray(x_q), np.ascontiguousarray(sf6).view(E4M3)


def _shuffle_rows(M: int, epilogue_tile_m: int) -> np.ndarray:
    B = 32 if epilogue_tile_m % 128 == 0 else 16
    if M % B:
        raise ValueError(f"shuffle: M = {M} is not a multiple of {B}")
    r = np.arange(B)
    within = (r % 8) * (B // 8) + r // 8
    return (np.arange(M // B)[:, None] * B + within[None, :]).reshape(-1)


def shuffle_matrix_a(input_tensor, epilogue_tile_m):
    """FlashInfer ``shuffle_matrix_a`` (SPEC 5.11): row permutation in 32/16 blocks."""
    x = np.asarray(input_tensor)
    if x.ndim != 2:
        raise ValueError(f"shuffle_matrix_a: input must be 2-D, got {x.shape}")
    return x[_shuffle_rows(x.shape[0], epilogue_tile_m)]


def shuffle_matrix_sf_a(input_tensor, epilogue_tile_m, num_elts_per_sf=16):
    """FlashInfer ``shuffle_matrix_sf_a`` (SPEC 5.12): row shuffle, then interleave."""
    x = np.asarray(input_tensor)
    if x.ndim != 2 or x.shape[0] % 128:
        raise ValueError(
            f"shuffle_matrix_sf_a: need 2-D with M % 128 == 0, got {x.shape}"
        )
    return block_scale_interleave(shuffle_matrix_a(x, epilogue_tile_m))


def nvfp4_kv_quantize(input, global_scale):
    """FlashInfer ``nvfp4_kv_quantize`` (SPEC 5.13): ``g`` is a decode scale."""
    x = _as_input(input, "nvfp4_kv_quantize", _FP4_IN[:2] + _FP4_IN[3:])
    if x.ndim != 2 or x.shape[-1] % 16:
        raise ValueError(f"nvfp4_kv_quantize: need 2-D with K % 16 == 0, got {x.shape}")
    codes, sf = recipe_kv_quantize(x.astype(F32), global_scale)
    return pack_fp4(codes), sf


@_quiet
def nvfp4_kv_dequantize(fp4_data, block_scales, global_scale, output_dtype=BF16):
    """FlashInfer ``nvfp4_kv_dequantize`` (SPEC 5.14): ``round16((d4 * d8) * g)``."""
    q = np.asarray(fp4_data, dtype=np.uint8)
    sf = np.asarray(block_scales).view(np.uint8)
    M, K = q.shape[0], 2 * q.shape[1]
    if K % 16 or sf.shape != (M, K // 16):
        raise ValueError(
            f"nvfp4_kv_dequantize: shapes {q.shape} and {sf.shape} do not fit"
        )
    out_dt = np.dtype(output_dtype)
    if out_dt not in (np.dtype(np.float16), np.dtype(BF16)):
        raise TypeError(f"nvfp4_kv_dequantize: output_dtype {out_dt}")
    g = _f32(global_scale).reshape(-1)[0]
    v = dmul(
        dmul(e2m1_decode(unpack_fp4(q)), np.repeat(e4m3_decode(sf), 16, axis=1)), g
    )
    return v.astype(out_dt)


def _interleave_v_scales(sf, layout):
    """V-scale 4-token interleave of SPEC 5.15 step 6; ``sf`` is ``[P, ..., S]``."""
    hnd = sf if layout == "HND" else sf.transpose(0, 2, 1, 3)
    P, H, N, S = hnd.shape
    g = hnd.reshape(P, H, N // 4, 4, S)
    # out_flat[s*4 + u] = in_flat[u*S + s]: transpose each [4, S] group to [S, 4].
    g = g.transpose(0, 1, 2, 4, 3).reshape(P, H, N, S)
    return g if layout == "HND" else g.transpose(0, 2, 1, 3)


def nvfp4_quantize_paged_kv_cache(
    k_cache, v_cache, kv_layout="HND", k_global_sf=None, v_global_sf=None
):
    """FlashInfer ``nvfp4_quantize_paged_kv_cache`` (SPEC 5.15).

    Returns ``((k_fp4, v_fp4), (k_sf, v_sf), 1/k_gsf, 1/v_gsf)``; scales are viewed as
    float8_e4m3fn, the last two are Python floats.
    """
    layout = "NHD" if kv_layout == "NHD" else "HND"
    outs = []
    for cache, gsf in ((k_cache, k_global_sf), (v_cache, v_global_sf)):
        c = np.asarray(cache)
        if c.ndim != 4:
            raise ValueError(
                f"nvfp4_quantize_paged_kv_cache: cache must be 4-D, got {c.shape}"
            )
        if gsf is None:
            amax = (
                float(np.fmax.reduce(np.abs(c.astype(np.float64)), axis=None))
                if c.size
                else 0.0
            )
            gsf = F32(448.0 / max(amax, 1e-12))
        gsf = _f32(gsf).reshape(-1)[0]
        D = c.shape[-1]
        q, sf = fp4_quantize(c.reshape(-1, D), gsf, 16, is_sf_swizzled_layout=False)
        outs.append(
            (
                q.reshape(c.shape[:-1] + (D // 2,)),
                sf.reshape(c.shape[:-1] + (D // 16,)),
                gsf,
            )
        )
    (kq, ksf, kg), (vq, vsf, vg) = outs
    kshape = np.shape(k_cache)
    N = kshape[2] if layout == "HND" else kshape[1]
    D = kshape[-1]
    if N % 4 or D % 64:
        raise ValueError(
            f"nvfp4_quantize_paged_kv_cache: page_size {N} % 4 and head_dim "
            f"{D} % 64 must be 0"
        )
    vsf = _interleave_v_scales(vsf, layout)
    return (
        (kq, vq),
        (ksf.view(E4M3), vsf.view(E4M3)),
        float(F32(1) / kg),
        float(F32(1) / vg),
    )


def mxfp8_quantize(
    input, is_sf_swizzled_layout=True, alignment=32, sf_swizzle_layout=None
):
    """FlashInfer ``mxfp8_quantize`` GPU-path semantics (SPEC 5.16, 4.7).

    Returns uint8 codes ``[..., Kp]`` (``Kp = round_up(K, alignment)``, padding 0x00)
    and a
    1-D uint8 scale buffer for the ``[M, Kp/32]`` scale matrix.
    """
    x = _as_input(input, "mxfp8_quantize", _FP4_IN[:2] + _FP4_IN[3:])
    K = x.shape[-1]
    if K % 32 or alignment % 32 or alignment <= 0:
        raise ValueError(
            f"mxfp8_quantize: K = {K} and alignment = {alignment} must be "
            "multiples of 32"
        )
    if sf_swizzle_layout is not None:
        layout = _check_layout(sf_swizzle_layout)
    else:
        layout = LAYOUT_128x4 if is_sf_swizzled_layout else LAYOUT_LINEAR
    xf, lead = _flatten(x)
    Kp = round_up(K, alignment)
    xp = np.zeros((xf.shape[0], Kp), F32)
    xp[:, :K] = xf
    codes, sf = recipe_mxfp8(xp)
    return codes.reshape(lead + (Kp,)), swizzle(sf, layout)


def mxfp8_dequantize_host(
    input, scale_tensor, is_sf_swizzled_layout=True, sf_swizzle_layout=None
):
    """FlashInfer ``mxfp8_dequantize_host`` (SPEC 5.17): ``d8(q) * bits(sf << 23)``."""
    q = np.asarray(input).view(np.uint8)
    if q.ndim != 2 or q.shape[1] % 32:
        raise ValueError(
            f"mxfp8_dequantize_host: need 2-D with K % 32 == 0, got {q.shape}"
        )
    if sf_swizzle_layout is not None:
        layout = _check_layout(sf_swizzle_layout)
    else:
        layout = LAYOUT_128x4 if is_sf_swizzled_layout else LAYOUT_LINEAR
    M, K = q.shape
    b = unswizzle(np.asarray(scale_tensor, dtype=np.uint8), layout, M, K // 32)
    return hmul(e4m3_decode(q), np.repeat(ue8m0_decode_bits(b), 32, axis=1))


def _bit_weights(bitorder: str) -> np.ndarray:
    if bitorder == "big":
        return (1 << np.arange(7, -1, -1)).astype(np.uint8)
    if bitorder == "little":
        return (1 << np.arange(8)).astype(np.uint8)
    raise ValueError(f"bitorder must be 'big' or 'little', got {bitorder!r}")


def packbits(x, bitorder="big"):
    """FlashInfer/NumPy ``packbits`` (SPEC 5.18) on the flattened input."""
    w = _bit_weights(bitorder)
    bits = (np.asarray(x).reshape(-1) != 0).astype(np.uint8)
    n = (bits.size + 7) // 8
    padded = np.zeros(n * 8, np.uint8)
    padded[: bits.size] = bits
    return (padded.reshape(n, 8) * w).sum(axis=1, dtype=np.uint32).astype(np.uint8)


def segment_packbits(x, indptr, bitorder="big"):
    """FlashInfer ``segment_packbits`` (SPEC 5.19): ``(y, new_indptr int32)``."""
    w = _bit_weights(bitorder)
    bits = (np.asarray(x).reshape(-1) != 0).astype(np.uint8)
    indptr = np.asarray(indptr, dtype=np.int64).reshape(-1)
    lens = np.diff(indptr)
    if np.any(lens < 0) or (indptr.size and indptr[-1] > bits.size):
        raise ValueError(
            "segment_packbits: indptr must be non-decreasing and <= len(x)"
        )
    nbytes = (lens + 7) // 8
    new_indptr = np.concatenate([[0], np.cumsum(nbytes)]).astype(np.int32)
    y = np.zeros(int(new_indptr[-1]), np.uint8)
    # Element j of segment s sits at x[indptr[s] + j] and goes to byte
    # new_indptr[s] + j // 8 (segments start on a fresh byte).
    starts = (np.cumsum(lens) - lens).astype(np.int64)
    j = np.arange(int(lens.sum())) - np.repeat(starts, lens)
    xi = np.repeat(indptr[:-1], lens) + j
    byte = np.repeat(new_indptr[:-1].astype(np.int64), lens) + j // 8
    np.add.at(y, byte, (bits[xi] * w[j % 8]).astype(np.uint8))
    return y, new_indptr
