"""AXI4 read master: read commands in, a stream of bus words out.

A command (``addr`` in bytes, ``beats`` in bus words, see
:func:`speedllm.hw.axi.command_layout`) becomes INCR bursts of up to ``max_burst_beats``
beats that never cross 4 KiB; several bursts may be in flight (``max_outstanding``). The
data leaves on ``data`` in address order, one payload per beat, with ``first`` / ``last``
marking the command's first and last beat.

Errors: AXI makes a slave return every beat of a burst even when it answers SLVERR or
DECERR, so the master never waits for data that will not come: it forwards every beat
(its data is whatever the slave sent, usually zeros), keeps ``first``/``last`` and the beat
count right, and raises the sticky ``error`` flag with the first bad ``error_resp``. Later
commands run as usual. ``clear`` drops the flag. A slave that stops answering at all is
reported by ``timeout`` (no R beat for ``timeout_cycles`` while bursts are outstanding);
the master then still waits, since AXI has no way to cancel a burst.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import (BURST_INCR, CACHE_NORMAL, RESP_OKAY, BurstSplitter, check_bus_parameters,
                  check_burst_parameters, command_layout, read_signature)
from .stream import StreamFifo

__all__ = ["AxiReadMaster", "read_data_layout"]


def read_data_layout(data_width=64) -> data.StructLayout:
    """One beat out of the read master: ``data`` (low bits), then ``first``, ``last``."""
    return data.StructLayout({"data": data_width, "first": 1, "last": 1})


class AxiReadMaster(wiring.Component):
    """AXI4 read master with burst splitting and several bursts in flight.

    Parameters
    ----------
    addr_width : int
        AXI address width (default 32).
    data_width : int
        AXI data width in bits, a power of two from 32 (default 64; 128 for wide HP ports).
    length_width : int
        Width of ``cmd.payload.beats`` (default 24: up to 16 Mi beats a command).
    max_burst_beats : int
        Longest burst issued, 1..256 (default 256).
    max_outstanding : int
        Bursts in flight at once (default 4).
    cmd_depth : int
        Commands accepted ahead of their data (default 4).
    data_depth : int
        Beats buffered on the output (default 4; ``rready`` falls when it is full).
    timeout_cycles : int
        Cycles without R data, with bursts outstanding, that raise ``timeout`` (default 2**16).

    Ports
    -----
    cmd : In(stream.Signature(command_layout(addr_width, length_width)))
        Read commands; ``addr`` is rounded down to a beat, ``beats == 0`` is dropped.
    data : Out(stream.Signature(read_data_layout(data_width)))
        The words read, in order; ``first``/``last`` delimit each command.
    m_axi : Out(read_signature(addr_width, data_width))
        The AXI4 AR and R channels (``arid`` = 0: responses arrive in order).
    busy : Out(1)
        A command is being split, or bursts or output beats are pending.
    error : Out(1), error_resp : Out(2)
        Sticky: some beat came back with RRESP != OKAY; the first such RRESP.
    timeout : Out(1)
        Sticky: ``timeout_cycles`` passed without R data while bursts were outstanding.
    stall_cycles : Out(32)
        Cycles with bursts outstanding and no R beat offered (memory latency and
        bandwidth stalls); saturates.
    clear : In(1)
        Clears ``error``, ``error_resp``, ``timeout`` and ``stall_cycles``.

    Latency and throughput
    ----------------------
    AR issues three cycles after a command is taken (two in the splitter, one in the AR
    register); then one burst every two cycles at most. Each R
    beat passes through the output FIFO: it appears on ``data`` two cycles after its R
    handshake (one with ``data_depth <= 2``). Full throughput: one beat per cycle while
    the slave delivers and ``data.ready`` is high. No combinational path from ``data.ready``
    to ``rready`` or from ``cmd`` to ``m_axi``.
    """

    def __init__(self, *, addr_width=32, data_width=64, length_width=24, max_burst_beats=256,
                 max_outstanding=4, cmd_depth=4, data_depth=4, timeout_cycles=1 << 16):
        check_bus_parameters(addr_width, data_width)
        check_burst_parameters(length_width, max_burst_beats)
        for name, value, lo in [("max_outstanding", max_outstanding, 1),
                                ("cmd_depth", cmd_depth, 1), ("data_depth", data_depth, 2),
                                ("timeout_cycles", timeout_cycles, 2)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        self._addr_width = addr_width
        self._max_burst_beats = max_burst_beats
        self._data_width = data_width
        self._length_width = length_width
        self._max_outstanding = max_outstanding
        self._cmd_depth = cmd_depth
        self._data_depth = data_depth
        self._timeout_cycles = timeout_cycles
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width, length_width))),
            "data": Out(stream.Signature(read_data_layout(data_width))),
            "m_axi": Out(read_signature(addr_width, data_width)),
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
        # Index of the last beat (beats - 1) of each accepted command, for first/last on the
        # R side (responses come in order: one ID).
        m.submodules.lengths = lengths = fifo.SyncFIFOBuffered(width=self._length_width,
                                                               depth=self._cmd_depth)
        m.submodules.out = out = StreamFifo(read_data_layout(self._data_width),
                                            self._data_depth)
        wiring.connect(m, wiring.flipped(self.data), out.o)

        # Commands: to the splitter and, when non-empty, their length to the R side.
        nonzero = self.cmd.payload.beats != 0
        m.d.comb += [
            splitter.cmd.payload.eq(self.cmd.payload),
            splitter.cmd.valid.eq(self.cmd.valid & lengths.w_rdy),
            self.cmd.ready.eq(splitter.cmd.ready & lengths.w_rdy),
            lengths.w_data.eq(self.cmd.payload.beats - 1),
            lengths.w_en.eq(self.cmd.valid & self.cmd.ready & nonzero),
        ]

        # AR: a register stage, issued while fewer than max_outstanding bursts are in flight.
        outstanding = Signal(range(self._max_outstanding + 1))
        r_done = Signal()               # the last beat of a burst is taken this cycle
        ar_take = Signal()
        m.d.comb += [
            axi.arid.eq(0),
            axi.arsize.eq(exact_log2(self._data_width // 8)),
            axi.arburst.eq(BURST_INCR),
            axi.arcache.eq(CACHE_NORMAL),
            axi.arprot.eq(0),
            ar_take.eq(splitter.burst.valid & (~axi.arvalid | axi.arready)
                       & (outstanding < self._max_outstanding)),
            splitter.burst.ready.eq(ar_take),
        ]
        with m.If(ar_take):
            m.d.sync += [axi.araddr.eq(splitter.burst.payload.addr),
                         axi.arlen.eq(splitter.burst.payload.len), axi.arvalid.eq(1)]
        with m.Elif(axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        m.d.sync += outstanding.eq(outstanding + ar_take - r_done)

        # R: count beats of the current command, mark first/last, push to the output FIFO.
        beat = Signal(self._length_width)
        r_take = Signal()
        m.d.comb += [
            axi.rready.eq(out.i.ready & lengths.r_rdy),
            r_take.eq(axi.rvalid & axi.rready),
            r_done.eq(r_take & axi.rlast),
            out.i.valid.eq(r_take),
            out.i.payload.data.eq(axi.rdata),
            out.i.payload.first.eq(beat == 0),
            out.i.payload.last.eq(beat == lengths.r_data),
            lengths.r_en.eq(r_take & (beat == lengths.r_data)),
        ]
        with m.If(r_take):
            m.d.sync += beat.eq(Mux(beat == lengths.r_data, 0, beat + 1))

        # Status: sticky error, stall counter, timeout.
        waiting = Signal(range(self._timeout_cycles + 1))
        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), self.error_resp.eq(0), self.timeout.eq(0),
                         self.stall_cycles.eq(0)]
        with m.Else():
            with m.If(r_take & (axi.rresp != RESP_OKAY) & ~self.error):
                m.d.sync += [self.error.eq(1), self.error_resp.eq(axi.rresp)]
            with m.If((outstanding != 0) & ~axi.rvalid & (self.stall_cycles != (1 << 32) - 1)):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
            with m.If(waiting == self._timeout_cycles):
                m.d.sync += self.timeout.eq(1)
        with m.If((outstanding == 0) | axi.rvalid):
            m.d.sync += waiting.eq(0)
        with m.Elif(waiting != self._timeout_cycles):
            m.d.sync += waiting.eq(waiting + 1)

        m.d.comb += self.busy.eq(self.cmd.valid | splitter.burst.valid | axi.arvalid
                                 | (outstanding != 0) | lengths.r_rdy | out.o.valid)
        return m
