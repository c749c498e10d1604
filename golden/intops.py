"""Per-op integer functions: the hardware's arithmetic, one function per Llama2 step.

Each function is integer-only NumPy (int64 math, explicit rounding by
:func:`~speedllm.golden.formats.round_shift` = round half up, explicit saturation). The RTL
blocks equal these bit for bit. Widths, fractional bits and table sizes are the named
constants of :mod:`speedllm.golden.formats`; tables are built once at compile time from
float64 math by the ``build_*`` functions below and then only indexed.

Formats in and out are ``ACT`` (int32 Q16.16) unless stated. Summary of each op:

``embedding(table, token)``
    ``round_shift(q * m, exp - 16)`` for the token's row, saturated to int32.
``rmsnorm(x, g)``
    ``x16, e = quantize_act(x)``; ``ss = sum x16**2`` (exact); ``v = ss // n +
    round_shift(RMS_EPS_Q32, 2e)`` (value ``v * 2**(2e-32)``); one ``R, s = rsqrt(v)``
    per vector (``1/sqrt(v) ~ R * 2**-(RSQRT_FRAC + s/2)``); per element
    ``y = sat32(round_shift(x16 * g * R, NORM_W_FRAC + RSQRT_FRAC + s/2 - 16))``
    (the block exponent ``e`` cancels).
``rsqrt(v)``
    ``s`` = largest even number with ``2**s <= v``; ``u = v * 2**(RSQRT_IN_FRAC - s)``
    truncated (u in [1, 4) as Q2.16); table of ``2**RSQRT_FRAC / sqrt(1 + j/2**B)``,
    ``j = 0..3*2**B``, linear interpolation ``T[i] + round_shift((T[i+1]-T[i]) * f, F-B)``.
``rope(x, pos, head_size, tables)``
    per pair ``(x0, x1)``: ``sat32(round_shift(x0*c - x1*s, ROPE_FRAC))``,
    ``sat32(round_shift(x0*s + x1*c, ROPE_FRAC))`` with Q1.16 cos/sin.
``kv_store(k, n_kv_heads, kv_bits, kv_frac)``
    block mode (``kv_frac=None``): per kv head ``e = block_exponents(k_head, kv_bits)``,
    mantissa ``sat(round_shift(k, e), kv_bits)``; fixed mode: ``e = 16 - kv_frac`` for all.
    The stored value is ``mant << e`` in ACT units.
``attention(q, k_cache, v_cache, pos, ...)``
    q scaled by ``ATT_SCALE = round(2**16/sqrt(hs))`` (round_shift 16, sat32), then X16
    per head (block exponent ``eq``). Pass 1: ``s_t = shift_round_saturate(q16 . kmant_t,
    16 - eq - ek_t)`` (ACT), running max ``M``. Pass 2: ``e_t = exp_neg(s_t - M)``
    (unsigned Q1.16, ``e = 65536`` at the max), ``S += e_t``,
    ``acc += e_t * (vmant_t << ev_t)``. Finally per head ``k = bit_length(S)``,
    ``recip = (2**(R+k-1) + S//2) // S`` (R = ATT_RECIP_BITS, one sequential divide),
    per element ``out = sat32(round_shift(round_shift(acc, k-1-G) * recip, R + G))``
    (G = ATT_ACC_GUARD). Stages as functions: ``attention_query``, ``attention_scores``,
    ``exp_neg``, ``attention_normalize``.
``exp_neg(d)``
    ``d <= 0`` (ACT); ``u = round_shift(-d * LOG2E_Q, LOG2E_FRAC)`` (Q16.16),
    ``n = u >> 16``, ``f = u & 0xffff``; ``2**-f`` from a ``2**B + 1`` entry table
    with linear interpolation, then ``round_shift(., n)`` (0 for n >= 18, i.e. for every
    ``d <= -13.0``: hardware may clamp ``d`` at ``-2**20`` first, same results).
``sigmoid(x)``, ``silu(x)``, ``swiglu(h1, h3)``
    table over ``|x|`` in [0, 16) (513 entries, Q1.16), interpolated; ``|x| >= 16``
    saturates to 1; ``x < 0`` uses ``1 - sigmoid(|x|)``. ``silu = sat32(round_shift(x *
    sig, 16))``; ``swiglu = sat32(round_shift(silu(h1) * h3, 16))``.
``residual_add(x, y)``
    ``sat32(x + y)``.
``linear(W, x)``
    ``matvec(W, *quantize_act(x))`` (classifier and all projections).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .formats import (
    ACT_BITS, ACT_FRAC, ATT_ACC_GUARD, ATT_RECIP_BITS, ATT_SCALE_FRAC, DEFAULT_KV_BITS,
    EXP_FRAC, EXP_TABLE_BITS, LOG2E_FRAC, LOG2E_Q, NORM_W_FRAC, RMS_EPS_Q32, ROPE_FRAC,
    ROPE_THETA, RSQRT_FRAC, RSQRT_IN_FRAC, RSQRT_TABLE_BITS, SIGMOID_FRAC,
    SIGMOID_RANGE_LOG2, SIGMOID_TABLE_BITS, X_BITS, MatrixStack, QuantizedMatrix, bit_length,
    block_exponents, matvec, matvec_stack, quantize_act, round_shift, round_shift_array,
    saturate, shift_round_saturate,
)

# ---------------------------------------------------------------------------------------
# Table builders (compile time, float64)
# ---------------------------------------------------------------------------------------


def build_rsqrt_table(bits: int = RSQRT_TABLE_BITS) -> np.ndarray:
    """``T[j] = round(2**RSQRT_FRAC / sqrt(1 + j * 2**-bits))``, ``j = 0 .. 3 * 2**bits``."""
    u = 1.0 + np.arange(3 * (1 << bits) + 1, dtype=np.float64) / (1 << bits)
    return np.round((1 << RSQRT_FRAC) / np.sqrt(u)).astype(np.int64)


def build_exp2_table(bits: int = EXP_TABLE_BITS) -> np.ndarray:
    """``T[j] = round(2**EXP_FRAC * 2**(-j / 2**bits))``, ``j = 0 .. 2**bits``."""
    f = np.arange((1 << bits) + 1, dtype=np.float64) / (1 << bits)
    return np.round((1 << EXP_FRAC) * np.exp2(-f)).astype(np.int64)


def build_sigmoid_table(bits: int = SIGMOID_TABLE_BITS) -> np.ndarray:
    """``T[j] = round(2**SIGMOID_FRAC * sigmoid(j * 2**(SIGMOID_RANGE_LOG2 - bits)))``,
    ``j = 0 .. 2**bits`` (covers ``|x|`` in [0, 2**SIGMOID_RANGE_LOG2])."""
    x = np.arange((1 << bits) + 1, dtype=np.float64) * 2.0 ** (SIGMOID_RANGE_LOG2 - bits)
    return np.round((1 << SIGMOID_FRAC) / (1.0 + np.exp(-x))).astype(np.int64)


class RopeTables(NamedTuple):
    """``cos``/``sin`` int64 ``[seq_len, head_size // 2]``, signed Q1.16 (18-bit)."""

    cos: np.ndarray
    sin: np.ndarray


def build_rope_tables(head_size: int, seq_len: int, theta: float = ROPE_THETA) -> RopeTables:
    """run.c's frequencies ``freq_i = theta**(-2i / head_size)``, angle ``pos * freq_i``,
    in float64, rounded half-even to Q1.16."""
    i = np.arange(head_size // 2, dtype=np.float64)
    freq = theta ** (-(2.0 * i) / head_size)
    ang = np.arange(seq_len, dtype=np.float64)[:, None] * freq[None, :]
    c = np.round(np.cos(ang) * (1 << ROPE_FRAC)).astype(np.int64)
    s = np.round(np.sin(ang) * (1 << ROPE_FRAC)).astype(np.int64)
    return RopeTables(c, s)


def att_scale(head_size: int) -> int:
    """The constant ``round(2**ATT_SCALE_FRAC / sqrt(head_size))`` that scales q."""
    return int(round((1 << ATT_SCALE_FRAC) / np.sqrt(head_size)))


@functools.lru_cache(maxsize=None)
def _default_table(kind: str, bits: int) -> np.ndarray:
    build = {"rsqrt": build_rsqrt_table, "exp2": build_exp2_table,
             "sigmoid": build_sigmoid_table}[kind]
    t = build(bits)
    t.setflags(write=False)
    return t


def _table_bits(table: np.ndarray, per_unit: int) -> int:
    n = (len(table) - 1) // per_unit
    bits = n.bit_length() - 1
    if (len(table) - 1) != per_unit * (1 << bits):
        raise ValueError(f"table of {len(table)} entries is not {per_unit}*2**b + 1")
    return bits


def _interp(table: np.ndarray, idx, frac, frac_bits: int):
    """``T[idx] + round_shift((T[idx+1] - T[idx]) * frac, frac_bits)`` (int64)."""
    t0 = table[idx]
    t1 = table[idx + 1]
    return t0 + round_shift((t1 - t0) * frac, frac_bits)


# ---------------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------------


def embedding(table: QuantizedMatrix, token: int) -> np.ndarray:
    """Row ``token`` of a W8 table as ACT: ``sat32(round_shift(q * m_g, exp - 16))``."""
    q = table.q[token, : table.cols].astype(np.int64)
    m = np.repeat(table.scale_m[token].astype(np.int64), table.group_size)[: table.cols]
    return saturate(round_shift(q * m, table.scale_exp - ACT_FRAC), ACT_BITS).astype(np.int32)


def rsqrt(v, table: np.ndarray | None = None):
    """Reciprocal square root of integers ``v >= 1``: returns ``(R, s)`` with
    ``1 / sqrt(v) ~ R * 2**-(RSQRT_FRAC + s // 2)``, ``s`` even, ``R`` unsigned Q1.16.

    Normalization: ``s`` = bit_length(v) - 1 rounded down to even, ``u = v`` shifted to
    Q2.16 by truncation (``u`` in [1, 4)); index ``(u - 1) >> (16 - B)``, interpolation
    fraction the low ``16 - B`` bits.
    """
    if table is None:
        table = _default_table("rsqrt", RSQRT_TABLE_BITS)
    bits = _table_bits(table, 3)
    v = np.asarray(v, dtype=np.int64)
    s = bit_length(v) - 1
    s = s - (s & 1)
    F = RSQRT_IN_FRAC
    u = np.where(s >= F, v >> np.maximum(s - F, 0), v << np.maximum(F - s, 0))
    w = u - (1 << F)
    fb = F - bits
    idx = w >> fb
    frac = w & ((1 << fb) - 1)
    return _interp(table, idx, frac, fb), s


def rmsnorm_scale(x_act, table: np.ndarray | None = None):
    """The per-vector part of RMSNorm: ``(x16, R, s)``.

    ``x16, e = quantize_act(x)``, ``ss = sum x16**2`` (exact int64), mean by integer
    floor division by ``n``, ``+ round_shift(RMS_EPS_Q32, 2e)`` (eps in the same units
    ``2**(2e - 32)``), then :func:`rsqrt`.
    """
    x16, e = quantize_act(x_act)
    x = x16.astype(np.int64)
    ss = int(np.dot(x, x))
    v = ss // x.size + int(round_shift(RMS_EPS_Q32, 2 * e))
    R, s = rsqrt(v, table)
    return x16, int(R), int(s)


def rmsnorm(x_act, weight, table: np.ndarray | None = None) -> np.ndarray:
    """RMSNorm: one scalar ``(R, s)`` per vector, then per element ``x16 * g * R``.

    ``y = sat32(round_shift(x16 * g * R, NORM_W_FRAC + RSQRT_FRAC + s/2 - ACT_FRAC))``,
    ``weight`` ``g`` Q7.16 in 24 bits (:func:`~speedllm.golden.formats.quantize_norm_weight`).
    The product is exact (|x16 * g * R| <= 2**15 * 2**23 * 2**16 = 2**54).
    """
    x16, R, s = rmsnorm_scale(x_act, table)
    p = x16.astype(np.int64) * np.asarray(weight, dtype=np.int64) * R
    sh = NORM_W_FRAC + RSQRT_FRAC + s // 2 - ACT_FRAC
    return saturate(round_shift(p, sh), ACT_BITS).astype(np.int32)


def rope(x_act, pos: int, head_size: int, tables: RopeTables) -> np.ndarray:
    """Rotate each pair ``(x[2i], x[2i+1])`` of each head by the angle of ``(pos, i)``.

    ``x_act`` is ``[n * head_size]`` (all q heads, or all k heads). Products exact, one
    ``round_shift(., ROPE_FRAC)`` per output, saturated to int32.
    """
    x = np.asarray(x_act, dtype=np.int64).reshape(-1, head_size // 2, 2)
    c = tables.cos[pos][None, :]
    s = tables.sin[pos][None, :]
    x0, x1 = x[..., 0], x[..., 1]
    out = np.empty_like(x)
    out[..., 0] = shift_round_saturate(x0 * c - x1 * s, ROPE_FRAC)
    out[..., 1] = shift_round_saturate(x0 * s + x1 * c, ROPE_FRAC)
    return out.reshape(-1).astype(np.int32)


class KvStore(NamedTuple):
    """Stored KV entries: ``mant`` int64 ``[..., n_kv_heads, head_size]`` (values fit in
    ``kv_bits`` signed bits), ``exp`` int64 ``[..., n_kv_heads]``; value in ACT units is
    ``mant << exp``."""

    mant: np.ndarray
    exp: np.ndarray


def kv_store(k_act, n_kv_heads: int, kv_bits: int = DEFAULT_KV_BITS,
             kv_frac: int | None = None) -> KvStore:
    """Convert one position's k (or v) ``[kv_dim]`` ACT vector to its cache format.

    ``kv_frac=None``: block exponent per kv head (``block_exponents(., kv_bits)``);
    otherwise fixed point with ``kv_frac`` fractional bits (``exp = 16 - kv_frac`` for
    every head). Mantissa ``saturate(round_shift(k, exp), kv_bits)``.
    """
    k = np.asarray(k_act, dtype=np.int64).reshape(n_kv_heads, -1)
    if kv_frac is None:
        e = block_exponents(k, kv_bits)
    else:
        if not 0 <= ACT_FRAC - kv_frac:
            raise ValueError(f"kv_frac must be <= {ACT_FRAC}, not {kv_frac!r}")
        e = np.full(n_kv_heads, ACT_FRAC - kv_frac, dtype=np.int64)
    mant = saturate(round_shift_array(k, e[:, None]), kv_bits)
    return KvStore(mant, e)


def kv_load(store: KvStore) -> np.ndarray:
    """Stored KV entries -> ACT values (int64, ``mant << exp``)."""
    return store.mant << store.exp[..., None]


def exp_neg(d, table: np.ndarray | None = None) -> np.ndarray:
    """``exp(d)`` for ACT ``d <= 0`` as unsigned Q1.16 (``exp(0) = 65536``), int64.

    ``u = round_shift(-d * LOG2E_Q, LOG2E_FRAC)`` = ``-d * log2(e)`` in Q16.16; integer part
    ``n = u >> 16`` becomes a right shift, the fraction ``f`` indexes the ``2**-f`` table.
    """
    if table is None:
        table = _default_table("exp2", EXP_TABLE_BITS)
    bits = _table_bits(table, 1)
    d = np.asarray(d, dtype=np.int64)
    u = round_shift(-d * LOG2E_Q, LOG2E_FRAC)
    n = u >> ACT_FRAC
    f = u & ((1 << ACT_FRAC) - 1)
    fb = ACT_FRAC - bits
    val = _interp(table, f >> fb, f & ((1 << fb) - 1), fb)
    return round_shift_array(val, np.minimum(n, 62))


def attention_query(q_act, n_heads: int, head_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Attention step 1: ``q * 1/sqrt(head_size)`` then X16 per head.

    ``qs = sat32(round_shift(q * att_scale(hs), ATT_SCALE_FRAC))``, ``eq`` = its block
    exponent per head (16 bits), ``q16 = sat16(round_shift(qs, eq))``. Returns
    ``(q16 [n_heads, hs], eq [n_heads])`` (int64).
    """
    q = np.asarray(q_act, dtype=np.int64).reshape(n_heads, head_size)
    qs = shift_round_saturate(q * att_scale(head_size), ATT_SCALE_FRAC)
    eq = block_exponents(qs, X_BITS)
    return saturate(round_shift_array(qs, eq[:, None]), X_BITS), eq


def attention_scores(q16, eq, keys: KvStore, kv_head) -> np.ndarray:
    """Attention pass 1: ACT scores ``[n_heads, T]`` for cache rows ``keys`` (``T`` rows).

    With ``g = kv_head[h]``: ``s[h, t] = shift_round_saturate(q16[h] . kmant[t, g],
    16 - eq[h] - ek[t, g])``, the dot product exact.
    """
    km = keys.mant[:, kv_head, :]                                   # [T, h, hs]
    ke = keys.exp[:, kv_head].T                                     # [h, T]
    dot = np.einsum("hd,thd->ht", q16, km)
    return shift_round_saturate(dot, ACT_FRAC - np.asarray(eq)[:, None] - ke)


def attention_normalize(acc, weight_sum) -> np.ndarray:
    """Attention final step: ``acc / S`` per head with one reciprocal per head.

    ``k = bit_length(S)``, ``recip = (2**(R+k-1) + S//2) // S`` (R = ATT_RECIP_BITS),
    ``out = sat32(round_shift(round_shift(acc, k-1-G) * recip, R + G))``
    (G = ATT_ACC_GUARD). ``acc`` int64 ``[n_heads, hs]``, ``S`` ``[n_heads]`` (>= 2**16).
    """
    S = np.asarray(weight_sum, dtype=np.int64)
    k = bit_length(S)
    recip = ((np.int64(1) << (ATT_RECIP_BITS + k - 1)) + (S >> 1)) // S
    acc_r = round_shift_array(acc, (k - 1 - ATT_ACC_GUARD)[:, None])
    return shift_round_saturate(acc_r * recip[:, None], ATT_RECIP_BITS + ATT_ACC_GUARD)


def attention(q_act, k_cache: KvStore, v_cache: KvStore, pos: int, n_heads: int,
              n_kv_heads: int, head_size: int, exp_table: np.ndarray | None = None
              ) -> np.ndarray:
    """Multi-head (grouped-query) attention of one position over cache rows ``0..pos``.

    ``q_act`` ACT ``[n_heads * head_size]``; caches :class:`KvStore` with a leading
    position axis (at least ``pos + 1`` rows). Query head ``h`` reads kv head
    ``h // (n_heads // n_kv_heads)``. Returns ACT ``[n_heads * head_size]``.
    Steps: :func:`attention_query`, :func:`attention_scores` (pass 1) and the max,
    :func:`exp_neg` weights, their sum ``S`` and ``acc = sum_t e_t * v_t`` (pass 2),
    :func:`attention_normalize`. See the module docstring for the arithmetic.
    """
    T = pos + 1
    kvh = np.arange(n_heads) // (n_heads // n_kv_heads)            # kv head of each q head
    # q * 1/sqrt(head_size), then X16 per head
    q16, eq = attention_query(q_act, n_heads, head_size)
    # pass 1: scores s[h, t] (ACT) and their max
    s = attention_scores(q16, eq, KvStore(k_cache.mant[:T], k_cache.exp[:T]), kvh)
    m = s.max(axis=1, keepdims=True)
    # pass 2: weights e[h, t] (Q1.16), their sum and the weighted sum of v
    e = exp_neg(s - m, exp_table)
    S = e.sum(axis=1)                                               # [h], >= 65536
    v = kv_load(KvStore(v_cache.mant[:T], v_cache.exp[:T]))[:, kvh, :]   # [T, h, hs]
    acc = np.einsum("ht,thd->hd", e, v)
    # out = acc / S: one reciprocal per head, then a multiply per element
    return attention_normalize(acc, S).reshape(-1).astype(np.int32)


def sigmoid(x_act, table: np.ndarray | None = None) -> np.ndarray:
    """``sigmoid(x)`` as unsigned Q1.16 (int64): table over ``|x|`` with interpolation,
    ``|x| >= 2**SIGMOID_RANGE_LOG2`` gives 1.0, negative ``x`` gives ``1 - sigmoid(|x|)``."""
    if table is None:
        table = _default_table("sigmoid", SIGMOID_TABLE_BITS)
    bits = _table_bits(table, 1)
    x = np.asarray(x_act, dtype=np.int64)
    a = np.abs(x)
    one = np.int64(1 << SIGMOID_FRAC)
    inside = a < (1 << (ACT_FRAC + SIGMOID_RANGE_LOG2))
    ac = np.where(inside, a, 0)
    fb = ACT_FRAC + SIGMOID_RANGE_LOG2 - bits
    sig_abs = np.where(inside, _interp(table, ac >> fb, ac & ((1 << fb) - 1), fb), one)
    return np.where(x >= 0, sig_abs, one - sig_abs)


def silu(x_act, table: np.ndarray | None = None) -> np.ndarray:
    """``x * sigmoid(x)``: ``sat32(round_shift(x * sig, SIGMOID_FRAC))`` (ACT)."""
    x = np.asarray(x_act, dtype=np.int64)
    return saturate(round_shift(x * sigmoid(x, table), SIGMOID_FRAC), ACT_BITS).astype(np.int32)


def swiglu(h1_act, h3_act, table: np.ndarray | None = None) -> np.ndarray:
    """``silu(h1) * h3``: ``sat32(round_shift(silu(h1) * h3, 16))`` (ACT)."""
    p = silu(h1_act, table).astype(np.int64) * np.asarray(h3_act, dtype=np.int64)
    return saturate(round_shift(p, ACT_FRAC), ACT_BITS).astype(np.int32)


def residual_add(x_act, y_act) -> np.ndarray:
    """``sat32(x + y)``."""
    s = np.asarray(x_act, dtype=np.int64) + np.asarray(y_act, dtype=np.int64)
    return saturate(s, ACT_BITS).astype(np.int32)


def linear(w: QuantizedMatrix, x_act) -> np.ndarray:
    """``W @ x`` in ACT: ``matvec(W, *quantize_act(x))`` (projections and classifier)."""
    x16, e = quantize_act(x_act)
    return matvec(w, x16, e)


def linear_stack(stack: MatrixStack, x_act) -> list[np.ndarray]:
    """``[linear(W, x) for W in stack.mats]`` in one pass, bit for bit (q/k/v, w1/w3)."""
    x16, e = quantize_act(x_act)
    return matvec_stack(stack, x16, e)


__all__ = [
    "KvStore", "RopeTables", "att_scale", "attention", "attention_normalize",
    "attention_query", "attention_scores", "build_exp2_table",
    "build_rope_tables", "build_rsqrt_table", "build_sigmoid_table", "embedding", "exp_neg",
    "kv_load", "kv_store", "linear", "linear_stack", "residual_add", "rmsnorm", "rmsnorm_scale",
    "rope", "rsqrt", "sigmoid", "silu", "swiglu",
]
