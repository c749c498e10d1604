"""``--backend rtl``: the pynq driver on the Verilator harness of the accelerator top
prints the golden backend's tokens (greedy and sampled, same seed), with measured cycles.

Default: 64 positions each (about a minute a run on a quiet machine once the top is
built); ``slow``: the whole 512-position context."""

from __future__ import annotations

import json

import pytest

import speedllm
from speedllm.cli import main as cli_main

pytestmark = pytest.mark.sim


def cli_generate(capsys, model_path, tok512_path, *extra):
    assert cli_main(["generate", str(model_path), "--tokenizer", str(tok512_path),
                     "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_rtl_greedy_tokens_equal_golden_with_measured_cycles(capsys, model_path, tok512_path):
    args = ("-n", "64", "-t", "0", "-i", "Once upon a time")
    golden = cli_generate(capsys, model_path, tok512_path, "--backend", "golden", *args)
    rtl = cli_generate(capsys, model_path, tok512_path, "--backend", "rtl", *args)
    assert rtl["token_ids"] == golden["token_ids"]
    assert rtl["text"] == golden["text"]
    assert rtl["cycles_per_token"] > 0 and rtl["sim_cycles_per_s"] > 0
    by_command = rtl["cycles_by_command"]
    assert {"embed", "matvec", "attention", "classifier"} <= set(by_command)
    # the classes add up to the mean cycles per token (fetch included)
    assert sum(by_command.values()) == pytest.approx(rtl["cycles_per_token"] * 64, rel=1e-9)
    assert "projected_tok_per_s" in rtl["estimated"]


def test_rtl_sampled_tokens_equal_golden_through_the_api(model_path, tok512_path):
    options = dict(steps=64, temperature=0.9, topp=0.9, seed=42)
    golden = speedllm.load(model_path, tok512_path, backend="golden", progress=False)
    rtl = speedllm.load(model_path, tok512_path, backend="rtl", progress=False)
    want = [t.token for t in golden.generate("Once upon a time", **options)]
    got = list(rtl.generate("Once upon a time", **options))
    assert [t.token for t in got] == want
    assert all(t.cycles and t.cycles > 0 for t in got)


@pytest.mark.parametrize("flag", ["--no-fuse", "--no-reuse"])
def test_rtl_unfused_and_no_reuse_programs_give_the_same_tokens(capsys, model_path,
                                                                tok512_path, flag):
    args = ("-n", "12", "-t", "0")
    golden = cli_generate(capsys, model_path, tok512_path, "--backend", "golden", *args)
    rtl = cli_generate(capsys, model_path, tok512_path, "--backend", "rtl", flag, *args)
    assert rtl["token_ids"] == golden["token_ids"]
    if flag == "--no-fuse":
        assert rtl["fusion"] == "attention_pass" and "rmsnorm" in rtl["cycles_by_command"]
    else:
        assert rtl["reuse"] is False


@pytest.mark.slow
def test_rtl_whole_context_equals_golden(capsys, model_path, tok512_path):
    args = ("-n", "512", "-t", "0")
    golden = cli_generate(capsys, model_path, tok512_path, "--backend", "golden", *args)
    rtl = cli_generate(capsys, model_path, tok512_path, "--backend", "rtl", *args)
    assert rtl["token_ids"] == golden["token_ids"]
