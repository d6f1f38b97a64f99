"""Requantization edge cases: rounding at .5, saturation, negative accumulators, invalid scales."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesparse.errors import QuantError
from edgesparse.quant.fixedpoint import quantize_multiplier, quantize_tensor, requantize, rounding_shift


def test_rounding_is_half_up_for_both_signs():
    # value / 2^2: 10/4 = 2.5 -> 3, -10/4 = -2.5 -> -2, -11/4 = -2.75 -> -3, 9/4 = 2.25 -> 2, -9/4 -> -2
    assert rounding_shift(np.array([10, -10, -11, 9, -9, 6, -6]), 2).tolist() == [3, -2, -3, 2, -2, 2, -1]


def test_requantize_saturates_at_both_ends():
    m, shift = quantize_multiplier(1.0)  # identity scale
    acc = np.array([[-1_000_000, -129, -128, -1, 0, 1, 127, 128, 1_000_000]])
    out = requantize(acc, np.array([m] * 9), np.array([shift] * 9), channel_axis=1)
    assert out.dtype == np.int8
    assert out.tolist() == [[-128, -128, -128, -1, 0, 1, 127, 127, 127]]
    assert requantize(acc, np.array([m] * 9), np.array([shift] * 9), relu=True).tolist() == [
        [0, 0, 0, 0, 0, 1, 127, 127, 127]]


def test_negative_accumulators_scale_exactly():
    m, shift = quantize_multiplier(0.5)
    acc = np.array([[-7, -6, -5, -4, 5, 7]])
    # -3.5 -> -3 (half up), -3 -> -3, -2.5 -> -2, -2, 2.5 -> 3, 3.5 -> 4
    assert requantize(acc, m, shift).tolist() == [[-3, -3, -2, -2, 3, 4]]


def test_largest_accumulators_do_not_overflow():
    m, shift = quantize_multiplier(1 / 3)
    acc = np.array([[2**31 - 1, -(2**31)]])
    assert requantize(acc, m, shift).tolist() == [[127, -128]]
    m, shift = quantize_multiplier(2.0**-24)
    assert requantize(np.array([[2**31 - 1]]), m, shift).tolist() == [[127]]  # 127.99... saturates


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_zero_negative_and_non_finite_scales_are_rejected(bad):
    with pytest.raises(QuantError, match="positive and finite"):
        quantize_multiplier(bad)
    if not bad > 0:
        with pytest.raises(QuantError, match="scale must be positive"):
            quantize_tensor(np.ones(3), bad)


def test_multipliers_out_of_range_are_rejected():
    with pytest.raises(QuantError, match="too large"):
        quantize_multiplier(2.0**31)
    with pytest.raises(QuantError, match="too small"):
        quantize_multiplier(2.0**-40)


@given(st.floats(min_value=2.0**-30, max_value=2.0**29, allow_nan=False))
def test_multiplier_is_accurate_to_31_bits(real):
    m, shift = quantize_multiplier(real)
    assert 2**30 <= m < 2**31
    assert math.isclose(m * 2.0**-shift, real, rel_tol=2.0**-30)


def test_mantissa_carry_rounds_into_the_next_power_of_two():
    m, shift = quantize_multiplier(1.0 - 2.0**-40)
    assert (m, shift) == (2**30, 30)


def test_input_quantization_rounds_half_to_even_and_saturates():
    assert quantize_tensor(np.array([0.5, 1.5, -0.5, 2.5, 300.0, -300.0]), 1.0).tolist() == [0, 2, 0, 2, 127, -128]
