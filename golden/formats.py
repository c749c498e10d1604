"""Numeric formats: the one place where widths, scales, rounding and saturation are defined.

Everything else (the integer golden model, the command compiler, the RTL generators and
the host) imports its formats from here. All run-time arithmetic is integer: the same
inputs give the same bits on every machine. Floats appear only at *compile time*, when
float weights are quantized (``quantize_matrix``), and the result of that is stored.

Formats
-------
``ACT`` (between ops)
    int32, two's complement, fixed point with ``ACT_FRAC`` = 16 fractional bits (Q16.16).
    Results that leave the range saturate to ``[-2**31, 2**31 - 1]``.
``X16`` (matvec input)
    int16 mantissas with one shared block exponent ``e >= 0`` per vector:
    ``x_act == x16 << e`` up to rounding. See :func:`quantize_act`.
``W8`` (weights)
    int8 in ``[-127, 127]``, symmetric, one scale per group of ``group_size`` consecutive
    weights along the *input* dimension of each row. A row whose length is not a
    multiple of the group size is zero-padded (hidden_dim 172 with group 32 -> 192).
    Group scale = ``m_g * 2**-exp`` with ``m_g`` an unsigned 16-bit mantissa and ``exp``
    one exponent per matrix, chosen so that the largest mantissa uses all 16 bits.

Rounding
--------
``round_shift(v, s)`` for ``s > 0`` is ``(v + 2**(s-1)) >> s`` with an arithmetic shift:
round half up (towards +inf). For ``s <= 0`` it is an exact left shift. Hardware does the
same with one adder and a shifter. :func:`shift_round_saturate` adds saturation (a left
shift saturates instead of overflowing).

The other ops' formats (RMSNorm weights and rsqrt table, RoPE tables, softmax weights and
reciprocal, KV cache, sigmoid table) are the constants at the end of this module; their
arithmetic is :mod:`speedllm.golden.intops`, explained in docs/numerics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

ACT_BITS = 32
ACT_FRAC = 16
ACT_MIN = -(1 << (ACT_BITS - 1))
ACT_MAX = (1 << (ACT_BITS - 1)) - 1

X_BITS = 16
X_MIN = -(1 << (X_BITS - 1))
X_MAX = (1 << (X_BITS - 1)) - 1

W_BITS = 8
W_MAX = (1 << (W_BITS - 1)) - 1     # 127: symmetric range, -128 never used

SCALE_BITS = 16                      # group-scale mantissa, unsigned
DEFAULT_GROUP_SIZE = 32              # divides 64, 288, 512, 768, 1376, 2048, 5632

_clip = getattr(np.core.umath, "clip", np.clip)   # the ufunc: no Python wrapper overhead


def saturate(v, bits: int):
    """Clamp integers ``v`` to the signed range of ``bits`` bits (returns int64)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return _clip(np.asarray(v, dtype=np.int64), lo, hi)


def round_shift(v, s: int):
    """Shift right by ``s`` rounding half up; ``s <= 0`` shifts left exactly.

    ``v`` is an integer array (int64 math). Callers keep ``v`` within int64 for the
    shifts they use (checked by the golden tests, never wrapped silently).
    """
    v = np.asarray(v, dtype=np.int64)
    s = int(s)
    if s <= 0:
        return v << -s
    return (v + (1 << (s - 1))) >> s


def to_act(x_float) -> np.ndarray:
    """Float -> ACT (Q16.16 int32), round half to even then saturate. Compile/test time only."""
    v = np.round(np.asarray(x_float, dtype=np.float64) * (1 << ACT_FRAC))
    return np.clip(v, ACT_MIN, ACT_MAX).astype(np.int32)


def from_act(x_act) -> np.ndarray:
    """ACT -> float64 (exact)."""
    return np.asarray(x_act, dtype=np.float64) / (1 << ACT_FRAC)


# ---------------------------------------------------------------------------------------
# X16: block-exponent int16 vectors (the matvec input)
# ---------------------------------------------------------------------------------------

def act_block_exponent(x_act) -> int:
    """The shared exponent ``e`` of :func:`quantize_act`.

    ``e = max(0, bit_length(OR_i (x_i ^ (x_i >> 31))) - 15)``: ``x ^ (x >> 31)`` is ``x``
    for ``x >= 0`` and ``~x`` for ``x < 0``, so hardware gets ``e`` from an OR-reduction
    and a leading-one detector while the vector streams past.
    """
    x = np.asarray(x_act, dtype=np.int64)
    folded = np.bitwise_or.reduce(x ^ (x >> 63)) if x.size else np.int64(0)
    return max(0, int(folded).bit_length() - (X_BITS - 1))


