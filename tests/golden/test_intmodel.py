"""The integer model: scheme names, quantized model, the decode step (~10 s).

The step is checked against a plain composition of the intops functions (no stacking,
no caching tricks), against the float reference on a few positions, and for determinism.
"""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.errors import InputError
from speedllm.golden import formats as F
from speedllm.golden import intops as I
from speedllm.golden.checkpoint import ModelArgs, load_checkpoint
from speedllm.golden.float_ref import FloatTransformer
from speedllm.golden.intmodel import DEFAULT_SCHEME, IntegerTransformer, QuantizedModel, Scheme
from speedllm.golden.synth import synth_checkpoint


@pytest.fixture(scope="module")
def ckpt(model_path):
    return load_checkpoint(model_path)


@pytest.fixture(scope="module")
def small_unshared():
    """Random weights, separate classifier, n_kv_heads == n_heads, ragged hidden_dim."""
    return synth_checkpoint(ModelArgs(48, 100, 2, 6, 6, 40, 16, shared_classifier=False), seed=3)


def naive_step(model: QuantizedModel, kcache: list, vcache: list, token: int, pos: int):
    """run.c's step list written as the plain intops calls (the reading of the contract)."""
    a, sc = model.args, model.scheme
    x = I.embedding(model.embedding, token)
    for l in range(a.n_layers):
        xb = I.rmsnorm(x, model.rms_att[l], model.rsqrt_table)
        q = I.rope(I.linear(model.wq[l], xb), pos, a.head_size, model.rope_tables)
        k = I.rope(I.linear(model.wk[l], xb), pos, a.head_size, model.rope_tables)
        v = I.linear(model.wv[l], xb)
        kcache[l].append(I.kv_store(k, a.n_kv_heads, sc.kv_bits, sc.kv_frac))
        vcache[l].append(I.kv_store(v, a.n_kv_heads, sc.kv_bits, sc.kv_frac))
        kc = I.KvStore(np.stack([s.mant for s in kcache[l]]), np.stack([s.exp for s in kcache[l]]))
        vc = I.KvStore(np.stack([s.mant for s in vcache[l]]), np.stack([s.exp for s in vcache[l]]))
        att = I.attention(q, kc, vc, pos, a.n_heads, a.n_kv_heads, a.head_size, model.exp_table)
        x = I.residual_add(x, I.linear(model.wo[l], att))
        xb = I.rmsnorm(x, model.rms_ffn[l], model.rsqrt_table)
        h = I.swiglu(I.linear(model.w1[l], xb), I.linear(model.w3[l], xb), model.sigmoid_table)
        x = I.residual_add(x, I.linear(model.w2[l], h))
    x = I.rmsnorm(x, model.rms_final, model.rsqrt_table)
    return I.linear(model.wcls, x)


def test_scheme_names_roundtrip():
    assert DEFAULT_SCHEME.name == "g32-kv16"
    assert Scheme.from_name("default") is DEFAULT_SCHEME
    for s in (Scheme(16, 8), Scheme(64, 32), Scheme(32, 16, 8), Scheme(32, 16, None, 4, 5, 7)):
        assert Scheme.from_name(s.name) == s
        d = s.to_dict()
        assert d["name"] == s.name and d["group_size"] == s.group_size
    for bad in ("g32-kv12", "x", "g0-kv16", "g32-kv16f20", "g32-rs0"):
        with pytest.raises(InputError):
            Scheme.from_name(bad)


def test_quantized_model_contents(ckpt):
    m = QuantizedModel.from_checkpoint(ckpt, Scheme(group_size=16))
    a = ckpt.args
    assert m.wcls is m.embedding                                  # shared classifier
    assert len(m.w1) == a.n_layers and m.w1[0].group_size == 16
    assert m.w2[0].q.shape == (a.dim, F.padded_cols(a.hidden_dim, 16))
    assert m.rms_att[0].dtype == np.int32
    assert m.rope_tables.cos.shape == (a.seq_len, a.head_size // 2)
    assert len(m.sigmoid_table) == 2 ** F.SIGMOID_TABLE_BITS + 1


@pytest.mark.parametrize("scheme", ["g32-kv16", "g64-kv8", "g16-kv32f16"])
def test_step_equals_plain_intops_composition(ckpt, scheme):
    model = IntegerTransformer(ckpt, scheme)
    kc = [[] for _ in range(ckpt.args.n_layers)]
    vc = [[] for _ in range(ckpt.args.n_layers)]
    for pos, tok in enumerate([1, 403, 407, 261, 378, 5]):
        got = model.forward_int(tok, pos)
        assert got.dtype == np.int32
        assert np.array_equal(got, naive_step(model.model, kc, vc, tok, pos))


def test_unshared_classifier_and_mha(small_unshared):
    model = IntegerTransformer(small_unshared)
    assert model.model.wcls is not model.model.embedding
    kc = [[] for _ in range(2)]
    vc = [[] for _ in range(2)]
    for pos, tok in enumerate([1, 7, 39, 0]):
        want = naive_step(model.model, kc, vc, tok, pos)
        assert np.array_equal(model.forward_int(tok, pos), want)


def test_close_to_float_and_deterministic(ckpt):
    model, ref = IntegerTransformer(ckpt), FloatTransformer(ckpt)
    toks = [1, 403, 407, 261, 378, 29, 281]
    first = []
    for pos, tok in enumerate(toks):
        li = model.forward(tok, pos)
        lf = ref.forward(tok, pos)
        assert li.dtype == np.float32 and li.shape == (ckpt.args.vocab_size,)
        assert np.argmax(li) == np.argmax(lf)
        assert np.abs(li - lf).max() < 0.05 * np.abs(lf).max()
        first.append(li)
    model.reset()
    for pos, tok in enumerate(toks):                              # reset: same bits again
        li = model.forward(tok, pos)
        assert np.array_equal(li, first[pos])
    # forward is exactly forward_int / 2**16
    model.reset()
    a = model.forward_int(1, 0)
    model.reset()
    assert np.array_equal(model.forward(1, 0), (a / 65536).astype(np.float32))


def test_kv_cache_holds_its_format(ckpt):
    for name, bits in (("g32-kv8", 8), ("g32-kv16", 16)):
        model = IntegerTransformer(ckpt, name)
        for pos, tok in enumerate([1, 403, 407]):
            model.forward_int(tok, pos)
        m = model.key_cache.mant[:, :3]
        assert m.min() >= -(1 << (bits - 1)) and m.max() < (1 << (bits - 1))
        assert model.key_cache.mant[:, 3:].any() == False  # noqa: E712 (rows past pos empty)


def test_bad_input(ckpt):
    model = IntegerTransformer(ckpt)
    with pytest.raises(InputError):
        model.forward(512, 0)
    with pytest.raises(InputError):
        model.forward(-1, 0)
    with pytest.raises(InputError):
        model.forward(1, 1)                                       # skips position 0
    with pytest.raises(InputError):
        model.forward(1.5, 0)
    with pytest.raises(InputError):
        IntegerTransformer(ckpt, "g32-kv7")
