"""AXI4 write master: write commands and a stream of bus words in, AXI4 bursts out.

A command (``addr`` in bytes, ``beats`` in bus words, see
:func:`speedllm.hw.axi.command_layout`) takes the next ``beats`` words of ``data``; it
becomes INCR bursts of up to ``max_burst_beats`` beats that never cross 4 KiB, written
with every byte strobe set. Up to ``max_outstanding`` bursts wait for their B response at
once. ``busy`` stays high until the last B response of the last command has arrived, so
"``busy`` low" means every accepted write is in memory.

Errors: a BRESP of SLVERR or DECERR raises the sticky ``error`` flag with the first bad
``error_resp``; the data of that burst is lost, the master goes on with the next bursts
(it never waits for anything AXI does not promise). ``clear`` drops the flags. A slave
that never answers B raises ``timeout`` after ``timeout_cycles``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import (BURST_INCR, CACHE_NORMAL, RESP_OKAY, BurstSplitter, check_bus_parameters,
                  check_burst_parameters, command_layout, write_signature)
from .stream import StreamFifo

__all__ = ["AxiWriteMaster", "write_data_layout"]


def write_data_layout(data_width=64) -> data.StructLayout:
    """One beat into the write master: just ``data`` (all byte strobes are written)."""
    return data.StructLayout({"data": data_width})


class AxiWriteMaster(wiring.Component):
    """AXI4 write master with burst splitting and several bursts awaiting B.

    Parameters
    ----------
    addr_width, data_width, length_width, max_burst_beats, max_outstanding, timeout_cycles
        As for :class:`speedllm.hw.axi_read.AxiReadMaster`.
    data_depth : int
        Beats buffered on the ``data`` input (default 4).

    Ports
    -----
    cmd : In(stream.Signature(command_layout(addr_width, length_width)))
        Write commands; ``addr`` is rounded down to a beat, ``beats == 0`` is dropped.
    data : In(stream.Signature(write_data_layout(data_width)))
        The words to write, command after command, ``beats`` words each (no markers).
    m_axi : Out(write_signature(addr_width, data_width))
        The AXI4 AW, W and B channels (``awid`` = 0).
    busy : Out(1)
        A command, burst, data word or B response is pending.
    error : Out(1), error_resp : Out(2)
        Sticky: a burst came back with BRESP != OKAY; the first such BRESP.
    timeout : Out(1)
        Sticky: ``timeout_cycles`` passed without a B response while every issued burst
        had sent its data and waited only for B.
    stall_cycles : Out(32)
        Cycles in which W data was ready but the slave held ``wready`` low, plus cycles
        waiting for B with no W to send; saturates.
    clear : In(1)
        Clears ``error``, ``error_resp``, ``timeout`` and ``stall_cycles``.

    Latency and throughput
    ----------------------
    AW issues three cycles after a command is taken (then at most one burst every two
    cycles); W beats go out at one per cycle while ``data`` keeps up and ``wready`` is
    high (the W channel of a burst waits until its AW has been registered; AW may run up
    to ``max_outstanding`` bursts ahead). No combinational
    path from ``m_axi`` inputs to ``cmd.ready``/``data.ready``.
    """

    def __init__(self, *, addr_width=32, data_width=64, length_width=24, max_burst_beats=256,
                 max_outstanding=4, data_depth=4, timeout_cycles=1 << 16):
        check_bus_parameters(addr_width, data_width)
        check_burst_parameters(length_width, max_burst_beats)
        for name, value, lo in [("max_outstanding", max_outstanding, 1),
                                ("data_depth", data_depth, 2),
                                ("timeout_cycles", timeout_cycles, 2)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        self._addr_width = addr_width
        self._max_burst_beats = max_burst_beats
        self._data_width = data_width
        self._length_width = length_width
        self._max_outstanding = max_outstanding
        self._data_depth = data_depth
        self._timeout_cycles = timeout_cycles
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width, length_width))),
            "data": In(stream.Signature(write_data_layout(data_width))),
            "m_axi": Out(write_signature(addr_width, data_width)),
            "busy": Out(1),
            "error": Out(1),
            "error_resp": Out(2),
            "timeout": Out(1),
            "stall_cycles": Out(32),
            "clear": In(1),
        })

    @property
    def data_width(self):
        return self._data_width

    @property
    def addr_width(self):
        return self._addr_width

    def elaborate(self, platform):
        m = Module()
        axi = self.m_axi
        m.submodules.splitter = splitter = BurstSplitter(
            addr_width=self._addr_width, length_width=self._length_width,
            bytes_per_beat=self._data_width // 8, max_burst_beats=self._max_burst_beats)
        wiring.connect(m, wiring.flipped(self.cmd), splitter.cmd)
        m.submodules.words = words = StreamFifo(write_data_layout(self._data_width),
                                                self._data_depth)
        wiring.connect(m, wiring.flipped(self.data), words.i)
        # AxLEN of each issued burst, for WLAST on the W side.
        m.submodules.lens = lens = fifo.SyncFIFO(width=8, depth=self._max_outstanding)

        # AW: a register stage; a burst is issued when its length fits in `lens` and fewer
        # than max_outstanding bursts await their B response.
        pending_b = Signal(range(self._max_outstanding + 1))
        aw_take, b_take = Signal(), Signal()
        m.d.comb += [
            axi.awid.eq(0),
            axi.awsize.eq(exact_log2(self._data_width // 8)),
            axi.awburst.eq(BURST_INCR),
            axi.awcache.eq(CACHE_NORMAL),
            axi.awprot.eq(0),
            aw_take.eq(splitter.burst.valid & (~axi.awvalid | axi.awready) & lens.w_rdy
                       & (pending_b < self._max_outstanding)),
            splitter.burst.ready.eq(aw_take),
            lens.w_en.eq(aw_take),
            lens.w_data.eq(splitter.burst.payload.len),
        ]
        with m.If(aw_take):
            m.d.sync += [axi.awaddr.eq(splitter.burst.payload.addr),
                         axi.awlen.eq(splitter.burst.payload.len), axi.awvalid.eq(1)]
        with m.Elif(axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        m.d.sync += pending_b.eq(pending_b + aw_take - b_take)

        # W: words of the oldest burst in `lens`; WLAST on its final beat.
        beat = Signal(8)
        w_take = Signal()
        m.d.comb += [
            axi.wvalid.eq(words.o.valid & lens.r_rdy),
            axi.wdata.eq(words.o.payload.data),
            axi.wstrb.eq((1 << (self._data_width // 8)) - 1),
            axi.wlast.eq(beat == lens.r_data),
            w_take.eq(axi.wvalid & axi.wready),
            words.o.ready.eq(axi.wready & lens.r_rdy),
            lens.r_en.eq(w_take & axi.wlast),
        ]
        with m.If(w_take):
            m.d.sync += beat.eq(Mux(axi.wlast, 0, beat + 1))

        # B: always ready; count responses, keep the first error.
        m.d.comb += [axi.bready.eq(1), b_take.eq(axi.bvalid)]
        waiting = Signal(range(self._timeout_cycles + 1))
        b_due = Signal()          # a burst has sent all its W beats and waits for B only
        m.d.comb += b_due.eq((pending_b != 0) & ~lens.r_rdy)
        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), self.error_resp.eq(0), self.timeout.eq(0),
                         self.stall_cycles.eq(0)]
        with m.Else():
            with m.If(b_take & (axi.bresp != RESP_OKAY) & ~self.error):
                m.d.sync += [self.error.eq(1), self.error_resp.eq(axi.bresp)]
            stalled = (axi.wvalid & ~axi.wready) | (b_due & ~axi.bvalid)
            with m.If(stalled & (self.stall_cycles != (1 << 32) - 1)):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
            with m.If(waiting == self._timeout_cycles):
                m.d.sync += self.timeout.eq(1)
        with m.If(~b_due | axi.bvalid):
            m.d.sync += waiting.eq(0)
        with m.Elif(waiting != self._timeout_cycles):
            m.d.sync += waiting.eq(waiting + 1)

        m.d.comb += self.busy.eq(self.cmd.valid | splitter.burst.valid | ~splitter.cmd.ready
                                 | axi.awvalid
                                 | (pending_b != 0) | words.o.valid)
        return m
