"""Embedding row fetch: one token's W8 row (int8 + group-scale mantissas) in, ACT out.

Golden: ``speedllm.golden.intops.embedding(table, token)``; per element
``saturate32(round_shift(q * m_g, scale_exp - 16))``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats

from .matvec_pipeline import saturate_fast
from .tables import act_packet_layout, check_positive_int, packet_layout

#: Largest shift magnitude applied in either direction. ``|q * m| < 2**23``, so any right
#: shift >= 25 already gives 0 and any left shift >= 31 of a non-zero product saturates.
MAX_SHIFT = 31


class EmbeddingFetch(wiring.Component):
    """Dequantize a W8 row as it streams in: ``o[k] = sat32(round_shift(q[k] * m[k // GS], e - 16))``.

    The row arrives as it sits in DRAM: ``cols_padded`` int8 weights (the row zero-padded to
    a multiple of ``group_size``, ``formats.QuantizedMatrix.q``) in beats of ``lanes`` weights,
    and on a second stream the row's ``n_groups`` uint16 mantissas (``scale_m[token]``).

    Parameters
    ----------
    lanes : int
        int8 weights per beat (8 for a 64-bit AXI beat). Must divide ``group_size``.
    group_size : int
        Weights per scale group (``formats.DEFAULT_GROUP_SIZE``).

    Ports
    -----
    w : In(stream), payload ``{data: int8[lanes], first, last}``
        The row's weights; ``last`` on the row's final beat (the end of a group).
    s : In(stream), payload ``unsigned(16)``
        One mantissa per group, consumed with the group's final weight beat.
    scale_exp : In(signed(8))
        The table's ``scale_exp``; hold it steady while a row streams.
    o : Out(stream), payload ``act_packet_layout(lanes)``
        ``lanes`` ACT values per beat, ``first``/``last`` copied from ``w``.

    Latency and throughput
    ----------------------
    Five register stages (multiplier inputs, product, shifted, rounded, saturated result):
    a beat appears 5 cycles after it is taken; one beat per cycle. The whole pipeline stalls while
    ``o`` is stalled (``w.ready`` follows ``o.ready`` combinationally).
    """

    def __init__(self, *, lanes: int = 8, group_size: int = formats.DEFAULT_GROUP_SIZE):
        self._lanes = check_positive_int("lanes", lanes)
        self._group_size = check_positive_int("group_size", group_size)
        if group_size % lanes:
            raise ValueError(f"lanes ({lanes}) must divide group_size ({group_size})")
        super().__init__({
            "w": In(stream.Signature(packet_layout(data.ArrayLayout(signed(8), lanes)))),
            "s": In(stream.Signature(unsigned(formats.SCALE_BITS))),
            "scale_exp": In(signed(8)),
            "o": Out(stream.Signature(act_packet_layout(lanes))),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def group_size(self) -> int:
        return self._group_size

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats_per_group = self._group_size // lanes

        # Shift amounts from the steady scale_exp (registered: off the critical path).
        shift = Signal(signed(10))
        left = Signal(range(MAX_SHIFT + 1))
        m.d.comb += shift.eq(self.scale_exp - formats.ACT_FRAC)
        # The right shift is applied as ``right - 1`` (then rounded): registered as such.
        right_minus_one = Signal(range(MAX_SHIFT))
        is_right = Signal()
        m.d.sync += [
            right_minus_one.eq(Mux(shift > 0, Mux(shift > MAX_SHIFT, MAX_SHIFT, shift) - 1, 0)),
            is_right.eq(shift > 0),
            left.eq(Mux(shift < 0, Mux(-shift > MAX_SHIFT, MAX_SHIFT, -shift), 0)),
        ]

        advance = ~self.o.valid | self.o.ready
        take = self.w.valid & self.s.valid & advance
        beat = Signal(range(beats_per_group))
        group_end = (beat == beats_per_group - 1) | self.w.payload.last
        m.d.comb += [
            self.w.ready.eq(take),
            self.s.ready.eq(take & group_end),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(group_end, 0, beat + 1))

        # Stage 1: multiplier inputs.
        q1 = Signal(data.ArrayLayout(signed(8), lanes))
        m1 = Signal(unsigned(formats.SCALE_BITS))
        v1, first1, last1 = Signal(), Signal(), Signal()
        # Stage 2: products (int8 * uint16 fits signed 25 bits).
        p2 = Signal(data.ArrayLayout(signed(25), lanes))
        v2, first2, last2 = Signal(), Signal(), Signal()
        # Stage 3: shifted (right by ``right - 1``, or left by ``left``; up to 25 +
        # MAX_SHIFT bits). Stage 4: rounded, ``(r + 1) >> 1`` after a right shift.
        # Output: saturated (a LUT reduction, no comparator).
        shifted3 = Signal(data.ArrayLayout(signed(25 + MAX_SHIFT), lanes))
        round3 = Signal()
        v3, first3, last3 = Signal(), Signal(), Signal()
        rounded4 = Signal(data.ArrayLayout(signed(25 + MAX_SHIFT), lanes))
        v4, first4, last4 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [
                q1.eq(self.w.payload.data), m1.eq(self.s.payload),
                first1.eq(self.w.payload.first), last1.eq(self.w.payload.last),
                v1.eq(take),
                v2.eq(v1), first2.eq(first1), last2.eq(last1),
                v3.eq(v2), first3.eq(first2), last3.eq(last2), round3.eq(is_right),
                v4.eq(v3), first4.eq(first3), last4.eq(last3),
                self.o.valid.eq(v4),
                self.o.payload.first.eq(first4), self.o.payload.last.eq(last4),
            ]
            for k in range(lanes):
                m.d.sync += [
                    p2[k].eq(q1[k] * m1),
                    shifted3[k].eq(Mux(is_right, p2[k] >> right_minus_one, p2[k] << left)),
                    rounded4[k].eq(Mux(round3, (shifted3[k] + 1) >> 1, shifted3[k])),
                ]
                result = saturate_fast(rounded4[k], formats.ACT_BITS)
                if lanes == 1:
                    m.d.sync += self.o.payload.data.eq(result)
                else:
                    m.d.sync += self.o.payload.data[k].eq(result)
        return m
