"""Register map builder (csr) and the AXI4-Lite register file (cocotb + cocotbext-axi)."""

from __future__ import annotations

import json

import pytest

from speedllm.hw import csr
from speedllm.hw.axil import AxiLiteRegisters
from speedllm.sim.runner import run_cocotb
from speedllm.sim.tb_csr import Control, Events, demo_regmap

# Constructors that raise leave objects Amaranth reports as "never used".
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.mark.sim
def test_axil_registers():
    ran = run_cocotb(lambda: AxiLiteRegisters(demo_regmap()), toplevel="axil_registers",
                     test_module="speedllm.sim.tb_csr")
    assert ran == 3


def test_field_offsets_and_docstring():
    assert [(f.name, f.offset, f.width) for f in Control.fields.values()] == \
        [("enable", 0, 1), ("mode", 1, 3), ("threshold", 8, 16)]
    assert Control.reset_value() == 5 << 1
    # the docstring draws the layout, high bits first
    drawing = Control.diagram()
    assert drawing in Control.__doc__
    header = drawing.splitlines()[0].split("|")
    assert [c.strip() for c in header] == ["31:24", "23:8", "7:4", "3:1", "0"]
    assert "w1c" in Events.__doc__


def test_offsets_and_exports(tmp_path):
    regmap = demo_regmap()
    offsets = regmap.offsets()
    assert list(offsets) == ["control", "status", "events", "doorbell", "base"]
    assert [offsets[n] for n in ("control", "status", "events", "doorbell")] == [0, 4, 8, 12]
    assert offsets["base"] == 0x20 and regmap.size == 0x24
    described = json.loads(regmap.to_json())
    assert {r["name"]: r["offset"] for r in described["registers"]} == offsets
    # the Python export defines the same offsets and masks
    namespace = {}
    exec(regmap.to_python(), namespace)
    assert all(namespace[n.upper()] == o for n, o in offsets.items())
    f = Control.fields["threshold"]
    assert namespace["CONTROL_THRESHOLD_MASK"] == f.mask == 0xFFFF << 8


def test_signature_directions():
    sig = demo_regmap().signature()
    from amaranth.lib.wiring import Flow
    members = sig.members
    assert members["control"].signature.members["mode"].flow == Flow.Out
    assert members["status"].signature.members["busy"].flow == Flow.In
    assert members["events"].signature.members["done_set"].flow == Flow.In
    assert members["doorbell"].signature.members["go"].flow == Flow.Out


@pytest.mark.parametrize("make,exc,match", [
    (lambda: csr.Field(0), ValueError, "width"),
    (lambda: csr.Field(4, "rx"), ValueError, "access"),
    (lambda: csr.Field(2, init=4), ValueError, "fit"),
    (lambda: csr.Field(2, "r", init=1), ValueError, "init"),
])
def test_bad_fields(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_registers_and_maps():
    with pytest.raises(ValueError, match="overlaps"):
        type("Bad", (csr.Register,), {"a": csr.Field(4), "b": csr.Field(4, offset=2)})
    with pytest.raises(ValueError, match="do not fit"):
        type("Wide", (csr.Register,), {"a": csr.Field(8, offset=30)})
    regmap = csr.RegisterMap()
    regmap.add("a", Control)
    with pytest.raises(ValueError, match="taken"):
        regmap.add("b", Control, offset=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        regmap.add("c", Control, offset=6)
    with pytest.raises(TypeError, match="Register subclass"):
        regmap.add("d", object)
    with pytest.raises(ValueError, match="decodes"):
        AxiLiteRegisters(demo_regmap(), addr_width=4)
