"""Bit-exact emulation of PTX ``rcp.approx.ftz.f32`` (SPEC 1.4) in NumPy and jnp.

The hardware reciprocal is faithful but not correctly rounded: for 1,108,522 of
the 2^23 float32 mantissas it returns the other float32 neighbour of the exact
``1/x`` instead of the round-to-nearest-even (RN) one. Which mantissas deviate
is recorded in ``data/rcp_approx_ftz_f32_mismatch.bin.xz`` (LZMA, 262,144
little-endian uint32 words, bit ``m & 31`` of word ``m >> 5`` set when mantissa
``m`` deviates). The deviation depends only on the mantissa, so the emulation
divides ``1/1.m`` (always a normal number in ``(0.5, 1]``), corrects it by one
ulp where the table says so, and then re-attaches the exponent.

The direction of the correction (towards the exact ``1/x``) is precomputed once
with NumPy: ``1/1.m`` is rounded to float32 and compared with the exact value
through the exact float64 product ``r * 1.m`` (24 x 24 bits fit in 53). The jnp
function gathers one ``[up, down]`` word pair per element by ``m >> 5``.

The RN reciprocal itself comes from ``ieee_div``, an exact integer division:
XLA:GPU float32 division is *not* correctly rounded (measured with jax 0.11.2
on an H200: ``1/x`` returns the ``rcp.approx`` bits for exactly the 1,108,522
mantissas of the table, and ``a/b`` differs from IEEE in about 22 % of random
cases), while XLA:CPU's is. ``ieee_div`` and ``round_pack`` are also the exact
float32 building blocks of ``_reference``.
"""

from __future__ import annotations

import functools
import lzma
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_TABLE_PATH = Path(__file__).parent / "data" / "rcp_approx_ftz_f32_mismatch.bin.xz"
_NUM_MANTISSAS = 1 << 23
_NUM_WORDS = _NUM_MANTISSAS // 32


_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_EXP = np.uint32(0x7F800000)
_MANT = np.uint32(0x007FFFFF)
_HIDDEN = np.uint32(0x00800000)
_QNAN = np.uint32(0x7FC00000)


