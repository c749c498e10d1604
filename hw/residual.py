"""Residual add: ``o = saturate32(x + y)`` on two ACT streams (the Wo/W2 epilogue).

Golden: ``speedllm.golden.intops.residual_add``.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats

from .tables import act_packet_layout, check_positive_int, saturate


class ResidualAdd(wiring.Component):
    """Element-wise saturating add of two ACT vectors that arrive as streams.

    Parameters
    ----------
    lanes : int
        ACT values per beat (1 by default: the MatVec engine emits one row result per beat).

    Ports
    -----
    x : In(stream), payload ``act_packet_layout(lanes)``
        The residual stream (read from the scratchpad).
    y : In(stream), payload ``act_packet_layout(lanes)``
        The new values (the matvec output). Its ``first``/``last`` go to ``o``.
    o : Out(stream), payload ``act_packet_layout(lanes)``
        ``saturate32(x + y)`` per lane.

    Latency and throughput
    ----------------------
    One register stage: a result is valid the cycle after both inputs were taken; one beat
    per cycle when ``o.ready`` stays high. A beat is taken from ``x`` and ``y`` together
    (a join): neither input is consumed alone, so the two vectors stay aligned.
    """

    def __init__(self, *, lanes: int = 1):
        self._lanes = check_positive_int("lanes", lanes)
        layout = act_packet_layout(lanes)
        super().__init__({
            "x": In(stream.Signature(layout)),
            "y": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        take = self.x.valid & self.y.valid & (~self.o.valid | self.o.ready)
        m.d.comb += [self.x.ready.eq(take), self.y.ready.eq(take)]
        with m.If(take):
            if self._lanes == 1:
                m.d.sync += self.o.payload.data.eq(
                    saturate(self.x.payload.data + self.y.payload.data, formats.ACT_BITS))
            else:
                for lane in range(self._lanes):
                    m.d.sync += self.o.payload.data[lane].eq(saturate(
                        self.x.payload.data[lane] + self.y.payload.data[lane], formats.ACT_BITS))
            m.d.sync += [
                self.o.payload.first.eq(self.y.payload.first),
                self.o.payload.last.eq(self.y.payload.last),
                self.o.valid.eq(1),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
