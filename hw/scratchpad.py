"""Banked on-chip scratchpad: the activation buffers the memory plan assigns.

Each bank is one ``lib.memory.Memory`` (a simple dual-port block RAM: one write port, one
read port), so one bank can be read while another -- or the same one -- is written.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .tables import check_positive_int


def write_layout(banks: int, depth: int, width: int) -> data.StructLayout:
    """A ``w`` beat: one word to ``bank`` at ``addr``."""
    return data.StructLayout({"bank": range(banks), "addr": range(depth), "data": unsigned(width)})


def read_command_layout(banks: int, depth: int) -> data.StructLayout:
    """An ``r_cmd`` beat: read ``count`` words of ``bank`` from ``addr`` on."""
    return data.StructLayout({"bank": range(banks), "addr": range(depth),
                              "count": range(depth + 1)})


def read_data_layout(width: int) -> data.StructLayout:
    """An ``r_data`` beat: one word, ``first``/``last`` of its command."""
    return data.StructLayout({"data": unsigned(width), "first": 1, "last": 1})


class Scratchpad(wiring.Component):
    """``banks`` x ``depth`` words of ``width`` bits, one word written and one read per cycle.

    Parameters
    ----------
    banks : int
        Number of banks (independent buffers).
    depth : int
        Words per bank.
    width : int
        Bits per word (32 for one ACT value; wider words hold several lanes).

    Ports
    -----
    w : In(stream), payload :func:`write_layout` ``{bank, addr, data}``
        One word written per beat; always ready (a write never stalls).
    r_cmd : In(stream), payload :func:`read_command_layout` ``{bank, addr, count}``
        Read ``count`` consecutive words of ``bank`` starting at ``addr``
        (``addr + count <= depth``). A command with ``count == 0`` is consumed and reads
        nothing.
    r_data : Out(stream), payload :func:`read_data_layout` ``{data, first, last}``
        The words in address order, ``first`` on the first and ``last`` on the final word
        of each command.

    Latency and throughput
    ----------------------
    Writes take effect at the clock edge that accepts them. A read returns the word one
    cycle after the command beat is taken (the block RAM's output register is the stream's
    payload register). Read-during-write of one address returns the *old* word (the read
    port is not transparent). Reads stream one word per cycle with no bubble between
    back-to-back commands; ``r_cmd`` is taken when its final word is issued, so ``r_cmd.ready``
    also pulses once per command. When ``r_data`` stalls, reads stall (no data is lost).
    """

    def __init__(self, *, banks: int = 4, depth: int = 512, width: int = 32):
        self._banks = check_positive_int("banks", banks)
        self._depth = check_positive_int("depth", depth)
        self._width = check_positive_int("width", width)
        super().__init__({
            "w": In(stream.Signature(write_layout(banks, depth, width))),
            "r_cmd": In(stream.Signature(read_command_layout(banks, depth))),
            "r_data": Out(stream.Signature(read_data_layout(width))),
        })

    @property
    def banks(self) -> int:
        return self._banks

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        cmd = self.r_cmd.payload

        # Burst state: the words still to issue after the first one.
        busy = Signal()
        cur_bank = Signal(range(self._banks))
        cur_addr = Signal(range(self._depth))
        left = Signal(range(self._depth + 1))

        issue_valid = Signal()
        issue_bank = Signal(range(self._banks))
        issue_addr = Signal(range(self._depth))
        issue_first = Signal()
        issue_last = Signal()
        with m.If(busy):
            m.d.comb += [
                issue_valid.eq(1), issue_bank.eq(cur_bank), issue_addr.eq(cur_addr),
                issue_first.eq(0), issue_last.eq(left == 1),
            ]
        with m.Else():
            m.d.comb += [
                issue_valid.eq(self.r_cmd.valid & (cmd.count != 0)),
                issue_bank.eq(cmd.bank), issue_addr.eq(cmd.addr),
                issue_first.eq(1), issue_last.eq(cmd.count == 1),
            ]

        advance = ~self.r_data.valid | self.r_data.ready
        fire = issue_valid & advance
        m.d.comb += self.r_cmd.ready.eq(advance & Mux(busy, left == 1, cmd.count <= 1))
        with m.If(fire):
            with m.If(busy):
                m.d.sync += [cur_addr.eq(cur_addr + 1), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += busy.eq(0)
            with m.Elif(cmd.count > 1):
                m.d.sync += [
                    busy.eq(1), cur_bank.eq(cmd.bank), cur_addr.eq(cmd.addr + 1),
                    left.eq(cmd.count - 1),
                ]

        out_bank = Signal(range(self._banks))
        with m.If(advance):
            m.d.sync += [
                self.r_data.valid.eq(fire), out_bank.eq(issue_bank),
                self.r_data.payload.first.eq(issue_first),
                self.r_data.payload.last.eq(issue_last),
            ]

        m.d.comb += self.w.ready.eq(1)
        read_words = []
        for index in range(self._banks):
            mem = Memory(shape=unsigned(self._width), depth=self._depth, init=[])
            m.submodules[f"bank{index}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [
                wp.addr.eq(self.w.payload.addr), wp.data.eq(self.w.payload.data),
                wp.en.eq(self.w.valid & (self.w.payload.bank == index)),
                rp.addr.eq(issue_addr), rp.en.eq(advance),
            ]
            read_words.append(rp.data)
        word = read_words[0]
        for index in range(1, self._banks):
            word = Mux(out_bank == index, read_words[index], word)
        m.d.comb += self.r_data.payload.data.eq(word)
        return m
