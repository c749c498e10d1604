"""The analytical cycle model: bandwidth and compute bounds, streaming, fusion, reuse,
totals and calibration. Expected values come from the graph, the board profile and the
model's own bandwidth figures, never typed in."""

import math
from dataclasses import replace
from functools import lru_cache
from itertools import product

import pytest

from speedllm.ops.boards import board_names, get_board
from speedllm.ops.cyclemodel import (AcceleratorConfig, Overheads, bandwidth, calibrate,
                                     command_class, estimate, estimate_graph)
from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import MODEL_SHAPES, build_graph

S15, S260 = MODEL_SHAPES["stories15M"], MODEL_SHAPES["stories260K"]
MATVEC_CLASSES = ("qkv", "wo", "w13", "w2", "classifier")


def test_big_matvecs_are_bandwidth_bound():
    """stories110M on pynq-z2 with many lanes: a matvec is its DRAM bytes over the bytes
    per cycle, plus at most its fixed overheads."""
    board = get_board("pynq-z2")
    cfg = AcceleratorConfig(lanes=64)
    est = estimate(MODEL_SHAPES["stories110M"], board, cfg)
    bpc = bandwidth(board, cfg).stream_bytes_per_cycle
    assert bpc == pytest.approx(board.dram_attainable_bytes_per_s / (board.fabric_mhz * 1e6))
    big = [c for c in est.commands if c.cls in MATVEC_CLASSES]
    assert big
    for c in big:
        assert c.bound == "dram", c
        # the core streams all of it but the RmsNorm prologue's gains (paid before it)
        assert 0.99 * c.dram_bytes / bpc < c.core_cycles <= c.dram_bytes / bpc
        assert c.dram_bytes / bpc <= c.cycles <= c.dram_bytes / bpc + c.overhead_cycles
    # early in the sequence (little KV cache) the token sits close to the attainable
    # roofline: weights dominate
    early = estimate(MODEL_SHAPES["stories110M"], board, cfg, pos=0)
    attainable = board.dram_attainable_bytes_per_s / early.weight_bytes_per_token
    assert 0.9 * attainable < early.tok_s < attainable


def test_compute_bound_scales_with_lanes():
    """On HBM (u280) matvecs are compute-bound: doubling lanes halves their core."""
    for lanes in (4, 8, 16):
        a = estimate(S15, "u280", AcceleratorConfig(lanes=lanes))
        b = estimate(S15, "u280", AcceleratorConfig(lanes=2 * lanes))
        assert b.tok_s > a.tok_s
        for ca, cb in zip(a.commands, b.commands):
            if ca.cls in MATVEC_CLASSES:
                assert ca.bound == cb.bound == "compute"
                assert cb.core_cycles == pytest.approx(ca.core_cycles / 2)
    # and the matvec core is rows * ceil(padded cols / lanes)
    g = build_graph(S15)
    e = estimate(S15, "u280", AcceleratorConfig(lanes=16, fusion=FusionConfig.none()))
    cmd = {c.name: c for c in e.commands}
    for node in g.nodes:
        if node.name.endswith((".wq", ".w1", ".w2")) or node.name == "classifier":
            (w,) = node.weights
            assert cmd[node.name].compute_cycles == w.rows * math.ceil(w.cols_padded / 16)


def test_attention_lanes_and_position():
    a = estimate(S15, "zcu104", AcceleratorConfig(attention_lanes=4))
    b = estimate(S15, "zcu104", AcceleratorConfig(attention_lanes=8))
    att = lambda e: e.by_class()["attention"]["cycles"]
    assert att(b) < att(a)
    early = estimate(S15, "zcu104", pos=0)
    assert att(early) < att(a)
    assert early.pos == 0 and a.pos == S15.seq_len - 1


