"""Sequential unsigned divider (one quotient bit per cycle), used by the attention unit.

The attention unit needs one division per query head (the reciprocal of the softmax sum),
so a small restoring divider that takes ``dividend_bits`` cycles is enough and costs no
DSP blocks.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SequentialDivider"]


class SequentialDivider(wiring.Component):
    """Restoring division ``quotient = dividend // divisor``, ``remainder = dividend % divisor``.

    Parameters
    ----------
    dividend_bits : int
        Width of the unsigned dividend (and of the quotient).
    divisor_bits : int
        Width of the unsigned divisor (and of the remainder).
    quotient_bits : int or None
        Quotient bits to compute (default ``dividend_bits``). With fewer, the caller
        guarantees ``dividend >> quotient_bits < divisor`` (so the quotient fits), and the
        division takes ``quotient_bits`` steps instead of ``dividend_bits``.

    Ports
    -----
    i : In(stream)
        Payload ``{dividend: unsigned(dividend_bits), divisor: unsigned(divisor_bits)}``.
    o : Out(stream)
        Payload ``{quotient: unsigned(dividend_bits), remainder: unsigned(divisor_bits)}``.
        A zero divisor gives an all-ones quotient and ``remainder = dividend`` truncated
        (callers of this project never divide by zero; the value is defined so the
        hardware never hangs).

    Latency and throughput
    ----------------------
    ``quotient_bits + 1`` cycles from accepting ``i`` to ``o.valid``; one division at a
    time (``i.ready`` is low while busy or while the result waits for ``o.ready``).
    """

    def __init__(self, dividend_bits: int, divisor_bits: int, quotient_bits: int | None = None):
        if quotient_bits is None:
            quotient_bits = dividend_bits
        for name, v in (("dividend_bits", dividend_bits), ("divisor_bits", divisor_bits),
                        ("quotient_bits", quotient_bits)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, not {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be positive, not {v!r}")
        if quotient_bits > dividend_bits:
            raise ValueError(f"quotient_bits ({quotient_bits}) must not exceed dividend_bits "
                             f"({dividend_bits})")
        if dividend_bits - quotient_bits > divisor_bits:
            raise ValueError(f"dividend_bits - quotient_bits ({dividend_bits - quotient_bits}) "
                             f"must not exceed divisor_bits ({divisor_bits})")
        self._dividend_bits = dividend_bits
        self._divisor_bits = divisor_bits
        self._quotient_bits = quotient_bits
        in_layout = data.StructLayout({"dividend": unsigned(dividend_bits),
                                       "divisor": unsigned(divisor_bits)})
        out_layout = data.StructLayout({"quotient": unsigned(quotient_bits),
                                        "remainder": unsigned(divisor_bits)})
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(out_layout))})

    @property
    def dividend_bits(self) -> int:
        return self._dividend_bits

    @property
    def divisor_bits(self) -> int:
        return self._divisor_bits

    @property
    def quotient_bits(self) -> int:
        return self._quotient_bits

    def elaborate(self, platform):
        m = Module()
        n, d, nq = self._dividend_bits, self._divisor_bits, self._quotient_bits

        # `shift` starts as the low `nq` dividend bits (the partial remainder as the high
        # ones); each step moves its top bit into the partial remainder and a quotient bit
        # into its bottom, so it ends as the quotient.
        shift = Signal(nq)
        rem = Signal(d)
        divisor = Signal(d)
        count = Signal(range(nq + 1))
        busy = Signal()

        trial = Signal(d + 1)                 # partial remainder after shifting in one bit
        diff = Signal(d + 2)
        m.d.comb += [
            trial.eq(Cat(shift[nq - 1], rem)),
            diff.eq(trial - divisor),
        ]
        fits = ~diff[d + 1]                   # trial >= divisor (no borrow)

        m.d.comb += [
            self.i.ready.eq(~busy & ~self.o.valid),
            self.o.payload.quotient.eq(shift),
            self.o.payload.remainder.eq(rem),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shift.eq(self.i.payload.dividend[:nq]),
                divisor.eq(self.i.payload.divisor),
                rem.eq(self.i.payload.dividend[nq:]),
                count.eq(nq),
                busy.eq(1),
            ]
        with m.Elif(busy):
            m.d.sync += [
                shift.eq(Cat(fits, shift[: nq - 1])),
                rem.eq(Mux(fits, diff[:d], trial[:d])),
                count.eq(count - 1),
            ]
            with m.If(count == 1):
                m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
        return m
