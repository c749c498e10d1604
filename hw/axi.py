"""AXI4 building blocks shared by the read and write masters.

* :func:`read_signature` / :func:`write_signature` -- the AXI4 read and write channels as
  ``wiring.Signature``\\ s, from the master's side. A port named ``m_axi`` flattens to
  ``m_axi__araddr``, ``m_axi__rdata``, ... (cocotbext-axi:
  ``AxiReadBus.from_prefix(dut, "m_axi", bus_separator="__")``).
* :func:`command_layout` -- the command both masters take: a byte address and a length
  in **beats** (bus words).
* :class:`BurstSplitter` -- cuts a command into INCR bursts of at most ``max_burst_beats``
  beats that never cross a 4 KiB boundary.

The masters themselves are :class:`speedllm.hw.axi_read.AxiReadMaster` and
:class:`speedllm.hw.axi_write.AxiWriteMaster`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

__all__ = ["RESP_OKAY", "RESP_EXOKAY", "RESP_SLVERR", "RESP_DECERR", "BURST_INCR",
           "read_signature", "write_signature", "command_layout", "burst_layout",
           "BurstSplitter", "check_bus_parameters", "check_burst_parameters"]

RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3
BURST_INCR = 1
# AxCACHE 0b0011 (normal, non-cacheable, bufferable): what Zynq HP ports expect by default.
CACHE_NORMAL = 0b0011
BOUNDARY_BYTES = 4096


def check_bus_parameters(addr_width, data_width, id_width=1):
    """Validate AXI widths; raise ``ValueError`` naming the bad one."""
    if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
        raise ValueError(f"addr_width must be an integer in 12..64, not {addr_width!r}")
    if (not isinstance(data_width, int) or data_width < 32 or data_width > 1024
            or data_width & (data_width - 1)):
        raise ValueError(f"data_width must be a power of two in 32..1024, not {data_width!r}")
    if not isinstance(id_width, int) or not 1 <= id_width <= 16:
        raise ValueError(f"id_width must be an integer in 1..16, not {id_width!r}")


def check_burst_parameters(length_width, max_burst_beats):
    """Validate the command length width and the burst limit; raise ``ValueError``."""
    if not isinstance(length_width, int) or not 1 <= length_width <= 32:
        raise ValueError(f"length_width must be an integer in 1..32, not {length_width!r}")
    if not isinstance(max_burst_beats, int) or not 1 <= max_burst_beats <= 256:
        raise ValueError(f"max_burst_beats must be in 1..256, not {max_burst_beats!r}")


def read_signature(addr_width=32, data_width=64, id_width=1) -> wiring.Signature:
    """AXI4 read address (AR) and read data (R) channels, master side."""
    check_bus_parameters(addr_width, data_width, id_width)
    return wiring.Signature({
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arcache": Out(4), "arprot": Out(3),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def write_signature(addr_width=32, data_width=64, id_width=1) -> wiring.Signature:
    """AXI4 write address (AW), write data (W) and response (B) channels, master side."""
    check_bus_parameters(addr_width, data_width, id_width)
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awcache": Out(4), "awprot": Out(3),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


def command_layout(addr_width=32, length_width=24) -> data.StructLayout:
    """A transfer command: ``addr`` (bytes; the low bits below one beat are ignored) and
    ``beats`` (bus words, 0 = nothing to do). Fields in this order, ``addr`` in the low bits."""
    return data.StructLayout({"addr": addr_width, "beats": length_width})


def burst_layout(addr_width=32) -> data.StructLayout:
    """One burst: ``addr`` (beat-aligned), ``len`` (beats - 1, as AxLEN), ``last`` (the
    command's final burst)."""
    return data.StructLayout({"addr": addr_width, "len": 8, "last": 1})


class BurstSplitter(wiring.Component):
    """Cuts transfer commands into AXI4 INCR bursts.

    Parameters
    ----------
    addr_width, length_width : int
        Widths of the command fields (see :func:`command_layout`).
    bytes_per_beat : int
        Bus width in bytes (power of two, 4..128).
    max_burst_beats : int
        Longest burst (1..256). Bursts also stop at every 4 KiB boundary.

    Ports
    -----
    cmd : In(stream.Signature(command_layout(...)))
        Commands. Zero-beat commands are taken and dropped.
    burst : Out(stream.Signature(burst_layout(addr_width)))
        Bursts in address order; ``last`` marks the final burst of each command.

    Latency and throughput
    ----------------------
    Two cycles per burst at best: one computes the burst length from registers (beats
    left, room to the 4 KiB boundary, ``max_burst_beats``), the next offers the burst from
    registers. A command taken in cycle *n* offers its first burst in cycle *n + 2*.
    ``cmd.ready`` is high only while no command is being split. Bursts are usually long,
    so the AR/AW rate this allows is far above what the data channels can use.
    """

    def __init__(self, *, addr_width=32, length_width=24, bytes_per_beat=8,
                 max_burst_beats=256):
        check_bus_parameters(addr_width, bytes_per_beat * 8)
        check_burst_parameters(length_width, max_burst_beats)
        self._addr_width = addr_width
        self._length_width = length_width
        self._bytes_per_beat = bytes_per_beat
        self._max_burst_beats = max_burst_beats
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width, length_width))),
            "burst": Out(stream.Signature(burst_layout(addr_width))),
        })

    def elaborate(self, platform):
        m = Module()
        shift = exact_log2(self._bytes_per_beat)
        beat_addr_width = self._addr_width - shift
        page_bits = exact_log2(BOUNDARY_BYTES >> shift)   # log2 of beats per 4 KiB page
        page_beats = 1 << page_bits

        active = Signal()
        ready_to_offer = Signal()        # `count` and `last` hold this burst's values
        addr = Signal(beat_addr_width)   # current address in beats
        remaining = Signal(self._length_width)
        count = Signal(range(257))
        last = Signal()

        # Calculation cycle: count = min(remaining, max_burst_beats, beats to the boundary).
        in_page = addr[:page_bits] if page_bits else 0
        to_boundary = Signal(range(page_beats + 1))
        m.d.comb += to_boundary.eq(page_beats - in_page)
        cap = Signal(range(max(page_beats, self._max_burst_beats) + 1))
        m.d.comb += cap.eq(Mux(to_boundary < self._max_burst_beats, to_boundary,
                               self._max_burst_beats))
        with m.If(active & ~ready_to_offer):
            m.d.sync += [count.eq(Mux(remaining < cap, remaining, cap)),
                         last.eq(remaining <= cap), ready_to_offer.eq(1)]

        # Offer cycle(s): everything from registers.
        m.d.comb += [
            self.cmd.ready.eq(~active),
            self.burst.valid.eq(ready_to_offer),
            self.burst.payload.addr.eq(addr << shift),
            self.burst.payload.len.eq(count - 1),
            self.burst.payload.last.eq(last),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                addr.eq(self.cmd.payload.addr >> shift),
                remaining.eq(self.cmd.payload.beats),
                active.eq(self.cmd.payload.beats != 0),
            ]
        with m.If(self.burst.valid & self.burst.ready):
            m.d.sync += [addr.eq(addr + count), remaining.eq(remaining - count),
                         ready_to_offer.eq(0)]
            with m.If(last):
                m.d.sync += active.eq(0)
        return m
