"""The accuracy bars of the default scheme on stories260K, and `speedllm eval` (~25 s).

The bar test runs the full teacher-forced 256-step evaluation plus the free greedy run;
the CLI test uses the 64-step reference entry to stay short.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from speedllm.cli import main
from speedllm.golden import accuracy
from speedllm.golden.checkpoint import load_checkpoint
from speedllm.golden.float_ref import FloatTransformer
from speedllm.golden.intmodel import DEFAULT_SCHEME, IntegerTransformer


class ReplayModel:
    """A fake backend whose argmax is the reference's next token, except at ``wrong_pos``."""

    def __init__(self, token_ids, vocab, wrong_pos):
        self.ids, self.vocab, self.wrong_pos = token_ids, vocab, wrong_pos

    def reset(self):
        pass

    def forward(self, token, pos):
        logits = np.zeros(self.vocab, dtype=np.float32)
        nxt = self.ids[pos + 1]
        logits[(nxt + 1) % self.vocab if pos == self.wrong_pos else nxt] = 5.0
        return logits


def test_kl_divergence_basics():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(4, 50))
    assert np.allclose(accuracy.kl_divergence(p, p), 0.0, atol=1e-12)
    assert np.allclose(accuracy.kl_divergence(p, p + 3.0), 0.0, atol=1e-12)   # shift-invariant
    q = rng.normal(size=(4, 50))
    kl = accuracy.kl_divergence(p, q)
    sp = np.exp(p) / np.exp(p).sum(1, keepdims=True)
    sq = np.exp(q) / np.exp(q).sum(1, keepdims=True)
    assert np.allclose(kl, (sp * np.log(sp / sq)).sum(1))


def test_greedy_prefix_counts_up_to_first_difference(reference_outputs):
    ref = accuracy.pick_reference(reference_outputs, 64)
    ids, n_prompt = ref["token_ids"], len(ref["prompt_token_ids"])
    n_gen = len(ref["generated_token_ids"])
    full = ReplayModel(ids, 512, wrong_pos=-1)
    assert accuracy.greedy_prefix(full, ref["prompt_token_ids"], ref["generated_token_ids"]) \
        == n_gen
    for k in (0, 5, n_gen - 1):
        model = ReplayModel(ids, 512, wrong_pos=n_prompt - 1 + k)
        assert accuracy.greedy_prefix(model, ref["prompt_token_ids"],
                                      ref["generated_token_ids"]) == k
    # a wrong guess inside the prompt does not count: prompt tokens are forced
    model = ReplayModel(ids, 512, wrong_pos=0)
    assert accuracy.greedy_prefix(model, ref["prompt_token_ids"], ref["generated_token_ids"]) \
        == n_gen


def test_default_scheme_meets_the_bars(model_path, reference_outputs):
    ckpt = load_checkpoint(model_path)
    ref = accuracy.pick_reference(reference_outputs, 256)
    r = accuracy.evaluate(IntegerTransformer(ckpt), FloatTransformer(ckpt), ref)
    assert r["scheme"] == DEFAULT_SCHEME.to_dict()
    assert r["n_positions"] == 256
    assert r["top1_agreement"] >= accuracy.TOP1_BAR
    assert r["mean_kl"] <= accuracy.KL_BAR
    assert r["greedy_prefix"] >= accuracy.GREEDY_PREFIX_BAR


def test_cli_eval_prints_one_json_object(capsys, model_path, tok512_path, reference_outputs):
    rc = main(["eval", str(model_path), "--tokenizer", str(tok512_path), "--reference",
               "reference_outputs.json", "--backend", "golden", "--scheme", "g32-kv16",
               "--steps", "64"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("\n") == 1
    r = json.loads(out)
    for key in ("top1_agreement", "mean_kl", "greedy_prefix", "scheme"):
        assert key in r
    assert 0.0 <= r["top1_agreement"] <= 1.0 and r["mean_kl"] >= 0.0
    assert r["scheme"]["name"] == "g32-kv16" and r["n_positions"] == 64
    assert 0 <= r["greedy_prefix"] <= len(accuracy.pick_reference(reference_outputs, 64)
                                          ["generated_token_ids"])


def test_cli_eval_float_against_itself_is_exact(capsys, model_path):
    assert main(["eval", str(model_path), "--backend", "float", "--steps", "64"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["top1_agreement"] == 1.0 and r["mean_kl"] == 0.0 and r["scheme"] is None
    assert r["greedy_prefix"] == r["n_generated"]       # the float model is run.c


@pytest.mark.parametrize("extra,needle", [
    (["--scheme", "g32-kv12"], "scheme"),
    (["--steps", "7"], "no greedy entry"),
    (["--reference", "no_such_file.json"], "no_such_file.json"),
    (["--backend", "float", "--scheme", "g32-kv16"], "golden backend only"),
])
def test_cli_eval_bad_input_is_one_line(capsys, model_path, tok512_path, extra, needle):
    rc = main(["eval", str(model_path), "--tokenizer", str(tok512_path), *extra])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("speedllm: error:") and needle in err
    assert err.count("\n") == 1
