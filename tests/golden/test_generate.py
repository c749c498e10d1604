"""The generation loop and the backend registry, on small stand-in backends. < 1 s."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from speedllm.errors import InputError
from speedllm.golden.checkpoint import ModelArgs, load_tokenizer
from speedllm.golden import generate
from speedllm.golden.generate import (Generation, backend_names, create_backend,
                                      register_backend)
from speedllm.golden.sampler import Sampler
from speedllm.golden.synth import synth_checkpoint
from speedllm.golden.tokenizer import BOS, Tokenizer

ARGS = ModelArgs(64, 172, 1, 8, 4, 512, 32)


class ScriptedBackend:
    """Puts all the probability on a scripted token per position; records its calls."""

    def __init__(self, script: dict[int, int], args: ModelArgs = ARGS):
        self.args, self.script, self.calls, self.resets = args, script, [], 0

    def reset(self):
        self.resets += 1

    def forward(self, token, pos):
        self.calls.append((token, pos))
        logits = np.zeros(self.args.vocab_size, dtype=np.float32)
        logits[self.script.get(pos, 300)] = 100.0
        return logits


@pytest.fixture(scope="module")
def tokenizer(tok512_path):
    return Tokenizer(load_tokenizer(tok512_path, 512))


def test_prompt_is_forced_then_sampled(tokenizer):
    backend = ScriptedBackend({})
    prompt = tokenizer.encode("Once upon a time")
    gen = Generation(backend, tokenizer, Sampler(512, 0.0), "Once upon a time", 9)
    steps = list(gen)
    assert backend.resets == 1
    assert [c[1] for c in backend.calls] == list(range(9))
    assert [s.forced for s in steps] == [True] * (len(prompt) - 1) + \
        [False] * (9 - len(prompt) + 1)
    assert gen.token_ids == prompt + [300] * (10 - len(prompt))
    assert [c[0] for c in backend.calls] == gen.token_ids[:-1]
    assert gen.text == b"".join(s.piece for s in steps) == tokenizer.decode_text(gen.token_ids)
    assert all(s.seconds >= 0 for s in steps) and gen.tok_per_s > 0


def test_stops_on_bos_without_printing_it(tokenizer):
    backend = ScriptedBackend({3: BOS})
    gen = Generation(backend, tokenizer, Sampler(512, 0.0), "", 20).run()
    assert gen.stopped_on_bos
    assert gen.token_ids == [BOS, 300, 300, 300]
    assert len(backend.calls) == 4


def test_runs_once(tokenizer):
    gen = Generation(ScriptedBackend({}), tokenizer, Sampler(512, 0.0), "", 3).run()
    with pytest.raises(RuntimeError):
        gen.run()


@pytest.mark.parametrize("steps,temperature,topp,prompt,match", [
    (0, 0.0, 0.9, "", "steps"),
    (33, 0.0, 0.9, "", "context length"),
    (8, -0.5, 0.9, "", "temperature"),
    (8, 1.0, 1.5, "", "top-p"),
    (8, 1.0, -0.1, "", "top-p"),
    (8, 1.0, float("nan"), "", "top-p"),
    (4, 0.0, 0.9, "Once upon a time there", "prompt"),
])
def test_bad_options_are_one_line_input_errors(tokenizer, steps, temperature, topp,
                                               prompt, match):
    with pytest.raises(InputError, match=match) as e:
        Generation(ScriptedBackend({}), tokenizer, Sampler(512, temperature, topp, 1),
                   prompt, steps)
    assert "\n" not in str(e.value)


def test_tokenizer_must_fit_the_model(tokenizer):
    backend = ScriptedBackend({}, ModelArgs(64, 172, 1, 8, 4, 600, 32))
    with pytest.raises(InputError, match="tokenizer"):
        Generation(backend, tokenizer, Sampler(600, 0.0), "", 4)


def test_registry_makes_float_and_takes_new_backends(monkeypatch):
    monkeypatch.setattr(generate, "_BACKENDS", dict(generate._BACKENDS))
    ck = synth_checkpoint(ModelArgs(16, 24, 1, 2, 1, 20, 8), seed=1)
    assert {"float", "golden"} <= set(backend_names())
    model = create_backend("float", ck)
    assert model.forward(1, 0).shape == (20,)
    made = []
    register_backend("test-echo", lambda checkpoint, **opts: made.append(opts) or model)
    assert create_backend("test-echo", ck, depth=3) is model and made == [{"depth": 3}]
    with pytest.raises(InputError, match="unknown backend"):
        create_backend("no-such-backend", ck)


def test_golden_backend_is_the_integer_model():
    ck = synth_checkpoint(ModelArgs(64, 172, 1, 8, 4, 40, 8), seed=2)
    golden = create_backend("golden", ck)
    assert type(golden).__name__ == "IntegerTransformer"
    logits = golden.forward(1, 0)
    assert logits.dtype == np.float32 and logits.shape == (40,)


def test_golden_backend_without_intmodel_is_a_clear_error(monkeypatch):
    ck = synth_checkpoint(ModelArgs(16, 24, 1, 2, 1, 20, 8), seed=1)
    monkeypatch.setitem(sys.modules, "speedllm.golden.intmodel", None)
    with pytest.raises(InputError, match="intmodel"):
        create_backend("golden", ck)
