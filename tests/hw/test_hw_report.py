"""Synthesis reports: Yosys xc7 resources and nextpnr-ecp5 Fmax of a tiny component."""

from __future__ import annotations

import argparse
import json

import pytest

from speedllm.commands import hw_report
from speedllm.errors import InputError
from speedllm.hw import catalog, synth
from speedllm.hw.stream import StreamFifo

# Constructors that raise leave objects Amaranth reports as "never used".
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.fixture
def synth_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDLLM_SYNTH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _args(*argv):
    parser = argparse.ArgumentParser()
    hw_report.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.sim
def test_xilinx_and_ecp5_figures_of_a_fifo(synth_cache, monkeypatch):
    """A 16-deep 8-bit FIFO: LUTs and FFs > 0, no DSP, a real Fmax; a second call hits
    the cache."""
    def fifo():
        return StreamFifo(8, 16)
    x = synth.xilinx_resources(fifo(), "fifo8")
    assert x["LUT"] > 0 and x["FF"] > 0 and x["DSP48E1"] == 0
    assert x["LUT"] <= x["total_cells"] and x["cells"]
    e = synth.ecp5_fmax(fifo(), "fifo8")
    assert 50 < e["fmax_mhz"] < 1000 and e["constraint_mhz"] == 100.0
    assert e["utilization"]["TRELLIS_FF"]["used"] > 0
    # cached now: the tools must not run again
    monkeypatch.setattr(synth, "_run", lambda *a, **k: pytest.fail("tool ran twice"))
    assert synth.xilinx_resources(fifo(), "fifo8") == x
    assert synth.ecp5_fmax(fifo(), "fifo8") == e
    assert e["router"] == "router1"
    with pytest.raises(ValueError, match="router must be router1 or router2"):
        synth.ecp5_fmax(fifo(), "fifo8", router="router3")


@pytest.mark.sim
def test_ultrascale_plus_counts_of_a_fifo(synth_cache):
    """``-family xcup``: the same FIFO in UltraScale+ primitives, family-neutral groups."""
    x = synth.xilinx_resources(StreamFifo(8, 16), "fifo8", family="xcup")
    assert x["family"] == "xcup" and x["LUT"] > 0 and x["FF"] > 0
    assert x["DSP"] == 0 and x["DSP48E1"] == 0
    assert not any(c.endswith("E1") for c in x["cells"])     # no 7-series primitive
    with pytest.raises(ValueError, match="family must be one of xc7, xcup"):
        synth.xilinx_resources(StreamFifo(8, 16), "fifo8", family="xcvu")


@pytest.mark.sim
def test_hw_report_command(synth_cache, tmp_path, monkeypatch):
    monkeypatch.setitem(catalog.CATALOG, "tiny_fifo",
                        catalog.Entry("speedllm.hw.stream", "StreamFifo", 4, 4))
    out = tmp_path / "hw.json"
    assert hw_report.run(_args("--out", str(out), "--components", "tiny_fifo")) == 0
    report = json.loads(out.read_text())
    entry = report["components"]["tiny_fifo"]
    assert entry["factory"] == "speedllm.hw.stream.StreamFifo(4, 4)"
    for key in ("LUT", "FF", "LUTRAM", "DSP48E1", "RAMB18E1", "RAMB36E1"):
        assert isinstance(entry["xilinx"][key], int)
    assert entry["xilinx"]["FF"] > 0
    assert "ecp5" not in entry


def test_unknown_component_is_an_input_error(synth_cache):
    with pytest.raises(InputError, match="nope"):
        hw_report.run(_args("--out", "-", "--components", "nope"))


def test_catalog_entries_build():
    """Every catalogue entry constructs (no synthesis: that is `speedllm hw-report`)."""
    from amaranth.lib import wiring
    for name in catalog.CATALOG:
        component = catalog.build(name)
        component._MustUse__silence = True        # built only to be checked
        assert isinstance(component, wiring.Component), name


def test_whole_tops_are_named_entries_outside_the_default_set():
    """The model-sized tops are buildable by name but never part of "all components"."""
    from speedllm.host.rtl import hardware_config_for
    from speedllm.hw.accel_top import TOP_CONFIG
    from speedllm.ops.graph import MODEL_SHAPES
    assert not set(catalog.TOPS) & set(catalog.CATALOG)
    small, top = catalog.build("accel_top_260k"), catalog.build("accel_top_15m")
    small._MustUse__silence = top._MustUse__silence = True     # built only to be checked
    assert small.config == TOP_CONFIG
    assert top.config == hardware_config_for(MODEL_SHAPES["stories15M"])
    assert top.config.n_heads == 6 and top.config.max_rows >= 32000
    with pytest.raises(KeyError):
        catalog.lookup("accel_top_7b")


def test_harness_keeps_two_pins():
    from amaranth.back import verilog
    text = verilog.convert(synth.IoHarness(StreamFifo(8, 4)), name="h")
    header = next(line for line in text.splitlines() if line.startswith("module h("))
    ports = header[len("module h("):].rstrip(");").replace(" ", "").split(",")
    assert sorted(ports) == ["clk", "rst", "sin", "sout"]
