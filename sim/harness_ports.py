"""Port discovery and C++ glue for the harness (:mod:`speedllm.sim.harness`).

:func:`describe_ports` reads a top's port list from its Verilog and finds the clock, the
reset, the AXI4 master ports and the AXI4-Lite control port (see the harness's module
docstring for the naming rules); :func:`render_ports_header` writes ``harness_ports.h``,
the only per-design C++: it copies those Verilator port members to and from the harness's
plain structs (``sim/harness/axi_signals.h``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["AxiGroup", "PortDescription", "describe_ports", "render_ports_header",
           "verilog_ports"]

# AXI fields the harness reads (DUT outputs) / drives (DUT inputs), per role.
_MASTER_READ = {"out": ["araddr", "arid", "arlen", "arsize", "arburst", "arvalid", "rready"],
                "in": ["arready", "rid", "rresp", "rlast", "rvalid"]}
_MASTER_WRITE = {"out": ["awaddr", "awid", "awlen", "awsize", "awburst", "awvalid", "wvalid",
                         "wlast", "bready"],
                 "in": ["awready", "wready", "bid", "bresp", "bvalid"]}
_LITE = {"out": ["awready", "wready", "bvalid", "bresp", "arready", "rvalid", "rresp",
                 "rdata"],
         "in": ["awaddr", "awvalid", "wdata", "wstrb", "wvalid", "bready", "araddr", "arvalid",
                "rready"]}
_REQUIRED = {"read": ["araddr", "arlen", "arvalid", "arready", "rdata", "rlast", "rvalid",
                      "rready"],
             "write": ["awaddr", "awlen", "awvalid", "awready", "wdata", "wlast", "wvalid",
                       "wready", "bvalid", "bready"],
             "lite": ["awaddr", "awvalid", "awready", "wdata", "wvalid", "wready", "bvalid",
                      "bready", "araddr", "arvalid", "arready", "rdata", "rvalid", "rready"]}
_FIELDS = sorted({f for group in (_MASTER_READ, _MASTER_WRITE, _LITE)
                  for f in group["out"] + group["in"]} | {"rdata", "wdata", "wstrb", "awprot",
                                                          "arprot", "arcache", "awcache"},
                 key=len, reverse=True)
_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?"
                      r"([A-Za-z_][A-Za-z0-9_]*)\s*;", re.M)


@dataclass
class AxiGroup:
    """One AXI port of the top: ``signals`` maps field -> (Verilog name, direction, width).
    For a master port, ``has_read``/``has_write`` say which channels it has and
    ``data_bytes`` its bus width."""
    prefix: str
    signals: dict = field(default_factory=dict)
    has_read: bool = False
    has_write: bool = False
    data_bytes: int = 0

    def width(self, name):
        return self.signals[name][2]


@dataclass
class PortDescription:
    """The top's ports as the harness sees them."""
    toplevel: str
    clock: str
    reset: str
    masters: list            # AxiGroup
    control: AxiGroup | None


def verilog_ports(verilog: str, toplevel: str) -> dict:
    """{name: (direction, width)} of module ``toplevel``."""
    m = re.search(rf"^module\s+\\?{re.escape(toplevel)}\s*\(", verilog, re.M)
    if not m:
        raise ValueError(f"no module {toplevel!r} in the Verilog")
    body = verilog[m.end():verilog.index("endmodule", m.end())]
    return {name: (d, int(hi) - int(lo) + 1 if hi else 1)
            for d, hi, lo, name in _PORT_RE.findall(body)}


def describe_ports(verilog: str, toplevel: str, clock="clk", reset="rst") -> PortDescription:
    """Find the clock, reset, AXI4 master ports and the AXI4-Lite control port of a top."""
    ports = verilog_ports(verilog, toplevel)
    for name in (clock, reset):
        if ports.get(name, ("", 0))[0] != "input":
            raise ValueError(f"top {toplevel!r} has no input {name!r}")
    groups: dict[str, AxiGroup] = {}
    for name, (direction, width) in ports.items():
        for f in _FIELDS:
            for sep in ("__", "_"):
                if name.endswith(sep + f) and len(name) > len(f) + len(sep):
                    prefix = name[:-len(f) - len(sep)]
                    groups.setdefault(prefix, AxiGroup(prefix)).signals[f] = \
                        (name, direction, width)
                    break
            else:
                continue
            break
    masters, controls = [], []
    for g in groups.values():
        addr = g.signals.get("araddr") or g.signals.get("awaddr")
        if addr is None:
            continue
        role = "master" if addr[1] == "output" else "lite"
        if role == "lite":
            need = _REQUIRED["lite"]
        else:
            g.has_read = "araddr" in g.signals
            g.has_write = "awaddr" in g.signals
            need = _REQUIRED["read"] * g.has_read + _REQUIRED["write"] * g.has_write
        missing = [f for f in need if f not in g.signals]
        if missing:
            raise ValueError(f"AXI port {g.prefix!r} of {toplevel!r} lacks {missing}")
        (controls if role == "lite" else masters).append(g)
    if len(controls) > 1:
        raise ValueError(f"{toplevel!r} has several AXI-Lite slave ports: "
                         f"{[g.prefix for g in controls]}")
    for g in masters:
        data = g.width("rdata" if g.has_read else "wdata")
        if data < 8 or data > 1024 or data & (data - 1):
            raise ValueError(f"AXI port {g.prefix!r}: data width must be a power of two in "
                             f"8..1024, not {data}")
        g.data_bytes = data // 8
    return PortDescription(toplevel, clock, reset, masters, controls[0] if controls else None)


