"""speedllm.ops.bench: figures agree with the cycle model and the board, the ablation's
ratios follow from its rows, and the RTL source is pluggable (a stand-in measure here)."""

import sys
import types

import pytest

from speedllm.errors import InputError
from speedllm.golden.checkpoint import load_checkpoint
from speedllm.ops.bench import (ABLATION_VARIANTS, ALL_ON, ablation, bench, measure_cycles,
                                resolve_shape)
from speedllm.ops.boards import get_board
from speedllm.ops.compiler import compile_model
from speedllm.ops.cyclemodel import AcceleratorConfig, estimate_graph
from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import MODEL_SHAPES, build_graph
from speedllm.ops.memplan import plan_memory

FIELDS = ("cycles_per_token", "fmax_mhz", "tok_per_s", "roofline_tok_per_s",
          "roofline_fraction", "weight_bytes_per_token", "dram_bytes_per_token",
          "energy_j_per_token", "estimated", "source")


@pytest.mark.parametrize("shape,board", [("stories15M", "pynq-z2"), ("stories110M", "zcu104"),
                                         ("tinyllama", "u280")])
def test_bench_agrees_with_cycle_model_and_board(shape, board):
    r = bench(shape, board)
    assert all(f in r for f in FIELDS)
    args, b = MODEL_SHAPES[shape], get_board(board)
    pos = args.seq_len // 2
    g = fuse(build_graph(args, pos), FusionConfig())
    est = estimate_graph(g, board, AcceleratorConfig(fmax_mhz=b.fabric_mhz))
    assert r["cycles_per_token"] == pytest.approx(est.cycles_per_token)
    assert r["dram_bytes_per_token"] == est.dram_bytes_per_token
    assert r["weight_bytes_per_token"] == g.weight_bytes_per_token
    assert r["fmax_mhz"] == b.fabric_mhz
    assert r["tok_per_s"] == pytest.approx(b.fabric_mhz * 1e6 / r["cycles_per_token"])
    assert r["roofline_tok_per_s"] == pytest.approx(b.dram_peak_bytes_per_s
                                                    / g.weight_bytes_per_token)
    assert r["roofline_fraction"] == pytest.approx(r["tok_per_s"] / r["roofline_tok_per_s"])
    assert 0 < r["roofline_fraction"] <= 1
    assert r["scratchpad_bytes"] == plan_memory(g).scratchpad_bytes
    assert sum(r["cycles_by_class"].values()) == pytest.approx(r["cycles_per_token"])
    assert r["energy_j_per_token"] == pytest.approx(sum(r["energy_breakdown_j"].values()))
    assert r["source"] == "model" and r["config"]["pos"] == pos
    for f in ("cycles_per_token", "tok_per_s", "roofline_fraction", "dram_bytes_per_token",
              "energy_j_per_token", "fmax_mhz"):
        assert f in r["estimated"]


def test_stories260K_comes_from_the_checkpoint(model_path):
    args, origin = resolve_shape("stories260K")
    assert args == load_checkpoint(model_path).args
    assert origin.startswith("checkpoint ")


def test_given_fmax_scales_tok_per_s_and_is_not_listed_estimated():
    a = bench("stories15M", "zcu104", fmax_mhz=150.0)
    assert a["fmax_mhz"] == 150.0 and "fmax_mhz" not in a["estimated"]
    assert a["tok_per_s"] == pytest.approx(150e6 / a["cycles_per_token"])
    assert "tok_per_s" in a["estimated"]           # cycles are still the model's


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="unknown shape"):
        bench("stories9000", "pynq-z2")
    with pytest.raises(InputError, match="unknown board"):
        bench("stories15M", "pynq-z9")
    with pytest.raises(InputError, match="pos"):
        bench("stories15M", "pynq-z2", pos=MODEL_SHAPES["stories15M"].seq_len)
    with pytest.raises(InputError, match="source"):
        bench("stories15M", "pynq-z2", source="fpga")


@pytest.fixture(scope="module")
def abl():
    return ablation("stories15M", "pynq-z2")


