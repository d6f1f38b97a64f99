"""Fixed-point requantization: the exact integer arithmetic every layer output goes through.

A real multiplier ``M > 0`` (e.g. ``s_in * s_w / s_out``) is stored as an int32 mantissa ``m`` in
``[2^30, 2^31)`` and a right shift ``s`` with ``M ~= m * 2^-s``. An int32 accumulator becomes int8 as

    y = clamp((acc * m + 2^(s-1)) >> s, -128, 127)          (then max(y, 0) when ReLU is fused)

computed in int64 (|acc| < 2^31 and m < 2^31, so the product fits). ``>>`` is an arithmetic shift (floor), so
the rounding is *round half up* (towards +infinity): 2.5 -> 3, -2.5 -> -2, -2.6 -> -3. The hardware's
post-processing unit implements exactly this expression.
"""

from __future__ import annotations

import math

import numpy as np

from edgesparse.errors import QuantError

INT8_MIN, INT8_MAX = -128, 127
MANTISSA_BITS = 31  # m < 2^31: a signed 32-bit register
MAX_SHIFT = 62


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(m, s)`` with ``m`` in ``[2^30, 2^31)`` and ``m * 2^-s`` the nearest such value to ``real``."""
    if not math.isfinite(real) or real <= 0.0:
        raise QuantError(f"a requantization multiplier must be positive and finite, got {real!r}")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    m = round(mantissa * (1 << MANTISSA_BITS))
    if m == 1 << MANTISSA_BITS:  # rounding carried into the next power of two
        m //= 2
        exponent += 1
    shift = MANTISSA_BITS - exponent
    if shift < 1:
        raise QuantError(f"multiplier {real!r} is too large for a right-shift requantization")
    if shift > MAX_SHIFT:
        raise QuantError(f"multiplier {real!r} is too small to represent (shift {shift} > {MAX_SHIFT})")
    return m, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of :func:`quantize_multiplier`: int32 mantissas and int32 shifts."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int32).reshape(np.shape(reals)),
            np.array([p[1] for p in pairs], dtype=np.int32).reshape(np.shape(reals)))


def rounding_shift(value: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """``(value + 2^(shift-1)) >> shift`` in int64: divide by 2^shift, rounding half up."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    return (value + (np.int64(1) << (shift - 1))) >> shift


def saturate_int8(value: np.ndarray) -> np.ndarray:
    return np.clip(value, INT8_MIN, INT8_MAX).astype(np.int8)


def requantize(acc: np.ndarray, m: np.ndarray | int, shift: np.ndarray | int, relu: bool = False,
               channel_axis: int = 1) -> np.ndarray:
    """int32 accumulators -> int8 with per-channel ``(m, shift)`` broadcast along ``channel_axis``."""
    acc = np.asarray(acc, dtype=np.int64)
    m, shift = np.asarray(m, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    if m.ndim == 1:
        view = [1] * acc.ndim
        view[channel_axis] = -1
        m, shift = m.reshape(view), shift.reshape(view)
    out = saturate_int8(rounding_shift(acc * m, shift))
    return np.maximum(out, 0).astype(np.int8) if relu else out


def quantize_tensor(x: np.ndarray, scale: float) -> np.ndarray:
    """Float -> int8 at ``scale`` (round half to even, saturating): how the input image enters the graph."""
    if not scale > 0:
        raise QuantError(f"a quantization scale must be positive, got {scale!r}")
    return saturate_int8(np.rint(np.asarray(x, dtype=np.float64) / scale))
