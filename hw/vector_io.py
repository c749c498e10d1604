"""Vector reads and writes of the accelerator top: elements <-> 64-bit memory beats.

The operator units of the top see memory through *slots*: a read slot takes transfer
commands ``{addr, beats, space}`` and returns the beats; a write slot takes the same
commands and the beats to write. ``space`` picks the on-chip scratchpad
(:data:`SPACE_SCRATCHPAD`) or DRAM (:data:`SPACE_DRAM`); the top's routers
(:mod:`speedllm.hw.slot_router`) send each command to the scratchpad or to the slot's AXI4
master. Only one unit runs at a time, so the units share the slots.

* :class:`VectorReader`: ``count`` elements of 32 bits (ACT) or 16 bits (X16 mantissas,
  KV words; sign-extended) from a byte address -> a stream of int32 elements.
* :class:`VectorWriter`: a stream of elements -> packed beats at a beat-aligned byte
  address. The final beat is padded with zero elements: a write covers
  ``ceil(bytes / 8) * 8`` bytes, which stays inside the destination tensor because the
  memory plan aligns every tensor's offset *and* size to a beat
  (:data:`speedllm.ops.memplan.DEFAULT_ALIGN`).

Element order is memory order, little-endian, exactly the byte formats of
:mod:`speedllm.ops.dram_format`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi_read import read_data_layout
from .axi_write import write_data_layout
from .tables import act_packet_layout

__all__ = ["SPACE_SCRATCHPAD", "SPACE_DRAM", "BEAT_BITS", "transfer_layout",
           "vector_command_layout", "ReadSlotSignature", "WriteSlotSignature",
           "VectorReader", "VectorWriter"]

SPACE_SCRATCHPAD = 0
SPACE_DRAM = 1
BEAT_BITS = 64
BEAT_BYTES = BEAT_BITS // 8
COUNT_BITS = 24


def transfer_layout() -> data.StructLayout:
    """A slot command: ``addr`` (bytes, beat aligned), ``beats``, ``space``."""
    return data.StructLayout({"addr": 32, "beats": 24, "space": 1})


def vector_command_layout() -> data.StructLayout:
    """A vector: ``addr`` (bytes), ``count`` elements, ``half`` (16-bit elements), ``space``."""
    return data.StructLayout({"addr": 32, "count": COUNT_BITS, "half": 1, "space": 1})


class ReadSlotSignature(wiring.Signature):
    """A unit's read slot (the unit's side is ``Out``): ``cmd`` out, ``data`` beats in."""

    def __init__(self):
        super().__init__({"cmd": Out(stream.Signature(transfer_layout())),
                          "data": In(stream.Signature(read_data_layout(BEAT_BITS)))})


class WriteSlotSignature(wiring.Signature):
    """A unit's write slot: ``cmd`` and ``data`` out; ``busy`` in (writes not yet done:
    a unit reports ``done`` only once its writes have landed)."""

    def __init__(self):
        super().__init__({"cmd": Out(stream.Signature(transfer_layout())),
                          "data": Out(stream.Signature(write_data_layout(BEAT_BITS))),
                          "busy": In(1)})


def _beats(byte_offset, count, half):
    """Beats covering ``count`` elements starting ``byte_offset`` bytes into a beat."""
    nbytes = byte_offset + Mux(half, count << 1, count << 2)
    return (nbytes + (BEAT_BYTES - 1)) >> 3


class VectorReader(wiring.Component):
    """Reads one vector of elements through a read slot.

    Ports
    -----
    cmd : In(stream(vector_command_layout()))
        ``addr`` must be a multiple of the element size; ``count == 0`` reads nothing.
        Taken when the previous vector's last element has left ``o``.
    o : Out(stream(act_packet_layout(1)))
        The elements (16-bit ones sign-extended), ``first``/``last`` on the ends.
    mem : Out(ReadSlotSignature())
        The slot.
    busy : Out(1)
        A vector is being read.

    Latency and throughput
    ----------------------
    One element per cycle while beats arrive (a 16-bit vector needs a beat every 4 cycles,
    a 32-bit one every 2). The slot command issues the cycle after ``cmd`` is taken; the
    first element follows the first beat by one cycle.
    """

    def __init__(self):
        super().__init__({"cmd": In(stream.Signature(vector_command_layout())),
                          "o": Out(stream.Signature(act_packet_layout(1))),
                          "mem": Out(ReadSlotSignature()), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        half = Signal()
        left = Signal(COUNT_BITS)            # elements still to emit
        issued = Signal()                    # the slot command has been taken
        beat = Signal(BEAT_BITS)
        have = Signal()                      # `beat` holds unread elements
        idx = Signal(2)                      # next element inside `beat`
        skip = Signal(2)                     # first element of the first beat
        first = Signal()
        busy = Signal()
        m.d.comb += self.busy.eq(busy)

        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(self.cmd.valid & ~busy):
            c = self.cmd.payload
            offset = c.addr[:3]
            m.d.sync += [
                half.eq(c.half), left.eq(c.count), busy.eq(c.count != 0), issued.eq(0),
                first.eq(1), have.eq(0),
                skip.eq(Mux(c.half, offset >> 1, offset >> 2)),
                self.mem.cmd.payload.addr.eq(c.addr & ~(BEAT_BYTES - 1)),
                self.mem.cmd.payload.beats.eq(_beats(offset, c.count, c.half)),
                self.mem.cmd.payload.space.eq(c.space),
            ]
        m.d.comb += self.mem.cmd.valid.eq(busy & ~issued)
        with m.If(self.mem.cmd.valid & self.mem.cmd.ready):
            m.d.sync += issued.eq(1)

        # The current element of `beat`.
        words16 = [beat[16 * k:16 * (k + 1)].as_signed() for k in range(4)]
        words32 = [beat[32 * k:32 * (k + 1)].as_signed() for k in range(2)]
        element = Signal(signed(32))
        with m.Switch(Mux(half, idx, idx[0] | 4)):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += element.eq(words16[k])
            for k in range(2):
                with m.Case(k | 4):
                    m.d.comb += element.eq(words32[k])
        last_in_beat = Mux(half, idx == 3, idx[0] == 1)

        m.d.comb += [self.o.valid.eq(have), self.o.payload.data.eq(element),
                     self.o.payload.first.eq(first), self.o.payload.last.eq(left == 1)]
        fire = self.o.valid & self.o.ready
        with m.If(fire):
            m.d.sync += [idx.eq(idx + 1), left.eq(left - 1), first.eq(0)]
            with m.If(last_in_beat | (left == 1)):
                m.d.sync += have.eq(0)
            with m.If(left == 1):
                m.d.sync += busy.eq(0)
        # Take the next beat when the current one is used up (or ends now). Beats after
        # the vector's last element (none, by construction) would be dropped.
        empty_next = ~have | (fire & (last_in_beat | (left == 1)))
        m.d.comb += self.mem.data.ready.eq(empty_next & (~busy | issued))
        with m.If(self.mem.data.valid & self.mem.data.ready):
            m.d.sync += beat.eq(self.mem.data.payload.data)
            with m.If(busy & ~(fire & (left == 1))):
                m.d.sync += [have.eq(1), idx.eq(Mux(first, skip, 0))]
        return m


class VectorWriter(wiring.Component):
    """Writes one vector of elements through a write slot.

    Ports
    -----
    cmd : In(stream(vector_command_layout()))
        ``addr`` beat aligned. Taken when the previous vector's last beat has been handed
        to the slot.
    i : In(stream(act_packet_layout(1)))
        ``count`` elements (the low 16 bits of each with ``half``); markers ignored.
    mem : Out(WriteSlotSignature())
        The slot.
    idle : Out(1)
        No vector in progress and the slot's writes have landed.

    Latency and throughput
    ----------------------
    One element per cycle; a beat goes to the slot the cycle after its last element (or
    the vector's last element) arrives.
    """

    def __init__(self):
        super().__init__({"cmd": In(stream.Signature(vector_command_layout())),
                          "i": In(stream.Signature(act_packet_layout(1))),
                          "mem": Out(WriteSlotSignature()), "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        half = Signal()
        left = Signal(COUNT_BITS)
        busy = Signal()
        issued = Signal()
        acc = Signal(BEAT_BITS)
        idx = Signal(2)
        full = Signal()                      # `acc` is a beat waiting for the slot

        m.d.comb += [self.cmd.ready.eq(~busy),
                     self.idle.eq(~busy & ~self.mem.busy)]
        with m.If(self.cmd.valid & ~busy):
            c = self.cmd.payload
            m.d.sync += [half.eq(c.half), left.eq(c.count), busy.eq(c.count != 0),
                         issued.eq(0), idx.eq(0), acc.eq(0),
                         self.mem.cmd.payload.addr.eq(c.addr & ~(BEAT_BYTES - 1)),
                         self.mem.cmd.payload.beats.eq(_beats(0, c.count, c.half)),
                         self.mem.cmd.payload.space.eq(c.space)]
        m.d.comb += self.mem.cmd.valid.eq(busy & ~issued)
        with m.If(self.mem.cmd.valid & self.mem.cmd.ready):
            m.d.sync += issued.eq(1)

        m.d.comb += [self.mem.data.valid.eq(full), self.mem.data.payload.data.eq(acc)]
        sent = self.mem.data.valid & self.mem.data.ready
        with m.If(sent):
            m.d.sync += [full.eq(0), acc.eq(0)]
            with m.If(left == 0):
                m.d.sync += busy.eq(0)

        m.d.comb += self.i.ready.eq(busy & (left != 0) & (~full | sent))
        with m.If(self.i.valid & self.i.ready):
            x = self.i.payload.data
            m.d.sync += [left.eq(left - 1), idx.eq(idx + 1)]
            base = Mux(sent, 0, acc)
            with m.If(half):
                for k in range(4):
                    with m.If(idx == k):
                        m.d.sync += acc.eq(base | (x[:16].as_unsigned() << (16 * k)))
                with m.If((idx == 3) | (left == 1)):
                    m.d.sync += [full.eq(1), idx.eq(0)]
            with m.Else():
                for k in range(2):
                    with m.If(idx[0] == k):
                        m.d.sync += acc.eq(base | (x.as_unsigned() << (32 * k)))
                with m.If((idx[0] == 1) | (left == 1)):
                    m.d.sync += [full.eq(1), idx.eq(0)]
        return m
