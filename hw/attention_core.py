"""The attention core: scores, softmax and the weighted V sum over streamed K/V rows.

See :class:`AttentionCore`. The arithmetic of every step is the golden function
``speedllm.golden.intops.attention``; :mod:`speedllm.hw.attention_math` holds the hardware
form of each step and the widths.

KV row format (what the ``kv`` stream carries, and the DRAM layout of one cache row)
-------------------------------------------------------------------------------------
A row (one position of K, or of V) is ``exp_beats`` beats holding the ``n_kv_heads`` block
exponents ``KvStore.exp[t, g]`` as one unsigned byte each (byte ``g``, little-endian,
zero padding), then ``kv_dim * kv_bits / beat_bits`` beats holding the mantissas
``KvStore.mant[t, g, i]`` as ``kv_bits``-bit two's complement numbers, element
``g * head_size + i`` at bit ``kv_bits * (that index)`` of the mantissa area (little-end
first). A layer's K cache is ``max_seq_len`` such rows back to back, its V cache likewise.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats, intops
from speedllm.hw import attention_math as am
from speedllm.hw.attention_divider import SequentialDivider
from speedllm.hw.stream import StreamFifo
from speedllm.hw.tables import pipelined_product

__all__ = ["AttentionCore", "kv_row_geometry"]

OUT_FIFO_DEPTH = 16                  # output values buffered against o backpressure


def _check_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")


def kv_row_geometry(n_kv_heads: int, head_size: int, kv_bits: int, beat_bits: int) -> dict:
    """Beats of one KV row: ``exp_beats``, ``mant_beats``, ``row_beats``, ``row_bytes``."""
    exp_beats = -(-n_kv_heads * am.KV_EXP_FIELD_BITS // beat_bits)
    mant_bits = n_kv_heads * head_size * kv_bits
    if mant_bits % beat_bits:
        raise ValueError(f"a KV row's mantissas ({n_kv_heads * head_size} x {kv_bits} bits) "
                         f"must fill whole {beat_bits}-bit beats")
    mant_beats = mant_bits // beat_bits
    row_beats = exp_beats + mant_beats
    return {"exp_beats": exp_beats, "mant_beats": mant_beats, "row_beats": row_beats,
            "row_bytes": row_beats * beat_bits // 8}


class AttentionCore(wiring.Component):
    """Multi-head attention of one layer at one position, K/V rows streamed in.

    For each query head ``h`` (query heads ``g*kv_mul .. g*kv_mul + kv_mul - 1`` share K/V
    head ``g``, ``kv_mul = n_heads // n_kv_heads``; each K/V chunk is read once and used by
    all of them): pass 1 computes the scores of positions ``0..pos`` into an on-chip score
    buffer (``n_heads * max_seq_len`` words) and tracks their maximum; pass 2 turns each score
    into ``e = exp(s - max)``, sums them and accumulates ``e * v``; the output stage divides
    by the sum (one sequential division per head). Bit for bit ``intops.attention``.

    Parameters
    ----------
    head_size, n_heads, n_kv_heads, max_seq_len : int
        Model dimensions (``n_kv_heads`` divides ``n_heads``; ``pos < max_seq_len``).
    beat_bits : int
        Width of one ``kv`` beat (the AXI data width, default 64).
    lanes : int or None
        Multipliers per pass (row elements handled per cycle); divides both the elements
        per beat and ``head_size``. Default: the elements per beat.
    kv_bits : int
        Width of a stored K/V mantissa (``formats.DEFAULT_KV_BITS`` by default).

    Ports
    -----
    cmd : In(stream)
        ``{pos}``: one attention call. Accepted when the core is idle.
    q : In(stream(signed(32)))
        The ``n_heads * head_size`` ACT values of q (head-major), after ``cmd``.
    kv : In(stream(unsigned(beat_bits)))
        K rows ``0..pos``, then V rows ``0..pos``, in the KV row format (module docstring).
    o : Out(stream)
        ``{data: signed(32), first, last}``: the ``n_heads * head_size`` ACT outputs,
        head-major, ``first``/``last`` on the first/last value.

    Latency and throughput
    ----------------------
    q intake: one value per cycle. Each pass: one cycle per (``lanes``-element chunk,
    sharing query head), i.e. ``n_heads * head_size / lanes`` cycles per row (a beat is held
    ``elements_per_beat / lanes * kv_mul`` cycles), plus one cycle per exponent beat, plus a
    drain of ~9 (pass 1) / ~14 (pass 2) cycles. Output: per head ``dividend_bits + 5``
    cycles for the reciprocal; its values then go out one per cycle, each written into the
    output FIFO 9 cycles after it is issued (accumulator read, lane, shift, round, four
    stages of ``acc_r * recip`` partial products and sums, rounded result). ``kv`` gaps
    stall the passes, ``o`` backpressure stalls the output stage (issue waits for a free
    FIFO entry); nothing is ever dropped.
    """

    def __init__(self, *, head_size: int, n_heads: int, n_kv_heads: int, max_seq_len: int,
                 beat_bits: int = 64, lanes: int | None = None,
                 kv_bits: int = formats.DEFAULT_KV_BITS):
        for name, v in (("head_size", head_size), ("n_heads", n_heads),
                        ("n_kv_heads", n_kv_heads), ("max_seq_len", max_seq_len),
                        ("beat_bits", beat_bits)):
            _check_int(name, v)
        _check_int("kv_bits", kv_bits, 2)
        if kv_bits > 16:
            raise ValueError(f"kv_bits must be at most 16 (q16 x mantissa products), "
                             f"not {kv_bits!r}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")
        if beat_bits % kv_bits:
            raise ValueError(f"beat_bits ({beat_bits}) must be a multiple of kv_bits ({kv_bits})")
        epb = beat_bits // kv_bits
        if lanes is None:
            lanes = epb
        _check_int("lanes", lanes)
        if epb % lanes or head_size % lanes:
            raise ValueError(f"lanes ({lanes}) must divide the elements per beat ({epb}) and "
                             f"head_size ({head_size})")
        self._geometry = kv_row_geometry(n_kv_heads, head_size, kv_bits, beat_bits)
        self._head_size = head_size
        self._n_heads = n_heads
        self._n_kv_heads = n_kv_heads
        self._max_seq_len = max_seq_len
        self._beat_bits = beat_bits
        self._lanes = lanes
        self._kv_bits = kv_bits
        self._w = am.widths(head_size, max_seq_len, kv_bits)
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({"pos": range(max_seq_len)}))),
            "q": In(stream.Signature(signed(am.ACT_BITS))),
            "kv": In(stream.Signature(unsigned(beat_bits))),
            "o": Out(stream.Signature(data.StructLayout(
                {"data": signed(am.ACT_BITS), "first": 1, "last": 1}))),
        })

    head_size = property(lambda self: self._head_size)
    n_heads = property(lambda self: self._n_heads)
    n_kv_heads = property(lambda self: self._n_kv_heads)
    max_seq_len = property(lambda self: self._max_seq_len)
    beat_bits = property(lambda self: self._beat_bits)
    lanes = property(lambda self: self._lanes)
    kv_bits = property(lambda self: self._kv_bits)
    geometry = property(lambda self: dict(self._geometry))

    def elaborate(self, platform):
        m = Module()
        H, G, HS, L, S = (self._n_heads, self._n_kv_heads, self._head_size, self._lanes,
                          self._max_seq_len)
        KM = H // G                                   # query heads per K/V head
        CPH = HS // L                                 # lane chunks per head
        CPB = self._beat_bits // self._kv_bits // L   # lane chunks per beat
        DIM = H * HS
        kvb = self._kv_bits
        W = self._w
        EB, RB = self._geometry["exp_beats"], self._geometry["row_beats"]
        R, GUARD = formats.ATT_RECIP_BITS, formats.ATT_ACC_GUARD
        ev_shape = range(W["max_ev"] + 1)

        m.submodules.q_mem = q_mem = Memory(
            shape=data.ArrayLayout(signed(32), L), depth=H * CPH, init=[])
        m.submodules.score_mem = score_mem = Memory(shape=signed(32), depth=H * S, init=[])
        m.submodules.acc_mem = acc_mem = Memory(
            shape=data.ArrayLayout(signed(W["acc"]), L), depth=H * CPH, init=[])
        q_wr, q_rd = q_mem.write_port(), q_mem.read_port()
        s_wr, s_rd = score_mem.write_port(), score_mem.read_port()
        a_wr = acc_mem.write_port()
        a_rd = acc_mem.read_port(transparent_for=(a_wr,))    # read-modify-write each cycle
        a_out = acc_mem.read_port()

        maxes = Array(Signal(signed(32), name=f"max_{h}") for h in range(H))
        sums = Array(Signal(W["sum"], name=f"sum_{h}") for h in range(H))
        eqs = Array(Signal(range(17), name=f"eq_{h}") for h in range(H))
        partial = Array(Signal(signed(W["dot"]), name=f"partial_{j}") for j in range(KM))
        row_exp = Array(Signal(ev_shape, name=f"row_exp_{g}") for g in range(G))
        pos = Signal(range(S))

        # ---- q intake: qs = sat32(round_shift(q * scale, 16)), per-head exponent eq -----
        q_taking = Signal()
        q_in_count = Signal(range(DIM + 1))
        m.d.comb += self.q.ready.eq(q_taking & (q_in_count != DIM))
        qv1, qv2, qv3 = Signal(), Signal(), Signal()
        q1 = Signal(signed(32))
        qp2 = Signal(signed(32 + 18))
        qs3 = Signal(signed(32))
        m.d.sync += [qv1.eq(self.q.valid & self.q.ready), q1.eq(self.q.payload),
                     qv2.eq(qv1), qp2.eq(q1 * intops.att_scale(HS)),
                     qv3.eq(qv2),
                     qs3.eq(am.saturate((qp2 + (1 << (formats.ATT_SCALE_FRAC - 1)))
                                        >> formats.ATT_SCALE_FRAC, 32))]
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += q_in_count.eq(q_in_count + 1)
        q_lane = Signal(range(L))
        q_word = Signal(range(H * CPH))
        q_elem = Signal(range(HS))
        q_head = Signal(range(H))
        q_fold = Signal(31)
        q_hold = [Signal(signed(32), name=f"q_hold_{i}") for i in range(L)]
        q_done = Signal()
        fold_valid, fold_word, fold_head = Signal(), Signal(31), Signal(range(H))
        fold_now = Mux(q_elem == 0, 0, q_fold) | (qs3 ^ (qs3 >> 31))[:31]
        m.d.comb += [q_wr.addr.eq(q_word), q_wr.en.eq(qv3 & (q_lane == L - 1))]
        m.d.comb += [q_wr.data[i].eq(q_hold[i]) for i in range(L - 1)]
        m.d.comb += q_wr.data[L - 1].eq(qs3)
        m.d.comb += q_done.eq(qv3 & (q_head == H - 1) & (q_elem == HS - 1))
        with m.If(qv3):
            for i in range(L - 1):
                with m.If(q_lane == i):
                    m.d.sync += q_hold[i].eq(qs3)
            m.d.sync += [q_lane.eq(Mux(q_lane == L - 1, 0, q_lane + 1)), q_fold.eq(fold_now),
                         q_elem.eq(Mux(q_elem == HS - 1, 0, q_elem + 1))]
            with m.If(q_lane == L - 1):
                m.d.sync += q_word.eq(q_word + 1)
            with m.If(q_elem == HS - 1):
                m.d.sync += [fold_word.eq(fold_now), fold_head.eq(q_head),
                             q_head.eq(q_head + 1)]
        # the head's exponent one cycle after its fold is complete (pass 1 reads it much later)
        m.d.sync += fold_valid.eq(qv3 & (q_elem == HS - 1))
        with m.If(fold_valid):
            bl = am.bit_length(fold_word)
            m.d.sync += eqs[fold_head].eq(Mux(bl > 15, bl - 15, 0))

        # ---- item issue: one item = (lane chunk of a row, sharing query head) ------------
        beat = Signal(self._beat_bits)
        beat_full = Signal()
        feeding = Signal()                            # the current pass wants more items
        phase2 = Signal()                             # 0: K rows (pass 1), 1: V rows (pass 2)
        rb = Signal(range(RB))                        # beat index within the row
        sub, j, cc = Signal(range(CPB)), Signal(range(KM)), Signal(range(CPH))
        g, t = Signal(range(G)), Signal(range(S))
        issue = Signal()
        take = Signal()
        last_of_beat = (sub == CPB - 1) & (j == KM - 1)
        last_of_pass = (g == G - 1) & (cc == CPH - 1) & (j == KM - 1) & (t == pos)
        m.d.comb += [
            issue.eq(beat_full & feeding),
            self.kv.ready.eq(feeding & (~beat_full | (last_of_beat & ~last_of_pass))),
            take.eq(self.kv.valid & self.kv.ready),
        ]
        h0 = Signal(range(H))
        chunk = Signal(L * kvb)
        m.d.comb += [h0.eq(g * KM + j), chunk.eq(beat.word_select(sub, L * kvb))]
        with m.If(take):
            m.d.sync += rb.eq(Mux(rb == RB - 1, 0, rb + 1))
        with m.If(take & (rb >= EB)):
            m.d.sync += [beat.eq(self.kv.payload), beat_full.eq(1)]
        with m.Elif(issue & last_of_beat):
            m.d.sync += beat_full.eq(0)
        bpb = self._beat_bits // am.KV_EXP_FIELD_BITS
        with m.If(take & (rb < EB)):
            for gi in range(G):
                with m.If(rb == gi // bpb):
                    field = self.kv.payload.word_select(gi % bpb, am.KV_EXP_FIELD_BITS)
                    m.d.sync += row_exp[gi].eq(field)
        with m.If(issue):
            m.d.sync += j.eq(Mux(j == KM - 1, 0, j + 1))
            with m.If(j == KM - 1):
                m.d.sync += [sub.eq(Mux(sub == CPB - 1, 0, sub + 1)),
                             cc.eq(Mux(cc == CPH - 1, 0, cc + 1))]
                with m.If(cc == CPH - 1):
                    m.d.sync += g.eq(Mux(g == G - 1, 0, g + 1))
                    with m.If(g == G - 1):
                        m.d.sync += t.eq(t + 1)
            with m.If(last_of_pass):
                m.d.sync += feeding.eq(0)

        def lanes_of(word):
            return [word[i * kvb:(i + 1) * kvb].as_signed() for i in range(L)]

        # ---- pass 1: s = shift_round_saturate(q16 . kmant, 16 - eq - ek), running max ----
        m.d.comb += q_rd.addr.eq(h0 * CPH + cc)
        ctl_fields = [("j", range(KM)), ("first", 1), ("last", 1), ("h", range(H)),
                      ("t", range(S)), ("ek", ev_shape), ("qe", range(17))]
        ctl_layout = data.StructLayout(dict(ctl_fields))
        v1, v2, v3, v4 = Signal(), Signal(), Signal(), Signal()
        c1, c2, c3, c4 = (Signal(ctl_layout, name=f"p1_ctl{i}") for i in range(1, 5))
        k1 = Signal(L * kvb)
        m.d.sync += [v1.eq(issue & ~phase2), k1.eq(chunk),
                     c1.j.eq(j), c1.first.eq(cc == 0), c1.last.eq(cc == CPH - 1), c1.h.eq(h0),
                     c1.t.eq(t), c1.ek.eq(row_exp[g]), c1.qe.eq(eqs[h0])]
        # q16 = sat16(round_shift(qs, qe)): the shift by qe - 1 here, then (+1) >> 1
        v1b, c1b, k1b = Signal(), Signal(ctl_layout, name="p1_ctl1b"), Signal(L * kvb)
        q_round1b = Signal()
        q_shift1b = [Signal(signed(32), name=f"q_shift1b_{i}") for i in range(L)]
        qe_minus_one = (c1.qe - 1)[:len(c1.qe)]       # wraps at 0; unused there
        m.d.sync += [v1b.eq(v1), c1b.eq(c1), k1b.eq(k1), q_round1b.eq(c1.qe != 0)]
        m.d.sync += [q_shift1b[i].eq(Mux(c1.qe == 0, q_rd.data[i],
                                         q_rd.data[i] >> qe_minus_one)) for i in range(L)]
        qa2 = [Signal(signed(16), name=f"qa2_{i}") for i in range(L)]
        kb2 = [Signal(signed(kvb), name=f"kb2_{i}") for i in range(L)]
        m.d.sync += [v2.eq(v1b), c2.eq(c1b)]
        for i in range(L):                            # registered multiplier inputs
            rounded = Mux(q_round1b, (q_shift1b[i] + 1) >> 1, q_shift1b[i])
            m.d.sync += [qa2[i].eq(am.saturate(rounded, 16)), kb2[i].eq(lanes_of(k1b)[i])]
        pr3 = [Signal(signed(16 + kvb), name=f"pr3_{i}") for i in range(L)]
        m.d.sync += [v3.eq(v2), c3.eq(c2)] + [pr3[i].eq(qa2[i] * kb2[i]) for i in range(L)]
        sum4 = Signal(signed(W["dot"]))
        terms = list(pr3)                            # a balanced adder tree
        while len(terms) > 1:
            terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                     for k in range(0, len(terms), 2)]
        lane_sum = terms[0]
        m.d.sync += [v4.eq(v3), c4.eq(c3), sum4.eq(lane_sum)]
        v5 = Signal()
        dot5 = Signal(signed(W["dot"]))
        h5, t5 = Signal(range(H)), Signal(range(S))
        right5, left5 = Signal(range(17)), Signal(range(W["max_ev"] + 17))
        dot_now = Mux(c4.first, 0, partial[c4.j]) + sum4
        with m.If(v4):
            m.d.sync += partial[c4.j].eq(dot_now)
        shift = Signal(signed(8))
        m.d.comb += shift.eq(formats.ACT_FRAC - c4.qe - c4.ek)
        m.d.sync += [v5.eq(v4 & c4.last), dot5.eq(dot_now), h5.eq(c4.h), t5.eq(c4.t),
                     right5.eq(Mux(shift > 0, shift, 0)), left5.eq(Mux(shift < 0, -shift, 0))]
        score = am.shift_round_saturate_var(m, dot5, right5, left5, 32, "score")
        v6, v7 = Signal(), Signal()
        h6, t6, h7, t7 = (Signal(range(H)), Signal(range(S)), Signal(range(H)),
                          Signal(range(S)))
        m.d.sync += [v6.eq(v5), h6.eq(h5), t6.eq(t5), v7.eq(v6), h7.eq(h6), t7.eq(t6)]
        m.d.comb += [s_wr.addr.eq(h7 * S + t7), s_wr.data.eq(score), s_wr.en.eq(v7)]
        # The running maximum of head h7, read a stage early (h6) into max_cur, with the
        # update of this cycle forwarded when the next score is of the same head.
        max_cur = Signal(signed(32))
        max_update = v7 & ((t7 == 0) | (score > max_cur))
        with m.If(max_update):
            m.d.sync += maxes[h7].eq(score)
        m.d.sync += max_cur.eq(Mux(max_update & (h6 == h7), score, maxes[h6]))
        p1_busy = Cat(v1, v1b, v2, v3, v4, v5, v6, v7).any()

        # ---- pass 2: e = exp_neg(s - max), S += e, acc += (e * vmant) << ev ---------------
        m.d.comb += s_rd.addr.eq(h0 * S + t)
        w1 = Signal()
        p2_layout = data.StructLayout({"v": L * kvb, "h": range(H), "cc": range(CPH),
                                       "firstc": 1, "t0": 1, "ev": ev_shape})
        d1 = Signal(p2_layout)
        max1 = Signal(signed(32))
        m.d.sync += [w1.eq(issue & phase2), max1.eq(maxes[h0]), d1.v.eq(chunk), d1.h.eq(h0),
                     d1.cc.eq(cc), d1.firstc.eq(cc == 0), d1.t0.eq(t == 0),
                     d1.ev.eq(row_exp[g])]
        w1b, d1b = Signal(), Signal(p2_layout)
        max1b, score1b = Signal(signed(32)), Signal(signed(32))
        m.d.sync += [w1b.eq(w1), d1b.eq(d1), max1b.eq(max1), score1b.eq(s_rd.data)]
        w2 = Signal()
        dist2 = Signal(33)
        d2 = Signal(p2_layout)
        m.d.sync += [w2.eq(w1b), dist2.eq(max1b - score1b), d2.eq(d1b)]
        exp_unit = am.ExpUnit(m, dist2, w2, d2)
        de = Signal(p2_layout)
        m.d.comb += de.eq(exp_unit.ctl)
        # The head's running sum, read a stage early (the exp unit's previous stage) into
        # sum_cur, with this cycle's update forwarded when the next item is of the same head.
        de_next = Signal(p2_layout)
        m.d.comb += de_next.eq(exp_unit.ctl_before)
        sum_cur = Signal(W["sum"])
        sum_update = exp_unit.valid & de.firstc
        sum_new = Signal(W["sum"])
        m.d.comb += sum_new.eq(Mux(de.t0, 0, sum_cur) + exp_unit.e)
        with m.If(sum_update):
            m.d.sync += sums[de.h].eq(sum_new)
        m.d.sync += sum_cur.eq(Mux(sum_update & (de_next.h == de.h), sum_new, sums[de_next.h]))
        wa, wb, wc = Signal(), Signal(), Signal()
        ea = Signal(am.EXP_BITS)
        da, db = Signal(p2_layout), Signal(p2_layout)
        m.d.sync += [wa.eq(exp_unit.valid), ea.eq(exp_unit.e), da.eq(de)]
        pb = [Signal(signed(am.EXP_BITS + 1 + kvb), name=f"pb_{i}") for i in range(L)]
        m.d.sync += [wb.eq(wa), db.eq(da)]
        m.d.sync += [pb[i].eq(ea * lanes_of(da.v)[i]) for i in range(L)]
        pc = [Signal(signed(W["acc"]), name=f"pc_{i}") for i in range(L)]
        t0c = Signal()
        m.d.comb += a_rd.addr.eq(db.h * CPH + db.cc)
        m.d.sync += [wc.eq(wb), t0c.eq(db.t0), a_wr.addr.eq(a_rd.addr)]
        m.d.sync += [pc[i].eq(pb[i] << db.ev) for i in range(L)]
        m.d.comb += a_wr.en.eq(wc)
        for i in range(L):
            m.d.comb += a_wr.data[i].eq(Mux(t0c, 0, a_rd.data[i]) + pc[i])
        p2_busy = Cat(w1, w1b, w2, exp_unit.busy, wa, wb, wc).any()

        # ---- output: recip = (2**(R+k-1) + S//2) // S, out = sat(round(acc_r * recip)) ----
        # A divider sequencer fills recips[h]/ks[h] head by head while the output pipeline
        # emits the heads whose reciprocal is ready, one value per cycle, into a FIFO
        # (issue only with a free FIFO entry: the pipeline never stalls).
        # recip <= 2**R and dividend >> (R+1) = 2**(k-2) + (S//2 >> (R+1)) < S, so R+1
        # quotient steps suffice.
        m.submodules.divider = divider = SequentialDivider(
            W["dividend"], W["sum"], quotient_bits=am.RECIP_BITS)
        recips = Array(Signal(am.RECIP_BITS, name=f"recip_{h}") for h in range(H))
        ks = Array(Signal(range(W["sum"] + 1), name=f"k_{h}") for h in range(H))
        start_out = Signal()
        dh = Signal(range(H + 1))                     # heads whose reciprocal is ready
        s_reg = Signal(W["sum"])
        k_reg = Signal(range(W["sum"] + 1))
        m.d.comb += [
            divider.i.payload.dividend.eq((Const(1, W["dividend"]) << (k_reg + (R - 1)))
                                          + (s_reg >> 1)),
            divider.i.payload.divisor.eq(s_reg),
        ]
        with m.FSM(name="recip_fsm"):
            with m.State("Wait"):
                with m.If(start_out):
                    m.d.sync += dh.eq(0)
                    m.next = "Load"
            with m.State("Load"):
                m.d.sync += s_reg.eq(sums[dh])
                m.next = "Normalize"
            with m.State("Normalize"):
                m.d.sync += k_reg.eq(am.bit_length(s_reg))
                m.next = "Divide"
            with m.State("Divide"):
                m.d.comb += divider.i.valid.eq(1)
                with m.If(divider.i.ready):
                    m.next = "Quotient"
            with m.State("Quotient"):
                m.d.comb += divider.o.ready.eq(1)
                with m.If(divider.o.valid):
                    m.d.sync += [recips[dh].eq(divider.o.payload.quotient), ks[dh].eq(k_reg),
                                 dh.eq(dh + 1)]
                    m.next = "Wait"
                    with m.If(dh != H - 1):
                        m.next = "Load"

        out_layout = data.StructLayout({"data": signed(am.ACT_BITS), "first": 1, "last": 1})
        m.submodules.out_fifo = out_fifo = StreamFifo(out_layout, OUT_FIFO_DEPTH)
        wiring.connect(m, out_fifo.o, wiring.flipped(self.o))
        oh, oc, ol = Signal(range(H)), Signal(range(CPH)), Signal(range(L))
        outputting = Signal()
        issue_o = Signal()
        # FIFO entries not yet claimed: OUT_FIFO_DEPTH - (values issued - values popped), a
        # register, so the issue decision does not add up the pipeline's valid bits.
        credit = Signal(range(OUT_FIFO_DEPTH + 1), init=OUT_FIFO_DEPTH)
        popped = out_fifo.o.valid & out_fifo.o.ready
        m.d.sync += credit.eq(credit - issue_o + popped)
        m.d.comb += issue_o.eq(outputting & (dh > oh) & (credit != 0))
        m.d.comb += a_out.addr.eq(oh * CPH + oc)
        last_o = (oh == H - 1) & (oc == CPH - 1) & (ol == L - 1)
        with m.If(issue_o):
            m.d.sync += ol.eq(Mux(ol == L - 1, 0, ol + 1))
            with m.If(ol == L - 1):
                m.d.sync += oc.eq(Mux(oc == CPH - 1, 0, oc + 1))
                with m.If(oc == CPH - 1):
                    m.d.sync += oh.eq(Mux(oh == H - 1, 0, oh + 1))
            with m.If(last_o):
                m.d.sync += outputting.eq(0)
        # o1: accumulator word read, lane index and the head's shift/reciprocal registered;
        # o2: the lane; o3: shifted right by shift - 1; o4: rounded (acc_r); then
        # acc_r * recip as DSP-sized partial products; o_last: rounded and saturated.
        o_ctl = data.StructLayout({"first": 1, "last": 1})
        o1 = Signal()
        ol1, ctl1 = Signal(range(L)), Signal(o_ctl)
        shift1 = Signal(range(W["sum"] + 1))
        recip1 = Signal(am.RECIP_BITS)
        m.d.sync += [o1.eq(issue_o), ol1.eq(ol),
                     ctl1.first.eq((oh == 0) & (oc == 0) & (ol == 0)), ctl1.last.eq(last_o),
                     shift1.eq(ks[oh] - 1 - GUARD), recip1.eq(recips[oh])]
        o2 = Signal()
        lane2 = Signal(signed(W["acc"]))
        shift2, recip2, ctl2 = Signal.like(shift1), Signal.like(recip1), Signal(o_ctl)
        m.d.sync += [o2.eq(o1), lane2.eq(a_out.data[ol1]), shift2.eq(shift1),
                     recip2.eq(recip1), ctl2.eq(ctl1)]
        o3 = Signal()
        shifted3 = Signal(signed(W["acc"]))
        round3 = Signal()
        recip3, ctl3 = Signal.like(recip1), Signal(o_ctl)
        shift2_minus_one = (shift2 - 1)[:len(shift2)]          # wraps at 0; unused there
        m.d.sync += [o3.eq(o2), round3.eq(shift2 != 0), recip3.eq(recip2), ctl3.eq(ctl2),
                     shifted3.eq(Mux(shift2 == 0, lane2, lane2 >> shift2_minus_one))]
        o4 = Signal()
        acc_r = Signal(signed(W["acc_r"]))
        recip4, ctl4 = Signal.like(recip1), Signal(o_ctl)
        m.d.sync += [o4.eq(o3), recip4.eq(recip3), ctl4.eq(ctl3),
                     acc_r.eq(Mux(round3, (shifted3 + 1) >> 1, shifted3))]
        prod, prod_latency = pipelined_product(m, acc_r, recip4, name="out_prod")
        o_prod = [o4]
        ctl_prod = ctl4
        for k in range(prod_latency):
            nxt_v, nxt_c = Signal(name=f"o_prod_v{k}"), Signal(o_ctl, name=f"o_prod_ctl{k}")
            m.d.sync += [nxt_v.eq(o_prod[-1]), nxt_c.eq(ctl_prod)]
            o_prod.append(nxt_v)
            ctl_prod = nxt_c
        o_last = Signal()
        out_data = Signal(signed(am.ACT_BITS))
        ctl_last = Signal(o_ctl)
        rounded = (prod + (1 << (R + GUARD - 1))) >> (R + GUARD)
        m.d.sync += [o_last.eq(o_prod[-1]), ctl_last.eq(ctl_prod),
                     out_data.eq(am.saturate(rounded, 32))]
        m.d.comb += [out_fifo.i.valid.eq(o_last), out_fifo.i.payload.data.eq(out_data),
                     out_fifo.i.payload.first.eq(ctl_last.first),
                     out_fifo.i.payload.last.eq(ctl_last.last)]
        out_busy = outputting | Cat(o1, o2, o3, *o_prod, o_last).any()

        with m.FSM():
            with m.State("Idle"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [pos.eq(self.cmd.payload.pos), q_taking.eq(1),
                                 q_in_count.eq(0), q_lane.eq(0), q_word.eq(0), q_elem.eq(0),
                                 q_head.eq(0)]
                    m.next = "Q"
            with m.State("Q"):
                with m.If(q_done):
                    m.d.sync += [q_taking.eq(0), feeding.eq(1), phase2.eq(0), rb.eq(0),
                                 sub.eq(0), j.eq(0), cc.eq(0), g.eq(0), t.eq(0)]
                    m.next = "Pass1"
            with m.State("Pass1"):
                # pass 2 rewrites the accumulators: the previous call's output must be done
                with m.If(~feeding & ~p1_busy & ~out_busy):
                    m.d.sync += [feeding.eq(1), phase2.eq(1), rb.eq(0),
                                 sub.eq(0), j.eq(0), cc.eq(0), g.eq(0), t.eq(0)]
                    m.next = "Pass2"
            with m.State("Pass2"):
                with m.If(~feeding & ~p2_busy):
                    m.d.comb += start_out.eq(1)
                    m.d.sync += [oh.eq(0), oc.eq(0), ol.eq(0), outputting.eq(1)]
                    m.next = "Idle"
        return m
