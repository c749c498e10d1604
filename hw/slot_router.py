"""Slot routers: send a unit's memory slot to the scratchpad or to its AXI4 master.

Every read or write slot of the accelerator top (:mod:`speedllm.hw.vector_io`) ends in a
router. A transfer command names its ``space``: :data:`~speedllm.hw.vector_io.SPACE_DRAM`
goes to the slot's :class:`~speedllm.hw.axi_read.AxiReadMaster` /
:class:`~speedllm.hw.axi_write.AxiWriteMaster`, :data:`~speedllm.hw.vector_io.SPACE_SCRATCHPAD`
to a port of the on-chip :class:`~speedllm.hw.scratchpad.Scratchpad` (one bank of 64-bit
words; byte address ``a`` is word ``a >> 3``). A router runs one command at a time, so the
beats of two commands never interleave.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import command_layout
from .axi_read import read_data_layout
from .axi_write import write_data_layout
from .scratchpad import read_command_layout, read_data_layout as sp_read_data_layout
from .scratchpad import write_layout
from .vector_io import BEAT_BITS, SPACE_DRAM, ReadSlotSignature, WriteSlotSignature, \
    transfer_layout

__all__ = ["ReadRouter", "WriteRouter"]


class ReadRouter(wiring.Component):
    """One read slot -> the scratchpad read port or the AXI read master.

    Parameters
    ----------
    depth : int
        Scratchpad words (addresses wrap modulo ``depth``; the compiler's plan fits).

    Ports
    -----
    slot : In(ReadSlotSignature())
        From the units.
    dram_cmd : Out(stream(command_layout())), dram_data : In(stream(read_data_layout(64)))
        To the read master's ``cmd`` / from its ``data``.
    sp_cmd : Out(stream(read_command_layout(1, depth))), sp_data : In(stream)
        To / from a scratchpad read port.

    Latency and throughput
    ----------------------
    A command reaches its target two cycles after it is taken (latch, offer); beats pass
    through combinationally, one per cycle.
    """

    def __init__(self, *, depth: int):
        self._depth = depth
        super().__init__({
            "slot": In(ReadSlotSignature()),
            "dram_cmd": Out(stream.Signature(command_layout())),
            "dram_data": In(stream.Signature(read_data_layout(BEAT_BITS))),
            "sp_cmd": Out(stream.Signature(read_command_layout(1, depth))),
            "sp_data": In(stream.Signature(sp_read_data_layout(BEAT_BITS))),
        })

    def elaborate(self, platform):
        m = Module()
        cmd = Signal(transfer_layout())
        pending = Signal()       # `cmd` not yet taken by its target
        inflight = Signal()      # its beats are still coming
        m.d.comb += self.slot.cmd.ready.eq(~pending & ~inflight)
        with m.If(self.slot.cmd.valid & self.slot.cmd.ready):
            m.d.sync += [cmd.eq(self.slot.cmd.payload),
                         pending.eq(self.slot.cmd.payload.beats != 0)]
        dram = cmd.space == SPACE_DRAM
        m.d.comb += [
            self.dram_cmd.valid.eq(pending & dram),
            self.dram_cmd.payload.addr.eq(cmd.addr),
            self.dram_cmd.payload.beats.eq(cmd.beats),
            self.sp_cmd.valid.eq(pending & ~dram),
            self.sp_cmd.payload.addr.eq(cmd.addr >> 3),
            self.sp_cmd.payload.count.eq(cmd.beats),
        ]
        with m.If((self.dram_cmd.valid & self.dram_cmd.ready)
                  | (self.sp_cmd.valid & self.sp_cmd.ready)):
            m.d.sync += [pending.eq(0), inflight.eq(1)]
        # The scratchpad streams a command's words before it counts the command as taken
        # (at its final word), so beats pass while the command is pending or in flight.
        active = pending | inflight
        with m.If(dram):
            m.d.comb += [self.slot.data.valid.eq(self.dram_data.valid & active),
                         self.slot.data.payload.eq(self.dram_data.payload),
                         self.dram_data.ready.eq(self.slot.data.ready & active)]
        with m.Else():
            m.d.comb += [self.slot.data.valid.eq(self.sp_data.valid & active),
                         self.slot.data.payload.data.eq(self.sp_data.payload.data),
                         self.slot.data.payload.first.eq(self.sp_data.payload.first),
                         self.slot.data.payload.last.eq(self.sp_data.payload.last),
                         self.sp_data.ready.eq(self.slot.data.ready & active)]
        with m.If(self.slot.data.valid & self.slot.data.ready & self.slot.data.payload.last):
            m.d.sync += [inflight.eq(0), pending.eq(0)]
        return m


class WriteRouter(wiring.Component):
    """One write slot -> the scratchpad write port or the AXI write master.

    Ports
    -----
    slot : In(WriteSlotSignature())
        From the units; ``slot.busy`` is high while a command's beats are owed or the
        write master has bursts awaiting B.
    dram_cmd : Out(stream(command_layout())), dram_data : Out(stream(write_data_layout(64)))
        To the write master; ``dram_busy`` : In(1) is its ``busy``.
    sp_w : Out(stream(write_layout(1, depth, 64)))
        To the scratchpad's write port (always ready there).

    Latency and throughput
    ----------------------
    As :class:`ReadRouter`; one beat per cycle.
    """

    def __init__(self, *, depth: int):
        self._depth = depth
        super().__init__({
            "slot": In(WriteSlotSignature()),
            "dram_cmd": Out(stream.Signature(command_layout())),
            "dram_data": Out(stream.Signature(write_data_layout(BEAT_BITS))),
            "dram_busy": In(1),
            "sp_w": Out(stream.Signature(write_layout(1, depth, BEAT_BITS))),
        })

    def elaborate(self, platform):
        m = Module()
        cmd = Signal(transfer_layout())
        pending = Signal()
        left = Signal(24)                 # beats still to pass
        word = Signal(range(self._depth))
        m.d.comb += [self.slot.cmd.ready.eq(~pending & (left == 0)),
                     self.slot.busy.eq(pending | (left != 0) | self.dram_busy)]
        with m.If(self.slot.cmd.valid & self.slot.cmd.ready):
            p = self.slot.cmd.payload
            m.d.sync += [cmd.eq(p), pending.eq((p.space == SPACE_DRAM) & (p.beats != 0)),
                         left.eq(p.beats), word.eq(p.addr >> 3)]
        dram = cmd.space == SPACE_DRAM
        m.d.comb += [self.dram_cmd.valid.eq(pending),
                     self.dram_cmd.payload.addr.eq(cmd.addr),
                     self.dram_cmd.payload.beats.eq(cmd.beats)]
        with m.If(self.dram_cmd.valid & self.dram_cmd.ready):
            m.d.sync += pending.eq(0)
        moving = left != 0
        with m.If(dram):
            m.d.comb += [self.dram_data.valid.eq(self.slot.data.valid & moving),
                         self.dram_data.payload.eq(self.slot.data.payload),
                         self.slot.data.ready.eq(self.dram_data.ready & moving)]
        with m.Else():
            m.d.comb += [self.sp_w.valid.eq(self.slot.data.valid & moving),
                         self.sp_w.payload.addr.eq(word),
                         self.sp_w.payload.data.eq(self.slot.data.payload.data),
                         self.slot.data.ready.eq(self.sp_w.ready & moving)]
        with m.If(self.slot.data.valid & self.slot.data.ready):
            m.d.sync += [left.eq(left - 1), word.eq(word + 1)]
        return m