def quantize_act(x_act) -> tuple[np.ndarray, int]:
    """ACT vector -> (int16 mantissas, block exponent ``e``).

    ``x16 = saturate16(round_shift(x, e))``, so ``x16 << e`` approximates ``x`` and the
    value is ``x16 * 2**(e - ACT_FRAC)``.
    """
    e = act_block_exponent(x_act)
    x16 = saturate(round_shift(x_act, e), X_BITS).astype(np.int16)
    return x16, e


# ---------------------------------------------------------------------------------------
# W8: group-quantized int8 matrices
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantizedMatrix:
    """A ``[rows][cols]`` matrix in W8 format.

    Attributes
    ----------
    q : int8 ``[rows, cols_padded]`` (padding columns are 0)
    scale_m : uint16 ``[rows, n_groups]`` group-scale mantissas
    scale_exp : int, the matrix's scale exponent: group scale = ``scale_m * 2**-scale_exp``
    cols : the unpadded input dimension
    group_size : weights per scale group
    """

    q: np.ndarray
    scale_m: np.ndarray
    scale_exp: int
    cols: int
    group_size: int

    @property
    def rows(self) -> int:
        return self.q.shape[0]

    @property
    def n_groups(self) -> int:
        return self.scale_m.shape[1]

    @cached_property
    def q_grouped(self) -> np.ndarray:
        """int32 ``[n_groups, rows, group_size]`` copy of ``q`` (cached, for fast matvecs)."""
        g = self.q.astype(np.int32).reshape(self.rows, self.n_groups, self.group_size)
        return np.ascontiguousarray(g.transpose(1, 0, 2))

    def dequantize(self) -> np.ndarray:
        """float64 ``[rows, cols]`` view of the stored values (for accuracy checks)."""
        s = self.scale_m.astype(np.float64) * 2.0 ** -self.scale_exp
        w = self.q.astype(np.float64).reshape(self.rows, self.n_groups, self.group_size)
        return (w * s[:, :, None]).reshape(self.rows, -1)[:, : self.cols]


