"""Attention core/unit: cocotb on Verilator against ``intops.attention``, bit for bit."""

from __future__ import annotations

import random

import pytest

from speedllm.hw.attention import AttentionCore
from speedllm.hw.attention_divider import SequentialDivider
from speedllm.sim.runner import CocotbFailure, run_cocotb, sim_long

# Measured on the shared 2-core machine with builds cached: core 1,000 calls + corners
# 99 s at load ~8 (286 s at load ~14), unit 8 calls at seq 160 + SLVERR ~60-100 s,
# kv8 shape 35 s, cycles 30 s, wrong-model check 38 s, divider 3 s. Each Verilator build
# (core seq 8, core kv8, unit seq 160) adds 2-4 minutes when not cached.

STORIES260K = {"head_size": 8, "n_heads": 8, "n_kv_heads": 4}


def core_params(**kw):
    p = {**STORIES260K, "max_seq_len": 8, "beat_bits": 64, "kv_bits": 16, "lanes": None}
    p.update(kw)
    return p


def make_core(p):
    return lambda: AttentionCore(head_size=p["head_size"], n_heads=p["n_heads"],
                                 n_kv_heads=p["n_kv_heads"], max_seq_len=p["max_seq_len"],
                                 beat_bits=p["beat_bits"], kv_bits=p["kv_bits"],
                                 lanes=p["lanes"])


@pytest.mark.sim
def test_core_stories260k_dims():
    """>= 1,000 random calls + corners at stories260K head dims (seq 8), with pauses."""
    p = core_params()
    run_cocotb(make_core(p), toplevel="attention_core", test_module="speedllm.sim.tb_attention",
               parameters=p, testcase=["test_random_calls", "test_corners"])


def _divide_in_python_sim(dividend_bits, divisor_bits, quotient_bits, cases):
    from amaranth.sim import Simulator
    dut = SequentialDivider(dividend_bits, divisor_bits, quotient_bits)
    results = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for a, b in cases:
            ctx.set(dut.i.payload, {"dividend": a, "divisor": b})
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            q, r = await ctx.tick().sample(dut.o.payload.quotient,
                                           dut.o.payload.remainder).until(dut.o.valid)
            results.append((q, r))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_sequential_divider():
    """Full-width and short-quotient divisions against Python's // and % (~1 s)."""
    rng = random.Random(7)
    cases = [(rng.randrange(1 << 20), rng.randrange(1, 1 << 12)) for _ in range(150)]
    cases += [((1 << 20) - 1, 1), (0, 5), (5, (1 << 12) - 1), ((1 << 20) - 1, (1 << 12) - 1)]
    assert _divide_in_python_sim(20, 12, 20, cases) == [(a // b, a % b) for a, b in cases]
    # quotient_bits = 9: valid while dividend >> 9 < divisor
    short = []
    while len(short) < 150:
        a, b = rng.randrange(1 << 20), rng.randrange(1, 1 << 12)
        if a >> 9 < b:
            short.append((a, b))
    assert _divide_in_python_sim(20, 12, 9, short) == [(a // b, a % b) for a, b in short]


@pytest.mark.parametrize("kw,match", [
    ({"n_kv_heads": 3}, "divide n_heads"),
    ({"lanes": 3}, "lanes"),
    ({"beat_bits": 40}, "beat"),
    ({"kv_bits": 32}, "kv_bits"),
    ({"head_size": 0}, "head_size"),
])
def test_bad_parameters(kw, match):
    args = {"head_size": 8, "n_heads": 8, "n_kv_heads": 4, "max_seq_len": 16, **kw}
    with pytest.raises(ValueError, match=match):
        AttentionCore(**args)


def test_parameter_types():
    with pytest.raises(TypeError, match="max_seq_len"):
        AttentionCore(head_size=8, n_heads=8, n_kv_heads=4, max_seq_len=16.0)


def make_unit(p):
    from speedllm.hw.attention import AttentionUnit
    return lambda: AttentionUnit(head_size=p["head_size"], n_heads=p["n_heads"],
                                 n_kv_heads=p["n_kv_heads"], max_seq_len=p["max_seq_len"],
                                 beat_bits=p["beat_bits"], kv_bits=p["kv_bits"])


@pytest.mark.sim
def test_unit_axi_ram():
    """AttentionUnit against a cocotbext-axi RAM: 8 random calls + 4 corners (40 + 6 under
    SPEEDLLM_SIM_LONG) with AXI and
    stream pauses, and an injected SLVERR. Seq 160: reads up to 1,440 beats, several
    256-beat bursts and 4 KiB boundaries per command (bench/attention_cycles.py runs the
    unit up to pos 511, 4,608 beats per read, each call checked too)."""
    long = sim_long()
    p = core_params(unit_vectors=40 if long else 8, unit_corners=6 if long else 4,
                    max_seq_len=160)
    run_cocotb(make_unit(p), toplevel="attention_unit", test_module="speedllm.sim.tb_attention",
               parameters=p, testcase=["test_unit_random_calls", "test_unit_read_error"])


OTHER_SHAPES = [
    # kv_mul 1, int8 KV mantissas, 2 lane chunks per beat (lanes 4 < 8 elements per beat)
    pytest.param({"head_size": 16, "n_heads": 4, "n_kv_heads": 4, "max_seq_len": 4,
                  "beat_bits": 64, "kv_bits": 8, "lanes": 4, "vectors": 100}, id="kv8-mul1"),
    # 12 kv heads (two exponent beats), 128-bit beats; one kv head for 3 query heads
    pytest.param({"head_size": 4, "n_heads": 36, "n_kv_heads": 12, "max_seq_len": 3,
                  "beat_bits": 128, "kv_bits": 16, "lanes": 4, "vectors": 100},
                 id="kv12-mul3-128b", marks=pytest.mark.slow),
    # stories15M head shape (head_size 48, 6 heads), a long-ish context
    pytest.param({"head_size": 48, "n_heads": 6, "n_kv_heads": 6, "max_seq_len": 64,
                  "beat_bits": 64, "kv_bits": 16, "lanes": None, "vectors": 40},
                 id="stories15M-heads", marks=pytest.mark.slow),
]


@pytest.mark.sim
@pytest.mark.parametrize("p", OTHER_SHAPES)
def test_core_other_shapes(p):
    """Other head shapes and formats: random calls (with pauses) and corners."""
    run_cocotb(make_core(p), toplevel="attention_core", test_module="speedllm.sim.tb_attention",
               parameters=p, testcase=["test_random_calls", "test_corners"])


@pytest.mark.sim
def test_core_cycles_match_model():
    """Cycles of single calls at pos 0, 4, 7 within 2 % of ``cycle_estimate``."""
    p = core_params()
    run_cocotb(make_core(p), toplevel="attention_core", test_module="speedllm.sim.tb_attention",
               parameters=p, testcase="test_cycles")


@pytest.mark.sim
def test_checker_catches_a_wrong_model():
    """The testbench must fail when the golden side differs: tell it the wrong GQA
    grouping (n_kv_heads 2 instead of 4) for a few calls."""
    p = core_params()
    wrong = {**p, "n_kv_heads": 2, "vectors": 4}
    with pytest.raises(CocotbFailure, match="test_random_calls"):
        run_cocotb(make_core(p), toplevel="attention_core",
                   test_module="speedllm.sim.tb_attention", parameters=wrong,
                   testcase="test_random_calls")
