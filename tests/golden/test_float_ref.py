"""The float reference against run.c: the six reference runs token for token, RoPE tables
against a scalar transcription of run.c's expressions, and logits against an independent
float64 loop implementation (one head at a time) on stories260K and on a synthetic GQA
model whose dims are not powers of two. ~3 s."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speedllm.errors import InputError
from speedllm.golden.checkpoint import ModelArgs, load_checkpoint, load_tokenizer
from speedllm.golden.float_ref import FloatTransformer, benchmark, rope_tables
from speedllm.golden.generate import Generation
from speedllm.golden.sampler import Sampler
from speedllm.golden.synth import synth_checkpoint
from speedllm.golden.tokenizer import Tokenizer

F32 = np.float32


@pytest.fixture(scope="module")
def checkpoint(model_path):
    return load_checkpoint(model_path)


@pytest.fixture(scope="module")
def model(checkpoint):
    return FloatTransformer(checkpoint)


@pytest.fixture(scope="module")
def gqa_checkpoint():
    # kv_mul 3, head_size 8, hidden 100, a separate classifier
    return synth_checkpoint(ModelArgs(48, 100, 2, 6, 2, 37, 16, shared_classifier=False),
                            seed=3)


def test_reference_outputs_token_for_token(model, checkpoint, tok512_path, reference_outputs):
    """All six run.c references (three greedy, three sampled): ids, prompt ids, text."""
    tokenizer = Tokenizer(load_tokenizer(tok512_path, checkpoint.args.vocab_size))
    assert len(reference_outputs) == 6
    for ref in reference_outputs:
        sampler = Sampler(checkpoint.args.vocab_size, ref["temperature"],
                          ref["topp"] if ref["topp"] is not None else 0.9, ref["seed"] or 1)
        gen = Generation(model, tokenizer, sampler, ref["prompt"], ref["steps"]).run()
        assert gen.prompt_token_ids == ref["prompt_token_ids"]
        assert gen.token_ids == ref["token_ids"], ref["cli"]
        assert gen.generated_token_ids == ref["generated_token_ids"]
        assert gen.stopped_on_bos == ref["stopped_on_bos"]
        assert gen.text == ref["text"].encode("utf-8")


def runc_rope(pos: int, head_dim: int, head_size: int) -> tuple[float, float]:
    """run.c's RoPE expressions with each float32 rounding written out."""
    def f32(v):
        return float(F32(v))
    exponent = f32(head_dim / head_size)
    freq = f32(1.0 / f32(math.pow(10000.0, exponent)))
    val = f32(pos * freq)
    return f32(math.cos(val)), f32(math.sin(val))


def test_rope_tables_match_runc_expressions(checkpoint):
    args = checkpoint.args
    fcr, fci = rope_tables(args)
    assert fcr.shape == fci.shape == (args.seq_len, args.head_size // 2)
    assert fcr.dtype == fci.dtype == np.float32
    for pos in (0, 1, 2, 37, 255, 511):
        for j in range(args.head_size // 2):
            assert (fcr[pos, j], fci[pos, j]) == runc_rope(pos, 2 * j, args.head_size)


def loop_forward_f64(args: ModelArgs, w, cache, token: int, pos: int) -> np.ndarray:
    """run.c's forward() in float64, one head and one time step at a time."""
    def rmsnorm(x, g):
        return g * x / math.sqrt(np.mean(x * x) + 1e-5)
    hs, kv_dim = args.head_size, args.kv_dim
    x = w["token_embedding_table"][token].astype(np.float64)
    for l in range(args.n_layers):
        xb = rmsnorm(x, w["rms_att_weight"][l])
        q, k, v = w["wq"][l] @ xb, w["wk"][l] @ xb, w["wv"][l] @ xb
        for vec in (q, k):
            for i in range(0, len(vec), 2):
                theta = pos / 10000.0 ** ((i % hs) / hs)
                v0, v1 = vec[i], vec[i + 1]
                vec[i] = v0 * math.cos(theta) - v1 * math.sin(theta)
                vec[i + 1] = v0 * math.sin(theta) + v1 * math.cos(theta)
        cache.setdefault(l, []).append((k, v))
        out = np.zeros(args.dim)
        for h in range(args.n_heads):
            g = h // args.kv_mul
            qh = q[h * hs:(h + 1) * hs]
            scores = np.array([qh @ kt[g * hs:(g + 1) * hs] / math.sqrt(hs)
                               for kt, _ in cache[l]])
            att = np.exp(scores - scores.max())
            att /= att.sum()
            for t, (_, vt) in enumerate(cache[l]):
                out[h * hs:(h + 1) * hs] += att[t] * vt[g * hs:(g + 1) * hs]
        assert len(k) == kv_dim
        x = x + w["wo"][l] @ out
        xb = rmsnorm(x, w["rms_ffn_weight"][l])
        h1, h3 = w["w1"][l] @ xb, w["w3"][l] @ xb
        x = x + w["w2"][l] @ (h1 / (1 + np.exp(-h1)) * h3)
    return w["wcls"] @ rmsnorm(x, w["rms_final_weight"])


@pytest.mark.parametrize("which", ["stories260K", "gqa_synthetic"])
def test_logits_close_to_float64_loops(which, checkpoint, gqa_checkpoint):
    ck = checkpoint if which == "stories260K" else gqa_checkpoint
    args, w = ck.args, {k: np.asarray(v, dtype=np.float64) for k, v in ck.weights.items()}
    model = FloatTransformer(ck)
    rng = np.random.default_rng(0)
    cache: dict = {}
    for pos, token in enumerate(rng.integers(0, args.vocab_size, min(12, args.seq_len))):
        logits = model.forward(int(token), pos)
        assert logits.dtype == np.float32 and logits.shape == (args.vocab_size,)
        expected = loop_forward_f64(args, w, cache, int(token), pos)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-5 * scale)


def test_reset_starts_a_new_sequence(gqa_checkpoint):
    model = FloatTransformer(gqa_checkpoint)
    first = [model.forward(t, p) for p, t in enumerate([1, 5, 9])]
    model.reset()
    again = [model.forward(t, p) for p, t in enumerate([1, 5, 9])]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("token,pos", [(-1, 0), (37, 0), (2.0, 0), (True, 0), (3, 16),
                                       (3, -1), (3, 2)])
def test_bad_token_or_position_is_input_error(gqa_checkpoint, token, pos):
    model = FloatTransformer(gqa_checkpoint)
    with pytest.raises(InputError) as e:
        model.forward(token, pos)
    assert "\n" not in str(e.value)


def test_benchmark_reports_speed(gqa_checkpoint):
    result = benchmark(gqa_checkpoint, steps=100, repeats=1)
    assert result["steps"] == gqa_checkpoint.args.seq_len          # clamped to the context
    assert result["wall_tok_per_s"] > 0 and result["cpu_tok_per_s"] > 0
