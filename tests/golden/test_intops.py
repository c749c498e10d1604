"""Each integer op against its float64 definition, on random and corner inputs (< 2 s).

Tolerances are stated per op (absolute in real units, or relative to the vector's
largest value) and follow from the formats in speedllm.golden.formats.
"""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.golden import formats as F
from speedllm.golden import intops as I

RNG = np.random.default_rng(1234)


def f_rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x) + 1e-5) * g


def f_softmax_attention(q, k, v, n_heads, n_kv_heads, hs):
    """run.c's attention in float64: q [n_heads*hs], k, v [T, n_kv*hs]."""
    out = np.zeros(n_heads * hs)
    kv_mul = n_heads // n_kv_heads
    for h in range(n_heads):
        qh = q[h * hs:(h + 1) * hs]
        kh = k[:, (h // kv_mul) * hs:(h // kv_mul + 1) * hs]
        vh = v[:, (h // kv_mul) * hs:(h // kv_mul + 1) * hs]
        s = kh @ qh / np.sqrt(hs)
        p = np.exp(s - s.max())
        out[h * hs:(h + 1) * hs] = (p / p.sum()) @ vh
    return out


# --- tables ------------------------------------------------------------------------------

def test_tables_sizes_and_endpoints():
    assert len(I.build_rsqrt_table()) == 3 * 2 ** F.RSQRT_TABLE_BITS + 1
    assert I.build_rsqrt_table()[0] == 1 << F.RSQRT_FRAC
    assert len(I.build_exp2_table()) == 2 ** F.EXP_TABLE_BITS + 1
    assert I.build_exp2_table()[0] == 1 << F.EXP_FRAC
    assert I.build_exp2_table()[-1] == 1 << (F.EXP_FRAC - 1)
    t = I.build_sigmoid_table()
    assert len(t) == 2 ** F.SIGMOID_TABLE_BITS + 1 and t[0] == 1 << (F.SIGMOID_FRAC - 1)
    rt = I.build_rope_tables(8, 16)
    assert rt.cos.shape == (16, 4) and np.all(rt.cos[0] == 1 << F.ROPE_FRAC)
    assert np.abs(rt.cos).max() < 1 << (F.ROPE_BITS - 1)


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_rsqrt_relative_error(bits):
    v = np.concatenate([np.arange(1, 5000), RNG.integers(1, 2 ** 62, 5000)])
    R, s = I.rsqrt(v, I.build_rsqrt_table(bits))
    approx = R.astype(np.float64) * 2.0 ** -(F.RSQRT_FRAC + s // 2)
    rel = np.abs(approx * np.sqrt(v.astype(np.float64)) - 1)
    # interpolation error (h**2/8 * max|f''|, f'' <= 3/4) + rounding of Q1.16
    assert rel.max() < 0.75 * 4.0 ** -bits / 8 + 2 * 2.0 ** -F.RSQRT_FRAC
    assert np.all(s % 2 == 0)


def test_exp_neg():
    d = np.concatenate([-np.linspace(0, 30, 3001), [-1e4, -32768.0]])
    e = I.exp_neg(F.to_act(d))
    assert e[0] == 1 << F.EXP_FRAC
    assert np.all(np.diff(e[:3001]) <= 0)                     # monotone
    assert np.abs(e / 2.0 ** F.EXP_FRAC - np.exp(d)).max() < 4e-5
    assert e[-1] == 0 and e[-2] == 0
    # documented hardware shortcut: 0 from -13.0 down, so clamping d at -2**20 changes nothing
    d = -RNG.integers(0, 1 << 34, 2000)
    assert np.array_equal(I.exp_neg(d), I.exp_neg(np.maximum(d, -(1 << 20))))
    assert np.all(I.exp_neg(d[d <= -13 * 65536]) == 0)


def test_sigmoid_and_silu():
    x = np.concatenate([np.linspace(-20, 20, 40001), [0.0, 1e-5, -1e-5]])
    sig = I.sigmoid(F.to_act(x)) / 2.0 ** F.SIGMOID_FRAC
    assert np.abs(sig - 1 / (1 + np.exp(-x))).max() < 3e-5
    s = F.from_act(I.silu(F.to_act(x)))
    assert np.abs(s - x / (1 + np.exp(-x))).max() < 2e-4
    # saturation of the table range: exactly x and exactly 0
    big = F.to_act([16.0, 1000.0, 32767.0])
    assert np.array_equal(I.silu(big), big)
    assert np.array_equal(I.silu(-big), np.zeros(3, dtype=np.int32))
    assert I.silu(np.array([F.ACT_MIN]))[0] == 0


# --- vector ops --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 64, 172, 288])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 200.0])
def test_rmsnorm(n, scale):
    x = RNG.normal(size=n) * scale
    g = RNG.uniform(0.3, 4.5, size=n)
    y = F.from_act(I.rmsnorm(F.to_act(x), F.quantize_norm_weight(g)))
    ref = f_rmsnorm(F.from_act(F.to_act(x)), g)
    # X16 quantization of x (2**-15 of max) + rsqrt (4e-5) + g (2**-16 abs)
    assert np.abs(y - ref).max() <= 2e-4 * np.abs(ref).max() + 2 * 2.0 ** -16 * g.max() + 1e-4


def test_rmsnorm_corners():
    g = F.quantize_norm_weight(np.ones(64))
    # zeros: eps keeps the result finite, output exactly 0
    assert np.all(I.rmsnorm(np.zeros(64, dtype=np.int32), g) == 0)
    # max / min values everywhere: normalized to +-1 * g
    for v in (F.ACT_MAX, F.ACT_MIN):
        y = F.from_act(I.rmsnorm(np.full(64, v, dtype=np.int32), g))
        assert np.allclose(y, np.sign(v), atol=1e-4)
    # a single nonzero element: sqrt(n) * g
    x = np.zeros(64, dtype=np.int32)
    x[5] = F.to_act(0.01)
    y = F.from_act(I.rmsnorm(x, g))
    x5 = F.from_act(x[5])
    assert abs(y[5] - x5 / np.sqrt(x5 ** 2 / 64 + 1e-5)) < 1e-4 * y[5]
    # saturation logic (unreachable with 24-bit weights unless n >= 2**16): a 32-bit weight
    y = I.rmsnorm(np.full(4, F.to_act(1.0), dtype=np.int32), np.full(4, F.ACT_MAX))
    assert np.all(y == F.ACT_MAX)


def test_embedding_matches_dequantized_row():
    w = RNG.normal(size=(10, 172))
    qm = F.quantize_matrix(w, 32)
    for tok in (0, 3, 9):
        got = F.from_act(I.embedding(qm, tok))
        assert np.abs(got - qm.dequantize()[tok]).max() <= 2.0 ** -17
        assert np.abs(got - w[tok]).max() <= np.abs(w[tok]).max() / 127


def test_rope():
    hs, seq = 8, 64
    tables = I.build_rope_tables(hs, seq)
    x = RNG.normal(size=4 * hs) * 5
    for pos in (0, 1, 17, 63):
        got = F.from_act(I.rope(F.to_act(x), pos, hs, tables))
        i = np.arange(hs // 2)
        ang = pos * 10000.0 ** (-2 * i / hs)
        xr = x.reshape(-1, hs // 2, 2)
        ref = np.stack([xr[..., 0] * np.cos(ang) - xr[..., 1] * np.sin(ang),
                        xr[..., 0] * np.sin(ang) + xr[..., 1] * np.cos(ang)], -1).reshape(-1)
        assert np.abs(got - ref).max() < 2 * np.abs(x).max() * 2.0 ** -F.ROPE_FRAC + 2.0 ** -15
    # position 0 is the identity; saturation at the int32 limits
    xa = F.to_act(x)
    assert np.array_equal(I.rope(xa, 0, hs, tables), xa)
    big = np.full(hs, F.ACT_MAX, dtype=np.int32)
    out = I.rope(big, 5, hs, tables)
    assert out.max() == F.ACT_MAX or np.all(np.abs(out) < F.ACT_MAX)


@pytest.mark.parametrize("kv_bits,kv_frac", [(8, None), (16, None), (32, None), (16, 8),
                                             (16, 12)])
def test_kv_store_roundtrip(kv_bits, kv_frac):
    k = RNG.normal(size=32) * 3
    st = I.kv_store(F.to_act(k), 4, kv_bits, kv_frac)
    assert st.mant.shape == (4, 8) and st.exp.shape == (4,)
    lim = 1 << (kv_bits - 1)
    assert st.mant.min() >= -lim and st.mant.max() < lim
    back = F.from_act(I.kv_load(st)).reshape(-1)
    step = 2.0 ** (st.exp - F.ACT_FRAC)                            # per head lsb
    assert np.all(np.abs(back - k).reshape(4, 8) <= step[:, None] / 2 + 2.0 ** -17)
    if kv_bits == 32:
        assert np.array_equal(I.kv_load(st).reshape(-1), F.to_act(k))


def _attention_case(n_heads, n_kv, hs, T, kv_bits, kv_frac, scale=2.0):
    q = RNG.normal(size=n_heads * hs) * scale
    k = RNG.normal(size=(T, n_kv * hs)) * scale
    v = RNG.normal(size=(T, n_kv * hs)) * scale
    st_k = [I.kv_store(F.to_act(k[t]), n_kv, kv_bits, kv_frac) for t in range(T)]
    st_v = [I.kv_store(F.to_act(v[t]), n_kv, kv_bits, kv_frac) for t in range(T)]
    kc = I.KvStore(np.stack([s.mant for s in st_k]), np.stack([s.exp for s in st_k]))
    vc = I.KvStore(np.stack([s.mant for s in st_v]), np.stack([s.exp for s in st_v]))
    got = F.from_act(I.attention(F.to_act(q), kc, vc, T - 1, n_heads, n_kv, hs))
    # float reference on the values the cache actually holds
    kq = F.from_act(I.kv_load(kc)).reshape(T, -1)
    vq = F.from_act(I.kv_load(vc)).reshape(T, -1)
    return got, f_softmax_attention(F.from_act(F.to_act(q)), kq, vq, n_heads, n_kv, hs)


@pytest.mark.parametrize("n_heads,n_kv,hs,T", [(8, 4, 8, 1), (8, 4, 8, 37), (6, 6, 48, 256),
                                               (4, 1, 16, 5)])
@pytest.mark.parametrize("kv_bits,kv_frac", [(8, None), (16, None), (32, None), (16, 8)])
def test_attention_vs_float(n_heads, n_kv, hs, T, kv_bits, kv_frac):
    got, ref = _attention_case(n_heads, n_kv, hs, T, kv_bits, kv_frac)
    # errors: X16 q (2**-15 rel. of the max), exp table (4e-5), weights Q1.16, recip 2**-24
    assert np.abs(got - ref).max() < 2e-3 * max(1.0, np.abs(ref).max())


def test_attention_single_position_returns_v():
    got, ref = _attention_case(8, 4, 8, 1, 32, None)
    assert np.abs(got - ref).max() <= 2.0 ** -16


def test_attention_zeros_and_saturated_inputs():
    n_heads, n_kv, hs, T = 2, 1, 4, 3
    zero = I.KvStore(np.zeros((T, n_kv, hs), np.int64), np.zeros((T, n_kv), np.int64))
    q = np.zeros(n_heads * hs, dtype=np.int32)
    assert np.all(I.attention(q, zero, zero, T - 1, n_heads, n_kv, hs) == 0)
    # saturated q and k: scores saturate, softmax stays finite, output is a mean of v
    kbig = I.KvStore(np.full((T, n_kv, hs), 32767, np.int64), np.full((T, n_kv), 16, np.int64))
    v = I.KvStore(np.arange(T * n_kv * hs, dtype=np.int64).reshape(T, n_kv, hs) * 1000,
                  np.zeros((T, n_kv), np.int64))
    qbig = np.full(n_heads * hs, F.ACT_MAX, dtype=np.int32)
    out = I.attention(qbig, kbig, v, T - 1, n_heads, n_kv, hs).reshape(n_heads, hs)
    ref = v.mant[:, 0, :].mean(axis=0)
    assert np.abs(out - ref).max() <= 2


def test_swiglu_and_residual():
    h1 = RNG.normal(size=172) * 4
    h3 = RNG.normal(size=172) * 4
    got = F.from_act(I.swiglu(F.to_act(h1), F.to_act(h3)))
    a1, a3 = F.from_act(F.to_act(h1)), F.from_act(F.to_act(h3))
    ref = a1 / (1 + np.exp(-a1)) * a3
    assert np.abs(got - ref).max() < 2e-4 * np.abs(a3).max() + 2.0 ** -15
    big = np.full(3, F.ACT_MAX, dtype=np.int32)
    assert np.all(I.swiglu(big, big) == F.ACT_MAX)
    assert np.all(I.swiglu(big, -big) == F.ACT_MIN)
    assert np.all(I.residual_add(big, big) == F.ACT_MAX)
    assert np.all(I.residual_add(-big, -big) == F.ACT_MIN)
    x, y = F.to_act(h1), F.to_act(h3)
    assert np.array_equal(I.residual_add(x, y), x.astype(np.int64) + y)


@pytest.mark.parametrize("rows,cols,gs", [(64, 64, 32), (64, 172, 32), (172, 64, 16),
                                          (5, 1, 32), (512, 64, 64)])
def test_linear_vs_float(rows, cols, gs):
    w = RNG.normal(size=(rows, cols)) * 0.1
    x = RNG.normal(size=cols) * 2
    qm = F.quantize_matrix(w, gs)
    got = F.from_act(I.linear(qm, F.to_act(x)))
    ref = qm.dequantize() @ F.from_act(F.to_act(x))
    # X16 quantization error of x times the row's L1 norm, plus output rounding
    x_step = np.abs(x).max() * 2.0 ** -14
    assert np.all(np.abs(got - ref) <= np.abs(qm.dequantize()).sum(1) * x_step + 2.0 ** -16)


def test_ops_are_deterministic_and_integer():
    x = F.to_act(RNG.normal(size=64))
    g = F.quantize_norm_weight(RNG.uniform(0.5, 2, 64))
    a, b = I.rmsnorm(x, g), I.rmsnorm(x.copy(), g.copy())
    assert a.dtype == np.int32 and np.array_equal(a, b)
    assert I.silu(x).dtype == np.int32
    assert I.rope(x, 3, 8, I.build_rope_tables(8, 4)).dtype == np.int32


def test_attention_normalize_is_a_rounded_division():
    S = np.concatenate([[1 << 16, (1 << 16) + 1, 3 << 16], RNG.integers(1 << 16, 1 << 27, 61)])
    acc = RNG.integers(-(1 << 31), 1 << 31, (64, 8)) * (S[:, None] // (1 << 16))
    acc[0] = [0, 1, -1, 1 << 15, -(1 << 15), 12345, (1 << 31) - 1, -(1 << 31)]
    got = I.attention_normalize(acc, S)
    exact = acc / S[:, None].astype(np.float64)
    # pre-shift (<= 2**-5 lsb), 24-bit reciprocal (2**-23 relative), final rounding (0.5 lsb)
    assert np.all(np.abs(got - exact) <= 0.5 + 2.0 ** -5 + np.abs(exact) * 2.0 ** -23 + 1e-9)


def test_attention_query_scales_and_quantizes():
    q = RNG.normal(size=6 * 16) * 3
    q16, eq = I.attention_query(F.to_act(q), 6, 16)
    assert q16.shape == (6, 16) and eq.shape == (6,)
    back = q16 * 2.0 ** (eq[:, None] - 16)
    assert np.abs(back - q.reshape(6, 16) / 4).max() <= 2.0 ** (eq.max() - 16) + 2.0 ** -15


def test_corner_inputs_zero_length_one_and_saturation():
    # embedding: an all-zero row, and values beyond the ACT range saturate
    w = np.zeros((3, 40))
    w[1, :2] = [1e6, -1e6]
    w[2] = RNG.normal(size=40)
    qm = F.quantize_matrix(w, 32)
    assert np.all(I.embedding(qm, 0) == 0)
    assert I.embedding(qm, 1)[:2].tolist() == [F.ACT_MAX, F.ACT_MIN]
    # rope: one pair (head_size 2), zeros stay zero
    t2 = I.build_rope_tables(2, 8)
    x = F.to_act([0.6, -0.8])
    got = F.from_act(I.rope(x, 7, 2, t2))
    ang = 7.0
    assert np.allclose(got, [0.6 * np.cos(ang) + 0.8 * np.sin(ang),
                             0.6 * np.sin(ang) - 0.8 * np.cos(ang)], atol=2.0 ** -15)
    assert np.all(I.rope(np.zeros(16, np.int32), 5, 8, I.build_rope_tables(8, 8)) == 0)
    # swiglu / silu / residual on length 1 and zeros
    one = F.to_act([2.5])
    assert abs(F.from_act(I.swiglu(one, one))[0] - 2.5 ** 2 / (1 + np.exp(-2.5))) < 1e-4
    assert np.all(I.swiglu(np.zeros(5, np.int32), F.to_act(np.ones(5))) == 0)
    assert I.residual_add(one, -one).tolist() == [0]
    # linear: a zero input gives exactly zero
    qm = F.quantize_matrix(RNG.normal(size=(7, 172)), 32)
    assert np.all(I.linear(qm, np.zeros(172, np.int32)) == 0)