@pytest.mark.parametrize("board", board_names())
def test_stream_off_costs_more(board):
    """One burst in flight never helps; it costs whenever a command needs more than one
    burst per port (stories15M's matrices do on every board; on a 32-port HBM board every
    stories260K transfer fits in one burst per port, so there it costs nothing)."""
    for shape in (S260, S15):
        for fusion, memory in product((FusionConfig(), FusionConfig.none()), ("reuse", "dram")):
            cfg = dict(fusion=fusion, memory=memory)
            on = estimate(shape, board, AcceleratorConfig(stream=True, **cfg))
            off = estimate(shape, board, AcceleratorConfig(stream=False, **cfg))
            assert off.cycles_per_token >= on.cycles_per_token
            if shape is S15 or board != "u280":
                assert off.cycles_per_token > on.cycles_per_token
            for a, b in zip(on.commands, off.commands):
                assert b.cycles >= a.cycles, (a, b)


@lru_cache(maxsize=None)
def _graph260(fusion):
    return fuse(build_graph(S260), fusion)


def _cycles(board, fusion, **kw):
    cfg = AcceleratorConfig(fusion=fusion, **kw)
    return estimate_graph(_graph260(fusion), board, cfg).cycles_per_token


@pytest.mark.parametrize("board", board_names())
def test_fusion_never_increases_cycles(board):
    """With q/k/v and w1/w3 merged (one reader per RMSNorm), turning on any rule never
    adds cycles; all rules beat none in every mode."""
    rest = ("rmsnorm_prologue", "residual_epilogue", "attention_pass")
    for stream, memory in product((True, False), ("reuse", "dram")):
        kw = dict(stream=stream, memory=memory, lanes=16)
        assert (_cycles(board, FusionConfig(), **kw)
                < _cycles(board, FusionConfig.none(), **kw))
        for bits in product((False, True), repeat=3):
            base = FusionConfig(rope_kv_epilogue=True, swiglu_epilogue=True,
                                **dict(zip(rest, bits)))
            c0 = _cycles(board, base, **kw)
            for rule, bit in zip(rest, bits):
                if not bit:
                    assert _cycles(board, replace(base, **{rule: True}), **kw) <= c0
        # the merging rules themselves, from no fusion
        for rule in ("rope_kv_epilogue", "swiglu_epilogue", "residual_epilogue",
                     "attention_pass"):
            assert (_cycles(board, FusionConfig.only(rule), **kw)
                    <= _cycles(board, FusionConfig.none(), **kw))


def test_rmsnorm_prologue_on_several_readers_is_the_known_exception():
    """Documented in fusion.py: with q, k, v separate each matvec re-runs the norm (and
    re-reads the gains), which the model charges; the combined config has no such cost."""
    none, only = FusionConfig.none(), FusionConfig.only("rmsnorm_prologue")
    assert _cycles("pynq-z2", only) > _cycles("pynq-z2", none)
    merged = FusionConfig.only("rope_kv_epilogue", "swiglu_epilogue")
    assert (_cycles("pynq-z2", replace(merged, rmsnorm_prologue=True))
            < _cycles("pynq-z2", merged))


@pytest.mark.parametrize("board", board_names())
def test_reuse_never_costs_cycles_and_dram_roundtrips_add_bytes(board):
    for fusion in (FusionConfig(), FusionConfig.none()):
        reuse = estimate(S260, board, AcceleratorConfig(fusion=fusion, memory="reuse"))
        separate = estimate(S260, board, AcceleratorConfig(fusion=fusion, memory="separate"))
        dram = estimate(S260, board, AcceleratorConfig(fusion=fusion, memory="dram"))
        assert separate.cycles_per_token == reuse.cycles_per_token
        assert dram.cycles_per_token >= reuse.cycles_per_token
        assert dram.dram_bytes_per_token > reuse.dram_bytes_per_token
    # unfused intermediates through DRAM cost more bytes than fused ones
    f = estimate(S260, board, AcceleratorConfig(memory="dram"))
    u = estimate(S260, board, AcceleratorConfig(memory="dram", fusion=FusionConfig.none()))
    assert u.dram_bytes_per_token > f.dram_bytes_per_token