def _mangle(name: str) -> str:
    """A Verilog port name as Verilator spells the C++ member (``a__b`` -> ``a___05Fb``)."""
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c.isalnum():
            out.append(c)
        elif c == "_" and name[i + 1:i + 2] == "_":
            out.append("___05F")
            i += 1
        elif c == "_":
            out.append(c)
        else:
            out.append(f"__0{ord(c):02X}")
        i += 1
    return "".join(out)


def render_ports_header(desc: PortDescription) -> str:
    """The C++ glue (``harness_ports.h``) between Verilator's ``Vtop`` and the harness."""
    def member(g, f):
        return "t->" + _mangle(g.signals[f][0])

    n = len(desc.masters)
    infos = ", ".join(f'{{"{g.prefix}", {str(g.has_read).lower()}, '
                      f'{str(g.has_write).lower()}, {g.data_bytes}}}' for g in desc.masters)
    sample, capture, drive, lite_drive = [], [], [], []
    for p, g in enumerate(desc.masters):
        for role, present in ((_MASTER_READ, g.has_read), (_MASTER_WRITE, g.has_write)):
            if not present:
                continue
            sample += [f"    m[{p}].{f} = {member(g, f)};" for f in role["out"]
                       if f in g.signals]
            drive += [f"    {member(g, f)} = d.in({p}).{f};" for f in role["in"]
                      if f in g.signals]
        if g.has_read:
            drive.append(f"    if (d.rdata_changed({p})) copy_out({member(g, 'rdata')}, "
                         f"d.rdata_source({p}), {g.data_bytes});")
        if g.has_write:
            strb = (f"copy_in(w[{p}].strb, {member(g, 'wstrb')}, "
                    f"{(g.width('wstrb') + 7) // 8});" if "wstrb" in g.signals
                    else f"std::memset(w[{p}].strb, 0xff, sizeof w[{p}].strb);")
            capture.append(f"    if (d.in({p}).wready && m[{p}].wvalid) {{ "
                           f"copy_in(w[{p}].data, {member(g, 'wdata')}, {g.data_bytes}); "
                           f"{strb} }}")
    c = desc.control
    if c is not None:
        sample += [f"    l->{f} = {member(c, f)};" for f in _LITE["out"] if f in c.signals]
        lite_drive = [f"    {member(c, f)} = i.{f};" for f in _LITE["in"] if f in c.signals]
    return "\n".join([
        f"// Generated by speedllm.sim.harness for top {desc.toplevel!r}: do not edit.",
        "#pragma once", "#include <cstring>", '#include "Vtop.h"', '#include "dram_model.h"',
        "namespace harness { namespace ports {",
        f"constexpr int kMasterPorts = {n};",
        f"constexpr bool kHasLite = {str(c is not None).lower()};",
        f"static const MasterPortInfo kMasterInfo[] = {{{infos or '{nullptr, false, false, 0}'}}};",
        "template <typename T> inline void copy_in(uint8_t* dst, const T& src, size_t n) "
        "{ uint64_t v = src; std::memcpy(dst, &v, n); }",
        "template <std::size_t W> inline void copy_in(uint8_t* dst, const VlWide<W>& src, "
        "size_t n) { std::memcpy(dst, src.data(), n); }",
        "template <typename T> inline void copy_out(T& dst, const uint8_t* src, size_t n) "
        "{ uint64_t v = 0; std::memcpy(&v, src, n); dst = v; }",
        "template <std::size_t W> inline void copy_out(VlWide<W>& dst, const uint8_t* src, "
        "size_t n) { std::memcpy(dst.data(), src, n); }",
        "inline void sample_outputs(Vtop* t, MasterOut* m, LiteOut* l) {",
        *sample, "    (void)t; (void)m; (void)l;", "}",
        "inline void capture_wdata(Vtop* t, const DramModel& d, const MasterOut* m, "
        "WriteBeat* w) {", *capture, "    (void)t; (void)d; (void)m; (void)w;", "}",
        "inline void drive_masters(Vtop* t, const DramModel& d) {", *drive,
        "    (void)t; (void)d;", "}",
        "inline void drive_lite(Vtop* t, const LiteIn& i) {", *lite_drive,
        "    (void)t; (void)i;", "}",
        f"inline void set_clock(Vtop* t, int v) {{ t->{_mangle(desc.clock)} = v; }}",
        f"inline void set_reset(Vtop* t, int v) {{ t->{_mangle(desc.reset)} = v; }}",
        "}}  // namespace harness::ports", ""])
