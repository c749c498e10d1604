"""The harness's port discovery and C++ glue generation (sim/harness_ports.py; no build)."""

from __future__ import annotations

import pytest

from speedllm.sim.harness_ports import describe_ports, render_ports_header

_FIELDS_READ = [("output", 32, "araddr"), ("output", 1, "arid"), ("output", 8, "arlen"),
                ("output", 3, "arsize"), ("output", 2, "arburst"), ("output", 1, "arvalid"),
                ("input", 1, "arready"), ("input", 128, "rdata"), ("input", 2, "rresp"),
                ("input", 1, "rlast"), ("input", 1, "rvalid"), ("output", 1, "rready")]
_FIELDS_WRITE = [("output", 32, "awaddr"), ("output", 8, "awlen"), ("output", 3, "awsize"),
                 ("output", 1, "awvalid"), ("input", 1, "awready"), ("output", 64, "wdata"),
                 ("output", 8, "wstrb"), ("output", 1, "wlast"), ("output", 1, "wvalid"),
                 ("input", 1, "wready"), ("input", 2, "bresp"), ("input", 1, "bvalid"),
                 ("output", 1, "bready")]
_FIELDS_LITE = [("input", 8, "awaddr"), ("input", 1, "awvalid"), ("output", 1, "awready"),
                ("input", 32, "wdata"), ("input", 4, "wstrb"), ("input", 1, "wvalid"),
                ("output", 1, "wready"), ("output", 2, "bresp"), ("output", 1, "bvalid"),
                ("input", 1, "bready"), ("input", 8, "araddr"), ("input", 1, "arvalid"),
                ("output", 1, "arready"), ("output", 32, "rdata"), ("output", 2, "rresp"),
                ("output", 1, "rvalid"), ("input", 1, "rready")]


def _verilog(groups, extra=()):
    """A top module declaring the given (prefix, separator, fields) port groups."""
    decls = ["  input clk;", "  input rst;"] + [f"  {d} {n};" for d, n in extra]
    names = ["clk", "rst"] + [n for _, n in extra]
    for prefix, sep, fields in groups:
        for direction, width, f in fields:
            name = f"{prefix}{sep}{f}"
            rng = f"[{width - 1}:0] " if width > 1 else ""
            decls.append(f"  {direction} {rng}{name};")
            names.append(name)
    return (f"module top({', '.join(names)});\n" + "\n".join(decls) + "\nendmodule\n"
            "module \\top.sub (a);\n  input [3:0] a__araddr;\nendmodule\n")


def test_groups_masters_and_control_port():
    v = _verilog([("m_axi_rd", "__", _FIELDS_READ), ("hp0", "__", _FIELDS_READ + _FIELDS_WRITE),
                  ("m_axi_wr", "_", _FIELDS_WRITE), ("s_axil", "_", _FIELDS_LITE)],
                 extra=[("input", "start"), ("output", "done")])
    desc = describe_ports(v, "top")
    got = {g.prefix: (g.has_read, g.has_write, g.data_bytes) for g in desc.masters}
    assert got == {"m_axi_rd": (True, False, 16), "hp0": (True, True, 16),
                   "m_axi_wr": (False, True, 8)}
    assert desc.control.prefix == "s_axil"
    header = render_ports_header(desc)
    # Amaranth's "__" separator is spelled "___05F" by Verilator; "_" stays.
    assert "t->m_axi_rd___05Faraddr" in header and "t->m_axi_wr_awaddr" in header
    assert "copy_out(t->hp0___05Frdata, d.rdata_source(1), 16)" in header
    assert "constexpr int kMasterPorts = 3;" in header
    assert "kHasLite = true" in header


def test_master_without_control_port():
    desc = describe_ports(_verilog([("m_axi", "__", _FIELDS_READ)]), "top")
    assert desc.control is None and len(desc.masters) == 1
    assert "kHasLite = false" in render_ports_header(desc)


@pytest.mark.parametrize("groups,toplevel,match", [
    ([("m_axi", "__", [f for f in _FIELDS_READ if f[2] != "rlast"])], "top", "lacks.*rlast"),
    ([("a", "_", _FIELDS_LITE), ("b", "_", _FIELDS_LITE)], "top", "several AXI-Lite"),
    ([("m_axi", "__", _FIELDS_READ)], "other", "no module 'other'"),
])
def test_rejects_bad_tops(groups, toplevel, match):
    with pytest.raises(ValueError, match=match):
        describe_ports(_verilog(groups), toplevel)


def test_needs_clock_and_reset():
    v = _verilog([("m_axi", "__", _FIELDS_READ)])
    with pytest.raises(ValueError, match="no input 'clock'"):
        describe_ports(v, "top", clock="clock")
