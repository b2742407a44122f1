"""Tests of battgen.afm.formats.grid: height order, resampling to the network grid, normalisation."""

from __future__ import annotations

import numpy as np

from battgen.afm.formats import read_stack
from tests.afm_files import linear_stack, npy_bytes
from tests.unit.afm_formats.expectations import assert_valid, expected_linear


def test_closest_first_flag_reverses_heights() -> None:
    stack = linear_stack(32, 32, 6)
    result = read_stack(npy_bytes(stack), name="stack.npy", closest_first=True)
    np.testing.assert_allclose(result.stack, expected_linear(32, 32, 6, reverse=True), atol=2e-6)
    assert result.stack[0, 0, 0] > result.stack[0, 0, -1]
    assert any("reversed" in op for op in result.operations)


def test_target_shape_and_n_heights_are_honoured() -> None:
    stack = linear_stack(20, 30, 4)
    result = read_stack(npy_bytes(stack), name="s.npy", target_shape=(64, 48), n_heights=7)
    assert_valid(result, (64, 48), 7)
    np.testing.assert_allclose(result.stack, expected_linear(20, 30, 4, target=(64, 48), n=7), atol=2e-6)


def test_same_size_input_is_only_normalised() -> None:
    stack = linear_stack(96, 80, 10)
    result = read_stack(npy_bytes(stack), name="s.npy", target_shape=(96, 80))
    np.testing.assert_allclose(result.stack, expected_linear(96, 80, 10, target=(96, 80)), atol=2e-6)
    assert "maps already 96×80" in result.operations and "kept the 10 heights" in result.operations


def test_extreme_magnitudes_do_not_overflow() -> None:
    stack = np.zeros((16, 16, 4))
    stack[..., 0] = -1.7e308
    stack[..., 3] = 1.7e308
    result = read_stack(npy_bytes(stack), name="s.npy")
    assert_valid(result)
    assert result.stack[0, 0, 0] == -1.0 and result.stack[0, 0, -1] == 1.0
