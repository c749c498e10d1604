"""`speedllm generate` / `speedllm tokenize`: run.c's exact stdout for the six reference
runs, --json, one run of the installed console script, and one-line input errors. ~6 s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speedllm.cli import main


def reference_argv(ref, model_path, tok512_path) -> list[str]:
    argv = ["generate", str(model_path), "--tokenizer", str(tok512_path),
            "-n", str(ref["steps"]), "-t", str(ref["temperature"])]
    if ref["prompt"]:
        argv += ["--prompt", ref["prompt"]]
    if ref["temperature"]:
        argv += ["-p", str(ref["topp"]), "-s", str(ref["seed"])]
    return argv


def test_stdout_is_runc_text_for_all_references(capsysbinary, model_path, tok512_path,
                                                 reference_outputs):
    for ref in reference_outputs:
        assert main(reference_argv(ref, model_path, tok512_path)) == 0
        out, err = capsysbinary.readouterr()
        assert out == ref["text"].encode("utf-8") + b"\n", ref["cli"]
        assert err.decode().startswith("achieved tok/s: ")


def test_json_output(capsys, model_path, tok512_path, reference_outputs):
    ref = next(r for r in reference_outputs if r["temperature"])
    assert main(reference_argv(ref, model_path, tok512_path) + ["--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["text"] == ref["text"]
    assert result["token_ids"] == ref["token_ids"]
    assert result["prompt_token_ids"] == ref["prompt_token_ids"]
    assert result["backend"] == "float" and result["steps"] == ref["steps"]
    assert result["tok_per_s"] > 0 and result["seed"] == ref["seed"]
    assert err == ""


def test_installed_console_script(model_path, tok512_path, reference_outputs):
    ref = reference_outputs[0]
    script = Path(sys.executable).with_name("speedllm")
    assert script.is_file(), f"console script missing next to {sys.executable}"
    proc = subprocess.run([str(script)] + reference_argv(ref, model_path, tok512_path),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ref["text"].encode("utf-8") + b"\n"
    assert proc.stderr.decode().startswith("achieved tok/s: ")


def test_tokenize_prints_json_ids(capsys, tokenizer_reference):
    for name in ("tok512.bin", "tokenizer.bin"):
        entries = [e for e in tokenizer_reference if e["tokenizer"] == name][:3]
        for entry in entries:
            assert main(["tokenize", "--tokenizer", name, entry["prompt"]]) == 0
            assert json.loads(capsys.readouterr().out) == entry["token_ids"]


@pytest.mark.parametrize("extra,match", [
    (["-n", "0"], "steps"),
    (["-n", "513"], "context length 512"),
    (["-t", "-1"], "temperature"),
    (["-p", "1.5"], "top-p"),
    (["-n", "3", "--prompt", "Once upon a time"], "prompt"),
    (["--backend", "float", "--scheme", "g32"], "option"),
])
def test_generate_input_errors(capsys, model_path, tok512_path, extra, match):
    argv = ["generate", str(model_path), "--tokenizer", str(tok512_path), "-s", "1"] + extra
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("speedllm: error: ") and match in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv_of,match", [
    (lambda m, t: ["generate", "no-such-model.bin", "--tokenizer", str(t)], "no-such-model"),
    (lambda m, t: ["generate", str(m), "--tokenizer", "tokenizer.bin"], "tokenizer.bin"),
    (lambda m, t: ["tokenize", "--tokenizer", "no-such-tok.bin", "hi"], "no-such-tok"),
    (lambda m, t: ["tokenize", "--tokenizer", str(t), "--vocab-size", "0", "hi"],
     "vocab-size"),
])
def test_file_errors_are_one_line(capsys, model_path, tok512_path, argv_of, match):
    assert main(argv_of(model_path, tok512_path)) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("speedllm: error: ") and match in err
