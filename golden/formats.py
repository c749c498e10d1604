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
same with one adder and a shifter.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def saturate(v, bits: int):
    """Clamp integers ``v`` to the signed range of ``bits`` bits (returns int64)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def round_shift(v, s: int):
    """Shift right by ``s`` rounding half up; ``s <= 0`` shifts left exactly.

    ``v`` is an integer array (int64 math). Callers keep ``v`` within int64 for the
    shifts they use (checked by the golden tests, never wrapped silently).
    """
    v = np.asarray(v, dtype=np.int64)
    if s <= 0:
        return v << np.int64(-s)
    return (v + np.int64(1 << (s - 1))) >> np.int64(s)


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
    x = np.zeros(qm.q.shape[1], dtype=np.int64)
    x[: qm.cols] = np.asarray(x16, dtype=np.int64)[: qm.cols]
    prod = qm.q.astype(np.int64) * x[None, :]
    return prod.reshape(qm.rows, qm.n_groups, qm.group_size).sum(axis=2)


def matvec(qm: QuantizedMatrix, x16: np.ndarray, x_exp: int) -> np.ndarray:
    """``y = W @ x`` in ACT format (int32 ``[rows]``).

    ``t[r] = sum_g acc[r, g] * m[r, g]`` exactly (int64), then
    ``y[r] = saturate32(round_shift(t[r], scale_exp - x_exp))``.
    Derivation: ``w = q * m * 2**-exp`` and ``x = x16 * 2**(x_exp - 16)``, so
    ``y * 2**16 = t * 2**(x_exp - exp)``.
    """
    acc = matvec_group_sums(qm, x16)
    t = (acc * qm.scale_m.astype(np.int64)).sum(axis=1)
    return saturate(round_shift(t, qm.scale_exp - x_exp), ACT_BITS).astype(np.int32)
