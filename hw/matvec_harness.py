"""A pin-frugal wrapper for measuring a component's Fmax with real place and route.

A MatVec engine has a few hundred port bits, more than an ECP5-85 package has pins.
:class:`TimingHarness` feeds every input port of the wrapped component from one long shift
register clocked in through a single pin, and folds every output port, registered, into
eight XOR trees on eight pins. Nothing can be optimised away (every output bit reaches a
pin, every input bit comes from a flip-flop), and the harness adds only register-to-
register paths of its own, so the critical path nextpnr reports is the component's.
Used by ``bench/matvec_cycles.py --ecp5``; not part of any accelerator.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TimingHarness"]


class TimingHarness(wiring.Component):
    """Wraps ``inner`` (a ``wiring.Component`` in the ``sync`` domain) for P&R.

    Ports
    -----
    din : In(1)
        Serial input shifted into the register that drives all of ``inner``'s inputs.
    dout : Out(8)
        Bit ``k`` is the XOR of every ``8``-th registered output bit of ``inner`` from ``k``.
    """

    def __init__(self, inner: wiring.Component):
        if not isinstance(inner, wiring.Component):
            raise TypeError(f"inner must be a wiring.Component, not {inner!r}")
        self._inner = inner
        super().__init__({"din": In(1), "dout": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        inputs, outputs = [], []
        for _path, member, value in inner.signature.flatten(inner):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        total = sum(len(v) for v in inputs)
        chain = Signal(max(total, 2))
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
        offset = 0
        for v in inputs:
            m.d.comb += v.eq(chain[offset:offset + len(v)])
            offset += len(v)
        flat = Cat(*outputs)
        captured = Signal(len(flat))
        m.d.sync += captured.eq(flat)
        folded = Cat(*(Cat(*(captured[b] for b in range(k, len(flat), 8))).xor()
                       for k in range(8)))
        m.d.sync += self.dout.eq(folded)
        return m
