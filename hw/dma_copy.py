"""A small memory-to-memory copy engine: the test DUT of the C++ harness (sim/harness).

:class:`DmaCopy` joins an :class:`~speedllm.hw.axi_read.AxiReadMaster` to an
:class:`~speedllm.hw.axi_write.AxiWriteMaster` and serves its registers
(:data:`REGISTER_MAP`, a :class:`speedllm.hw.csr.RegisterMap`) on an AXI4-Lite port through
:class:`speedllm.hw.axil.AxiLiteRegisters`, so a host (or the harness) starts a copy of
``beats`` bus words from ``src`` to ``dst`` and polls ``status``. It has the shape the real
accelerator top will have: one AXI-Lite control port ``s_axil`` and AXI4 master ports
(``m_axi_rd``, ``m_axi_wr``).

Registers (offsets from ``REGISTER_MAP.offsets()``; bit layouts in each class's docstring):
``control`` (start, clear: write 1 to pulse), ``status`` (done, busy, read_error,
write_error, timeout, read_resp, write_resp: read only), ``src`` / ``dst`` (byte
addresses, rounded down to a beat), ``beats`` (bus words to copy), ``cycles`` (clock
cycles the last copy took, start to done). An unmapped offset answers SLVERR.

``done`` is set when every word is written (the write master's last B response arrived)
and cleared by the next start; errors do not stop a copy (the masters forward every beat
and keep sticky flags), so a copy with errors ends ``done`` with the error bits set. A
memory that stops answering leaves ``busy`` set and raises ``timeout`` after
``timeout_cycles`` without progress. A start while busy is ignored.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import csr
from .axi_read import AxiReadMaster
from .axi_write import AxiWriteMaster
from .axil import AxiLiteRegisters, axil_signature

__all__ = ["DmaCopy", "REGISTER_MAP", "Control", "Status", "CONTROL_START", "CONTROL_CLEAR",
           "STATUS_DONE", "STATUS_BUSY", "STATUS_READ_ERROR", "STATUS_WRITE_ERROR",
           "STATUS_TIMEOUT"]

AXIL_ADDR_WIDTH = 8


class Control(csr.Register):
    """Copy control: write 1 to a bit to act."""
    start = csr.Field(1, "w1p", doc="start a copy (ignored while busy)")
    clear = csr.Field(1, "w1p", doc="clear the error and timeout flags")


class Status(csr.Register):
    """Copy status."""
    done = csr.Field(1, "r", doc="the last copy finished")
    busy = csr.Field(1, "r", doc="a copy is running")
    read_error = csr.Field(1, "r", doc="an R beat answered SLVERR/DECERR")
    write_error = csr.Field(1, "r", doc="a B response was SLVERR/DECERR")
    timeout = csr.Field(1, "r", doc="a master saw no progress for timeout_cycles")
    read_resp = csr.Field(2, "r", doc="the first bad RRESP")
    write_resp = csr.Field(2, "r", doc="the first bad BRESP")


class Address(csr.Register):
    """A byte address in DRAM."""
    address = csr.Field(32, "rw")


class Beats(csr.Register):
    """Bus words to copy."""
    beats = csr.Field(24, "rw")


class Cycles(csr.Register):
    """Clock cycles of the last copy, start to done (counts while busy)."""
    cycles = csr.Field(32, "r")


REGISTER_MAP = csr.RegisterMap("dma_copy")
for _name, _register in [("control", Control), ("status", Status), ("src", Address),
                         ("dst", Address), ("beats", Beats), ("cycles", Cycles)]:
    REGISTER_MAP.add(_name, _register)

CONTROL_START, CONTROL_CLEAR = Control.fields["start"].mask, Control.fields["clear"].mask
STATUS_DONE, STATUS_BUSY, STATUS_READ_ERROR, STATUS_WRITE_ERROR, STATUS_TIMEOUT = (
    Status.fields[f].mask for f in ("done", "busy", "read_error", "write_error", "timeout"))


class DmaCopy(wiring.Component):
    """Copy ``beats`` bus words from ``src`` to ``dst`` in DRAM, controlled over AXI-Lite.

    Parameters
    ----------
    addr_width, data_width : int
        AXI4 address and data widths of both masters (defaults 32 and 64).
    max_burst_beats, max_outstanding : int
        Burst length limit and bursts in flight, per master (defaults 64 and 4).
    timeout_cycles : int
        Cycles without progress on a master that raise ``timeout`` (default 4096).
    shared_port : bool
        One AXI4 port ``m_axi`` with the read and write channels (like a Zynq HP port)
        instead of ``m_axi_rd`` and ``m_axi_wr`` (default False).

    Ports
    -----
    s_axil : In(axil_signature(8))
        The registers (8-bit byte addresses, 32-bit data), :class:`AxiLiteRegisters`.
    m_axi_rd : Out(read_signature(addr_width, data_width))
        The read master's AR/R channels.
    m_axi_wr : Out(write_signature(addr_width, data_width))
        The write master's AW/W/B channels.
    m_axi : Out(...)
        Both, when ``shared_port`` (instead of the two above).

    Latency and throughput
    ----------------------
    One bus word per cycle once the pipeline fills (read latency, then the read master's
    output FIFO and the write master's input FIFO, 2 cycles each); ``done`` rises one cycle
    after the last B response. A register write takes 3 cycles, a read 2.
    """

    regmap = REGISTER_MAP

    def __init__(self, *, addr_width=32, data_width=64, max_burst_beats=64, max_outstanding=4,
                 timeout_cycles=4096, shared_port=False):
        if not isinstance(shared_port, bool):
            raise TypeError(f"shared_port must be a bool, not {shared_port!r}")
        self._shared_port = shared_port
        common = dict(addr_width=addr_width, data_width=data_width,
                      max_burst_beats=max_burst_beats, max_outstanding=max_outstanding,
                      timeout_cycles=timeout_cycles)
        self._reader = AxiReadMaster(**common)
        self._writer = AxiWriteMaster(**common)
        self._registers = AxiLiteRegisters(REGISTER_MAP, addr_width=AXIL_ADDR_WIDTH)
        read_members = dict(self._reader.m_axi.signature.members.items())
        write_members = dict(self._writer.m_axi.signature.members.items())
        masters = ({"m_axi": Out(wiring.Signature({**read_members, **write_members}))}
                   if shared_port else
                   {"m_axi_rd": Out(wiring.Signature(read_members)),
                    "m_axi_wr": Out(wiring.Signature(write_members))})
        super().__init__({"s_axil": In(axil_signature(AXIL_ADDR_WIDTH)), **masters})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self._reader
        m.submodules.writer = writer = self._writer
        for master, port in [(reader, self.m_axi if self._shared_port else self.m_axi_rd),
                             (writer, self.m_axi if self._shared_port else self.m_axi_wr)]:
            for name, member in master.m_axi.signature.members.items():
                inner, outer = getattr(master.m_axi, name), getattr(port, name)
                m.d.comb += (outer.eq(inner) if member.flow == Out else inner.eq(outer))
        m.d.comb += [
            writer.data.payload.data.eq(reader.data.payload.data),
            writer.data.valid.eq(reader.data.valid),
            reader.data.ready.eq(writer.data.ready),
        ]

        m.submodules.registers = registers = self._registers
        wiring.connect(m, wiring.flipped(self.s_axil), registers.s_axil)
        regs = registers.regs
        start, clear = regs.control.start, regs.control.clear
        cycles = Signal(32)
        busy, done = Signal(), Signal()
        read_pending, write_pending = Signal(), Signal()

        # The copy: issue both commands, then wait until both masters are idle.
        m.d.comb += [
            reader.cmd.payload.addr.eq(regs.src.address),
            reader.cmd.payload.beats.eq(regs.beats.beats),
            reader.cmd.valid.eq(read_pending),
            writer.cmd.payload.addr.eq(regs.dst.address),
            writer.cmd.payload.beats.eq(regs.beats.beats),
            writer.cmd.valid.eq(write_pending),
            reader.clear.eq(clear), writer.clear.eq(clear),
        ]
        with m.If(reader.cmd.valid & reader.cmd.ready):
            m.d.sync += read_pending.eq(0)
        with m.If(writer.cmd.valid & writer.cmd.ready):
            m.d.sync += write_pending.eq(0)
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(~read_pending & ~write_pending & ~reader.busy & ~writer.busy):
                m.d.sync += [busy.eq(0), done.eq(1)]
        with m.Elif(start):
            m.d.sync += [busy.eq(1), done.eq(0), cycles.eq(0), read_pending.eq(1),
                         write_pending.eq(1)]

        m.d.comb += [
            regs.status.done.eq(done), regs.status.busy.eq(busy),
            regs.status.read_error.eq(reader.error), regs.status.write_error.eq(writer.error),
            regs.status.timeout.eq(reader.timeout | writer.timeout),
            regs.status.read_resp.eq(reader.error_resp),
            regs.status.write_resp.eq(writer.error_resp),
            regs.cycles.cycles.eq(cycles),
        ]
        return m
