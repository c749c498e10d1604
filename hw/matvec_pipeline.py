"""Pipeline pieces of the MatVec engine (:mod:`speedllm.hw.matvec`).

The engine's datapath is one pipeline that advances on a single enable ``en``: every stage
is a register loaded when ``en`` is high, and a ``valid`` bit plus a :func:`tag_layout`
tag travel beside the data. The helpers here add such stages to a module:

* :func:`stage` -- one enabled register.
* :func:`adder_tree` -- a registered binary adder tree (one level per stage).
* :func:`round_shift_saturate` -- ``saturate(round_shift(t, shift))`` in five stages
  (:func:`saturate_fast`: a saturation without a comparator).

:class:`BeatAdapter` is a stream component that turns AXI beats of one width into lane
vectors of another (split a wide beat, or gather narrow ones).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .tables import check_positive_int, saturate

__all__ = ["tag_layout", "shift_amounts", "stage", "adder_tree", "saturate_fast",
           "bit_length_tree", "round_shift_saturate", "BeatAdapter"]


def tag_layout(value_bits: int, out_bits: int) -> data.StructLayout:
    """Where a lane vector sits: first/last beat of its group (``gfirst``/``glast``), first/
    last group of its row (``rfirst``/``rlast``), first/last row of its command
    (``cfirst``/``clast``), and its command's shift as :func:`shift_amounts` gives it for
    a ``value_bits`` row sum and an ``out_bits`` result."""
    return data.StructLayout({
        "gfirst": 1, "glast": 1, "rfirst": 1, "rlast": 1, "cfirst": 1, "clast": 1,
        "rshift": range(value_bits), "lshift": range(out_bits + 1), "round": 1,
    })


def shift_amounts(shift, value_bits: int, out_bits: int):
    """Split a signed ``shift`` (``round_shift``'s ``s``) into ``(rshift, lshift, round)``.

    ``s > 0``: ``rshift = min(s - 1, value_bits - 1)`` and ``round = 1`` (a right shift by
    ``s - 1`` then ``(r + 1) >> 1``; past ``value_bits - 1`` the result is 0 either way).
    ``s <= 0``: ``lshift = min(-s, out_bits)`` (a non-zero value shifted that far
    saturates anyway). Computed once per command, so the epilogue's shifters take
    registered amounts.
    """
    rshift = Mux(shift <= 0, 0, Mux(shift - 1 > value_bits - 1, value_bits - 1, shift - 1))
    lshift = Mux(shift >= 0, 0, Mux(-shift > out_bits, out_bits, -shift))
    return rshift, lshift, shift > 0


def stage(m: Module, en, value, name: str, *, shape=None, reset: bool = False):
    """A register named ``name`` that loads ``value`` when ``en`` is high.

    ``shape`` defaults to the shape (or layout) of ``value``. Valid bits pass
    ``reset=True``; data registers are reset-less (their contents do not matter while
    their valid bit is low).
    """
    if shape is None:
        shape = value.shape()
    reg = Signal(shape, name=name, reset_less=not reset)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def adder_tree(m: Module, en, terms, valid, tag, widths):
    """Sum ``terms`` (a power-of-two count) with one registered adder level per stage.

    ``widths[k]`` is the signed width after level ``k``. Returns ``(sum, valid, tag,
    valids)``, ``valids`` being the valid bit of every level (for a busy flag).
    """
    valids = []
    level = 0
    while len(terms) > 1:
        shape = signed(widths[level])
        terms = [stage(m, en, terms[2 * k] + terms[2 * k + 1], f"tree{level}_{k}",
                       shape=shape) for k in range(len(terms) // 2)]
        valid = stage(m, en, valid, f"tree{level}_valid", reset=True)
        tag = stage(m, en, tag, f"tree{level}_tag")
        valids.append(valid)
        level += 1
    return terms[0], valid, tag, valids


def saturate_fast(value, bits: int) -> Value:
    """``tables.saturate(value, bits)`` (clamp to the signed ``bits``-bit range) without a
    comparator: the value fits when its bits from ``bits - 1`` up are all equal (a signed
    value) or all zero (an unsigned one), else the sign picks the bound. Those are LUT
    reductions a few levels deep, where ``value > hi`` is a carry chain as long as the
    value.
    """
    value = Value.cast(value)
    shape = value.shape()
    if shape.width < bits or (shape.signed and shape.width == bits):
        return value.as_signed() if shape.signed else value
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    top = value[bits - 1:]
    if shape.signed:
        fits = (top == 0) | (top == (1 << len(top)) - 1)
        negative = value[-1]
    else:
        fits = top == 0
        negative = 0
    return Mux(fits, value[:bits], Mux(negative, lo, hi)).as_signed()[:bits].as_signed()


def _leading_one(value: Value):
    """``(any, p)``: whether ``value`` has a set bit, and the index of its highest one
    (``ceil_log2(width)`` bits). Halves are split at a power of two, so the high half's
    index is the low half's index with one more bit on top: no adders."""
    width = len(value)
    if width == 1:
        return value[0], Const(0, 0)
    n = ceil_log2(width) - 1                   # index bits of either half
    half = 1 << n
    lo_any, lo_p = _leading_one(value[:half])
    hi_any, hi_p = _leading_one(value[half:])
    hi_p = Cat(hi_p, Const(0, n))[:n]           # the high half may be narrower
    return lo_any | hi_any, Mux(hi_any, Cat(hi_p, Const(1, 1)), Cat(lo_p, Const(0, 1)))


def bit_length_tree(value) -> Value:
    """``int.bit_length`` of a non-negative ``value`` in ``ceil(log2(width))`` mux levels
    (a chain of one mux per bit, the plain form, is as deep as the value is wide)."""
    value = Value.cast(value).as_unsigned()
    if len(value) == 0:
        return Const(0, 1)
    any_set, p = _leading_one(value)
    return Mux(any_set, p + 1, 0)


def round_shift_saturate(m: Module, en, value, valid, tag, bits: int):
    """``saturate(round_shift(value, s), bits)`` exactly as ``golden.formats``, with ``s``
    given as ``tag.rshift``/``tag.lshift``/``tag.round`` (:func:`shift_amounts`).

    Stage 1 shifts right by ``rshift``, stage 2 finishes the rounding (``(r + 1) >> 1``,
    which equals ``(v + 2**(s-1)) >> s``), stage 3 saturates, stage 4 shifts left by
    ``lshift``, stage 5 saturates. One carry chain (stage 2) is the deepest logic of any
    stage; saturating before the left shift gives the same result as after it. Returns
    ``(result, valid, tag, valids)``.
    """
    value = Value.cast(value)
    width = len(value)
    r1 = stage(m, en, value >> tag.rshift, "rs_shifted", shape=signed(width))
    up1 = stage(m, en, tag.round, "rs_round")
    ls1 = stage(m, en, tag.lshift, "rs_left")
    v1 = stage(m, en, valid, "rs_valid1", reset=True)
    t1 = stage(m, en, tag, "rs_tag1")

    r2 = stage(m, en, Mux(up1, (r1 + 1) >> 1, r1), "rs_rounded", shape=signed(width))
    ls2 = stage(m, en, ls1, "rs_left2")
    v2 = stage(m, en, v1, "rs_valid2", reset=True)
    t2 = stage(m, en, t1, "rs_tag2")

    c3 = stage(m, en, saturate_fast(r2, bits), "rs_sat1", shape=signed(bits))
    ls3 = stage(m, en, ls2, "rs_left3")
    v3 = stage(m, en, v2, "rs_valid3", reset=True)
    t3 = stage(m, en, t2, "rs_tag3")

    d4 = stage(m, en, c3 << ls3, "rs_left_shifted", shape=signed(2 * bits))
    v4 = stage(m, en, v3, "rs_valid4", reset=True)
    t4 = stage(m, en, t3, "rs_tag4")

    r5 = stage(m, en, saturate_fast(d4, bits), "rs_result", shape=signed(bits))
    v5 = stage(m, en, v4, "rs_valid5", reset=True)
    t5 = stage(m, en, t4, "rs_tag5")
    return r5, v5, t5, [v1, v2, v3, v4, v5]


class BeatAdapter(wiring.Component):
    """Turns ``in_bits`` beats into ``out_bits`` words (both powers of two, one divides
    the other), least significant part first.

    Ports
    -----
    i : In(stream.Signature(unsigned(in_bits)))
    o : Out(stream.Signature(unsigned(out_bits)))

    Latency and throughput
    ----------------------
    Combinational (latency 0). Equal widths: a wire. Wider input (split): each beat gives
    ``in_bits / out_bits`` words, one per cycle; ``i.ready`` is ``o.ready`` on the beat's
    last word. Narrower input (gather): ``out_bits / in_bits - 1`` beats are held in a
    register, the word goes out with the final beat; one beat per cycle in.
    """

    def __init__(self, in_bits: int, out_bits: int):
        for name, v in (("in_bits", in_bits), ("out_bits", out_bits)):
            check_positive_int(name, v)
            if v & (v - 1):
                raise ValueError(f"{name} must be a power of two, not {v!r}")
        self._in_bits, self._out_bits = in_bits, out_bits
        super().__init__({
            "i": In(stream.Signature(unsigned(in_bits))),
            "o": Out(stream.Signature(unsigned(out_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        ib, ob = self._in_bits, self._out_bits
        if ib == ob:
            m.d.comb += [o.payload.eq(i.payload), o.valid.eq(i.valid), i.ready.eq(o.ready)]
        elif ib > ob:
            ratio = ib // ob
            part = Signal(range(ratio))
            final = part == ratio - 1
            m.d.comb += [
                o.payload.eq(i.payload.word_select(part, ob)),
                o.valid.eq(i.valid),
                i.ready.eq(o.ready & final),
            ]
            with m.If(o.valid & o.ready):
                m.d.sync += part.eq(Mux(final, 0, part + 1))
        else:
            ratio = ob // ib
            held = Signal(ob - ib)
            count = Signal(range(ratio))
            final = count == ratio - 1
            m.d.comb += [
                o.payload.eq(Cat(held, i.payload)),
                o.valid.eq(i.valid & final),
                i.ready.eq(~final | o.ready),
            ]
            with m.If(i.valid & i.ready):
                m.d.sync += count.eq(Mux(final, 0, count + 1))
                with m.If(~final):
                    m.d.sync += held.word_select(count, ib).eq(i.payload)
        return m
