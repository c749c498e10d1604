"""Command fetcher: reads the command program from DRAM, one 64-byte command at a time.

The program is a run of :data:`speedllm.ops.isa.COMMAND_BYTES`-byte little-endian
commands ending with ``END`` (opcode 0). The fetcher reads them through its own
:class:`~speedllm.hw.axi_read.AxiReadMaster` and emits each as a decoded command struct
(:func:`speedllm.ops.isa.struct_layout`, the same field table as the software encoder),
with its index in the program. It reads one command ahead of the consumer and never reads
past ``END``.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import COMMAND_BYTES, Epilogue, Opcode, struct_layout

from .accel_regs import ErrorCode
from .axi import check_bus_parameters, read_signature
from .axi_read import AxiReadMaster

__all__ = ["CommandFetcher", "fetched_layout"]

COMMAND_BITS = 8 * COMMAND_BYTES
MAX_OPCODE = max(Opcode)
MAX_EPILOGUE = max(Epilogue)


def fetched_layout() -> data.StructLayout:
    """One fetched command: ``command`` (the ISA record, low bits) and its ``index``."""
    return data.StructLayout({"command": struct_layout(), "index": 32})


class CommandFetcher(wiring.Component):
    """Fetches and decodes the command program.

    Parameters
    ----------
    addr_width : int
        AXI address width (default 32).
    data_width : int
        AXI data width in bits (32..512, a power of two; default 64): a command is
        ``512 / data_width`` beats, read as one burst.

    Ports
    -----
    start : In(1)
        Pulse: fetch the program at ``program_addr`` (a byte address, aligned to a command;
        ignored while ``busy``). Clears ``error`` and ``bytes_read``.
    abort : In(1)
        Pulse: stop fetching at once; a command waiting on ``o`` is dropped, a read in
        flight is drained before the next fetch.
    program_addr : In(addr_width)
        Byte address of command 0, sampled with ``start``.
    timeout_cycles : In(32)
        Cycles without a data beat while a read is outstanding that end the fetch with
        ``BUS_TIMEOUT`` (0: wait for ever).
    o : Out(stream.Signature(fetched_layout()))
        Commands in program order, ``END`` included (the last one of a run).
    busy : Out(1)
        A fetch is running, or a command waits on ``o``.
    error : Out(1), error_code : Out(8), error_index : Out(32)
        Set when a fetch fails (until the next ``start``): the
        :class:`~speedllm.hw.accel_regs.ErrorCode` (``AXI_READ``: SLVERR/DECERR on any
        beat of the command; ``BUS_TIMEOUT``; ``BAD_OPCODE``: an opcode or epilogue outside
        the ISA) and the index of the command that failed. Commands before it have been
        (or still are) offered on ``o``; nothing after it is.
    bytes_read : Out(32)
        Bytes of commands read since ``start`` (beats drained after a timeout excluded).
    read_beat : Out(1)
        A beat of a command (``data_width / 8`` bytes) arrives this cycle.
    stall : Out(1)
        High in cycles spent waiting for the bus (a read outstanding, no beat arriving).
    m_axi : Out(read_signature(addr_width, data_width))
        The AXI4 read channels.

    Latency and throughput
    ----------------------
    A command costs one burst of ``512 / data_width`` beats plus ~4 cycles of overhead
    (read master latency, the opcode check); the next command's read starts as soon as a
    command is decoded, so its fetch overlaps the consumer's work on the previous one.

    A read left outstanding by a timeout is drained (its beats dropped) before the next
    fetch starts; if the bus never answers, every later fetch times out as well.
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64):
        check_bus_parameters(addr_width, data_width)
        if data_width > COMMAND_BITS:
            raise ValueError(f"data_width must be at most {COMMAND_BITS} (one command), "
                             f"not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        self._beats = COMMAND_BITS // data_width
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "program_addr": In(addr_width),
            "timeout_cycles": In(32),
            "o": Out(stream.Signature(fetched_layout())),
            "busy": Out(1),
            "error": Out(1),
            "error_code": Out(8),
            "error_index": Out(32),
            "bytes_read": Out(32),
            "read_beat": Out(1),
            "stall": Out(1),
            "m_axi": Out(read_signature(addr_width, data_width)),
        })

    @property
    def data_width(self):
        return self._data_width

    @property
    def beats_per_command(self):
        return self._beats

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = AxiReadMaster(
            addr_width=self._addr_width, data_width=self._data_width, length_width=8,
            max_burst_beats=self._beats, max_outstanding=1, cmd_depth=2, data_depth=2)
        wiring.connect(m, wiring.flipped(self.m_axi), reader.m_axi)

        addr = Signal(self._addr_width)        # byte address of the command being read
        index = Signal(32)                     # its index in the program
        word = Signal(COMMAND_BITS)            # beats shifted in, first beat ends lowest
        beat = Signal(range(self._beats))
        waiting = Signal(32)                   # cycles without a beat while a read is due
        timed_out = Signal()
        m.d.comb += timed_out.eq((self.timeout_cycles != 0)
                                 & (waiting >= self.timeout_cycles))
        decoded = data.View(struct_layout(), word)
        bad_command = Signal()
        m.d.comb += bad_command.eq((decoded.opcode > MAX_OPCODE)
                                   | (decoded.epilogue > MAX_EPILOGUE))

        beat_taken = Signal()
        collecting = Signal()                  # beats of the current command (not drained)
        m.d.comb += [
            reader.cmd.payload.addr.eq(addr),
            reader.cmd.payload.beats.eq(self._beats),
            beat_taken.eq(reader.data.valid & reader.data.ready),
            self.read_beat.eq(beat_taken & collecting),
        ]
        with m.If(self.start & ~self.busy):
            m.d.sync += self.bytes_read.eq(0)
        with m.Elif(self.read_beat):
            m.d.sync += self.bytes_read.eq(self.bytes_read + self._data_width // 8)

        # The output register: a decoded command waits here for the consumer.
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def fail(code):
            m.d.sync += [self.error.eq(1), self.error_code.eq(code),
                         self.error_index.eq(index)]
            m.next = "Idle"

        def stop_on_abort():            # last in a state, so it wins over its transitions
            with m.If(self.abort):
                m.next = "Idle"

        with m.FSM() as fsm:
            with m.State("Idle"):
                m.d.comb += reader.data.ready.eq(1)        # drop beats of a timed-out read
                with m.If(self.start & ~self.o.valid):
                    m.d.sync += [addr.eq(self.program_addr), index.eq(0), waiting.eq(0),
                                 self.error.eq(0), self.error_code.eq(ErrorCode.NONE),
                                 self.error_index.eq(0)]
                    m.next = "Drain"
            with m.State("Drain"):
                # A read abandoned by an earlier timeout must finish before a new one.
                m.d.comb += reader.data.ready.eq(1)
                m.d.sync += waiting.eq(waiting + 1)
                with m.If(~reader.busy):
                    m.d.sync += waiting.eq(0)
                    m.next = "Issue"
                with m.Elif(timed_out):
                    fail(ErrorCode.BUS_TIMEOUT)
                stop_on_abort()
            with m.State("Issue"):
                m.d.comb += [reader.cmd.valid.eq(1), reader.clear.eq(1)]
                with m.If(reader.cmd.ready):
                    m.d.sync += [beat.eq(0), waiting.eq(0)]
                    m.next = "Collect"
                stop_on_abort()
            with m.State("Collect"):
                m.d.comb += [reader.data.ready.eq(1), self.stall.eq(~reader.data.valid),
                             collecting.eq(1)]
                with m.If(beat_taken):
                    m.d.sync += [word.eq(Cat(word[self._data_width:],
                                             reader.data.payload.data)),
                                 beat.eq(beat + 1), waiting.eq(0)]
                    with m.If(beat == self._beats - 1):
                        m.next = "Check"
                with m.Else():
                    m.d.sync += waiting.eq(waiting + 1)
                    with m.If(timed_out):
                        fail(ErrorCode.BUS_TIMEOUT)
                stop_on_abort()
            with m.State("Check"):
                with m.If(reader.error):
                    fail(ErrorCode.AXI_READ)
                with m.Elif(bad_command):
                    fail(ErrorCode.BAD_OPCODE)
                with m.Elif(~self.o.valid | self.o.ready):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.command.eq(word),
                                 self.o.payload.index.eq(index)]
                    with m.If(decoded.opcode == Opcode.END):
                        m.next = "Idle"
                    with m.Else():
                        m.d.sync += [addr.eq(addr + COMMAND_BYTES), index.eq(index + 1)]
                        m.next = "Issue"
                stop_on_abort()
        with m.If(self.abort):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.busy.eq(~fsm.ongoing("Idle") | self.o.valid)
        return m
