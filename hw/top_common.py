"""Small pieces shared by the units of the accelerator top (:mod:`speedllm.hw.accel_top`).

* :func:`act_space`: where a command's activation operands live (scratchpad, or DRAM with
  ``ACT_IN_DRAM``).
* :func:`running_flag`: high from a unit's ``start`` until its ``done`` or ``abort``.
* :func:`issue_once`: offer one vector command per unit command on a reader's or writer's
  ``cmd`` stream.
* :func:`issue_kv_rows`: the K row, then the V row, of one position to a KV-row writer.
* :class:`StreamSelect`: an N-to-1 stream switch driven by a select signal.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import Flag

from .tables import act_packet_layout
from .vector_io import SPACE_DRAM, SPACE_SCRATCHPAD

__all__ = ["act_space", "running_flag", "issue_once", "issue_kv_rows", "StreamSelect"]


def act_space(command):
    """``SPACE_DRAM`` when the command has ``ACT_IN_DRAM``, else ``SPACE_SCRATCHPAD``."""
    return Mux((command.flags & Flag.ACT_IN_DRAM) != 0, SPACE_DRAM, SPACE_SCRATCHPAD)


def running_flag(m: Module, port) -> Signal:
    """A register set by ``port.start`` and cleared by ``port.done`` or ``port.abort``
    (a unit port of :class:`~speedllm.hw.accel_top.AcceleratorTop`)."""
    running = Signal()
    with m.If(port.start):
        m.d.sync += running.eq(1)
    with m.If(port.abort | port.done):
        m.d.sync += running.eq(0)
    return running


def issue_kv_rows(m: Module, writer, rows: stream.Interface, start, enable, *, k_addr,
                  v_addr, position, row_bytes) -> Signal:
    """Drive a :class:`~speedllm.hw.kv_row_writer.KvRowWriter`: its ``cmd`` offers the K row
    (``k_addr + position * row_bytes``, 16-bit elements, DRAM), then the V row, while
    ``enable`` holds; ``rows`` (the X16 row stream) feeds its ``i``. Returns the count of
    row commands taken since ``start`` (2 when both are)."""
    issued = Signal(2)
    with m.If(start):
        m.d.sync += issued.eq(0)
    m.d.comb += [writer.cmd.valid.eq(enable & (issued != 2)),
                 writer.cmd.payload.addr.eq(Mux(issued == 0, k_addr, v_addr)
                                            + position * row_bytes),
                 writer.cmd.payload.count.eq(row_bytes >> 1),
                 writer.cmd.payload.half.eq(1),
                 writer.cmd.payload.space.eq(SPACE_DRAM),
                 writer.i.valid.eq(rows.valid),
                 writer.i.payload.data.eq(rows.payload.data),
                 rows.ready.eq(writer.i.ready)]
    with m.If(writer.cmd.valid & writer.cmd.ready):
        m.d.sync += issued.eq(issued + 1)
    return issued


def issue_once(m: Module, cmd: stream.Interface, start, enable, *, addr, space, count,
               half, name: str = "issued"):
    """Drive ``cmd`` (a :func:`~speedllm.hw.vector_io.vector_command_layout` stream) with
    one command per unit command: offered while ``enable`` holds and it has not been
    taken since ``start``. Returns the "taken" flag."""
    issued = Signal(name=name)
    with m.If(start):
        m.d.sync += issued.eq(0)
    with m.Elif(cmd.valid & cmd.ready):
        m.d.sync += issued.eq(1)
    m.d.comb += [cmd.valid.eq(enable & ~issued), cmd.payload.addr.eq(addr),
                 cmd.payload.space.eq(space), cmd.payload.count.eq(count),
                 cmd.payload.half.eq(half)]
    return issued


class StreamSelect(wiring.Component):
    """``o`` follows input ``i[sel]``; the other inputs see ``ready`` low.

    Ports: ``i`` (``n`` inputs of ``act_packet_layout(1)``), ``sel`` : In(range(n)),
    ``o``. Combinational: no latency, no throughput cost.
    """

    def __init__(self, n: int):
        self._n = n
        super().__init__({
            "i": In(stream.Signature(act_packet_layout(1))).array(n),
            "sel": In(range(n)),
            "o": Out(stream.Signature(act_packet_layout(1))),
        })

    def elaborate(self, platform):
        m = Module()
        with m.Switch(self.sel):
            for k in range(self._n):
                with m.Case(k):
                    m.d.comb += [self.o.valid.eq(self.i[k].valid),
                                 self.o.payload.eq(self.i[k].payload),
                                 self.i[k].ready.eq(self.o.ready)]
        return m