def rne_shift_right(v: jax.Array, s: jax.Array) -> jax.Array:
    """``v / 2^s`` rounded to nearest even; v uint32, s uint32 in [0, 31]."""
    q = v >> s
    one = jnp.uint32(1)
    rem = v & (jnp.left_shift(one, s) - one)
    half = jnp.left_shift(one, jnp.maximum(s, one) - one)
    up = (s > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    return q + up.astype(jnp.uint32)


def round_pack(sign: jax.Array, p: jax.Array, e: jax.Array) -> jax.Array:
    """float32 bits of ``±p * 2^e`` rounded to nearest even on the IEEE grid.

    Args:
      sign: uint32, 0 or 0x80000000.
      p: uint32 in ``[1, 2^30)``. A caller that truncated lower bits ORs a sticky
        bit into bit 0 and must keep at least 2 more bits than are kept here.
      e: int32 exponent.

    Returns:
      uint32 float32 bit patterns; subnormal results are kept, overflow -> ±inf.
    """
    nbits = 32 - lax.clz(p).astype(jnp.int32)
    # Keep 24 significant bits, or fewer where the result is subnormal (ulp 2^-149).
    shift = jnp.maximum(nbits - 24, -149 - e)
    left = jnp.clip(-shift, 0, 31).astype(jnp.uint32)
    right = jnp.clip(shift, 0, 31).astype(jnp.uint32)
    q = jnp.where(shift <= 0, p << left, rne_shift_right(p, right))
    # q has its leading bit at 2^23 (normal) or below it (subnormal, exponent field
    # 0); adding it to (biased exponent - 1) << 23 also handles the rounding carry.
    ebase = e + shift + 149
    bits = (jnp.clip(ebase, 0, 254).astype(jnp.uint32) << 23) + q
    bits = jnp.where((ebase > 254) | (bits >= _EXP), _EXP, bits)
    return sign | bits


def _significand(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(significand in [2^23, 2^24), exponent int32) with value = sig * 2^(exp-150)."""
    e = ((u >> 23) & 0xFF).astype(jnp.int32)
    sig = jnp.where(e == 0, u & _MANT, (u & _MANT) | _HIDDEN)
    lz = jnp.maximum(lax.clz(sig).astype(jnp.int32) - 8, 0)  # normalise subnormals
    return sig << lz.astype(jnp.uint32), jnp.maximum(e, 1) - lz


def ieee_div(a: jax.Array, b: jax.Array) -> jax.Array:
    """IEEE float32 ``a / b`` (round to nearest even, subnormals kept), in integers.

    Args:
      a: float32 array.
      b: float32 array, broadcastable with ``a``.

    Returns:
      float32 array of the broadcast shape; NaN results are the quiet NaN.
    """
    ua, ub = jnp.broadcast_arrays(
        lax.bitcast_convert_type(jnp.asarray(a, jnp.float32), jnp.uint32),
        lax.bitcast_convert_type(jnp.asarray(b, jnp.float32), jnp.uint32),
    )
    sign = (ua ^ ub) & _SIGN
    aa, ab = ua & _ABS, ub & _ABS
    nan = (aa > _EXP) | (ab > _EXP) | ((aa == 0) & (ab == 0))
    nan = nan | ((aa == _EXP) & (ab == _EXP))
    inf = (aa == _EXP) | (ab == 0)
    zero = (aa == 0) | (ab == _EXP)
    sa, ea = _significand(aa)
    sb, eb = _significand(ab)
    sb = jnp.maximum(sb, _HIDDEN)  # b == 0 is handled above
    # q = floor(sa * 2^25 / sb) lies in (2^24, 2^26) since sa / sb is in (1/2, 2).
    # The platform's float division of the significands gives an estimate q0
    # (XLA:GPU's is a few ulps off). With the bias 128 * sb, the remainder
    # t = sa * 2^25 - (q0 - 128) * sb lies in [0, 256 * sb) < 2^32 whenever
    # |q - q0| < 128, so wrapped uint32 arithmetic computes it exactly, and one
    # exact unsigned integer division by sb turns q0 into q.
    fa = lax.bitcast_convert_type((sa & _MANT) | np.uint32(0x3F800000), jnp.float32)
    fb = lax.bitcast_convert_type((sb & _MANT) | np.uint32(0x3F800000), jnp.float32)
    q0 = (fa / fb * np.float32(2.0**25)).astype(jnp.uint32) - np.uint32(128)
    t = (sa << 25) - q0 * sb
    k = lax.div(t, sb)
    q, r = q0 + k, t - k * sb  # r in [0, sb)
    sticky = (r != 0).astype(jnp.uint32)
    bits = round_pack(sign, (q << 1) | sticky, ea - eb - 26)
    out = jnp.where(zero, sign, jnp.where(inf, sign | _EXP, bits))
    out = jnp.where(nan, _QNAN, out)
    return lax.bitcast_convert_type(out, jnp.float32)


@functools.cache
def mismatch_bits() -> np.ndarray:
    """Returns the raw deviation table as bool ``[2^23]`` (True: not RN)."""
    raw = lzma.decompress(_TABLE_PATH.read_bytes())
    if len(raw) != 4 * _NUM_WORDS:
        raise RuntimeError(
            f"{_TABLE_PATH.name}: expected {4 * _NUM_WORDS} bytes, got {len(raw)}"
        )
    words = np.frombuffer(raw, dtype="<u4")
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    return bits.astype(bool)


def _rn_reciprocal_of_mantissa() -> tuple[np.ndarray, np.ndarray]:
    """RN float32 ``1/1.m`` for every mantissa and whether it lies below ``1/1.m``."""
    m = np.arange(_NUM_MANTISSAS, dtype=np.uint32)
    x = (m | np.uint32(0x3F800000)).view(np.float32)  # 1.m, exact
    r = np.float32(1.0) / x  # IEEE float32 division: RN
    below = r.astype(np.float64) * x.astype(np.float64) < 1.0  # exact product
    return r, below


@functools.cache
def correction_words() -> np.ndarray:
    """Returns uint32 ``[2^18, 2]``: bit planes "add one ulp" and "subtract one ulp".

    Column 0 has bit ``m & 31`` of row ``m >> 5`` set where the hardware result
    is one ulp above the RN reciprocal of ``1.m`` (RN lies below the exact
    value), column 1 where it is one ulp below.
    """
    dev = mismatch_bits()
    _, below = _rn_reciprocal_of_mantissa()
    up = np.packbits(dev & below, bitorder="little").view("<u4")
    down = np.packbits(dev & ~below, bitorder="little").view("<u4")
    return np.ascontiguousarray(np.stack([up, down], axis=1).astype(np.uint32))


def rcp_numpy(x: np.ndarray) -> np.ndarray:
    """NumPy model of ``rcp.approx.ftz.f32`` on float32 input (any shape)."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    sign = u & np.uint32(0x80000000)
    ex = ((u >> 23) & 0xFF).astype(np.int32)
    m = u & np.uint32(0x7FFFFF)
    with np.errstate(all="ignore"):
        r0 = (np.float32(1.0) / (m | np.uint32(0x3F800000)).view(np.float32)).view(
            np.uint32
        )
    words = correction_words()[m >> 5]
    bit = m & np.uint32(31)
    up = (words[..., 0] >> bit) & 1
    down = (words[..., 1] >> bit) & 1
    r1 = r0 + up - down
    e_out = ((r1 >> 23) & 0xFF).astype(np.int32) + 127 - ex
    mant = r1 & np.uint32(0x7FFFFF)
    normal = np.where(
        e_out >= 1, sign | (np.maximum(e_out, 0).astype(np.uint32) << 23) | mant, sign
    )
    special = np.where(m == 0, sign, u | np.uint32(0x7FC00000))
    out = np.where(ex == 0, sign | np.uint32(0x7F800000), normal)
    out = np.where(ex == 255, special, out)
    return out.astype(np.uint32).view(np.float32)


def rcp(x: jax.Array) -> jax.Array:
    """``rcp.approx.ftz.f32`` of a float32 array, bit-exact on every platform.

    Args:
      x: float32 array, any shape.

    Returns:
      float32 array of the same shape: ``±0 -> ±inf``, subnormal ``-> ±inf``
      (input flushed), ``±inf -> ±0``, NaN -> NaN, results below 2^-126 flushed
      to ±0, otherwise the hardware's faithful reciprocal (SPEC 1.4).
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    u = lax.bitcast_convert_type(x, jnp.uint32)
    sign = u & np.uint32(0x80000000)
    ex = ((u >> 23) & 0xFF).astype(jnp.int32)
    m = u & np.uint32(0x7FFFFF)
    # RN of 1/1.m, a normal number in (0.5, 1], by exact integer division.
    one_m = lax.bitcast_convert_type(m | np.uint32(0x3F800000), jnp.float32)
    r0 = lax.bitcast_convert_type(ieee_div(jnp.float32(1.0), one_m), jnp.uint32)
    words = jnp.asarray(correction_words())[(m >> 5).astype(jnp.int32)]
    bit = m & np.uint32(31)
    up = (words[..., 0] >> bit) & np.uint32(1)
    down = (words[..., 1] >> bit) & np.uint32(1)
    r1 = r0 + up - down
    # 1/(1.m * 2^e) = (1/1.m) * 2^-e: re-attach the exponent; a biased exponent
    # below 1 means |result| < 2^-126, which the instruction flushes.
    e_out = ((r1 >> 23) & 0xFF).astype(jnp.int32) + 127 - ex
    mant = r1 & np.uint32(0x7FFFFF)
    e_field = jnp.maximum(e_out, 0).astype(jnp.uint32) << 23
    normal = jnp.where(e_out >= 1, sign | e_field | mant, sign)
    special = jnp.where(m == 0, sign, u | np.uint32(0x7FC00000))  # inf -> 0, NaN
    out = jnp.where(ex == 0, sign | np.uint32(0x7F800000), normal)
    out = jnp.where(ex == 255, special, out)
    return lax.bitcast_convert_type(out, jnp.float32)
