"""RoPE unit: rotate each (x[2i], x[2i+1]) pair of q or k by the angle of (pos, i).

Golden: ``speedllm.golden.intops.rope(x, pos, head_size, tables)`` with the Q1.16 tables
of ``intops.build_rope_tables(head_size, seq_len)``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats, intops

from .matvec_pipeline import saturate_fast
from .tables import (act_packet_layout, check_positive_int, delayed, pipelined_product,
                     round_shift_const, table_rom)

#: Payload of the ``cs`` port in ``tables="stream"`` mode: one (cos, sin) entry per pair.
COS_SIN_LAYOUT = data.StructLayout({"cos": signed(formats.ROPE_BITS),
                                    "sin": signed(formats.ROPE_BITS)})


class RopeUnit(wiring.Component):
    """``y0 = sat32(round_shift(x0*c - x1*s, 16))``, ``y1 = sat32(round_shift(x0*s + x1*c, 16))``.

    The input is a packet of ``n_heads * head_size`` ACT values (all q heads or all k
    heads, element order as the Wq/Wk rows: head-major, then element); consecutive beats
    form the pairs. The pair index inside a head counts ``0 .. head_size/2 - 1`` and
    restarts with every head and with every packet.

    Parameters
    ----------
    head_size : int
        Elements per head (even).
    seq_len : int
        Positions of the ROM (``tables="rom"``).
    tables : "rom" or "stream"
        ``"rom"``: cos/sin for every (pos, pair) in two ROMs built from
        ``intops.build_rope_tables(head_size, seq_len)`` (``seq_len * head_size`` entries
        of 18 bits: 36 kbit for stories260K, 1.2 Mbit for stories110M). ``"stream"``: no ROM;
        the (cos, sin) entry of each pair arrives on ``cs`` (the compiler lays out the
        table rows of a position in DRAM and the read master repeats them per head).

    Ports
    -----
    i : In(stream), payload ``act_packet_layout(1)``
        ACT values, ``last`` on the final one (packet length a multiple of ``head_size``).
    pos : In(range(seq_len))
        The position (``tables="rom"``); hold it steady while a packet streams.
    cs : In(stream), payload ``COS_SIN_LAYOUT`` (``tables="stream"`` only)
        One (cos, sin) per pair, taken with the pair's second element.
    o : Out(stream), payload ``act_packet_layout(1)``
        The rotated values in input order, ``first``/``last`` copied from ``i``.

    Latency and throughput
    ----------------------
    One element per cycle in and out (two products, used by y0 and y1 in turn). A
    pair's first output is valid 6 cycles after its second element was taken (pair
    register, multiplier inputs, partial products, products, sum, rounded result). The
    pipeline stalls with ``o``.
    """

    def __init__(self, *, head_size: int, seq_len: int = 512, tables: str = "rom"):
        self._head_size = check_positive_int("head_size", head_size, minimum=2)
        if head_size % 2:
            raise ValueError(f"head_size must be even, not {head_size!r}")
        self._seq_len = check_positive_int("seq_len", seq_len)
        if tables not in ("rom", "stream"):
            raise ValueError(f"tables must be 'rom' or 'stream', not {tables!r}")
        self._tables = tables
        members = {
            "i": In(stream.Signature(act_packet_layout(1))),
            "o": Out(stream.Signature(act_packet_layout(1))),
        }
        if tables == "rom":
            members["pos"] = In(range(seq_len))
        else:
            members["cs"] = In(stream.Signature(COS_SIN_LAYOUT))
        super().__init__(members)

    @property
    def head_size(self) -> int:
        return self._head_size

    @property
    def seq_len(self) -> int:
        return self._seq_len

    @property
    def tables(self) -> str:
        return self._tables

    def elaborate(self, platform):
        m = Module()
        half = self._head_size // 2
        act, coef = signed(formats.ACT_BITS), signed(formats.ROPE_BITS)
        advance = ~self.o.valid | self.o.ready

        # The pair register feeds the pipeline two elements, y0 then y1; both are
        # "a * c -/+ b * s": y0 = x0*c - x1*s (a = x0, b = x1), y1 = x1*c + x0*s.
        pair_full, phase = Signal(), Signal()
        p0, p1 = Signal(act), Signal(act)
        p_cos, p_sin = Signal(coef), Signal(coef)
        p_first, p_last = Signal(), Signal()
        issue = pair_full & advance
        can_load = ~pair_full | (phase & advance)

        # Collector: the first element of a pair waits for the second.
        have_x0 = Signal()
        x0 = Signal(act)
        x0_first = Signal()
        pair = Signal(range(half))
        take_x0 = self.i.valid & ~have_x0
        take_x1 = self.i.valid & have_x0 & can_load
        if self._tables == "stream":
            take_x1 = take_x1 & self.cs.valid
            m.d.comb += self.cs.ready.eq(take_x1)
        m.d.comb += self.i.ready.eq(take_x0 | take_x1)

        cos_now, sin_now = Signal(coef), Signal(coef)
        if self._tables == "rom":
            rope = intops.build_rope_tables(self._head_size, self._seq_len)
            m.submodules.cos_rom = cos_rom = table_rom(rope.cos)
            m.submodules.sin_rom = sin_rom = table_rom(rope.sin)
            cos_rp, sin_rp = cos_rom.read_port(), sin_rom.read_port()
            base = Signal(range(self._seq_len * half))
            m.d.sync += base.eq(self.pos * half)
            for rp in (cos_rp, sin_rp):
                # Read while the pair's first element is taken; the data waits in the port.
                m.d.comb += [rp.addr.eq(base + pair), rp.en.eq(take_x0)]
            m.d.comb += [cos_now.eq(cos_rp.data), sin_now.eq(sin_rp.data)]
        else:
            m.d.comb += [cos_now.eq(self.cs.payload.cos), sin_now.eq(self.cs.payload.sin)]

        with m.If(take_x0):
            m.d.sync += [have_x0.eq(1), x0.eq(self.i.payload.data),
                         x0_first.eq(self.i.payload.first)]
        with m.If(issue):
            m.d.sync += phase.eq(~phase)
            with m.If(phase):
                m.d.sync += pair_full.eq(0)
        with m.If(take_x1):
            m.d.sync += [
                have_x0.eq(0),
                pair.eq(Mux(self.i.payload.last | (pair == half - 1), 0, pair + 1)),
                pair_full.eq(1), phase.eq(0),
                p0.eq(x0), p1.eq(self.i.payload.data), p_cos.eq(cos_now), p_sin.eq(sin_now),
                p_first.eq(x0_first), p_last.eq(self.i.payload.last),
            ]

        # Stage 1: multiplier inputs. 2-3: products (DSP-sized partial products, then their
        # sum). 4: y = ac -/+ bs. Output: rounded, saturated.
        s1_v, s1_add, s1_first, s1_last = Signal(), Signal(), Signal(), Signal()
        s1_a, s1_b = Signal(act), Signal(act)
        s1_c, s1_s = Signal(coef), Signal(coef)
        with m.If(advance):
            m.d.sync += [
                s1_v.eq(issue), s1_add.eq(phase),
                s1_a.eq(Mux(phase, p1, p0)), s1_b.eq(Mux(phase, p0, p1)),
                s1_c.eq(p_cos), s1_s.eq(p_sin),
                s1_first.eq(~phase & p_first), s1_last.eq(phase & p_last),
            ]
        ac, ac_latency = pipelined_product(m, s1_a, s1_c, enable=advance, name="ac")
        bs, _ = pipelined_product(m, s1_b, s1_s, enable=advance, name="bs")
        s2_v, s2_add, s2_first, s2_last = (
            delayed(m, sig, ac_latency, enable=advance, name=name)
            for sig, name in ((s1_v, "v"), (s1_add, "add"), (s1_first, "first"),
                              (s1_last, "last")))
        s3_v, s3_first, s3_last = Signal(), Signal(), Signal()
        s3_sum = Signal(signed(len(ac) + 1))
        with m.If(advance):
            m.d.sync += [
                s3_v.eq(s2_v), s3_first.eq(s2_first), s3_last.eq(s2_last),
                s3_sum.eq(Mux(s2_add, ac + bs, ac - bs)),
                self.o.valid.eq(s3_v),
                self.o.payload.first.eq(s3_first), self.o.payload.last.eq(s3_last),
                self.o.payload.data.eq(saturate_fast(round_shift_const(s3_sum,
                                                                       formats.ROPE_FRAC),
                                                     formats.ACT_BITS)),
            ]
        return m
