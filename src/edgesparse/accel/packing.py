"""Two int8 products from one multiplier, as the two-lane PE computes them (Xilinx's INT8 packing, WP486).

The PE (:class:`edgesparse.rtl.pe.SparsePE` with two lanes) forms the 25-bit operand ``a1 * 2^16 + a0`` and
multiplies it by the stationary weight in one 8 x 25-bit product ``p``. The low 16 bits of ``p``, read as a signed
number, are ``w * a0`` (``|w * a0| <= 2^14`` fits); the bits above, read as signed, are ``w * a1`` minus the borrow
that a negative low product took from them, so the low part's sign bit (bit 15) is added back: the sign fix.
"""

from __future__ import annotations

import numpy as np

LANE_SHIFT = 16  # the high lane's offset in the packed operand


def pack_two(w: np.ndarray, a0: np.ndarray, a1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(w * a0, w * a1)`` computed as the PE does: one product of ``w`` and ``a1 * 2^16 + a0``, then split with the
    sign fix. Takes int8 values in any integer arrays of broadcastable shapes; returns two int64 arrays."""
    w, a0, a1 = (np.asarray(v, dtype=np.int64) for v in (w, a0, a1))
    product = w * ((a1 << LANE_SHIFT) + a0)  # signed 33 bits at most
    low = ((product & 0xFFFF) ^ 0x8000) - 0x8000  # bits [0, 16) as a signed number
    high = (product >> LANE_SHIFT) + ((product >> (LANE_SHIFT - 1)) & 1)  # bits [16, 33) signed, plus bit 15
    return low, high
