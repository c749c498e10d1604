"""SwiGLU unit: ``silu(h1) * h3`` from interleaved W1/W3 row results (the W1/W3 epilogue).

Golden: ``speedllm.golden.intops.swiglu(h1, h3)`` with ``intops.sigmoid``/``silu`` and the
table of ``intops.build_sigmoid_table()``, held here in a ROM built from that array.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats, intops

from .matvec_pipeline import saturate_fast
from .tables import act_packet_layout, delayed, pipelined_product, round_shift_const, table_rom

#: Fraction bits of the interpolation: ``|x|`` in Q16.16 over a table of 2**B steps on [0, 16).
_FRAC_BITS = formats.ACT_FRAC + formats.SIGMOID_RANGE_LOG2 - formats.SIGMOID_TABLE_BITS
_ONE = 1 << formats.SIGMOID_FRAC


class SwiGluUnit(wiring.Component):
    """``o[j] = sat32(round_shift(silu(h1[j]) * h3[j], 16))`` for a stream of (h1, h3) pairs.

    ``sigmoid(x)``: ``a = |x|``; for ``a < 2**20`` (|x| < 16) ``T[a >> 11] +
    round_shift((T[j+1] - T[j]) * (a & 0x7ff), 11)`` from the 513-entry ROM, else 1.0; for
    ``x < 0`` it is ``1 - sigmoid(|x|)``. ``silu = sat32(round_shift(x * sigmoid, 16))``.

    Ports
    -----
    i : In(stream), payload ``act_packet_layout(1)``
        Interleaved pairs: ``h1[0], h3[0], h1[1], h3[1], ...`` (the compiler interleaves the
        W1 and W3 rows so one matvec stream delivers both). ``first`` of ``h1[0]`` and
        ``last`` of ``h3[n-1]`` mark the vector.
    o : Out(stream), payload ``act_packet_layout(1)``
        One ACT value per pair, ``first``/``last`` from the pair's ``h1``/``h3`` beats.

    Latency and throughput
    ----------------------
    Two input beats per output beat, one input beat per cycle. A result is valid 10
    cycles after its ``h3`` was taken (pair register, interpolation product, sigmoid,
    ``x * sig`` in 2 stages, silu, ``silu * h3`` in 3 stages of DSP-sized partial
    products, rounded result); the pipeline stalls with ``o``.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(act_packet_layout(1))),
            "o": Out(stream.Signature(act_packet_layout(1))),
        })

    def elaborate(self, platform):
        m = Module()
        act = signed(formats.ACT_BITS)
        sig_shape = unsigned(formats.SIGMOID_FRAC + 1)
        table = intops.build_sigmoid_table()
        m.submodules.sigmoid_rom = rom = table_rom(table)
        rp_lo, rp_hi = rom.read_port(), rom.read_port()

        advance = ~self.o.valid | self.o.ready
        have_h1 = Signal()
        take_h1 = self.i.valid & ~have_h1
        take_h3 = self.i.valid & have_h1 & advance
        m.d.comb += self.i.ready.eq(take_h1 | take_h3)

        # Pairing register, with the table index of h1 read meanwhile.
        x = self.i.payload.data
        magnitude = Signal(formats.ACT_BITS + 1)
        m.d.comb += magnitude.eq(Mux(x < 0, -x, x))
        inside = magnitude < (1 << (formats.ACT_FRAC + formats.SIGMOID_RANGE_LOG2))
        index = magnitude[_FRAC_BITS:_FRAC_BITS + formats.SIGMOID_TABLE_BITS]
        h1 = Signal(act)
        h1_first, h1_inside, h1_neg = Signal(), Signal(), Signal()
        h1_frac = Signal(_FRAC_BITS)
        m.d.comb += [rp_lo.addr.eq(index), rp_hi.addr.eq(index + 1),
                     rp_lo.en.eq(take_h1), rp_hi.en.eq(take_h1)]
        with m.If(take_h1):
            m.d.sync += [have_h1.eq(1), h1.eq(x), h1_first.eq(self.i.payload.first),
                         h1_inside.eq(inside), h1_neg.eq(x < 0),
                         h1_frac.eq(magnitude[:_FRAC_BITS])]
        with m.If(take_h3):
            m.d.sync += have_h1.eq(0)

        # Stage 1: pair registered (multiplier inputs). Stage 2: interpolation product.
        # Stage 3: sigmoid. Then x * sigmoid (pipelined), silu, silu * h3 (pipelined), o.
        s1_v, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_h1, s1_h3 = Signal(act), Signal(act)
        entry = signed(sig_shape.width + 1)
        s1_lo, s1_hi = Signal(entry), Signal(entry)
        s1_frac = Signal(_FRAC_BITS)
        s1_inside, s1_neg = Signal(), Signal()
        s2_lo = Signal(entry)
        s2_step = Signal(signed(entry.width + 1 + _FRAC_BITS))
        s3_sig = Signal(sig_shape)
        silu = Signal(act)
        with m.If(advance):
            m.d.sync += [
                s1_v.eq(take_h3), s1_first.eq(h1_first), s1_last.eq(self.i.payload.last),
                s1_h1.eq(h1), s1_h3.eq(x), s1_lo.eq(rp_lo.data), s1_hi.eq(rp_hi.data),
                s1_frac.eq(h1_frac), s1_inside.eq(h1_inside), s1_neg.eq(h1_neg),
                s2_lo.eq(s1_lo), s2_step.eq((s1_hi - s1_lo) * s1_frac),
            ]
        s2_inside = delayed(m, s1_inside, 1, enable=advance, name="inside")
        s2_neg = delayed(m, s1_neg, 1, enable=advance, name="neg")
        sig_abs = Mux(s2_inside, s2_lo + round_shift_const(s2_step, _FRAC_BITS), _ONE)
        with m.If(advance):
            m.d.sync += s3_sig.eq(Mux(s2_neg, _ONE - sig_abs, sig_abs))
        s3_h1 = delayed(m, s1_h1, 2, enable=advance, name="h1")
        xs, xs_latency = pipelined_product(m, s3_h1, s3_sig, enable=advance, name="x_sig")
        with m.If(advance):
            m.d.sync += silu.eq(saturate_fast(round_shift_const(xs, formats.SIGMOID_FRAC),
                                         formats.ACT_BITS))
        silu_h3 = delayed(m, s1_h3, 3 + xs_latency, enable=advance, name="h3")
        prod, prod_latency = pipelined_product(m, silu, silu_h3, enable=advance,
                                               name="silu_h3")
        latency = 3 + xs_latency + prod_latency + 1      # stage 1 .. o
        with m.If(advance):
            m.d.sync += [
                self.o.payload.data.eq(saturate_fast(round_shift_const(prod, formats.ACT_FRAC),
                                                formats.ACT_BITS)),
                self.o.valid.eq(delayed(m, s1_v, latency - 1, enable=advance, name="valid")),
                self.o.payload.first.eq(delayed(m, s1_first, latency - 1, enable=advance,
                                                name="first")),
                self.o.payload.last.eq(delayed(m, s1_last, latency - 1, enable=advance,
                                               name="last")),
            ]
        self._latency = latency
        return m
