"""ACT -> X16 quantizer of the accelerator top: an ACT vector in, its X16 bytes out.

Golden: ``formats.quantize_act(x)`` (block exponent ``formats.act_block_exponent``, mantissas
``sat16(round_shift(x, e))``) laid out as ``dram_format.x16_bytes(x16, e)``: ``n`` int16
mantissas, then ``e`` as an int32. The output is that byte string as little-endian 16-bit
words (:func:`word16_layout`), ready for a 16-bit-element vector writer.

The pieces shared with :mod:`speedllm.hw.kv_row_writer` live here too: the word layout,
the OR-fold of ``x ^ (x >> 31)``, the block exponent from a fold (a leading-one detector)
and the two register stages of ``sat16(round_shift(x, e))``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats

from .matvec_pipeline import bit_length_tree, saturate_fast
from .tables import ACT_SHAPE, act_packet_layout, check_positive_int, packet_layout

__all__ = ["word16_layout", "fold_magnitude", "block_exponent", "quantize_pre",
           "quantize_post", "ActToX16"]

FOLD_BITS = formats.ACT_BITS - 1          # x ^ (x >> 31) of an int32 without its sign bit
PRE_SHAPE = signed(formats.ACT_BITS + 1)  # x >> (e - 1), or 2x when e = 0


class _Kind(enum.Enum, shape=2):
    """What an output word of :class:`ActToX16` holds."""
    MANT = 0        # an int16 mantissa
    EXP_LO = 1      # bits 0..15 of the int32 exponent
    EXP_HI = 2      # bits 16..31


def word16_layout() -> data.StructLayout:
    """A 16-bit memory word of a byte string: bytes ``2k`` (low) and ``2k + 1`` (high) in
    ``data``, with ``first``/``last`` on the string's first and final words."""
    return packet_layout(unsigned(16))


def fold_magnitude(x) -> Value:
    """``x ^ (x >> 31)`` of an int32 without its (always zero) sign bit: ``x`` when
    ``x >= 0``, ``~x`` when ``x < 0``. OR-ing it over a vector gives the block exponent."""
    x = Value.cast(x)
    return (x ^ (x >> (formats.ACT_BITS - 1)))[:FOLD_BITS]


def block_exponent(fold, mant_bits: int = formats.X_BITS) -> Value:
    """``max(0, bit_length(fold) - (mant_bits - 1))``: ``formats.block_exponents`` from the
    OR-folded magnitudes (a log-depth leading-one detector; register the result)."""
    length = bit_length_tree(fold)
    return Mux(length > mant_bits - 1, length - (mant_bits - 1), 0)


def quantize_pre(x, e) -> Value:
    """First stage of ``round_shift(x, e)``: ``x >> (e - 1)``, or ``2x`` when ``e == 0``."""
    e = Value.cast(e)
    return Mux(e == 0, Value.cast(x) << 1, Value.cast(x) >> (e - 1)[:len(e)])


def quantize_post(pre, bits: int = formats.X_BITS) -> Value:
    """Second stage: ``sat_bits((pre + 1) >> 1)`` (``((x >> (e-1)) + 1) >> 1`` equals
    ``(x + 2**(e-1)) >> e``: round half up). The saturation is comparator-free."""
    return saturate_fast((Value.cast(pre) + 1) >> 1, bits)


