# amaranth: UnusedElaboratable=no
"""Bitstream targets and the bus interface of the design being built.

* :data:`TARGETS` -- the boards a bitstream can be built for: three Zynq boards (Vivado
  project scripts, :mod:`speedllm.bitstreams.vivado`) and the ULX3S-85F (open ECP5 flow,
  :mod:`speedllm.bitstreams.ecp5`). Parts come from here; clocks and AXI widths from the
  board profiles (``bitstreams/boards.json``, :func:`speedllm.ops.boards.get_board`).
* :data:`TOPS` / :func:`make_top` -- the designs that can be put on a board, by name
  (:data:`DEFAULT_TOP` = ``"accel"``, the accelerator top).
* :func:`bus_ports` -- finds the bus interface of any ``wiring.Component`` that has the
  accelerator's shape: AXI4-Lite slave ports (:func:`speedllm.hw.axil.axil_signature`,
  flipped) and AXI4 master ports (:func:`speedllm.hw.axi.read_signature` /
  :func:`~speedllm.hw.axi.write_signature`). Amaranth flattens a port ``s_axil`` member
  ``awaddr`` to the Verilog port ``s_axil__awaddr``; the flows rename it ``s_axil_awaddr``
  in a wrapper so that Vivado's AXI naming rules apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Shape
from amaranth.lib import wiring

from speedllm.ops.boards import BoardProfile, get_board

__all__ = ["Target", "TARGETS", "TOPS", "DEFAULT_TOP", "ECP5_DEFAULTS", "make_top", "get_target", "BusPort",
           "bus_ports", "extra_ports"]

# Address windows of the PS as the PL masters see it (for C_M_AXI_DDR_BASE/RANGE):
# UG585 Zynq-7000 TRM, "System Addresses": DDR at 0x0000_0000 (512 MB fitted on the PYNQ-Z2);
# UG1085 Zynq UltraScale+ TRM, "Global System Address Map": DDR_LOW 0x0 .. 0x7FFF_FFFF.
# Control windows: M_AXI_GP0 starts at 0x4000_0000 (UG585) -- 0x43C0_0000 is what Vivado
# assigns to the first AXI-Lite slave on a PYNQ image; M_AXI_HPM0_FPD at 0xA000_0000 (UG1085).


@dataclass(frozen=True)
class Target:
    """One board a bitstream is built for.

    Attributes
    ----------
    name : str
        The target name (also the board profile name).
    flow : str
        ``"vivado"`` (scripts for a user with Vivado) or ``"ecp5"`` (built here).
    part : str
        The FPGA part as the vendor tool spells it.
    board_part : str or None
        A Vivado board-part pattern (``vendor:board:part0:*``); the script uses the newest
        installed one, to get the board's PS presets.
    ps : str or None
        ``"ps7"`` (processing_system7, Zynq-7000) or ``"psu"`` (zynq_ultra_ps_e, MPSoC).
    control_base, control_range : int
        Where the AXI-Lite control port is mapped in the PS's address space.
    ddr_base, ddr_range : int
        The DDR window the AXI masters reach through the HP ports.
    """

    name: str
    flow: str
    part: str
    board_part: str | None = None
    ps: str | None = None
    control_base: int = 0
    control_range: int = 0x10000
    ddr_base: int = 0
    ddr_range: int = 0
    notes: tuple = field(default=())

    @property
    def board(self) -> BoardProfile:
        return get_board(self.name)


TARGETS: dict[str, Target] = {
    "pynq-z2": Target("pynq-z2", "vivado", "xc7z020clg400-1",
                      board_part="tul.com.tw:pynq-z2:part0:*", ps="ps7",
                      control_base=0x43C0_0000, ddr_base=0, ddr_range=0x2000_0000),
    "kv260": Target("kv260", "vivado", "xck26-sfvc784-2LV-c",
                    board_part="xilinx.com:kv260_som:part0:*", ps="psu",
                    control_base=0xA000_0000, ddr_base=0, ddr_range=0x8000_0000),
    "zcu104": Target("zcu104", "vivado", "xczu7ev-ffvc1156-2-e",
                     board_part="xilinx.com:zcu104:part0:*", ps="psu",
                     control_base=0xA000_0000, ddr_base=0, ddr_range=0x8000_0000),
    "ulx3s-85f": Target("ulx3s-85f", "ecp5", "LFE5U-85F-6BG381C"),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}") from None


def _dma_copy(target: Target) -> wiring.Component:
    from speedllm.hw.dma_copy import DmaCopy
    return DmaCopy()


def _accel(target: Target) -> wiring.Component:
    from speedllm.hw.accel_top import TOP_CONFIG, AcceleratorTop
    return AcceleratorTop(TOP_CONFIG)


#: Design name -> factory(target) -> wiring.Component. ``accel`` is the real accelerator
#: (:class:`speedllm.hw.accel_top.AcceleratorTop` at ``TOP_CONFIG``, the stories260K head
#: shape) and the default; ``dma_copy`` is a small test design with the same kind of bus
#: interface (one AXI-Lite slave, AXI4 masters), handy to check a board flow quickly.
TOPS = {"accel": _accel, "dma_copy": _dma_copy}
DEFAULT_TOP = "accel"

#: ECP5 build settings per top unless given on the command line: the fabric clock (MHz;
#: ``None`` = the board profile's) and nextpnr's router. The whole accelerator routes with
#: router2 and reaches 39.98 MHz (measured: seed 1, 25 MHz constraint, ~26 min here);
#: 25 MHz, which the PLL makes exactly, leaves that margin. dma_copy meets 100 MHz.
ECP5_DEFAULTS = {"accel": {"clock": 25.0, "router": "router2"},
                 "dma_copy": {"clock": None, "router": None}}


def make_top(name: str, target: Target | str) -> wiring.Component:
    if isinstance(target, str):
        target = get_target(target)
    try:
        factory = TOPS[name]
    except KeyError:
        raise ValueError(f"unknown top {name!r}; tops: {', '.join(TOPS)}") from None
    return factory(target)


# ---- the bus interface of a component ---------------------------------------------------
_AXIL = {"awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready",
         "bresp", "bvalid", "bready", "araddr", "arprot", "arvalid", "arready", "rdata",
         "rresp", "rvalid", "rready"}
_AXI_READ = {"araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rdata", "rresp",
             "rlast", "rvalid", "rready"}
_AXI_WRITE = {"awaddr", "awlen", "awsize", "awburst", "awvalid", "awready", "wdata", "wstrb",
              "wlast", "wvalid", "wready", "bresp", "bvalid", "bready"}


@dataclass(frozen=True)
class BusPort:
    """One bus port of a component.

    ``kind`` is ``"axil_slave"`` or ``"axi_master"``; ``signals`` lists ``(member, width,
    direction)`` with direction ``"in"``/``"out"`` as seen from the component; ``reads`` /
    ``writes`` say which channels an AXI master has.
    """

    name: str
    kind: str
    signals: tuple
    addr_width: int
    data_width: int
    reads: bool = True
    writes: bool = True

    def width(self, member: str) -> int:
        return next(w for m, w, _ in self.signals if m == member)


def _signals(sig: wiring.Signature, flow) -> tuple:
    out = []
    for name, member in sig.members.items():
        if member.is_signature:
            raise ValueError(f"nested member {name!r} in a bus port is not supported")
        # ``sig`` is already as the component sees it (an In port's members come flipped).
        direction = member.flow
        out.append((name, Shape.cast(member.shape).width,
                    "out" if direction == wiring.Out else "in"))
    return tuple(out)


def bus_ports(component: wiring.Component) -> list[BusPort]:
    """The AXI4-Lite slave and AXI4 master ports of ``component``, in signature order.

    Raises ``ValueError`` when the component has no AXI4-Lite slave port.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"component must be a wiring.Component, not {component!r}")
    ports = []
    for name, member in component.signature.members.items():
        if not member.is_signature:
            continue
        names = set(member.signature.members)
        is_axil = member.flow == wiring.In and _AXIL <= names and not names & {"arlen", "awlen"}
        is_axi = member.flow == wiring.Out and (_AXI_READ <= names or _AXI_WRITE <= names)
        if is_axil or is_axi:
            signals = _signals(member.signature, member.flow)
            widths = {m: w for m, w, _ in signals}
        if is_axil:
            ports.append(BusPort(name, "axil_slave", signals, widths["awaddr"],
                                 widths["wdata"]))
        elif is_axi:
            reads, writes = _AXI_READ <= names, _AXI_WRITE <= names
            addr = widths["araddr"] if reads else widths["awaddr"]
            dw = widths["rdata"] if reads else widths["wdata"]
            ports.append(BusPort(name, "axi_master", signals, addr, dw, reads, writes))
        else:
            raise ValueError(f"port {name!r} is neither an AXI4-Lite slave nor an AXI4 master")
    if not any(p.kind == "axil_slave" for p in ports):
        raise ValueError("the design has no AXI4-Lite slave (control) port")
    return ports


def extra_ports(component: wiring.Component) -> list[tuple[str, int, str]]:
    """Plain (non-bus) ports of ``component``: ``(name, width, "in"|"out")``."""
    out = []
    for name, member in component.signature.members.items():
        if not member.is_signature:
            out.append((name, Shape.cast(member.shape).width,
                        "out" if member.flow == wiring.Out else "in"))
    return out
