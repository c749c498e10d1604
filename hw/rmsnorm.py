"""RMSNorm unit: ACT vector in, ``intops.rmsnorm`` out, bit for bit.

Golden: ``speedllm.golden.intops.rmsnorm(x, g)`` (and ``rmsnorm_scale``/``rsqrt``); the
rsqrt table is ``intops.build_rsqrt_table()``, held here in a ROM built from that array.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from speedllm.golden import formats, intops

from .matvec_pipeline import bit_length_tree, saturate_fast
from .tables import (ACT_SHAPE, act_packet_layout, check_positive_int, packet_layout,
                     round_shift_const, table_rom, delayed, pipelined_product)


class RmsNormUnit(wiring.Component):
    """RMSNorm of one ACT vector per packet: ``y = sat32(round_shift(x16 * g * R, 16 + s/2))``.

    Three passes over an internal buffer (the vector is held on chip, ``max_dim`` words):

    1. *Load*: take ``i`` into the buffer, OR-fold ``x ^ (x >> 31)`` -> block exponent ``e``.
    2. *Square*: re-read, ``x16 = sat16(round_shift(x, e))``, ``ss += x16**2`` (exact).
    3. One scalar per vector: ``v = ss // n`` (sequential restoring divider, one quotient
       bit per cycle) ``+ round_shift(RMS_EPS_Q32, 2e)``; ``v`` normalized to ``u`` in
       [1, 4) by shifts of two bits per cycle; ``R = T[j] + round_shift((T[j+1] - T[j]) *
       f, 16 - B)`` from the rsqrt ROM.
    4. *Scale*: re-read, ``x16 * g`` then ``* R`` (registered multipliers), round and
       saturate; ``g`` (the Q15.16 norm weight) streams in beside, one per element.
    5. Only with ``output="x16"`` (RMSNorm folded into the next matvec's input): pass 4
       writes ``y`` back over ``x`` and OR-folds it; then ``x_exp`` = ``y``'s block
       exponent and pass 5 emits ``x16 = sat16(round_shift(y, x_exp))``: exactly
       ``formats.quantize_act(intops.rmsnorm(x, g))``, what ``intops.linear`` feeds the
       matvec. ``o`` then has the MatVec engine's ``x`` layout (``wiring.connect`` fits).

    Parameters
    ----------
    max_dim : int
        Longest vector (buffer depth).
    output : "act" or "x16"
        ACT result (``intops.rmsnorm``) or its X16 form plus ``x_exp`` for the matvec.

    Ports
    -----
    i : In(stream), payload ``act_packet_layout(1)``
        The vector; ``last`` ends it (its length ``n`` is the beat count, ``n <= max_dim``).
    g : In(stream), payload ``signed(32)``
        The RMSNorm weight (``formats.quantize_norm_weight``), ``n`` beats per vector, taken
        during pass 4 only.
    o : Out(stream), payload ``act_packet_layout(1)`` (``"act"``) or
        ``{data: int16, first, last}`` (``"x16"``)
        The normalized vector, ``first``/``last`` on its ends.
    x_exp : Out(range(17)) (``"x16"`` only)
        The block exponent of the vector on ``o``; steady from its first beat until the
        next vector's pass 5 begins.

    Latency and throughput
    ----------------------
    One vector at a time: about ``3 n + W + 30`` cycles (``4 n + W + 35`` with ``"x16"``)
    per vector of ``n`` elements with
    ``W = 30 + ceil_log2(max_dim + 1)`` divider cycles and up to 15 normalization cycles;
    pass 4 emits one element per cycle while ``o.ready`` and ``g.valid`` stay high. ``i`` is
    only ready in pass 1, so a vector must be complete before the next starts.
    """

    def __init__(self, *, max_dim: int = 2048, output: str = "act"):
        self._max_dim = check_positive_int("max_dim", max_dim)
        if output not in ("act", "x16"):
            raise ValueError(f"output must be 'act' or 'x16', not {output!r}")
        self._output = output
        members = {
            "i": In(stream.Signature(act_packet_layout(1))),
            "g": In(stream.Signature(ACT_SHAPE)),
        }
        if output == "act":
            members["o"] = Out(stream.Signature(act_packet_layout(1)))
        else:
            members["o"] = Out(stream.Signature(packet_layout(signed(formats.X_BITS))))
            members["x_exp"] = Out(range(formats.X_BITS + 1))
        super().__init__(members)

    @property
    def max_dim(self) -> int:
        return self._max_dim

    @property
    def output(self) -> str:
        return self._output

    def elaborate(self, platform):
        m = Module()
        depth = self._max_dim
        ss_width = 2 * (formats.X_BITS - 1) + ceil_log2(depth + 1)    # sum of x16**2 < 2**ss_width
        table = intops.build_rsqrt_table()
        table_bits = formats.RSQRT_TABLE_BITS
        frac_bits = formats.RSQRT_IN_FRAC - table_bits

        m.submodules.buffer = buffer = Memory(shape=ACT_SHAPE, depth=depth, init=[])
        wp = buffer.write_port()
        rp = buffer.read_port()
        m.submodules.rsqrt_rom = rom = table_rom(table)
        rom_lo = rom.read_port()
        rom_hi = rom.read_port()
        t_lo = Signal(signed(rom.shape.width + 1))
        t_hi = Signal(signed(rom.shape.width + 1))
        m.d.comb += [t_lo.eq(rom_lo.data), t_hi.eq(rom_hi.data)]
        t_lo_r, t_diff = Signal(signed(rom.shape.width + 1)), Signal(signed(rom.shape.width + 2))
        frac_r = Signal(frac_bits)
        step = Signal(signed(rom.shape.width + 2 + frac_bits + 1))

        n = Signal(range(depth + 1))                 # vector length
        fold = Signal(formats.ACT_BITS - 1)
        e = Signal(range(formats.X_BITS + 1))
        addr = Signal(range(depth + 1))
        ss = Signal(ss_width)
        # Divider: remainder, the dividend shifting out into the quotient, bit counter.
        remainder = Signal(ceil_log2(depth + 1) + 1)
        quotient = Signal(ss_width)
        div_count = Signal(range(ss_width + 1))
        s = Signal(range(ss_width + 2))               # the even exponent of v's normalization
        u = Signal(ss_width + 2)
        r = Signal(formats.RSQRT_FRAC + 1)            # R: unsigned Q1.16
        eps_table = Array(int(formats.round_shift(formats.RMS_EPS_Q32, 2 * k))
                          for k in range(formats.X_BITS + 1))

        # sat16(round_shift(x, k)) in two register stages (the buffer's output is slow):
        # pre = x >> (k - 1) (or 2x for k = 0), then sat16((pre + 1) >> 1).
        def quantize_pre(x, k):
            return Mux(k == 0, x << 1, x >> (k - 1)[:len(k)])

        def quantize_post(pre):
            return saturate_fast((pre + 1) >> 1, formats.X_BITS)

        pre_shape = signed(formats.ACT_BITS + 1)
        sq_pre, p_pre, e_pre = Signal(pre_shape), Signal(pre_shape), Signal(pre_shape)

        # Pass 2 pipeline: read -> x16 -> x16**2 -> accumulate.
        # The buffer's read data is registered (rd_word) before any logic: a block RAM's
        # clock-to-output delay leaves little of the cycle.
        rd_word = Signal(ACT_SHAPE)
        rd_valid, rd_v2, sq_v0, sq_v1, sq_v2 = Signal(), Signal(), Signal(), Signal(), Signal()
        sq_x16 = Signal(signed(formats.X_BITS))
        sq = Signal(2 * (formats.X_BITS - 1) + 1)
        # Pass 4 pipeline (stalls with o): read+g -> x16,g -> x16*g -> *R -> o.
        out_advance = ~self.o.valid | self.o.ready
        # In "x16" mode pass 4 writes y back into the buffer: it never stalls.
        advance = out_advance if self._output == "act" else 1
        a_v, a2_v, p_v, b_v = Signal(), Signal(), Signal(), Signal()
        a2_idx, a2_g = Signal(range(depth)), Signal(ACT_SHAPE)
        a2_first, a2_last = Signal(), Signal()
        p_idx, p_g, p_first, p_last = Signal(range(depth)), Signal(ACT_SHAPE), Signal(), Signal()
        a_idx, b_idx = Signal(range(depth)), Signal(range(depth))
        a_g, b_g = Signal(ACT_SHAPE), Signal(ACT_SHAPE)
        a_first, a_last, b_first, b_last = Signal(), Signal(), Signal(), Signal()
        b_x16 = Signal(signed(formats.X_BITS))
        out_shift = Signal(range(64))
        produced = Signal(range(depth + 1))
        fold_y = Signal(formats.ACT_BITS - 1)
        e_v, e_first, e_last = Signal(), Signal(), Signal()
        er_v, er_first, er_last = Signal(), Signal(), Signal()
        e2_v, e2_first, e2_last = Signal(), Signal(), Signal()
        # x16 * g, then * R: DSP-sized partial products, registered adder trees.
        x_g, x_g_latency = pipelined_product(m, b_x16, b_g, enable=advance, name="x_g")
        x_g_r, x_g_r_latency = pipelined_product(m, x_g, r, enable=advance, name="x_g_r")
        # y = sat32(round_shift(x_g_r, out_shift)) in two registered steps after the
        # product (out_shift >= 16: always a right shift): shift by out_shift - 1, then
        # (+1) >> 1; the saturation is a LUT reduction into the output register.
        assert formats.NORM_W_FRAC + formats.RSQRT_FRAC - formats.ACT_FRAC >= 1
        y_shifted = Signal(signed(len(x_g_r)))
        y_rounded = Signal(signed(len(x_g_r)))
        with m.If(advance):
            m.d.sync += [y_shifted.eq(x_g_r >> (out_shift - 1)[:len(out_shift)]),
                         y_rounded.eq((y_shifted + 1) >> 1)]
        d_delay = x_g_latency + x_g_r_latency + 2
        d_v = delayed(m, b_v, d_delay, enable=advance, name="d_v")
        d_first = delayed(m, b_first, d_delay, enable=advance, name="d_first")
        d_last = delayed(m, b_last, d_delay, enable=advance, name="d_last")
        d_idx = delayed(m, b_idx, d_delay, enable=advance, name="d_idx")
        y = Signal(ACT_SHAPE)
        m.d.comb += y.eq(saturate_fast(y_rounded, formats.ACT_BITS))

        m.d.comb += [wp.data.eq(self.i.payload.data), wp.addr.eq(n)]
        m.d.comb += [rp.addr.eq(addr), rp.en.eq(1)]

        with m.FSM(init="Load"):
            with m.State("Load"):
                m.d.comb += [self.i.ready.eq(1), wp.en.eq(self.i.valid)]
                x = self.i.payload.data
                with m.If(self.i.valid):
                    m.d.sync += [fold.eq(fold | (x ^ (x >> (formats.ACT_BITS - 1)))[:-1]),
                                 n.eq(n + 1)]
                    with m.If(self.i.payload.last):
                        m.next = "Exponent"
            with m.State("Exponent"):
                bl = bit_length_tree(fold)
                m.d.sync += [
                    e.eq(Mux(bl > formats.X_BITS - 1, bl - (formats.X_BITS - 1), 0)),
                    addr.eq(0), ss.eq(0), rd_valid.eq(0), rd_v2.eq(0), sq_v0.eq(0),
                    sq_v1.eq(0), sq_v2.eq(0),
                ]
                m.next = "Square"
            with m.State("Square"):
                # rp.data shows the word read last cycle (valid when rd_valid).
                m.d.sync += [
                    addr.eq(Mux(addr == n, addr, addr + 1)), rd_valid.eq(addr != n),
                    rd_v2.eq(rd_valid), rd_word.eq(rp.data),
                    sq_v0.eq(rd_v2), sq_pre.eq(quantize_pre(rd_word, e)),
                    sq_v1.eq(sq_v0), sq_x16.eq(quantize_post(sq_pre)),
                    sq_v2.eq(sq_v1), sq.eq(sq_x16 * sq_x16),
                ]
                with m.If(sq_v2):
                    m.d.sync += ss.eq(ss + sq)
                with m.If((addr == n) & ~rd_valid & ~rd_v2 & ~sq_v0 & ~sq_v1 & ~sq_v2):
                    m.d.sync += [quotient.eq(ss), remainder.eq(0), div_count.eq(ss_width)]
                    m.next = "Divide"
            with m.State("Divide"):
                trial = (remainder << 1) | quotient[-1]
                fits = trial >= n
                with m.If(div_count != 0):
                    m.d.sync += [
                        remainder.eq(Mux(fits, trial - n, trial)),
                        quotient.eq((quotient << 1) | fits),
                        div_count.eq(div_count - 1),
                    ]
                with m.Else():
                    # v = ss // n + eps; normalization starts from u = v, s = 16.
                    m.d.sync += [u.eq(quotient + eps_table[e]), s.eq(formats.RSQRT_IN_FRAC)]
                    m.next = "Normalize"
            with m.State("Normalize"):
                one = 1 << formats.RSQRT_IN_FRAC
                with m.If(u >= 4 * one):
                    m.d.sync += [u.eq(u >> 2), s.eq(s + 2)]
                with m.Elif(u < one):
                    m.d.sync += [u.eq(u << 2), s.eq(s - 2)]
                with m.Else():
                    m.next = "Lookup"
            with m.State("Lookup"):
                # u in [1, 4) as Q2.16 and v in [2**s, 2**(s+2)): the ROM reads T[j], T[j+1].
                m.next = "Interpolate"
            with m.State("Interpolate"):
                # One register per step (ROM entries, product, sum): this runs once per vector.
                m.d.sync += [
                    t_lo_r.eq(t_lo), t_diff.eq(t_hi - t_lo),
                    frac_r.eq((u - (1 << formats.RSQRT_IN_FRAC))[:frac_bits]),
                ]
                m.next = "Step"
            with m.State("Step"):
                m.d.sync += step.eq(t_diff * frac_r)
                m.next = "Finish"
            with m.State("Finish"):
                m.d.sync += [
                    r.eq(t_lo_r + round_shift_const(step, frac_bits)),
                    out_shift.eq(formats.NORM_W_FRAC + formats.RSQRT_FRAC - formats.ACT_FRAC
                                 + (s >> 1)),
                    addr.eq(0), produced.eq(0),
                ]
                m.next = "Scale"
            with m.State("Scale"):
                issue = (addr != n) & self.g.valid & advance
                m.d.comb += [self.g.ready.eq(issue), rp.en.eq(advance)]
                with m.If(issue):
                    m.d.sync += addr.eq(addr + 1)
                with m.If(advance):
                    m.d.sync += [
                        a_v.eq(issue), a_g.eq(self.g.payload), a_idx.eq(addr),
                        a_first.eq(addr == 0), a_last.eq(addr == n - 1),
                        a2_v.eq(a_v), a2_g.eq(a_g), a2_idx.eq(a_idx), a2_first.eq(a_first),
                        a2_last.eq(a_last), rd_word.eq(rp.data),
                        p_v.eq(a2_v), p_pre.eq(quantize_pre(rd_word, e)), p_g.eq(a2_g),
                        p_idx.eq(a2_idx), p_first.eq(a2_first), p_last.eq(a2_last),
                        b_v.eq(p_v), b_x16.eq(quantize_post(p_pre)), b_g.eq(p_g), b_idx.eq(p_idx),
                        b_first.eq(p_first), b_last.eq(p_last),
                    ]
                    with m.If(d_v):
                        m.d.sync += produced.eq(produced + 1)
                drained = produced == n
                if self._output == "act":
                    with m.If(advance):
                        m.d.sync += [
                            self.o.valid.eq(d_v), self.o.payload.data.eq(y),
                            self.o.payload.first.eq(d_first), self.o.payload.last.eq(d_last),
                        ]
                    with m.If(drained & out_advance):
                        m.d.sync += [n.eq(0), fold.eq(0)]
                        m.next = "Load"
                else:
                    # Pass 4 writes y over x and OR-folds it for y's own block exponent.
                    m.d.comb += [wp.addr.eq(d_idx), wp.data.eq(y), wp.en.eq(d_v)]
                    with m.If(d_v):
                        m.d.sync += fold_y.eq(fold_y | (y ^ (y >> (formats.ACT_BITS - 1)))[:-1])
                    with m.If(drained):
                        m.next = "Requantize"
            if self._output == "x16":
                with m.State("Requantize"):
                    bl = bit_length_tree(fold_y)
                    m.d.sync += [
                        self.x_exp.eq(Mux(bl > formats.X_BITS - 1, bl - (formats.X_BITS - 1), 0)),
                        addr.eq(0), e_v.eq(0), er_v.eq(0), e2_v.eq(0),
                    ]
                    m.next = "Emit"
                with m.State("Emit"):
                    # Pass 5: x16 = sat16(round_shift(y, x_exp)), the MatVec's X16 input.
                    issue = (addr != n) & out_advance
                    m.d.comb += rp.en.eq(out_advance)
                    with m.If(issue):
                        m.d.sync += addr.eq(addr + 1)
                    with m.If(out_advance):
                        m.d.sync += [
                            e_v.eq(issue), e_first.eq(addr == 0), e_last.eq(addr == n - 1),
                            er_v.eq(e_v), er_first.eq(e_first), er_last.eq(e_last),
                            rd_word.eq(rp.data),
                            e2_v.eq(er_v), e_pre.eq(quantize_pre(rd_word, self.x_exp)),
                            e2_first.eq(er_first), e2_last.eq(er_last),
                            self.o.valid.eq(e2_v),
                            self.o.payload.data.eq(quantize_post(e_pre)),
                            self.o.payload.first.eq(e2_first), self.o.payload.last.eq(e2_last),
                        ]
                    with m.If((addr == n) & ~e_v & ~er_v & ~e2_v & out_advance):
                        m.d.sync += [n.eq(0), fold.eq(0), fold_y.eq(0)]
                        m.next = "Load"

        # The ROM address comes from the normalized mantissa (valid in "Lookup").
        index = (u - (1 << formats.RSQRT_IN_FRAC)) >> frac_bits
        m.d.comb += [rom_lo.addr.eq(index), rom_hi.addr.eq(index + 1)]
        return m
