"""`speedllm bench`: one JSON object with consistent fields, the ablation's ratios, a
human-readable table, and one-line errors for bad shapes and boards."""

import json

import pytest

from speedllm import cli
from speedllm.ops.boards import get_board


def test_bench_is_a_cli_command():
    assert "bench" in cli.COMMANDS


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("shape,board", [("stories15M", "pynq-z2"), ("stories260K", "kv260")])
def test_json_fields_present_and_consistent(capsys, shape, board):
    rc, out, _ = run(capsys, "bench", "--shape", shape, "--board", board, "--json")
    assert rc == 0
    r = json.loads(out)
    for f in ("cycles_per_token", "fmax_mhz", "tok_per_s", "roofline_tok_per_s",
              "roofline_fraction", "weight_bytes_per_token", "dram_bytes_per_token",
              "energy_j_per_token", "estimated", "source"):
        assert f in r, f
    b = get_board(board)
    assert r["source"] == "model" and r["shape"] == shape and r["board"] == board
    assert r["roofline_fraction"] == pytest.approx(r["tok_per_s"] / r["roofline_tok_per_s"])
    assert r["roofline_tok_per_s"] == pytest.approx(b.dram_peak_bytes_per_s
                                                    / r["weight_bytes_per_token"])
    assert r["tok_per_s"] == pytest.approx(r["fmax_mhz"] * 1e6 / r["cycles_per_token"])
    assert r["dram_bytes_per_token"] >= r["weight_bytes_per_token"]
    assert set(r["estimated"]) >= {"cycles_per_token", "tok_per_s", "energy_j_per_token"}


def test_ablation_json(capsys):
    rc, out, _ = run(capsys, "bench", "--ablation", "--shape", "stories15M", "--board",
                     "pynq-z2", "--json")
    assert rc == 0
    r = json.loads(out)
    v = r["variants"]
    assert set(v) == {"naive", "stream", "fuse", "reuse", "all"}
    for row in v.values():
        assert {"cycles_per_token", "dram_bytes_per_token", "scratchpad_bytes",
                "energy_j_per_token", "tok_per_s"} <= set(row)
    assert r["speedup"] == pytest.approx(v["naive"]["cycles_per_token"]
                                         / v["all"]["cycles_per_token"])
    assert r["energy_ratio"] == pytest.approx(v["naive"]["energy_j_per_token"]
                                              / v["all"]["energy_j_per_token"])


def test_table_without_json(capsys):
    rc, out, _ = run(capsys, "bench", "--shape", "stories110M", "--board", "zcu104",
                     "--lanes", "16")
    assert rc == 0
    assert "roofline fraction" in out and "* estimated" in out and "lanes=16" in out
    rc, out, _ = run(capsys, "bench", "--ablation", "--shape", "stories260K", "--board",
                     "pynq-z2")
    assert rc == 0 and "all over naive: speedup" in out


@pytest.mark.parametrize("argv,word", [
    (["--shape", "stories9000", "--board", "pynq-z2"], "unknown shape"),
    (["--shape", "stories15M", "--board", "pynq-z9"], "unknown board"),
    (["--shape", "stories15M", "--board", "pynq-z2", "--lanes", "0"], "lanes"),
    (["--shape", "stories15M", "--board", "pynq-z2", "--ablation", "--pos", "9999"], "pos"),
])
def test_bad_input_is_one_line_error(capsys, argv, word):
    rc, out, err = run(capsys, "bench", *argv, "--json")
    assert rc == 1 and out == ""
    assert err.startswith("speedllm: error: ") and word in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_rtl_source_unavailable_is_one_line_error(capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "speedllm.host.rtl_cycles", None)
    rc, out, err = run(capsys, "bench", "--shape", "stories260K", "--board", "pynq-z2",
                       "--source", "rtl", "--json")
    assert rc == 1 and out == ""
    assert err.splitlines()[-1].startswith("speedllm: error: RTL cycle source not available")
