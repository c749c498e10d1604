"""``speedllm.load(...).generate(...)``: golden tokens equal the CLI's, the pynq driver on
the simulated device streams the golden tokens, board/rtl option errors are one line. ~15 s."""

from __future__ import annotations

import json
import sys

import pytest

import speedllm
from speedllm.cli import main as cli_main
from speedllm.errors import AcceleratorError, SpeedLLMError
from speedllm.golden.generate import backend_names, create_backend
from speedllm.golden.checkpoint import load_checkpoint
from speedllm.host import backends  # noqa: F401  (registers board, pynq-sim, rtl)


def cli_generate(capsys, model_path, tok512_path, *extra):
    assert cli_main(["generate", str(model_path), "--tokenizer", str(tok512_path),
                     "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_golden_api_equals_cli(capsys, model_path, tok512_path):
    cli = cli_generate(capsys, model_path, tok512_path, "--backend", "golden", "-n", "48",
                       "-t", "0", "-i", "Once upon a time")
    session = speedllm.load(model_path, tok512_path, backend="golden", progress=False)
    tokens = list(session.generate("Once upon a time", steps=48, temperature=0.0))
    assert [1] + [t.token for t in tokens] == cli["token_ids"]
    assert "".join(t.text for t in tokens) == cli["text"]
    assert all(t.seconds > 0 and t.cycles is None for t in tokens)
    assert [t.forced for t in tokens[:4]] == [True] * 4 and not tokens[4].forced


def test_sampled_golden_api_equals_cli(capsys, model_path, tok512_path):
    cli = cli_generate(capsys, model_path, tok512_path, "--backend", "golden", "-n", "40",
                       "-t", "1.0", "-p", "0.9", "-s", "42")
    session = speedllm.load(str(model_path), str(tok512_path), progress=False)
    text = session.complete("", steps=40, temperature=1.0, topp=0.9, seed=42)
    assert text == cli["text"]
    assert session.last_generation.token_ids == cli["token_ids"]


@pytest.mark.parametrize("temperature, seed", [(0.0, None), (1.0, 7)])
def test_pynq_sim_streams_the_golden_tokens(model_path, tok512_path, temperature, seed):
    import pynq  # noqa: F401  (the test extras install it)
    golden = speedllm.load(model_path, tok512_path, backend="golden", progress=False)
    sim = speedllm.load(model_path, tok512_path, backend="pynq-sim", progress=False)
    want = [t.token for t in golden.generate("Once upon a time", 32, temperature, 0.9, seed)]
    got = list(sim.generate("Once upon a time", 32, temperature, 0.9, seed))
    assert [t.token for t in got] == want
    assert all(t.cycles is None for t in got)          # the functional model is untimed
    # a second generation on the same session starts from a clean KV cache
    again = [t.token for t in sim.generate("Once upon a time", 32, temperature, 0.9, seed)]
    assert again == want


def test_upload_progress_bar(model_path, tok512_path, capsys):
    import pynq  # noqa: F401  (the test extras install it)
    speedllm.load(model_path, tok512_path, backend="pynq-sim", progress=True)
    assert "upload weights" in capsys.readouterr().err


def test_host_backends_are_registered():
    assert {"float", "golden", "board", "pynq-sim", "rtl"} <= set(backend_names())


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_board_backend_without_a_board(model_path, tok512_path):
    import pynq  # noqa: F401  (the test extras install it)
    with pytest.raises(AcceleratorError) as e:
        speedllm.load(model_path, tok512_path, backend="board", bitstream="x.bit")
    assert "no PYNQ board found" in one_line_error(e)


def test_board_backend_without_pynq(model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)       # import pynq -> ModuleNotFoundError
    with pytest.raises(AcceleratorError) as e:
        create_backend("board", load_checkpoint(model_path), bitstream="x.bit")
    assert "needs the pynq package" in one_line_error(e)


def test_rtl_backend_bad_option_is_a_clear_error(model_path):
    with pytest.raises(SpeedLLMError) as e:
        create_backend("rtl", load_checkpoint(model_path), bitstream="x.bit")
    assert "rtl backend does not take bitstream" in one_line_error(e)


def test_bad_options_fail_at_the_call(model_path, tok512_path):
    session = speedllm.load(model_path, tok512_path, backend="golden", progress=False)
    with pytest.raises(SpeedLLMError, match="exceeds the model's context length"):
        session.generate("", steps=session.args.seq_len + 1)
