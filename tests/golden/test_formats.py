"""The numeric formats and their rounding rules, against Python big-integer/Fraction
references (< 2 s)."""

from __future__ import annotations

from fractions import Fraction
import math

import numpy as np
import pytest

from speedllm.golden import formats as F

RNG = np.random.default_rng(7)


def ref_round_half_up(num: Fraction) -> int:
    return math.floor(num + Fraction(1, 2))


def ref_sat(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def test_round_shift_is_round_half_up():
    v = np.array([-9, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 5, 6, 7, 8, 2**40 + 3])
    for s in (1, 2, 3, 17):
        got = F.round_shift(v, s)
        assert list(got) == [ref_round_half_up(Fraction(int(x), 2 ** s)) for x in v]
    assert list(F.round_shift(v[:5], 0)) == list(v[:5])
    assert list(F.round_shift(v[:5], -3)) == [int(x) * 8 for x in v[:5]]
    # array shifts: same rule per element
    s = np.array([0, 1, 2, 3, 62] * 4)[: len(v) - 1].tolist() + [5]
    got = F.round_shift_array(v, np.array(s))
    assert list(got) == [ref_round_half_up(Fraction(int(x), 2 ** k)) for x, k in zip(v, s)]


def test_shift_round_saturate_any_sign():
    v = np.concatenate([RNG.integers(-2**40, 2**40, 200), [0, 1, -1, 2**31, -2**31 - 1]])
    for s in (-40, -20, -1, 0, 1, 9, 33):
        got = F.shift_round_saturate(v, s, 32)
        want = [ref_sat(ref_round_half_up(Fraction(int(x)) / Fraction(2) ** s), 32) for x in v]
        assert list(got) == want
    s_arr = RNG.integers(-40, 40, len(v))
    got = F.shift_round_saturate(v, s_arr, 16)
    want = [ref_sat(ref_round_half_up(Fraction(int(x)) / Fraction(2) ** int(k)), 16)
            for x, k in zip(v, s_arr)]
    assert list(got) == want


def test_bit_length_and_block_exponents():
    v = np.concatenate([[0, 1, 2, 3, 4, 2**62, 2**63 - 1], RNG.integers(0, 2**62, 100)])
    assert list(F.bit_length(v)) == [int(x).bit_length() for x in v]
    x = RNG.integers(-2**31, 2**31, (6, 64))
    x[0] = 0
    x[1, :] = -1
    x[2, 0] = -2**31
    for bits in (8, 16, 32):
        got = F.block_exponents(x, bits)
        for r in range(len(x)):
            m = F.saturate(F.round_shift(x[r], int(got[r])), bits)
            if got[r] > 0:   # minimal: one less would not fit
                assert np.abs(x[r] >> (int(got[r]) - 1)).max() >= 1 << (bits - 1) or \
                    (x[r] >> (int(got[r]) - 1)).min() < -(1 << (bits - 1))
            assert np.all(np.abs(m - x[r] / 2.0 ** got[r]) <= 1)
    assert F.block_exponents(x[3], 16) == F.act_block_exponent(x[3])


@pytest.mark.parametrize("scale", [0.0, 1e-4, 1.0, 3e4])
def test_quantize_act_error(scale):
    x = F.to_act(RNG.normal(size=172) * scale)
    x16, e = F.quantize_act(x)
    assert x16.dtype == np.int16
    err = np.abs(x16.astype(np.int64) * 2**e - x)
    assert err.max() <= max(1, 2 ** e)      # half an lsb, +1 for the int16 edge
    assert F.quantize_act(np.array([F.ACT_MIN]))[1] == 16


def test_to_from_act_saturate():
    assert F.to_act([1e12, -1e12, 0.5]).tolist() == [F.ACT_MAX, F.ACT_MIN, 1 << 15]
    assert F.from_act(F.to_act(1.25)) == 1.25
    g = F.quantize_norm_weight([1.0, 0.5, 1e9, -1e9])
    top = 1 << (F.NORM_W_BITS - 1)
    assert g.tolist() == [1 << F.NORM_W_FRAC, 1 << (F.NORM_W_FRAC - 1), top - 1, -top]


@pytest.mark.parametrize("rows,cols,gs", [(8, 64, 32), (5, 172, 32), (3, 1, 32), (4, 172, 16),
                                          (4, 64, 64)])
def test_quantize_matrix_and_matvec_exact(rows, cols, gs):
    w = RNG.normal(size=(rows, cols))
    w[0, :] = 0.0                                                 # an all-zero row
    qm = F.quantize_matrix(w, gs)
    assert qm.q.shape == (rows, F.padded_cols(cols, gs)) and np.all(qm.q[:, cols:] == 0)
    assert qm.scale_m.max() >= 1 << (F.SCALE_BITS - 1)            # largest uses all bits
    step = qm.scale_m.astype(np.float64) * 2.0 ** -qm.scale_exp
    deq_err = np.abs(qm.dequantize() - w).reshape(rows, -1)
    assert np.all(deq_err <= np.repeat(step, gs, axis=1)[:, :cols] / 2 + 1e-12)
    x16 = RNG.integers(-32768, 32768, cols).astype(np.int16)
    for x_exp in (0, 5, 16):
        got = F.matvec(qm, x16, x_exp)
        for r in range(rows):
            t = sum(int(qm.q[r, c]) * int(qm.scale_m[r, c // gs]) * int(x16[c])
                    for c in range(cols))
            scaled = Fraction(t) * Fraction(2) ** (x_exp - qm.scale_exp)
            want = ref_sat(ref_round_half_up(scaled), 32)
            assert got[r] == want


def test_matvec_stack_equals_separate_matvecs():
    mats = [F.quantize_matrix(RNG.normal(size=(n, 172)) * s, 32)
            for n, s in ((64, 1.0), (32, 0.01), (7, 100.0))]
    stack = F.MatrixStack(mats)
    for _ in range(5):
        x16, e = F.quantize_act(F.to_act(RNG.normal(size=172) * 10 ** RNG.uniform(-3, 3)))
        for a, b in zip(F.matvec_stack(stack, x16, e), (F.matvec(m, x16, e) for m in mats)):
            assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        F.MatrixStack([mats[0], F.quantize_matrix(np.ones((2, 64)), 32)])