def padded_cols(cols: int, group_size: int) -> int:
    return -(-cols // group_size) * group_size


def quantize_matrix(w, group_size: int = DEFAULT_GROUP_SIZE) -> QuantizedMatrix:
    """Float ``[rows, cols]`` -> :class:`QuantizedMatrix` (compile time, float64 math).

    Group scale ``s_g = max|w_g| / 127`` is rounded to ``m_g * 2**-exp``; weights are then
    ``clip(round_half_even(w / (m_g * 2**-exp)), -127, 127)`` using that rounded scale,
    so the stored pair is self-consistent. All-zero groups get ``m_g = 0``.
    """
    if group_size <= 0:
        raise ValueError(f"group_size must be positive, not {group_size!r}")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {w.shape}")
    rows, cols = w.shape
    cp = padded_cols(cols, group_size)
    wp = np.zeros((rows, cp), dtype=np.float64)
    wp[:, :cols] = w
    g = wp.reshape(rows, cp // group_size, group_size)
    s = np.abs(g).max(axis=2) / W_MAX                            # [rows, n_groups]
    smax = float(s.max()) if s.size else 0.0
    if smax > 0.0:
        # largest exp with round(smax * 2**exp) <= 2**16 - 1
        exp = int(np.floor(np.log2((1 << SCALE_BITS) - 1) - np.log2(smax)))
        while np.round(smax * 2.0 ** exp) > (1 << SCALE_BITS) - 1:
            exp -= 1
    else:
        exp = 0
    m = np.round(s * 2.0 ** exp)
    m = np.clip(m, 0, (1 << SCALE_BITS) - 1).astype(np.uint16)
    sq = m.astype(np.float64) * 2.0 ** -exp
    with np.errstate(divide="ignore", invalid="ignore"):
        qf = np.where(sq[:, :, None] > 0, g / sq[:, :, None], 0.0)
    q = np.clip(np.round(qf), -W_MAX, W_MAX).astype(np.int8).reshape(rows, cp)
    return QuantizedMatrix(q=q, scale_m=m, scale_exp=exp, cols=cols, group_size=group_size)


# ---------------------------------------------------------------------------------------
# The matvec contract (the MatVec engine equals this bit for bit)
# ---------------------------------------------------------------------------------------

def matvec_group_sums(qm: QuantizedMatrix, x16: np.ndarray) -> np.ndarray:
    """int64 ``[rows, n_groups]``: ``acc[r, g] = sum_k q[r, g*GS + k] * x16[g*GS + k]``.

    ``x16`` has ``qm.cols`` entries; it is zero-padded like the rows. Each sum fits in
    ``8 + 16 + ceil_log2(group_size)`` signed bits (int32 for group sizes up to 256).
    """
    if qm.group_size > 256:
        raise ValueError(f"group_size must be <= 256 (int32 group sums), not {qm.group_size}")
    x = np.zeros(qm.q.shape[1], dtype=np.int32)
    x[: qm.cols] = np.asarray(x16, dtype=np.int32)[: qm.cols]
    # exact: every group sum fits in int32 (|q * x| < 2**22, group_size <= 256)
    acc = np.matmul(qm.q_grouped, x.reshape(qm.n_groups, qm.group_size, 1))[..., 0]
    return acc.T.astype(np.int64)


def matvec(qm: QuantizedMatrix, x16: np.ndarray, x_exp: int) -> np.ndarray:
    """``y = W @ x`` in ACT format (int32 ``[rows]``).

    ``t[r] = sum_g acc[r, g] * m[r, g]`` exactly (int64), then
    ``y[r] = saturate32(round_shift(t[r], scale_exp - x_exp))`` (a left shift, when
    ``x_exp > scale_exp``, saturates instead of overflowing: :func:`shift_round_saturate`).
    Derivation: ``w = q * m * 2**-exp`` and ``x = x16 * 2**(x_exp - 16)``, so
    ``y * 2**16 = t * 2**(x_exp - exp)``.
    """
    acc = matvec_group_sums(qm, x16)
    t = (acc * qm.scale_m.astype(np.int64)).sum(axis=1)
    return shift_round_saturate(t, qm.scale_exp - x_exp, ACT_BITS).astype(np.int32)


class MatrixStack:
    """Several W8 matrices that read the same input vector (q/k/v, or w1/w3), stacked so
    one pass computes all of them. :func:`matvec_stack` equals one :func:`matvec` per
    matrix bit for bit (each row keeps its own matrix's ``scale_exp``)."""

    def __init__(self, mats):
        mats = tuple(mats)
        if len({(m.cols, m.group_size) for m in mats}) != 1:
            raise ValueError("stacked matrices need the same cols and group_size")
        self.mats = mats
        self.q_grouped = np.concatenate([m.q_grouped for m in mats], axis=1)
        self.scale_m = np.concatenate([m.scale_m for m in mats]).astype(np.int64)
        self.row_exp = np.concatenate([np.full(m.rows, m.scale_exp, np.int64) for m in mats])
        ends = np.cumsum([m.rows for m in mats]).tolist()
        self.row_ranges = list(zip([0] + ends[:-1], ends))
        self.cols, self.group_size = mats[0].cols, mats[0].group_size
        self.n_groups = mats[0].n_groups


def matvec_stack(stack: MatrixStack, x16: np.ndarray, x_exp: int) -> list[np.ndarray]:
    """``[matvec(m, x16, x_exp) for m in stack.mats]`` in one pass (same bits)."""
    x = np.zeros(stack.n_groups * stack.group_size, dtype=np.int32)
    x[: stack.cols] = np.asarray(x16, dtype=np.int32)[: stack.cols]
    acc = np.matmul(stack.q_grouped, x.reshape(stack.n_groups, stack.group_size, 1))[..., 0]
    t = (acc.T.astype(np.int64) * stack.scale_m).sum(axis=1)
    y = shift_round_saturate(t, stack.row_exp - x_exp, ACT_BITS).astype(np.int32)
    return [y[a:b] for a, b in stack.row_ranges]


def round_shift_array(v, s):
    """Like :func:`round_shift` but with a per-element shift array ``s >= 0`` (int64;
    shifts above 62 act as 62, callers keep ``|v| < 2**61`` there)."""
    v = np.asarray(v, dtype=np.int64)
    s = np.minimum(np.asarray(s, dtype=np.int64), 62)
    return (v + ((np.int64(1) << s) >> np.int64(1))) >> s


def shift_round_saturate(v, s, bits: int = ACT_BITS):
    """``saturate_bits(v * 2**-s)`` with round half up, for per-element shifts of any sign.

    ``s > 0``: :func:`round_shift` right. ``s <= 0``: exact left shift by ``-s``, where a
    value that would leave the ``bits``-bit range saturates *before* it can overflow int64
    (hardware: compare against the shifted limits, then shift).
    """
    v = np.asarray(v, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if np.ndim(s) == 0:                      # one shift for the whole vector
        s = int(s)
        if s > 0:
            return _clip((v + (1 << (s - 1))) >> s, lo, hi)
        s = min(-s, 62)
        return np.where(v > (hi >> s), hi, np.where(v < -((-lo) >> s), lo, v << s))
    s = np.asarray(s, dtype=np.int64)
    if s.size and s.min() > 0:               # right shifts only: round, then clamp
        s = np.minimum(s, 62)
        return _clip((v + ((np.int64(1) << s) >> 1)) >> s, lo, hi)
    sr = _clip(s, 0, 62)
    sl = _clip(-s, 0, 62)
    r = (v + ((np.int64(1) << sr) >> 1)) >> sr
    # v << k stays in range iff -(2**(bits-1) >> k) <= v <= hi >> k
    return np.where(r > (hi >> sl), hi, np.where(r < -((-lo) >> sl), lo, r << sl))


_POW2 = np.int64(1) << np.arange(63, dtype=np.int64)


def bit_length(v):
    """Vectorized ``int.bit_length`` of non-negative int64 values (a leading-one detector):
    the number of powers of two ``<= v``."""
    return np.searchsorted(_POW2, np.asarray(v, dtype=np.int64), side="right").astype(np.int64)


def block_exponents(x, bits: int):
    """Per-row block exponent for ``bits``-bit mantissas: the rule of :func:`act_block_exponent`
    applied along the last axis (``e = max(0, bit_length(OR_i fold(x_i)) - (bits - 1))``)."""
    x = np.asarray(x, dtype=np.int64)
    folded = np.bitwise_or.reduce(x ^ (x >> np.int64(63)), axis=-1)
    return np.maximum(0, bit_length(folded) - (bits - 1))


# ---------------------------------------------------------------------------------------
# Formats of the non-matvec ops (speedllm.golden.intops implements them)
# ---------------------------------------------------------------------------------------
# RMSNorm: x16 = quantize_act(x); ss = sum x16^2 (exact); ms = ss // n + eps; one rsqrt per
# vector by table; y = x16 * g * R >> shift.
NORM_W_FRAC = 16                     # rmsnorm weight g: Q7.16 ...
NORM_W_BITS = 24                     # ... in 24 signed bits (|g| < 128), stored as int32
RMS_EPS = 1e-5                       # run.c's epsilon
RMS_EPS_Q32 = round(RMS_EPS * 2**32)  # eps in units of 2**-32 (= 42950)
RSQRT_IN_FRAC = 16                   # normalized mantissa u in [1, 4): Q2.16 (truncated)
RSQRT_TABLE_BITS = 6                 # 2**6 intervals per unit of u: 3*64 + 1 = 193 entries
RSQRT_FRAC = 16                      # rsqrt table values / R: unsigned Q1.16, in (0.5, 1]

# RoPE: cos/sin tables per (pos, pair), signed Q1.16 (18-bit: 1.0 = 65536 fits).
ROPE_FRAC = 16
ROPE_BITS = 18
ROPE_THETA = 10000.0

# Attention: q scaled by ATT_SCALE = round(2**16 / sqrt(head_size)); exp by a 2**-f table.
ATT_SCALE_FRAC = 16
LOG2E_FRAC = 16                      # log2(e) as Q1.16 (= 94548)
LOG2E_Q = round(1.4426950408889634 * 2**LOG2E_FRAC)
EXP_FRAC = 16                        # softmax weights: unsigned Q1.16, 1.0 = 65536
EXP_TABLE_BITS = 6                   # 2**-f table: 2**6 intervals over f in [0, 1), 65 entries
ATT_RECIP_BITS = 24                  # per-head reciprocal mantissa of the weight sum
ATT_ACC_GUARD = 4                    # guard bits kept when the accumulator is pre-shifted

# KV cache: `kv_bits`-bit mantissas; block exponent per (position, kv_head) or fixed point.
DEFAULT_KV_BITS = 16

# SiLU: sigmoid table over |x| in [0, 2**SIGMOID_RANGE_LOG2), symmetric, saturating to 1.
SIGMOID_RANGE_LOG2 = 4               # |x| >= 16 -> sigmoid = 1 (or 0 for x <= -16)
SIGMOID_TABLE_BITS = 9               # 512 intervals (step 1/32), 513 entries
SIGMOID_FRAC = 16                    # sigmoid values: unsigned Q1.16, 1.0 = 65536


def quantize_norm_weight(g) -> np.ndarray:
    """Float RMSNorm weight -> Q7.16 in 24 bits, stored as int32 (round half even, then
    saturate to ``NORM_W_BITS``). Compile time."""
    v = np.round(np.asarray(g, dtype=np.float64) * (1 << NORM_W_FRAC))
    lim = 1 << (NORM_W_BITS - 1)
    return np.clip(v, -lim, lim - 1).astype(np.int32)
