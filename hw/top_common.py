"""Small pieces shared by the units of the accelerator top (:mod:`speedllm.hw.accel_top`).

* :func:`act_space`: where a command's activation operands live (scratchpad, or DRAM with
  ``ACT_IN_DRAM``).
* :func:`issue_once`: offer one vector command per unit command on a reader's or writer's
  ``cmd`` stream.
* :class:`StreamSelect`: an N-to-1 stream switch driven by a select signal.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import Flag

from .tables import act_packet_layout
from .vector_io import SPACE_DRAM, SPACE_SCRATCHPAD

__all__ = ["act_space", "issue_once", "StreamSelect"]


def act_space(command):
    """``SPACE_DRAM`` when the command has ``ACT_IN_DRAM``, else ``SPACE_SCRATCHPAD``."""
    return Mux((command.flags & Flag.ACT_IN_DRAM) != 0, SPACE_DRAM, SPACE_SCRATCHPAD)


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