def test_ablation_rows_and_ratios(abl):
    assert list(abl["variants"]) == [v.name for v in ABLATION_VARIANTS]
    rows = abl["variants"]
    assert abl["speedup"] == pytest.approx(rows["naive"]["cycles_per_token"]
                                           / rows["all"]["cycles_per_token"])
    assert abl["energy_ratio"] == pytest.approx(rows["naive"]["energy_j_per_token"]
                                                / rows["all"]["energy_j_per_token"])
    assert rows["all"]["cycles_per_token"] == bench("stories15M", "pynq-z2")["cycles_per_token"]
    for name in ("stream", "fuse", "reuse", "all"):      # every optimization helps here
        assert rows[name]["cycles_per_token"] < rows["naive"]["cycles_per_token"]
    for name in ("naive", "stream", "fuse"):             # reuse off: activations in DRAM
        assert rows[name]["scratchpad_bytes"] == 0
        assert rows[name]["dram_bytes_per_token"] > rows["all"]["dram_bytes_per_token"]
    assert {"speedup", "energy_ratio"} <= set(abl["estimated"])


def test_reuse_off_as_separate_buffers_costs_scratchpad_not_cycles():
    a = ablation("stories260K", "pynq-z2", no_reuse_memory="separate")["variants"]
    assert a["reuse"]["cycles_per_token"] == pytest.approx(a["naive"]["cycles_per_token"])
    assert a["naive"]["scratchpad_bytes"] > a["reuse"]["scratchpad_bytes"] > 0


def test_measure_cycles_of_a_program_matches_its_graph(model_path):
    prog = compile_model(load_checkpoint(model_path))
    g = fuse(build_graph(prog.args, 7), prog.fusion)
    from_prog = measure_cycles(prog, "pynq-z2", pos=7)
    from_graph = measure_cycles(g, "pynq-z2")
    assert not from_prog.measured
    assert from_prog.cycles_per_token == pytest.approx(from_graph.cycles_per_token)


def test_rtl_source_missing_is_one_line_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "speedllm.host.rtl_cycles", None)   # import fails
    with pytest.raises(InputError, match="^RTL cycle source not available") as e:
        bench("stories260K", "pynq-z2", source="rtl")
    assert "\n" not in str(e.value)


def _fake_rtl(monkeypatch, calls, with_stream=True):
    """A stand-in for the lead's measure: twice the model's cycles, a note."""
    def measure(program, board, *, steps=1, pos=0, stream=True):
        calls.append({"pos": pos, "steps": steps, "stream": stream, "board": board.name})
        m = measure_cycles(program, board, pos=pos,
                           config=AcceleratorConfig(stream=stream))
        return {"cycles_per_token": 2 * m.cycles_per_token,
                "cycles_by_command": {k: 2 * v for k, v in m.cycles_by_class.items()},
                "dram_bytes_per_token": m.dram_bytes_per_token, "sim_cycles_per_s": 1e6,
                "notes": ["stand-in"]}
    if not with_stream:
        def measure(program, board, *, steps=1, pos=0):     # noqa: F811
            raise AssertionError("must not be called")
    monkeypatch.setitem(sys.modules, "speedllm.host.rtl_cycles",
                        types.SimpleNamespace(measure=measure))


def test_rtl_source_figures_are_marked_measured(monkeypatch):
    calls = []
    _fake_rtl(monkeypatch, calls)
    model = bench("stories260K", "pynq-z2")
    rtl = bench("stories260K", "pynq-z2", source="rtl")
    assert calls == [{"pos": model["config"]["pos"], "steps": 1, "stream": True,
                      "board": "pynq-z2"}]
    assert rtl["source"] == "rtl" and rtl["notes"] == ["stand-in"]
    assert rtl["cycles_per_token"] == pytest.approx(2 * model["cycles_per_token"])
    assert rtl["roofline_fraction"] == pytest.approx(rtl["tok_per_s"] / rtl["roofline_tok_per_s"])
    assert "cycles_per_token" not in rtl["estimated"]
    assert "dram_bytes_per_token" not in rtl["estimated"]
    assert {"energy_j_per_token", "fmax_mhz", "tok_per_s"} <= set(rtl["estimated"])


def test_rtl_ablation_passes_stream_off_only_when_needed(monkeypatch):
    calls = []
    _fake_rtl(monkeypatch, calls)
    a = ablation("stories260K", "pynq-z2", source="rtl")
    assert [c["stream"] for c in calls] == [v.stream for v in ABLATION_VARIANTS]
    assert a["speedup"] == pytest.approx(a["variants"]["naive"]["cycles_per_token"]
                                         / a["variants"]["all"]["cycles_per_token"])
    _fake_rtl(monkeypatch, calls, with_stream=False)
    with pytest.raises(InputError, match="stream switch"):
        bench("stories260K", "pynq-z2", source="rtl", variant=ABLATION_VARIANTS[0])
    assert ALL_ON.stream
