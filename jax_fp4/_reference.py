"""Pure-JAX twin of the jax_fp4 kernels: FlashInfer's quantization numerics in jnp.

Every function here is jittable, has static output shapes and reproduces the
CUDA/CPU FFI handlers bit for bit. Section numbers ("SPEC 4.2") refer to
``shared/SPEC.md``, the specification of FlashInfer's ``flashinfer.quantization``.

Three platform facts shape the code:

* XLA:CPU runs float32 arithmetic with flush-to-zero and denormals-are-zero,
  XLA:GPU does not. The device recipes (SPEC 1.1/1.2) flush operands and results
  explicitly, so both platforms see the same values. The x86 flush decides
  "subnormal" on the result rounded with an unbounded exponent, while the SPEC
  rounds to the IEEE grid first; for products the two differ only for exact
  results in ``[2^-126 - 2^-150, 2^-126 - 2^-151)``, which ``mul`` patches
  (per-block scalars). Per-element products feed an encoder that maps every
  ``|y| < 2^-24`` to a signed zero, so there the patch is unnecessary
  (``_mul_elem``).
* XLA:GPU float32 division is not correctly rounded (it returns the
  ``rcp.approx`` bits for ``1/x``), so ``div`` and ``rcp`` never use the
  platform's division: they use the exact integer division ``_rcp.ieee_div``.
* Host functions (``*_host``, ``e2m1_and_ufp8sf_scale_to_float``) use IEEE
  float32 without flushing, so their products are built with integer
  arithmetic (``hmul``), subnormal results included. 16-bit outputs are rounded
  with integers too (``round_to_dtype``), and data movement of 16-bit floats runs
  on bytes (``_as_raw``): XLA:CPU may move bfloat16 through float32 and flush.

Format encoders work on float32 bit patterns (never XLA float8 casts), and the
fast reciprocal ``rcp`` is the table emulation of ``_rcp``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._rcp import ieee_div, rcp
from ._rcp import rne_shift_right as _rne_shift_right
from ._rcp import round_pack as _round_pack

__all__ = [
    "LAYOUT_LINEAR",
    "SCALE_ENCODE",
    "SCALE_INVERSE",
    "SCALE_KV_DECODE",
    "LAYOUT_8x4",
    "LAYOUT_128x4",
    "add",
    "block_dequantize",
    "block_scale_interleave",
    "decode_e2m1",
    "decode_e4m3",
    "decode_ue8m0",
    "div",
    "e2m1_and_ufp8sf_scale_to_float",
    "encode_e2m1",
    "encode_e4m3",
    "encode_ue8m0",
    "fp4_quantize",
    "hmul",
    "mul",
    "mxfp4_dequantize_host",
    "mxfp8_dequantize_host",
    "mxfp8_quantize",
    "nvfp4_per_token_quantize",
    "pack_fp4",
    "packbits",
    "rcp",
    "round_to_dtype",
    "round_to_float16",
    "segment_packbits",
    "sf_buffer_size",
    "sf_matrix_shape",
    "shuffle_rows",
    "sub",
    "swizzle_scales",
    "unpack_fp4",
    "unswizzle_scales",
]

LAYOUT_128x4 = 0
LAYOUT_8x4 = 1
LAYOUT_LINEAR = 2

_U32 = jnp.uint32
_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_EXP = np.uint32(0x7F800000)
_MANT = np.uint32(0x007FFFFF)
_MIN_NORMAL = np.uint32(0x00800000)
_QNAN = np.uint32(0x7FC00000)


def _f32(bits: int) -> np.float32:
    return np.array(bits, np.uint32).view(np.float32)[()]


RCP6 = _f32(0x3E2AAAAB)  # rcp(6.0), constant-folded by ptxas (SPEC 1.2)
RCP448 = _f32(0x3B124925)  # rcp(448.0)
ONE_SIXTH = _f32(0x3E2AAAAB)  # 1.0f / 6.0f
FLT_MAX = _f32(0x7F7FFFFF)


# ----------------------------------------------------------------------------
# Bit helpers and float32 arithmetic primitives (SPEC 1.2)
# ----------------------------------------------------------------------------


def _bits(x: jax.Array) -> jax.Array:
    """float32 -> uint32 bit pattern."""
    return lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), _U32)


def _float(u: jax.Array) -> jax.Array:
    """uint32 bit pattern -> float32."""
    return lax.bitcast_convert_type(jnp.asarray(u, _U32), jnp.float32)


def _is_nan(u: jax.Array) -> jax.Array:
    return (u & _ABS) > _EXP


def _nonzero(x: jax.Array) -> jax.Array:
    """``x != 0`` on the bit pattern, so a NaN counts as non-zero."""
    return (_bits(x) & _ABS) != 0


def _ftz(x: jax.Array) -> jax.Array:
    """Flushes float32 subnormals to a zero of the same sign (SPEC 1.1)."""
    u = _bits(x)
    return _float(jnp.where((u & _EXP) == 0, u & _SIGN, u))


def _mul_elem(a: jax.Array, b: jax.Array) -> jax.Array:
    """Device product for element values that go straight into an encoder.

    Differs from ``mul`` only for results in ``[2^-126 - 2^-150, 2^-126)``,
    which every consumer (E2M1, E4M3, fp16 rounding) maps to the same signed
    zero as a flushed result.
    """
    return _ftz(_ftz(a) * _ftz(b))


def _split(u: jax.Array):
    """(sign, biased exponent int32, 24-bit significand, 1.m as float32)."""
    e = ((u >> 23) & 0xFF).astype(jnp.int32)
    m = u & _MANT
    one_m = _float(m | np.uint32(0x3F800000))
    return u & _SIGN, e, m | _MIN_NORMAL, one_m


def mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Device float32 product ``mul(a, b)`` of SPEC 1.2, identical on CPU and GPU.

    Flushes subnormal operands, rounds the product to nearest even on the IEEE
    grid, then flushes a subnormal result.

    Args:
      a: float32 array.
      b: float32 array, broadcastable with ``a``.

    Returns:
      float32 array of the broadcast shape.
    """
    a, b = jnp.broadcast_arrays(_ftz(a), _ftz(b))
    p = _ftz(a * b)
    ua, ub = _bits(a), _bits(b)
    sa, ea, ma, fa = _split(ua)
    sb, eb, mb, fb = _split(ub)
    # The exact product is P * 2^(ea+eb-300) with P = ma*mb in [2^46, 2^48). It
    # lies in the window [2^-126 - 2^-150, 2^-126 - 2^-151) (IEEE rounding gives
    # 2^-126, x86 FTZ gives 0) iff P is 2^k - D with k = 174-ea-eb in {47, 48}
    # and 2^(k-25) < D <= 2^(k-24). fa*fb (no underflow) pins P near 2^k, and
    # D is then small enough to be read from the wrapped uint32 product.
    k = 174 - ea - eb
    m_bits = _bits(fa * fb)
    d_wrap = jnp.uint32(0) - ma * mb  # 2^k - P mod 2^32 (k >= 32)
    finite = (ea > 0) & (ea < 255) & (eb > 0) & (eb < 255)
    window = finite & (
        ((k == 47) & (m_bits == 0x3FFFFFFF) & (d_wrap <= np.uint32(1 << 23)))
        | ((k == 48) & (m_bits == 0x407FFFFF) & (d_wrap <= np.uint32(1 << 24)))
    )
    return jnp.where(window, _float((sa ^ sb) | _MIN_NORMAL), p)


def div(a: jax.Array, b: jax.Array) -> jax.Array:
    """Device float32 division ``div(a, b)`` of SPEC 1.2 (RN, flushed), any platform.

    Built on the integer ``ieee_div``: XLA:GPU float32 division is not correctly
    rounded, and XLA:CPU's flush differs from "round, then flush" (see ``mul``).

    Args:
      a: float32 array.
      b: float32 array, broadcastable with ``a``.

    Returns:
      float32 array of the broadcast shape.
    """
    return _ftz(ieee_div(_ftz(a), _ftz(b)))