def test_totals_and_labels():
    board = get_board("zcu104")
    est = estimate(S15, board, AcceleratorConfig(lanes=32))
    g = build_graph(S15)
    d = est.to_dict()
    assert "analytical" in d["label"] and "not measured" in d["label"]
    assert est.cycles_per_token == pytest.approx(sum(c["cycles"] for c in
                                                     est.by_class().values()))
    assert est.tok_s == pytest.approx(board.fabric_mhz * 1e6 / est.cycles_per_token)
    assert est.weight_bytes_per_token == g.weight_bytes_per_token
    assert est.roofline_tok_s == pytest.approx(board.dram_peak_bytes_per_s
                                               / g.weight_bytes_per_token)
    assert 0 < est.roofline_fraction < 1
    kv_rd, kv_wr = g.kv_bytes_per_token
    assert est.dram_bytes_per_token == (g.weight_bytes_per_token + kv_rd + kv_wr
                                        + g.output_bytes)
    assert set(est.by_class()) == {"embed", "qkv", "attention", "wo", "w13", "w2",
                                   "classifier"}
    assert sum(v["share"] for v in est.by_class().values()) == pytest.approx(1)
    unfused = estimate(S15, board, AcceleratorConfig(fusion=FusionConfig.none()))
    assert {"rmsnorm", "rope", "kv_write", "residual", "swiglu"} <= set(unfused.by_class())
    assert {command_class(n) for n in g.nodes} == set(unfused.by_class())
    # a faster clock makes each DRAM byte cost more cycles but gives more tok/s
    fast = estimate(S15, board, AcceleratorConfig(lanes=32, fmax_mhz=2 * board.fabric_mhz))
    assert fast.cycles_per_token > est.cycles_per_token and fast.tok_s > est.tok_s


def test_few_outstanding_bursts_cap_streamed_bandwidth():
    board = get_board("zcu104")
    one = bandwidth(board, AcceleratorConfig(max_outstanding=1, ports=1, burst_beats=16))
    assert one.stream_bytes_per_cycle == pytest.approx(one.burst_bytes / one.latency_cycles)
    assert one.stream_bytes_per_cycle < one.serial_bytes_per_cycle
    many = bandwidth(board, AcceleratorConfig(max_outstanding=64))
    assert many.stream_bytes_per_cycle == many.serial_bytes_per_cycle


def test_calibrate_recovers_known_overheads():
    truth = replace(Overheads(), command_issue=40.0, core_scale=1.25)
    measured = estimate(S15, "pynq-z2", AcceleratorConfig(lanes=16), overheads=truth)
    guess = estimate(S15, "pynq-z2", AcceleratorConfig(lanes=16))
    by_class = {k: v["cycles"] for k, v in measured.by_class().items()}
    fitted, residuals = calibrate(guess, by_class)
    assert fitted.command_issue == pytest.approx(40.0)
    assert fitted.core_scale == pytest.approx(1.25)
    assert max(abs(r) for r in residuals.values()) < 1e-6 * measured.cycles_per_token
    refit = estimate(S15, "pynq-z2", AcceleratorConfig(lanes=16), overheads=fitted)
    assert refit.cycles_per_token == pytest.approx(measured.cycles_per_token)
    # per-command keys work too; one key is not enough
    names = {c.name: c.cycles for c in measured.commands[:3]}
    assert calibrate(guess, names)[0].core_scale == pytest.approx(1.25)
    with pytest.raises(ValueError, match="two"):
        calibrate(guess, {"qkv": by_class["qkv"]})
    with pytest.raises(ValueError, match="nope"):
        calibrate(guess, {"nope": 1.0, "qkv": 2.0})


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="lanes"):
        AcceleratorConfig(lanes=0)
    with pytest.raises(ValueError, match="memory"):
        AcceleratorConfig(memory="l2")