class ActToX16(wiring.Component):
    """One ACT vector per packet in, its X16 bytes (``dram_format.x16_bytes``) out as words.

    Two phases per vector, with the vector held in a ``max_n``-word buffer
    (``lib.memory.Memory``; ``max_n = 2048`` takes 2 RAMB36 on xc7, 4 EBR on ECP5):

    1. *Load*: take ``i`` into the buffer and OR-fold ``x ^ (x >> 31)``; after ``last``,
       one cycle turns the fold into ``e`` (:func:`block_exponent`).
    2. *Emit*: re-read the buffer through a four-register pipeline (buffer read, its
       output registered, ``x >> (e - 1)``, round and saturate) that stalls as a whole on
       ``o`` backpressure, and send ``n`` mantissa words ``sat16(round_shift(x, e))`` then
       ``e`` as an int32 in two words (low half, high half). ``i`` is not ready again
       until the final word has been taken.

    Parameters
    ----------
    max_n : int
        Longest vector (buffer depth), default 2048.

    Ports
    -----
    i : In(stream), payload ``act_packet_layout(1)``
        The vector, one int32 per beat; ``last`` ends it (``n`` = its beat count,
        ``1 <= n <= max_n``; a longer vector wraps in the buffer and comes out wrong).
        ``first`` is not used.
    o : Out(stream), payload :func:`word16_layout`
        ``n + 2`` words: the int16 mantissas (two's complement bits), then ``e & 0xffff``
        and ``e >> 16`` (= 0); ``first`` on the first word, ``last`` on the final one.
    exp : Out(range(17))
        The block exponent ``e`` of the vector on ``o``: set one cycle after the input's
        ``last`` (before the first word) and held until the next vector has been loaded.

    Latency and throughput
    ----------------------
    ``n`` cycles to load at one beat per cycle, then the first word is offered 6 cycles
    after the input's ``last`` was taken (1 exponent cycle, 1 issue cycle, 4 pipeline
    registers), and one word per cycle follows while ``o.ready`` stays high: with no stalls
    a vector takes ``2 n + 7`` cycles from its first input beat to its final word, and the
    next vector's first beat is taken in the following cycle (one vector every ``2 n + 7``
    cycles; ``tb_x16_quantize.test_latency`` measures these).
    """

    def __init__(self, *, max_n: int = 2048):
        self._max_n = check_positive_int("max_n", max_n)
        super().__init__({
            "i": In(stream.Signature(act_packet_layout(1))),
            "o": Out(stream.Signature(word16_layout())),
            "exp": Out(range(formats.X_BITS + 1)),
        })

    @property
    def max_n(self) -> int:
        return self._max_n

    def elaborate(self, platform):
        m = Module()
        depth = self._max_n
        m.submodules.buffer = buffer = Memory(shape=ACT_SHAPE, depth=depth, init=[])
        wp = buffer.write_port()
        rp = buffer.read_port()

        n = Signal(range(depth + 1))            # beats loaded
        fold = Signal(FOLD_BITS)
        e = self.exp
        words = Signal(range(depth + 3))        # words issued into the pipeline
        # Pipeline: issue -> t1 (buffer read) -> t2 (buffer output registered: block RAM
        # outputs are slow) -> t3 (x >> (e - 1)) -> o (round, saturate).
        tag = data.StructLayout({"valid": 1, "kind": _Kind, "first": 1, "last": 1})
        t1, t2, t3 = Signal(tag), Signal(tag), Signal(tag)
        x_r = Signal(ACT_SHAPE)
        pre = Signal(PRE_SHAPE)
        e32 = Signal(formats.ACT_BITS)          # e as the int32 the X16 format stores
        m.d.comb += e32.eq(e)

        advance = ~self.o.valid | self.o.ready
        m.d.comb += [wp.addr.eq(n), wp.data.eq(self.i.payload.data),
                     rp.addr.eq(words), rp.en.eq(advance)]

        with m.FSM(init="Load"):
            with m.State("Load"):
                m.d.comb += [self.i.ready.eq(1), wp.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    m.d.sync += [fold.eq(fold | fold_magnitude(self.i.payload.data)),
                                 n.eq(n + 1)]
                    with m.If(self.i.payload.last):
                        m.next = "Exponent"
            with m.State("Exponent"):
                m.d.sync += [e.eq(block_exponent(fold)), words.eq(0)]
                m.next = "Emit"
            with m.State("Emit"):
                issue = words != n + 2
                with m.If(advance):
                    with m.If(issue):
                        m.d.sync += words.eq(words + 1)
                    m.d.sync += [
                        t1.valid.eq(issue),
                        t1.kind.eq(Mux(words < n, _Kind.MANT,
                                       Mux(words == n, _Kind.EXP_LO, _Kind.EXP_HI))),
                        t1.first.eq(words == 0), t1.last.eq(words == n + 1),
                        t2.eq(t1), x_r.eq(rp.data),
                        t3.eq(t2), pre.eq(quantize_pre(x_r, e)),
                        self.o.valid.eq(t3.valid),
                        self.o.payload.first.eq(t3.first), self.o.payload.last.eq(t3.last),
                    ]
                    with m.Switch(t3.kind):
                        with m.Case(_Kind.MANT):
                            m.d.sync += self.o.payload.data.eq(quantize_post(pre))
                        with m.Case(_Kind.EXP_LO):
                            m.d.sync += self.o.payload.data.eq(e32[:16])
                        with m.Default():
                            m.d.sync += self.o.payload.data.eq(e32[16:])
                with m.If(self.o.valid & self.o.ready & self.o.payload.last):
                    m.d.sync += [n.eq(0), fold.eq(0), t1.eq(0), t2.eq(0), t3.eq(0)]
                    m.next = "Load"
        return m
