"""Timing helpers and the Fmax side of ``speedllm hw-report``, without running the tools.

The comparator-free saturation and the log-depth leading-one detector that the operator
units use on their critical paths must equal the golden functions for every input of
small widths (Amaranth's simulator); the nextpnr report summary and the hw-report
options are checked on stand-in results (the real tools run in test_hw_report.py).
Runs in ~10 s.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from speedllm.commands import hw_report
from speedllm.errors import InputError
from speedllm.golden import formats
from speedllm.hw import synth
from speedllm.hw.matvec_pipeline import bit_length_tree, saturate_fast


def _all_values(shape):
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


def _comb_outputs(m, x, y, values) -> list[int]:
    """``y`` of the combinational module ``m`` for each value driven on ``x``."""
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(x, v)
            got.append(ctx.get(y))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("shape,bits", [(signed(9), 4), (unsigned(8), 4), (signed(4), 4),
                                        (signed(3), 5), (unsigned(5), 6), (signed(10), 1),
                                        (unsigned(4), 4)])
def test_saturate_fast_equals_golden_saturate(shape, bits):
    x, y = Signal(shape), Signal(signed(bits))
    m = Module()
    m.d.comb += y.eq(saturate_fast(x, bits))
    values = list(_all_values(shape))
    expected = formats.saturate(np.array(values, dtype=np.int64), bits).tolist()
    assert _comb_outputs(m, x, y, values) == expected


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 9, 12, 31, 33])
def test_bit_length_tree_equals_int_bit_length(width):
    x, y = Signal(width), Signal(8)
    m = Module()
    m.d.comb += y.eq(bit_length_tree(x))
    rng = np.random.default_rng(width)
    if width <= 12:
        values = list(range(1 << width))
    else:           # every bit length, several values each
        values = [0] + [int(rng.integers(1 << (k - 1), 1 << k)) for k in range(1, width + 1)
                        for _ in range(8)]
    assert _comb_outputs(m, x, y, values) == [v.bit_length() for v in values]


def _report_with_path(steps):
    path = [{"type": kind, "delay": delay, "from": {"cell": src}, "to": {"cell": dst}}
            for kind, delay, src, dst in steps]
    return {"fmax": {"clk": {"achieved": 123.456, "constraint": 100.0}},
            "utilization": {"TRELLIS_FF": {"used": 7, "available": 10},
                            "DP16KD": {"used": 0, "available": 208}},
            "critical_paths": [{"from": "clk", "to": "clk", "path": path}]}


def test_nextpnr_summary_names_the_critical_path():
    steps = [("clk-to-q", 0.5, "dut.a_TRELLIS_FF_Q_3", "dut.a_TRELLIS_FF_Q_3"),
             ("routing", 1.25, "dut.a_TRELLIS_FF_Q_3", "dut.sum_CCU2C_S0$CCU2_COMB0"),
             ("logic", 0.75, "dut.sum_CCU2C_S0$CCU2_COMB0", "dut.sum_CCU2C_S0$CCU2_COMB1"),
             ("routing", 2.0, "dut.sum_CCU2C_S0$CCU2_COMB1", "dut.b_TRELLIS_FF_Q"),
             ("setup", 0.25, "dut.b_TRELLIS_FF_Q", "dut.b_TRELLIS_FF_Q")]
    summary = synth._summarise_nextpnr(_report_with_path(steps), 100.0)
    assert summary["fmax_mhz"] == round(123.456, 2)
    assert summary["utilization"] == {"TRELLIS_FF": {"used": 7, "available": 10}}
    path = summary["critical_path"]
    assert path["delay_ns"] == pytest.approx(sum(s[1] for s in steps))
    assert path["routing_ns"] == pytest.approx(sum(s[1] for s in steps if s[0] == "routing"))
    assert path["logic_levels"] == sum(1 for s in steps if s[0] == "logic")
    assert path["through"] == ["dut.a", "dut.sum", "dut.b"]


def _args(*argv):
    parser = argparse.ArgumentParser()
    hw_report.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def fake_tools(monkeypatch, tmp_path):
    """ecp5_fmax/xilinx_resources stand-ins: record calls, time out on 'axi_write_master_64'."""
    monkeypatch.setenv("SPEEDLLM_SYNTH_CACHE", str(tmp_path / "cache"))
    calls = []

    def ecp5(component, name, *, freq, seed, timeout, router):
        component._MustUse__silence = True
        calls.append(("ecp5", name, freq, seed, timeout, router))
        if name == "axi_write_master_64":
            raise TimeoutError("nextpnr did not finish within 5 s")
        summary = synth._summarise_nextpnr(_report_with_path(
            [("logic", 1.0, "dut.x_LUT4_Z", "dut.y_TRELLIS_FF_Q")]), freq)
        return {**summary, "seed": seed}

    def xilinx(component, name, *, family):
        component._MustUse__silence = True
        calls.append(("xilinx", name, family))
        return {"LUT": 1, "FF": 2, "LUTRAM": 0, "DSP": 0, "RAMB18": 0, "RAMB36": 0}
    monkeypatch.setattr(synth, "ecp5_fmax", ecp5)
    monkeypatch.setattr(synth, "xilinx_resources", xilinx)
    return calls


def test_fmax_only_report_with_table(fake_tools, tmp_path):
    out, table = tmp_path / "fmax.json", tmp_path / "fmax.md"
    assert hw_report.run(_args("--out", str(out), "--fmax", "--no-resources", "--seed", "7",
                               "--pnr-timeout", "5", "--router", "router2",
                               "--component", "stream_fifo_64x16",
                               "--components", "axi_write_master_64,stream_fifo_64x16",
                               "--table", str(table))) == 0
    report = json.loads(out.read_text())
    assert list(report["components"]) == ["stream_fifo_64x16", "axi_write_master_64"]
    assert report["ecp5_seed"] == 7 and report["xilinx_family"] is None
    assert [c for c in fake_tools if c[0] == "xilinx"] == []
    assert ("ecp5", "stream_fifo_64x16", 100.0, 7, 5.0, "router2") in fake_tools
    fifo = report["components"]["stream_fifo_64x16"]
    assert "xilinx" not in fifo and fifo["ecp5"]["seed"] == 7
    failed = report["components"]["axi_write_master_64"]["ecp5"]
    assert "did not finish" in failed["error"] and failed["seed"] == 7
    rows = table.read_text().splitlines()
    assert len(rows) == 2 + 2
    assert rows[2].startswith("| stream_fifo_64x16 | ") and "`dut.x` -> `dut.y`" in rows[2]
    assert f"{fifo['ecp5']['fmax_mhz']:.1f}" in rows[2]
    assert rows[3].startswith("| axi_write_master_64 | - | ")


def test_resources_in_the_family_asked_for(fake_tools, tmp_path):
    out = tmp_path / "hw.json"
    assert hw_report.run(_args("--out", str(out), "--family", "xcup",
                               "--component", "residual_add")) == 0
    report = json.loads(out.read_text())
    assert report["xilinx_family"] == "xcup"
    assert fake_tools == [("xilinx", "residual_add", "xcup")]
    assert report["components"]["residual_add"]["xilinx"]["DSP"] == 0


@pytest.mark.parametrize("argv,match", [
    (("--no-resources",), "--no-resources"),
    (("--fmax", "--pnr-timeout", "0"), "--pnr-timeout"),
    (("--component", "nope"), "nope"),
])
def test_bad_options_are_input_errors(fake_tools, argv, match):
    with pytest.raises(InputError, match=match):
        hw_report.run(_args("--out", "-", *argv))
    assert fake_tools == []