def add(a: jax.Array, b: jax.Array) -> jax.Array:
    """Device float32 sum ``add(a, b)`` of SPEC 1.2: flushed operands and result.

    A sum of float32 values is a multiple of 2^-149, so a subnormal sum is exact
    and "round, then flush" equals every platform's flush; plain ``+`` suffices.
    """
    return _ftz(_ftz(a) + _ftz(b))


def sub(a: jax.Array, b: jax.Array) -> jax.Array:
    """Device float32 difference ``sub(a, b)`` of SPEC 1.2 (see ``add``)."""
    return _ftz(_ftz(a) - _ftz(b))


def _fmin_flt_max(x: jax.Array) -> jax.Array:
    """``fminf(x, FLT_MAX)``: NaN and +inf become FLT_MAX."""
    u = _bits(x)
    return jnp.where(_is_nan(u) | (u == _EXP), FLT_MAX, x)


def hmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Host IEEE float32 product ``hmul(a, b)`` (SPEC 1.2): no flushing, RN.

    Exact integer emulation, identical on every platform (XLA:CPU would flush
    subnormal results). ``b`` must have at most 4 significant bits (E2M1, E4M3
    and UE8M0 values, zeros, infinities, NaN), so the significand product fits
    in 28 bits; ``a`` is any float32 (subnormals included).

    Args:
      a: float32 array.
      b: float32 array of small-significand values, broadcastable with ``a``.

    Returns:
      float32 array of the broadcast shape; NaN results are the quiet NaN.
    """
    ua, ub = jnp.broadcast_arrays(_bits(a), _bits(b))
    sign = (ua ^ ub) & _SIGN
    aa, ab = ua & _ABS, ub & _ABS
    nan = (
        (aa > _EXP)
        | (ab > _EXP)
        | ((aa == _EXP) & (ab == 0))
        | ((ab == _EXP) & (aa == 0))
    )
    inf = (aa == _EXP) | (ab == _EXP)
    zero = (aa == 0) | (ab == 0)
    ea = ((ua >> 23) & 0xFF).astype(jnp.int32)
    eb = ((ub >> 23) & 0xFF).astype(jnp.int32)
    # value = significand * 2^(max(e,1) - 150); b's significand is shifted right
    # by 20 (its low 20 bits are zero), which keeps the product below 2^28.
    sig_a = jnp.where(ea == 0, ua & _MANT, (ua & _MANT) | _MIN_NORMAL)
    sig_b = jnp.where(eb == 0, ub & _MANT, (ub & _MANT) | _MIN_NORMAL) >> 20
    e = jnp.maximum(ea, 1) + jnp.maximum(eb, 1) - 300 + 20
    p = sig_a * sig_b
    finite = _round_pack(sign, jnp.maximum(p, np.uint32(1)), e)
    out = jnp.where(zero, sign, finite)
    out = jnp.where(inf, sign | _EXP, out)
    out = jnp.where(nan, _QNAN, out)
    return _float(out)


# ----------------------------------------------------------------------------
# Number formats (SPEC 2)
# ----------------------------------------------------------------------------

# Upper bounds of E2M1 magnitude codes 0..6 as float32 bits, with the tie
# handling of SPEC 2.1: "> bound" for odd codes' lower edges, ">=" for even.
_E2M1_GT = [0x3E800000, 0x3FA00000, 0x40200000, 0x40A00000]  # 0.25 1.25 2.5 5.0
_E2M1_GE = [0x3F400000, 0x3FE00000, 0x40600000]  # 0.75 1.75 3.5
_E2M1_VALUES = np.array(
    [
        0.0,
        0.5,
        1.0,
        1.5,
        2.0,
        3.0,
        4.0,
        6.0,
        -0.0,
        -0.5,
        -1.0,
        -1.5,
        -2.0,
        -3.0,
        -4.0,
        -6.0,
    ],
    np.float32,
)


def encode_e2m1(y: jax.Array) -> jax.Array:
    """E2M1 encode ``q4`` (SPEC 2.1), like ``cvt.rn.satfinite.e2m1x2.f32``.

    Args:
      y: float32 array.

    Returns:
      uint8 codes 0..15 of the same shape: RN-even on the E2M1 grid, saturating
      at ±6 (±inf included), sign kept (``-0 -> 0x8``), NaN -> ``0x7``.
    """
    u = _bits(y)
    a = u & _ABS
    code = jnp.zeros(u.shape, _U32)
    for t in _E2M1_GT:
        code = code + (a > np.uint32(t)).astype(_U32)
    for t in _E2M1_GE:
        code = code + (a >= np.uint32(t)).astype(_U32)
    code = code | ((u >> 28) & np.uint32(0x8))
    return jnp.where(_is_nan(u), np.uint32(0x7), code).astype(jnp.uint8)


def decode_e2m1(codes: jax.Array, *, negative_zero: bool = True) -> jax.Array:
    """E2M1 decode ``d4`` (SPEC 2.1).

    Args:
      codes: uint8 codes 0..15 (higher bits ignored).
      negative_zero: decode code 8 as -0.0 (True) or +0.0 (the table of
        ``mxfp4_dequantize_host``).

    Returns:
      float32 array of the same shape.
    """
    table = _E2M1_VALUES.copy()
    if not negative_zero:
        table[8] = 0.0
    return jnp.asarray(table)[(codes & 0xF).astype(jnp.int32)]


def encode_e4m3(x: jax.Array) -> jax.Array:
    """E4M3 (fn) encode ``q8`` (SPEC 2.2), like ``cvt.rn.satfinite.e4m3x2.f32``.

    Args:
      x: float32 array.

    Returns:
      uint8 array: RN-even, magnitude clamped to 448 first (±inf -> ±448),
      sign kept (``-0`` and negative underflow -> ``0x80``), NaN -> ``0x7F``.
    """
    u = _bits(x)
    a = jnp.minimum(u & _ABS, np.uint32(0x43E00000))  # clamp |x| to 448
    # Normal E4M3 (|x| >= 2^-6): keep 3 of 23 mantissa bits, RN-even, and
    # rebias the exponent from 127 to 7; a carry rolls into the exponent.
    normal = ((a + np.uint32(0x7FFFF) + ((a >> 20) & 1)) >> 20) - np.uint32(120 << 3)
    # Subnormal E4M3: round |x| / 2^-9 to an integer 0..8 (8 = smallest normal).
    e = (a >> 23).astype(jnp.int32)
    sig = jnp.where(e == 0, a & _MANT, (a & _MANT) | _MIN_NORMAL)
    shift = jnp.clip(141 - jnp.maximum(e, 1), 0, 31).astype(_U32)
    sub = _rne_shift_right(sig, shift)
    mag = jnp.where(a >= np.uint32(0x3C800000), normal, sub)
    code = mag | ((u >> 24) & np.uint32(0x80))
    return jnp.where(_is_nan(u), np.uint32(0x7F), code).astype(jnp.uint8)


def _e4m3_table() -> np.ndarray:
    c = np.arange(256)
    e, m = (c >> 3) & 0xF, c & 7
    mag = np.where(e == 0, m * 2.0**-9, (1 + m / 8.0) * 2.0 ** (e - 7))
    val = np.where(c & 0x80, -mag, mag).astype(np.float32)
    val[[0x7F, 0xFF]] = np.nan
    return val


_E4M3_VALUES = _e4m3_table()


def decode_e4m3(codes: jax.Array) -> jax.Array:
    """E4M3 decode ``d8`` (SPEC 2.2): exact, ``0x7F``/``0xFF`` -> NaN.

    Args:
      codes: uint8 array.

    Returns:
      float32 array of the same shape (all values are normal float32).
    """
    return jnp.asarray(_E4M3_VALUES)[codes.astype(jnp.int32)]


def encode_ue8m0(x: jax.Array) -> jax.Array:
    """UE8M0 encode ``e8`` (SPEC 2.3): power of two rounded towards +inf.

    Args:
      x: float32 array (the sign is ignored).

    Returns:
      uint8 array: the smallest ``c`` with ``2^(c-127) >= |x|``; ``|x| <= 2^-127``
      -> 0, ``|x| > 2^127`` and inf -> 254, NaN -> 255.
    """
    u = _bits(x)
    a = u & _ABS
    # Round |x| up to bfloat16 (never carries past inf: 0x7F7FFFFF -> 0x7F80).
    b = (a + np.uint32(0xFFFF)) >> 16
    c = (b >> 7) + (
        ((b & 0x7F) != 0) & (b > np.uint32(0x0040)) & (b < np.uint32(0x7F80))
    ).astype(_U32)
    c = jnp.where(c == 255, np.uint32(254), c)
    return jnp.where(_is_nan(u), np.uint32(255), c).astype(jnp.uint8)


def decode_ue8m0(codes: jax.Array, *, mode: str) -> jax.Array:
    """UE8M0 decode, one of the three decodings of SPEC 2.3.

    Args:
      codes: uint8 array.
      mode: ``"device"`` (0 -> 2^-127 subnormal, 255 -> NaN), ``"bits"``
        (bit pattern ``c << 23``: 0 -> +0.0, 255 -> +inf) or ``"host"``
        (same as ``"device"``; kept as a separate name for readability).

    Returns:
      float32 array of the same shape.
    """
    c = codes.astype(_U32)
    if mode == "bits":
        return _float(c << 23)
    if mode not in ("device", "host"):
        raise ValueError(f"decode_ue8m0: unknown mode {mode!r}")
    u = jnp.where(c == 0, np.uint32(0x00400000), c << 23)
    return _float(jnp.where(c == 255, _QNAN, u))


def round_to_float16(x: jax.Array) -> jax.Array:
    """``__float2half_rn`` widened back to float32 (SPEC 2.4), via integers.

    Args:
      x: float32 array.

    Returns:
      float32 array holding the nearest-even float16 value (fp16 subnormals
      kept, overflow to ±inf, NaN stays NaN).
    """
    u = _bits(x)
    sign, a = u & _SIGN, u & _ABS
    # fp16 normal range: drop 13 mantissa bits RN-even; above 65504 -> inf.
    normal = (a + np.uint32(0xFFF) + ((a >> 13) & 1)) & np.uint32(0xFFFFE000)
    normal = jnp.where(normal > np.uint32(0x477FE000), _EXP, normal)
    # fp16 subnormal range (|x| < 2^-14): n = RN(|x| / 2^-24), an integer <= 1024.
    e = (a >> 23).astype(jnp.int32)
    sig = jnp.where(e == 0, a & _MANT, (a & _MANT) | _MIN_NORMAL)
    n = _rne_shift_right(sig, jnp.clip(126 - jnp.maximum(e, 1), 0, 31).astype(_U32))
    sub = _bits(n.astype(jnp.float32) * np.float32(2.0**-24))  # exact, normal
    mag = jnp.where(a >= np.uint32(0x38800000), normal, sub)
    return _float(jnp.where(_is_nan(u), u, sign | mag))


def _float16_bits(x: jax.Array) -> jax.Array:
    """float32 -> float16 bit pattern (uint16), round to nearest even, by integers.

    fp16 subnormals are produced exactly, overflow gives ±inf, NaN gives the
    quiet NaN ``sign | 0x7E00`` (``__float2half_rn``, SPEC 2.4).
    """
    u = _bits(x)
    sign = (u >> 16) & np.uint32(0x8000)
    a = u & _ABS
    normal = ((a + np.uint32(0xFFF) + ((a >> 13) & 1)) >> 13) - np.uint32(112 << 10)
    # Below 2^-14: n = RN(|x| / 2^-24) <= 1024 (1024 is the smallest normal).
    e = (a >> 23).astype(jnp.int32)
    sig = jnp.where(e == 0, a & _MANT, (a & _MANT) | _MIN_NORMAL)
    sub_ = _rne_shift_right(sig, jnp.clip(126 - jnp.maximum(e, 1), 0, 31).astype(_U32))
    mag = jnp.where(a >= np.uint32(0x38800000), normal, sub_)
    # Magnitudes from 65520 up round past 65504: inf.
    mag = jnp.where(a >= np.uint32(0x477FF000), np.uint32(0x7C00), mag)
    mag = jnp.where(_is_nan(u), np.uint32(0x7E00), mag)
    return (sign | mag).astype(jnp.uint16)


def _bfloat16_bits(x: jax.Array) -> jax.Array:
    """float32 -> bfloat16 bit pattern (uint16), RN-even, NaN kept quiet (SPEC 2.4)."""
    u = _bits(x)
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16
    quiet_nan = (u >> 16) | np.uint32(0x40)
    return jnp.where(_is_nan(u), quiet_nan, rounded).astype(jnp.uint16)


def round_to_dtype(x: jax.Array, dtype) -> jax.Array:
    """float32 values rounded to ``dtype`` (float32, bfloat16 or float16), RN-even.

    Built from integer bit patterns, so 16-bit subnormal results are exact on every
    platform (XLA:CPU's own converts flush subnormal float32 inputs).
    """
    name = jnp.dtype(dtype).name
    if name == "float32":
        return jnp.asarray(x, jnp.float32)
    if name == "bfloat16":
        return lax.bitcast_convert_type(_bfloat16_bits(x), jnp.bfloat16)
    if name == "float16":
        return lax.bitcast_convert_type(_float16_bits(x), jnp.float16)
    raise TypeError(f"round_to_dtype: unsupported output dtype {name}")


def pack_fp4(codes: jax.Array) -> jax.Array:
    """Packs E2M1 codes two per byte, lower index in the low nibble (SPEC 2.1).

    Args:
      codes: uint8 ``[..., K]`` with values 0..15, ``K`` even.

    Returns:
      uint8 ``[..., K // 2]``.
    """
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_fp4: last dim {codes.shape[-1]} is odd")
    c = codes.astype(jnp.uint8).reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return (c[..., 0] & 0xF) | ((c[..., 1] & 0xF) << 4)


def unpack_fp4(packed: jax.Array) -> jax.Array:
    """Inverse of ``pack_fp4``: uint8 ``[..., K // 2]`` -> codes uint8 ``[..., K]``."""
    p = packed.astype(jnp.uint8)
    c = jnp.stack([p & 0xF, p >> 4], axis=-1)
    return c.reshape(*p.shape[:-1], 2 * p.shape[-1])


def _widen(x: jax.Array) -> jax.Array:
    """fp16/bf16/e4m3/f32 -> float32, exactly (SPEC 1.3), without float arithmetic."""
    dt = jnp.dtype(x.dtype)
    if dt == jnp.float32:
        return x
    if dt == jnp.bfloat16:
        u = lax.bitcast_convert_type(x, jnp.uint16).astype(_U32) << 16
        return _float(u)
    if dt == jnp.float16:
        return x.astype(jnp.float32)  # exact, fp16 subnormals included
    if dt == jnp.float8_e4m3fn:
        return decode_e4m3(lax.bitcast_convert_type(x, jnp.uint8))
    raise TypeError(f"unsupported input dtype {dt}")


# ----------------------------------------------------------------------------
# Scale-factor layouts (SPEC 3)
# ----------------------------------------------------------------------------


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _check_layout(layout: int) -> int:
    layout = int(layout)
    if layout not in (LAYOUT_128x4, LAYOUT_8x4, LAYOUT_LINEAR):
        raise ValueError(f"unknown scale layout {layout} (0=128x4, 1=8x4, 2=linear)")
    return layout


def sf_matrix_shape(layout: int, m: int, c: int) -> tuple[int, int]:
    """2-D scale shape of ``fp4_quantize`` (SPEC 3.5): ``[Mp, Cp]`` or ``[M, C]``."""
    layout = _check_layout(layout)
    if layout == LAYOUT_LINEAR:
        return (m, c)
    return (_round_up(m, 128 if layout == LAYOUT_128x4 else 8), _round_up(c, 4))


def sf_buffer_size(layout: int, m: int, c: int) -> int:
    """Bytes of the buffer of an ``[M, C]`` scale matrix in ``layout`` (SPEC 3)."""
    rows, cols = sf_matrix_shape(layout, m, c)
    return rows * cols


def swizzle_scales(sf: jax.Array, layout: int) -> jax.Array:
    """Lays out a logical scale matrix in ``layout`` (SPEC 3.1-3.4).

    Args:
      sf: ``[..., M, C]`` array of any dtype; leading dims are batches, each
        with its own padded matrix (offset ``b * Mp * Cp``).
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.

    Returns:
      ``[..., sf_buffer_size(layout, M, C)]`` with zero padding.
    """
    layout = _check_layout(layout)
    *batch, m, c = sf.shape
    mp, cp = sf_matrix_shape(layout, m, c)
    pad = [(0, 0)] * len(batch) + [(0, mp - m), (0, cp - c)]
    x = jnp.pad(sf, pad)
    nb = len(batch)
    if layout == LAYOUT_128x4:
        # [Mp, Cp] -> [mt, i, o, kt, kk] -> [mt, kt, o, i, kk] with r = 128mt + 32i + o.
        x = x.reshape(*batch, mp // 128, 4, 32, cp // 4, 4)
        x = jnp.transpose(x, (*range(nb), nb, nb + 3, nb + 2, nb + 1, nb + 4))
    elif layout == LAYOUT_8x4:
        x = x.reshape(*batch, mp // 8, 8, cp // 4, 4)
        x = jnp.transpose(x, (*range(nb), nb, nb + 2, nb + 1, nb + 3))
    return x.reshape(*batch, mp * cp)


def unswizzle_scales(flat: jax.Array, layout: int, m: int, c: int) -> jax.Array:
    """Inverse of ``swizzle_scales``: ``[..., size]`` -> logical ``[..., M, C]``.

    Args:
      flat: ``[..., sf_buffer_size(layout, m, c)]`` array (any dtype).
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.
      m: rows of the logical matrix.
      c: columns of the logical matrix.

    Returns:
      ``[..., m, c]`` array; padding is dropped.
    """
    layout = _check_layout(layout)
    mp, cp = sf_matrix_shape(layout, m, c)
    *batch, size = flat.shape
    if size != mp * cp:
        raise ValueError(
            f"unswizzle_scales: buffer has {size} elements, layout {layout} with "
            f"M={m}, C={c} needs {mp * cp}"
        )
    nb = len(batch)
    if layout == LAYOUT_128x4:
        x = flat.reshape(*batch, mp // 128, cp // 4, 32, 4, 4)
        x = jnp.transpose(x, (*range(nb), nb, nb + 3, nb + 2, nb + 1, nb + 4))
    elif layout == LAYOUT_8x4:
        x = flat.reshape(*batch, mp // 8, cp // 4, 8, 4)
        x = jnp.transpose(x, (*range(nb), nb, nb + 2, nb + 1, nb + 3))
    else:
        x = flat
    return x.reshape(*batch, mp, cp)[..., :m, :c]


def _as_raw(x: jax.Array) -> jax.Array:
    """Floats as bytes ``uint8 [itemsize, ...]`` for data movement that keeps every bit.

    XLA:CPU lets LLVM fold the selects of a fused ``pad``/``take`` through a same-width
    bitcast back into the 16-bit float type, which x86 handles by a float32
    round trip that flushes subnormals and quiets signalling NaNs. Byte planes
    keep the movement in integers; the byte axis goes first, out of the way of
    the row/column axes.
    """
    dt = jnp.dtype(x.dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        return x
    u = lax.bitcast_convert_type(x, jnp.uint8)
    return jnp.moveaxis(u, -1, 0) if dt.itemsize > 1 else u


def _from_raw(u: jax.Array, dtype) -> jax.Array:
    """Inverse of ``_as_raw`` (after moving the non-byte axes)."""
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        return u
    if dt.itemsize > 1:
        u = jnp.moveaxis(u, 0, -1)
    return lax.bitcast_convert_type(u, dt)


def _shuffle_source_rows(m: int, block: int) -> np.ndarray:
    """Input row of every output row of the ``shuffle_matrix_a`` permutation (SPEC 5.11)."""
    if block not in (16, 32):
        raise ValueError(f"shuffle block must be 16 or 32, got {block}")
    if m % block:
        raise ValueError(f"shuffle: {m} rows are not a multiple of the block {block}")
    r = np.arange(block)
    within = (r % 8) * (block // 8) + r // 8  # output row r reads input row `within[r]`
    src = np.arange(m // block)[:, None] * block + within
    return src.reshape(-1).astype(np.int32)


def shuffle_rows(x: jax.Array, *, block: int) -> jax.Array:
    """``shuffle_matrix_a`` (SPEC 5.11): permutes rows within blocks of ``block`` rows.

    Args:
      x: ``[..., M, N]`` array of any dtype; every leading index is its own matrix.
      block: 16 or 32; ``M % block == 0``. Output row ``b * block + r`` is input row
        ``b * block + (r % 8) * (block // 8) + r // 8``.

    Returns:
      Array of ``x``'s shape and dtype.
    """
    if x.ndim < 2:
        raise ValueError(f"shuffle_rows: expected rank >= 2, got {x.ndim}")
    src = jnp.asarray(_shuffle_source_rows(x.shape[-2], int(block)))
    raw = _as_raw(x)
    out = jnp.take(raw, src, axis=raw.ndim - 2, mode="clip")  # indices are in range
    return _from_raw(out, x.dtype)


def block_scale_interleave(x: jax.Array, *, shuffle_block: int = 0) -> jax.Array:
    """``block_scale_interleave`` (SPEC 5.8) and ``shuffle_matrix_sf_a`` (SPEC 5.12).

    Args:
      x: uint8 or bfloat16 ``[R, C]`` or ``[E, R, C]`` linear scale matrices.
      shuffle_block: 0, or 16/32: first permute the rows of every matrix as
        ``shuffle_rows(x, block=shuffle_block)`` does (``R`` must be a multiple).

    Returns:
      1-D array of ``x.dtype`` with ``E * round_up(R, 128) * round_up(C, 4)``
      elements: each matrix in the 128x4 layout, zero padding.
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"block_scale_interleave: expected rank 2 or 3, got {x.ndim}")
    raw = _as_raw(x)  # [bytes?, E?, R, C]
    if shuffle_block:
        src = jnp.asarray(_shuffle_source_rows(x.shape[-2], int(shuffle_block)))
        raw = jnp.take(raw, src, axis=raw.ndim - 2, mode="clip")
    out = swizzle_scales(raw, LAYOUT_128x4)  # [bytes?, E?, size]
    planes = raw.ndim - x.ndim  # 1 when split into byte planes
    return _from_raw(out.reshape(*out.shape[:planes], -1), x.dtype)


# ----------------------------------------------------------------------------
# Block recipes (SPEC 4). Blocks are [M, C, B] float32; a per-row scalar is
# [M, 1] (broadcast over the C blocks of its row); per-block results [M, C].
# ----------------------------------------------------------------------------

SCALE_ENCODE = 0  # global scale is the encode scale S
SCALE_INVERSE = 1  # global scale is 1/S (is_global_scale_inversed, SPEC 4.2.1)
SCALE_KV_DECODE = 2  # global scale is the decode scale g (nvfp4_kv_quantize, SPEC 5.13)


def _amax(xb: jax.Array) -> jax.Array:
    """Block maximum of |x| (SPEC 4.1) with ``fmaxf`` semantics, flushed.

    NaN elements are ignored unless every element is NaN (then the maximum is NaN,
    as FlashInfer's half-precision max gives); an empty reduction gives 0.
    """
    a = _bits(xb) & _ABS
    nan = a > _EXP
    m = jnp.max(jnp.where(nan, np.uint32(0), a), axis=-1, initial=np.uint32(0))
    m = jnp.where(m < _MIN_NORMAL, np.uint32(0), m)  # flush subnormal maxima
    if xb.shape[-1]:
        m = jnp.where(jnp.all(nan, axis=-1), _QNAN, m)
    return _float(m)


def _encode_blocks(xb: jax.Array, os: jax.Array) -> jax.Array:
    """E2M1 codes of ``mul(x, os)`` for every element; ``os`` per block."""
    return encode_e2m1(_mul_elem(xb, os[..., None]))


def _nvfp4_fast(xb: jax.Array, s: jax.Array, dec: jax.Array):
    """NVFP4 fast recipe (SPEC 4.2): encode scale ``s``, decode factor ``dec``."""
    a = _amax(xb)
    code = encode_e4m3(mul(s, mul(a, RCP6)))
    os = jnp.where(_nonzero(a), rcp(mul(decode_e4m3(code), dec)), np.float32(0))
    return _encode_blocks(xb, os), code


def _nvfp4_exact(xb: jax.Array, s: jax.Array, dec: jax.Array):
    """NVFP4 exact recipe (SPEC 4.3); ``dec`` is ``div(1, s)``."""
    a = _amax(xb)
    nz = _nonzero(a)
    code = encode_e4m3(jnp.where(nz, mul(a, mul(s, ONE_SIXTH)), np.float32(0)))
    inv = _fmin_flt_max(div(np.float32(1), mul(decode_e4m3(code), dec)))
    os = jnp.where(nz, inv, np.float32(0))
    return _encode_blocks(xb, os), code


def _nvfp4_four_over_six(
    xb: jax.Array,
    s: jax.Array,
    g: jax.Array,
    row_amax: jax.Array | None,
    *,
    exact: bool,
    flags: int,
):
    """NVFP4 4over6 recipe (SPEC 4.4): per block, the better of the scales for 6 and 4.

    Args:
      xb: blocks ``[M, C, 16]``.
      s: encode scale per row ``[M, 1]``.
      g: decode factor per row ``[M, 1]`` (``rcp(s)``, ``div(1, s)`` or per-token ``p``).
      row_amax: per-token row maxima ``[M, 1]``, or None (global scale: 0).
      exact: exact-mode arithmetic (SPEC 4.3) for the candidate scales.
      flags: bit 1 MSE (else MAE), bit 2 error in fast math, bit 3 E4M3 max 256.
    """
    mse, err_fast, use_256 = bool(flags & 2), bool(flags & 4), bool(flags & 8)
    a = _amax(xb)
    if exact:
        sf6 = mul(div(a, np.float32(6)), s)
    else:
        sf6 = mul(s, mul(a, RCP6))
    sf4 = mul(sf6, np.float32(1.5))
    c4, c6 = encode_e4m3(sf4), encode_e4m3(sf6)
    v4, v6 = decode_e4m3(c4), decode_e4m3(c6)

    def out_scale(v):
        if exact:
            return _fmin_flt_max(div(np.float32(1), mul(v, g)))
        return rcp(mul(v, g))

    q4 = _encode_blocks(xb, out_scale(v4))
    q6 = _encode_blocks(xb, out_scale(v6))
    denom = np.float32(6 * (256 if use_256 else 448))
    x_s = mul(xb, s[..., None]) if err_fast else None

    def error(q, v):
        # d4(q) * v has at most 2 + 4 significant bits and is at least 2^-10 or
        # zero: exact, so the plain product is the device product.
        dv = decode_e2m1(q) * v[..., None]
        if err_fast:
            d = sub(dv, x_s)
        else:
            deq = mul(dv, g[..., None])
            if row_amax is not None:  # row_amax > 0: NaN and 0 take the other branch
                per_token = div(mul(dv, row_amax[..., None]), denom)
                positive = _nonzero(row_amax) & ~_is_nan(_bits(row_amax))
                deq = jnp.where(positive[..., None], per_token, deq)
            d = sub(deq, xb)
        term = mul(d, d) if mse else _float(_bits(d) & _ABS)
        err = jnp.zeros(a.shape, jnp.float32)
        for i in range(xb.shape[-1]):  # element order, as the kernel accumulates
            err = add(err, term[..., i])
        return err

    pick4 = error(q4, v4) < error(q6, v6)  # strictly smaller; NaN keeps candidate 6
    zero = ~_nonzero(a)
    code = jnp.where(zero, np.uint8(0), jnp.where(pick4, c4, c6))
    q = jnp.where(zero[..., None], np.uint8(0), jnp.where(pick4[..., None], q4, q6))
    return q, code


def _mxfp4(xb: jax.Array):
    """MXFP4 recipe (SPEC 4.5): UE8M0 scale, no global scale."""
    t = mul(_amax(xb), RCP6)
    code = encode_ue8m0(t)
    # 2^(127 - code) has biased exponent 254 - code; code 254 gives 2^-127,
    # which the fast exp2 flushes to 0 (code 0 cannot occur when t != 0).
    c = code.astype(jnp.int32)
    pow2 = _float(jnp.where(c < 254, jnp.clip(254 - c, 0, 254).astype(_U32) << 23, 0))
    os = jnp.where(_nonzero(t), pow2, np.float32(0))
    return _encode_blocks(xb, os), code


def _fp8_input(xb: jax.Array, s: jax.Array, prescale: jax.Array, ue8m0: bool):
    """FP8 (E4M3) input recipe (SPEC 4.6); ``prescale`` is ``mul(6, rcp(s))``."""
    h = round_to_float16(_mul_elem(xb, prescale[..., None]))
    v = mul(s, mul(_amax(h), RCP6))
    if ue8m0:
        code = encode_ue8m0(v)
        narrow = decode_ue8m0(code, mode="device")
    else:
        code = encode_e4m3(v)
        narrow = decode_e4m3(code)
    os = jnp.where(_nonzero(v), mul(s, rcp(narrow)), np.float32(0))
    return _encode_blocks(h, os), code


def _mxfp8(xb: jax.Array):
    """MXFP8 recipe (SPEC 4.7): UE8M0 scale, E4M3 elements clamped to ±448."""
    t = mul(_amax(xb), RCP448)
    code = encode_ue8m0(t)
    sv = _ftz(decode_ue8m0(code, mode="device"))  # code 0 -> 2^-127 -> 0
    os = jnp.where(_nonzero(sv), rcp(sv), np.float32(0))
    y = _mul_elem(xb, os[..., None])
    # fmaxf(fminf(y, 448), -448): a NaN y becomes +448.
    y = jnp.where(_is_nan(_bits(y)), np.float32(448), jnp.clip(y, -448.0, 448.0))
    return encode_e4m3(y), code


# ----------------------------------------------------------------------------
# Operations (SPEC 5)
# ----------------------------------------------------------------------------


def _row_mask(row_mask: jax.Array | None, m: int, op: str) -> jax.Array | None:
    """uint8 ``[M]`` row mask -> bool ``[M]`` (True: quantize the row), or None."""
    if row_mask is None:
        return None
    mask = jnp.asarray(row_mask).reshape(-1)
    if mask.shape[0] != m:
        raise ValueError(f"{op}: row_mask has {mask.shape[0]} entries, expected M={m}")
    return mask != 0


def _finish(codes, sf, keep, lead, layout):
    """Zeroes masked rows, packs the codes and lays out the scales."""
    m, k = codes.shape[0], codes.shape[1] * codes.shape[2]
    codes = codes.reshape(m, k)
    if keep is not None:
        codes = jnp.where(keep[:, None], codes, np.uint8(0))
        sf = jnp.where(keep[:, None], sf, np.uint8(0))
    q = pack_fp4(codes).reshape(*lead, k // 2)
    sf = swizzle_scales(sf, layout).reshape(sf_matrix_shape(layout, m, sf.shape[1]))
    return q, sf


def _lead_and_k(op: str, x: jax.Array, dtypes) -> tuple[list[int], int]:
    dtype = jnp.dtype(x.dtype)
    if dtype not in dtypes:
        raise TypeError(f"{op}: unsupported input dtype {dtype}")
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have rank >= 1")
    *lead, k = x.shape
    return lead, k


def fp4_quantize(
    x: jax.Array,
    global_scale: jax.Array | None,
    row_mask: jax.Array | None = None,
    *,
    sf_vec_size: int,
    use_ue8m0: bool,
    layout: int,
    scale_mode: int,
    exact: bool,
    four_over_six: int,
) -> tuple[jax.Array, jax.Array]:
    """``fp4_quantize`` (SPEC 5.2): NVFP4 or MXFP4 quantization of the last axis.

    Also the kernel of ``nvfp4_kv_quantize`` (5.13, ``scale_mode=2``),
    ``nvfp4_batched_quantize`` (5.4, under vmap) and ``scaled_fp4_grouped_quantize``
    (5.10, ``row_mask``).

    Args:
      x: float16, bfloat16 or float8_e4m3fn ``[..., K]``; the leading dims are
        flattened into ``M`` rows sharing one scale matrix.
      global_scale: float32 ``[1]`` or ``[M]`` (row-wise, SPEC 4.2.3), read as
        ``scale_mode`` says; ``None`` means 1.0. Ignored for MXFP4 with 16-bit input.
      row_mask: None, or uint8 ``[M]``: rows with 0 get all-zero codes and scale bytes.
      sf_vec_size: 16 (NVFP4, E4M3 scales) or 32 (MXFP4, UE8M0 scales).
      use_ue8m0: must be ``sf_vec_size == 32``.
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.
      scale_mode: 0 = encode scale ``S``; 1 = ``1/S`` (SPEC 4.2.1: ``S = rcp(gs)``,
        exact mode ``div(1, gs)``); 2 = KV decode scale ``g`` (SPEC 5.13:
        ``S = rcp(g)``, decode factor ``g``; fast NVFP4).
      exact: NVFP4 exact mode (SPEC 4.3); only affects 16-bit NVFP4 input.
      four_over_six: 0, or the 4over6 bit field (SPEC 4.4): bit 0 on, bit 1 MSE,
        bit 2 error in fast math, bit 3 E4M3 max 256; 16-bit NVFP4 only.

    Returns:
      ``(codes, sf)``: codes uint8 ``[..., K // 2]`` (packed E2M1, low nibble
      first); sf uint8 ``[round_up(M, 128|8), round_up(C, 4)]`` (swizzled,
      zero padding) or ``[M, C]`` (linear), ``C = K // sf_vec_size``.

    Example:
      >>> x = jnp.ones((2, 32), jnp.bfloat16)
      >>> q, sf = fp4_quantize(x, jnp.ones(1), sf_vec_size=16, use_ue8m0=False,
      ...                      layout=2, scale_mode=0, exact=False, four_over_six=0)
      >>> q.shape, sf.shape
      ((2, 16), (2, 2))
    """
    op = "fp4_quantize"
    if (sf_vec_size, bool(use_ue8m0)) not in ((16, False), (32, True)):
        raise ValueError(
            f"{op}: sf_vec_size=16 needs use_ue8m0=False and sf_vec_size=32 "
            f"needs use_ue8m0=True, got sf_vec_size={sf_vec_size}, "
            f"use_ue8m0={use_ue8m0}"
        )
    if scale_mode not in (SCALE_ENCODE, SCALE_INVERSE, SCALE_KV_DECODE):
        raise ValueError(f"{op}: unknown scale_mode {scale_mode}")
    layout = _check_layout(layout)
    lead, k = _lead_and_k(op, x, (jnp.float16, jnp.bfloat16, jnp.float8_e4m3fn))
    if k % sf_vec_size:
        raise ValueError(f"{op}: last dim {k} is not a multiple of {sf_vec_size}")
    m, c = math.prod(lead), k // sf_vec_size
    xb = _widen(x).reshape(m, c, sf_vec_size)
    keep = _row_mask(row_mask, m, op)

    if global_scale is None:
        global_scale = jnp.ones((1,), jnp.float32)
    gs = jnp.asarray(global_scale, jnp.float32).reshape(-1)
    if gs.shape[0] not in (1, m):
        raise ValueError(
            f"{op}: global_scale has {gs.shape[0]} elements, expected 1 or M={m}"
        )

    def rows(v):  # a per-row scalar ([1] or [M]) as [M, 1]
        return jnp.broadcast_to(v, (m,))[:, None]

    fp8 = jnp.dtype(x.dtype) == jnp.float8_e4m3fn
    # The row scalars are derived before they are spread over rows (this also
    # keeps XLA's algebraic simplifier out of a rewrite loop it otherwise enters
    # on two chained divisions of a broadcast operand).
    if use_ue8m0 and not fp8:
        codes, sf = _mxfp4(xb)  # SPEC 4.5: no global scale
    elif exact and not fp8:
        s = div(np.float32(1), gs) if scale_mode == SCALE_INVERSE else gs
        dec = div(np.float32(1), s)
        if four_over_six & 1:
            codes, sf = _nvfp4_four_over_six(
                xb, rows(s), rows(dec), None, exact=True, flags=four_over_six
            )
        else:
            codes, sf = _nvfp4_exact(xb, rows(s), rows(dec))
    else:
        if scale_mode == SCALE_KV_DECODE:
            s, dec = rcp(gs), gs  # the caller's g is the decode factor itself
            prescale = jnp.full_like(gs, 6.0)  # as the handlers: no rescale by g
        else:
            s = rcp(gs) if scale_mode == SCALE_INVERSE else gs
            dec = rcp(s)  # with the inverse flag rcp(rcp(gs)), both evaluated
            prescale = mul(np.float32(6), dec)
        if fp8:
            codes, sf = _fp8_input(xb, rows(s), rows(prescale), bool(use_ue8m0))
        elif four_over_six & 1:
            codes, sf = _nvfp4_four_over_six(
                xb, rows(s), rows(dec), None, exact=False, flags=four_over_six
            )
        else:
            codes, sf = _nvfp4_fast(xb, rows(s), rows(dec))
    return _finish(codes, sf, keep, lead, layout)


def nvfp4_per_token_quantize(
    x: jax.Array,
    s_inv: jax.Array,
    row_mask: jax.Array | None = None,
    *,
    layout: int,
    exact: bool,
    four_over_six: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-token NVFP4 (``nvfp4_quantize(..., per_token_activation=True)``, SPEC 5.3).

    Each row gets its own scale from its maximum ``ra``: fast (SPEC 4.2.2)
    ``p = mul(ra, S_inv)``, ``S = rcp(p)``, decode factor ``p``; exact (SPEC 4.3)
    ``G = ra != 0 ? min(div(div(1, S_inv), ra), FLT_MAX) : FLT_MAX`` (0 -> 1),
    ``p = div(1, G)``; with 4over6 (SPEC 4.4) the exact zero row keeps ``G = 0``,
    ``p = 0``.

    Args:
      x: float16 or bfloat16 ``[..., K]``, ``K % 16 == 0``; leading dims are rows.
      s_inv: float32 ``[1]``, the inverse base scale (typically ``1 / 2688``).
      row_mask: None, or uint8 ``[M]``: rows with 0 get zero codes, zero scale
        bytes and ``p = 0``.
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.
      exact: exact mode (SPEC 4.3).
      four_over_six: 0 or the 4over6 bit field (see ``fp4_quantize``).

    Returns:
      ``(codes, sf, p)``: codes uint8 ``[..., K // 2]``; sf uint8 2-D as
      ``fp4_quantize`` returns it; p float32 ``[M]``, the per-token scale.
    """
    op = "nvfp4_per_token_quantize"
    layout = _check_layout(layout)
    lead, k = _lead_and_k(op, x, (jnp.float16, jnp.bfloat16))
    if k % 16:
        raise ValueError(f"{op}: last dim {k} is not a multiple of 16")
    m, c = math.prod(lead), k // 16
    xf = _widen(x).reshape(m, k)
    xb = xf.reshape(m, c, 16)
    keep = _row_mask(row_mask, m, op)
    si = jnp.asarray(s_inv, jnp.float32).reshape(-1)
    if si.shape[0] != 1:
        raise ValueError(f"{op}: s_inv must have one element, got {si.shape[0]}")
    si = si[0]

    ra = _amax(xf)  # [M], flushed
    nz = _nonzero(ra)
    fos = bool(four_over_six & 1)
    if not exact:
        p = mul(ra, si)
        s, dec = rcp(p), p  # ptxas cancels rcp(rcp(p)) into p (SPEC 1.5)
    else:
        e = _fmin_flt_max(div(div(np.float32(1), si), ra))
        e = jnp.where(_nonzero(e), e, np.float32(1))  # G == 0 -> 1
        if fos:
            s = jnp.where(nz, e, np.float32(0))
            dec = div(np.float32(1), s)
            p = jnp.where(_nonzero(s), dec, np.float32(0))
        else:
            s = jnp.where(nz, e, FLT_MAX)
            dec = div(np.float32(1), s)
            p = dec
    if fos:
        codes, sf = _nvfp4_four_over_six(
            xb, s[:, None], dec[:, None], ra[:, None], exact=exact, flags=four_over_six
        )
    elif exact:
        codes, sf = _nvfp4_exact(xb, s[:, None], dec[:, None])
    else:
        codes, sf = _nvfp4_fast(xb, s[:, None], dec[:, None])
    if keep is not None:
        p = jnp.where(keep, p, np.float32(0))
    q, sf = _finish(codes, sf, keep, lead, layout)
    return q, sf, p


def mxfp8_quantize(
    x: jax.Array, *, layout: int, alignment: int
) -> tuple[jax.Array, jax.Array]:
    """``mxfp8_quantize`` (SPEC 5.16, GPU-path semantics, recipe 4.7).

    Args:
      x: float16, bfloat16 or float32 ``[..., K]``, ``K % 32 == 0``.
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.
      alignment: multiple of 32; ``Kp = round_up(K, alignment)``.

    Returns:
      ``(codes, sf)``: codes uint8 ``[..., Kp]`` (E4M3 bytes, columns ``K..Kp-1``
      are 0x00); sf uint8 1-D, the ``[M, Kp // 32]`` UE8M0 matrix in ``layout``
      (blocks of padded columns get scale 0, zero padding).

    Example:
      >>> q, sf = mxfp8_quantize(jnp.ones((1, 32), jnp.float16), layout=2, alignment=64)
      >>> q.shape, sf.shape
      ((1, 64), (2,))
    """
    layout = _check_layout(layout)
    dtype = jnp.dtype(x.dtype)
    if dtype not in (jnp.float16, jnp.bfloat16, jnp.float32):
        raise TypeError(f"mxfp8_quantize: unsupported input dtype {dtype}")
    if alignment <= 0 or alignment % 32:
        raise ValueError(
            f"mxfp8_quantize: alignment {alignment} is not a multiple of 32"
        )
    if x.ndim < 1:
        raise ValueError("mxfp8_quantize: input must have rank >= 1")
    *lead, k = x.shape
    if k % 32:
        raise ValueError(f"mxfp8_quantize: last dim {k} is not a multiple of 32")
    m, kp = math.prod(lead), _round_up(k, alignment)
    xf = jnp.pad(_widen(x).reshape(m, k), ((0, 0), (0, kp - k)))  # +0.0 padding
    codes, sf = _mxfp8(xf.reshape(m, kp // 32, 32))
    return codes.reshape(*lead, kp), swizzle_scales(sf, layout)


ELEMENT_E2M1, ELEMENT_E4M3 = 0, 1
SCALE_E4M3, SCALE_UE8M0_BITS, SCALE_UE8M0_HOST = 0, 1, 2


def block_dequantize(
    codes: jax.Array,
    scales: jax.Array,
    global_scale: jax.Array | None,
    *,
    element_format: int,
    scale_format: int,
    sf_vec_size: int,
    layout: int,
    plus_zero_code8: bool,
    device_math: bool,
    out_dtype: str = "float32",
) -> jax.Array:
    """Every block dequantizer (SPEC 5.6, 5.7, 5.9, 5.14, 5.17): element times scale.

    Host math (FlashInfer's host functions): ``hmul(e, hmul(s, g))``, IEEE float32
    with subnormals kept. Device math (``nvfp4_kv_dequantize``):
    ``mul(mul(e, s), g)`` with flushing. The float32 result is then rounded to
    ``out_dtype`` (nearest even; NaN stays NaN; fp16 overflow gives inf).

    Args:
      codes: uint8 ``[..., M, K // 2]`` packed E2M1 (``element_format=0``) or
        ``[..., M, K]`` E4M3 bytes (``element_format=1``); leading dims are rows.
      scales: uint8 scale bytes (any shape, flattened), exactly
        ``sf_buffer_size(layout, M, K // sf_vec_size)`` of them.
      global_scale: float32 with one element (``g``); None means 1.0.
      element_format: 0 = E2M1, 1 = E4M3.
      scale_format: 0 = E4M3 (``d8``), 1 = UE8M0 bit pattern ``b << 23``
        (0 -> 0.0, 255 -> inf), 2 = UE8M0 host value (0 -> 2^-127, 255 -> NaN).
      sf_vec_size: elements per scale byte, must divide ``K``.
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.
      plus_zero_code8: E2M1 code 8 decodes to +0.0 (``mxfp4_dequantize_host``).
      device_math: device (flushing) instead of host IEEE arithmetic.
      out_dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Returns:
      ``[..., M, K]`` array of ``out_dtype``.
    """
    op = "block_dequantize"
    layout = _check_layout(layout)
    if element_format not in (ELEMENT_E2M1, ELEMENT_E4M3):
        raise ValueError(f"{op}: unknown element_format {element_format}")
    if scale_format not in (SCALE_E4M3, SCALE_UE8M0_BITS, SCALE_UE8M0_HOST):
        raise ValueError(f"{op}: unknown scale_format {scale_format}")
    if codes.ndim < 1:
        raise ValueError(f"{op}: codes must have rank >= 1")
    *lead, kc = codes.shape
    k = kc * 2 if element_format == ELEMENT_E2M1 else kc
    if sf_vec_size <= 0 or k % sf_vec_size:
        raise ValueError(f"{op}: K={k} is not a multiple of sf_vec_size={sf_vec_size}")
    m, c = math.prod(lead), k // sf_vec_size
    flat = jnp.asarray(scales).reshape(-1)
    need = sf_buffer_size(layout, m, c)
    if flat.shape[0] != need:
        raise ValueError(
            f"{op}: scale buffer has {flat.shape[0]} bytes, layout {layout} with "
            f"M={m}, C={c} needs {need}"
        )
    sfm = unswizzle_scales(flat.astype(jnp.uint8), layout, m, c)  # [M, C]
    if scale_format == SCALE_E4M3:
        s = decode_e4m3(sfm)
    else:
        s = decode_ue8m0(
            sfm, mode="bits" if scale_format == SCALE_UE8M0_BITS else "host"
        )
    g = (
        jnp.float32(1)
        if global_scale is None
        else jnp.asarray(global_scale, jnp.float32).reshape(-1)[0]
    )
    cb = codes.astype(jnp.uint8).reshape(m, kc)
    if element_format == ELEMENT_E2M1:
        e = decode_e2m1(unpack_fp4(cb), negative_zero=not plus_zero_code8)
    else:
        e = decode_e4m3(cb)
    e = e.reshape(m, c, sf_vec_size)
    if device_math:
        out = mul(mul(e, s[..., None]), g)
    else:
        # hmul's second operand must have few significant bits: the decoded scale
        # and the element both do; IEEE products commute.
        sg = hmul(jnp.broadcast_to(g, s.shape), s)
        out = hmul(jnp.broadcast_to(sg[..., None], e.shape), e)
    return round_to_dtype(out.reshape(*lead, k), out_dtype)


def e2m1_and_ufp8sf_scale_to_float(
    codes: jax.Array,
    sf: jax.Array,
    global_scale: jax.Array | None,
    *,
    sf_vec_size: int,
    ufp8_type: int,
    layout: int,
) -> jax.Array:
    """``e2m1_and_ufp8sf_scale_to_float`` (SPEC 5.9): host IEEE dequantization.

    ``out = hmul(d4(code), hmul(s, g))`` with ``s = d8(b), g = global_scale[0]``
    (``ufp8_type=1``) or ``s = bits(b << 23), g = 1`` (``ufp8_type=0``).

    Args:
      codes: uint8 ``[M, K // 2]`` packed E2M1.
      sf: uint8 scale bytes (flattened), exactly ``sf_buffer_size(layout, M, C)``
        elements, ``C = K // sf_vec_size``.
      global_scale: float32 with one element (``None`` means 1.0).
      sf_vec_size: elements per scale, must divide ``K``.
      ufp8_type: 0 = UE8M0 scales, 1 = E4M3 scales.
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.

    Returns:
      float32 ``[M, K]``, subnormal results kept.
    """
    if codes.ndim != 2:
        raise ValueError(
            f"e2m1_and_ufp8sf_scale_to_float: codes must be 2-D, got {codes.ndim}-D"
        )
    if ufp8_type not in (0, 1):
        raise ValueError(
            f"e2m1_and_ufp8sf_scale_to_float: ufp8_type {ufp8_type} not in (0, 1)"
        )
    return block_dequantize(
        codes,
        sf,
        global_scale if ufp8_type == 1 else None,  # UE8M0: global scale ignored
        element_format=ELEMENT_E2M1,
        scale_format=SCALE_E4M3 if ufp8_type == 1 else SCALE_UE8M0_BITS,
        sf_vec_size=sf_vec_size,
        layout=layout,
        plus_zero_code8=False,
        device_math=False,
    )


def mxfp4_dequantize_host(
    weight: jax.Array, scale: jax.Array, *, group_size: int
) -> jax.Array:
    """``mxfp4_dequantize_host`` (SPEC 5.7): ``D(code) * H(scale)`` in host IEEE.

    Args:
      weight: uint8 ``[N, K // 2]`` packed E2M1.
      scale: uint8 linear ``[N, K // group_size]`` UE8M0 bytes.
      group_size: elements per scale.

    Returns:
      float32 ``[N, K]``; code 8 decodes to +0.0, scale 0 to 2^-127 (kept as a
      subnormal), scale 255 to NaN.
    """
    n, k = weight.shape[0], 2 * weight.shape[1]
    if group_size <= 0 or k % group_size or scale.shape != (n, k // group_size):
        raise ValueError(
            f"mxfp4_dequantize_host: scale shape {scale.shape} does not match "
            f"[{n}, {k} // {group_size}]"
        )
    return block_dequantize(
        weight,
        scale,
        None,
        element_format=ELEMENT_E2M1,
        scale_format=SCALE_UE8M0_HOST,
        sf_vec_size=group_size,
        layout=LAYOUT_LINEAR,
        plus_zero_code8=True,
        device_math=False,
    )


def mxfp8_dequantize_host(codes: jax.Array, sf: jax.Array, *, layout: int) -> jax.Array:
    """``mxfp8_dequantize_host`` (SPEC 5.17): ``d8(code) * bits(c << 23)`` in host IEEE.

    Args:
      codes: uint8 ``[M, K]`` E4M3 bytes, ``K % 32 == 0``.
      sf: uint8 1-D buffer of at least ``sf_buffer_size(layout, M, K // 32)``
        bytes (extra trailing bytes are ignored, as FlashInfer does).
      layout: 0 = 128x4, 1 = 8x4, 2 = linear.

    Returns:
      float32 ``[M, K]``; scale 0 -> 0.0, 255 -> inf, E4M3 NaN -> NaN.
    """
    layout = _check_layout(layout)
    m, k = codes.shape
    if k % 32:
        raise ValueError(f"mxfp8_dequantize_host: last dim {k} is not a multiple of 32")
    need = sf_buffer_size(layout, m, k // 32)
    flat = sf.reshape(-1)
    if flat.shape[0] < need:
        raise ValueError(
            f"mxfp8_dequantize_host: scale buffer has {flat.shape[0]} bytes, "
            f"needs {need}"
        )
    return block_dequantize(
        codes,
        flat[:need],
        None,
        element_format=ELEMENT_E4M3,
        scale_format=SCALE_UE8M0_BITS,
        sf_vec_size=32,
        layout=layout,
        plus_zero_code8=False,
        device_math=False,
    )


def _truthy(x: jax.Array) -> jax.Array:
    """NumPy bool conversion; float bit tests so subnormals count on XLA:CPU too."""
    dt = jnp.dtype(x.dtype)
    if dt == jnp.bool_:
        return x
    uint = {
        jnp.dtype(jnp.float32): jnp.uint32,
        jnp.dtype(jnp.float16): jnp.uint16,
        jnp.dtype(jnp.bfloat16): jnp.uint16,
    }.get(dt)
    if uint is not None:
        u = lax.bitcast_convert_type(x, uint)
        return (u & np.array(np.iinfo(uint).max >> 1, uint)) != 0
    return x != 0


def _bit_weights(bitorder: str) -> np.ndarray:
    if bitorder == "big":
        return np.array([128, 64, 32, 16, 8, 4, 2, 1], np.uint8)
    if bitorder == "little":
        return np.array([1, 2, 4, 8, 16, 32, 64, 128], np.uint8)
    raise ValueError(f"bitorder must be 'big' or 'little', got {bitorder!r}")


def packbits(x: jax.Array, *, bitorder: str) -> jax.Array:
    """``packbits`` (SPEC 5.18): NumPy ``packbits`` of the flattened input.

    Args:
      x: array of any dtype (flattened); non-zero (NaN included) is a 1 bit.
      bitorder: ``"big"`` (element ``8j`` is bit 7) or ``"little"`` (bit 0).

    Returns:
      uint8 ``[ceil(N / 8)]``, the last byte zero-padded.
    """
    w = _bit_weights(bitorder)
    b = _truthy(jnp.ravel(x))
    n = b.shape[0]
    b = jnp.pad(b, (0, -n % 8)).reshape(-1, 8).astype(jnp.uint8)
    return jnp.sum(b * w, axis=1, dtype=jnp.uint8)


def segment_packbits(
    x: jax.Array, indptr: jax.Array, *, bitorder: str, total_bytes: int
) -> tuple[jax.Array, jax.Array]:
    """``segment_packbits`` (SPEC 5.19) with a static output size.

    Segment ``i`` is ``x[indptr[i]:indptr[i+1]]``, packed like ``packbits``
    starting on a fresh byte.

    Args:
      x: 1-D array of any dtype, length ``indptr[-1]``.
      indptr: integer ``[B + 1]`` non-decreasing offsets (may be traced).
      bitorder: ``"big"`` or ``"little"``.
      total_bytes: static output length; bytes past ``new_indptr[-1]`` are 0,
        packed bytes beyond ``total_bytes`` are dropped.

    Returns:
      ``(y, new_indptr)``: uint8 ``[total_bytes]`` and int32 ``[B + 1]`` with
      ``new_indptr[i+1] = new_indptr[i] + ceil(len_i / 8)``.
    """
    w = _bit_weights(bitorder)
    bits = _truthy(jnp.ravel(x)).astype(jnp.uint8)
    indptr = jnp.asarray(indptr).astype(jnp.int32)
    nseg = indptr.shape[0] - 1
    if nseg < 0:
        raise ValueError("segment_packbits: indptr must have at least one element")
    nbytes = (indptr[1:] - indptr[:-1] + 7) // 8
    new_indptr = jnp.concatenate(
        [jnp.zeros((1,), jnp.int32), jnp.cumsum(nbytes, dtype=jnp.int32)]
    )
    if total_bytes == 0 or nseg == 0 or bits.shape[0] == 0:
        return jnp.zeros((total_bytes,), jnp.uint8), new_indptr
    j = jnp.arange(total_bytes, dtype=jnp.int32)
    # Segment of output byte j: the last i with new_indptr[i] <= j (empty
    # segments share their start with the next one and are skipped by "right").
    seg = jnp.clip(jnp.searchsorted(new_indptr, j, side="right") - 1, 0, nseg - 1)
    start = indptr[seg] + 8 * (j - new_indptr[seg])
    idx = start[:, None] + jnp.arange(8, dtype=jnp.int32)
    valid = (j < new_indptr[-1])[:, None] & (idx < indptr[seg + 1][:, None])
    b = jnp.where(valid, bits[jnp.clip(idx, 0, bits.shape[0] - 1)], np.uint8(0))
    return jnp.sum(b * w, axis=1, dtype=jnp.uint8), new_indptr
