"""Stream building blocks shared by every hardware unit.

* :class:`StreamFifo` -- a first-in first-out queue with ``lib.stream`` ports, wrapping
  :class:`amaranth.lib.fifo.SyncFIFOBuffered` (block-RAM friendly: registered read).
* :class:`StreamRegister` -- one pipeline register stage (a "pipe"), full throughput.

Both are payload-agnostic: the payload shape is any Amaranth shape or ``data`` layout
(``signed(16)``, ``data.StructLayout({"data": 64, "last": 1})``, ...).
"""

from __future__ import annotations

from amaranth import Module, Shape, Value
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFifo", "StreamRegister", "check_shape"]


def check_shape(shape, what="shape"):
    """Return ``shape`` if Amaranth can cast it to a shape, else raise ``TypeError``."""
    try:
        width = Shape.cast(shape).width
    except TypeError:
        raise TypeError(f"{what} must be an Amaranth shape or layout, not {shape!r}") from None
    if width == 0:
        raise ValueError(f"{what} must be at least 1 bit wide, not {shape!r}")
    return shape


class StreamFifo(wiring.Component):
    """A stream FIFO of ``depth`` entries of ``shape``.

    Parameters
    ----------
    shape : shape-castable
        Payload shape of ``i`` and ``o``.
    depth : int
        Number of entries (>= 1). ``depth == 1`` is a single register and passes at most
        one entry every other cycle; use ``depth >= 2`` for full throughput. Depths 1 and 2
        use :class:`~amaranth.lib.fifo.SyncFIFO` (registers, first-word fall-through);
        from 3 on, :class:`~amaranth.lib.fifo.SyncFIFOBuffered`: one entry sits in the
        output register, ``depth - 1`` in a ``lib.memory.Memory`` (block RAM on FPGAs).

    Ports
    -----
    i : In(stream.Signature(shape))
        Entries to store. ``i.ready`` is high while the FIFO is not full.
    o : Out(stream.Signature(shape))
        Entries in arrival order. ``o.valid`` is high while the FIFO is not empty.
    level : Out(range(depth + 1))
        Number of entries held.

    Latency and throughput
    ----------------------
    An entry accepted on ``i`` in cycle *n* is offered on ``o`` in cycle *n + 2* when the
    FIFO was empty and ``depth >= 3`` (one cycle for the memory write, one for the
    registered read), in cycle *n + 1* for depths 1 and 2 (:attr:`latency`).
    Throughput is one entry per cycle for ``depth >= 2``. ``i.ready`` does not depend on
    ``i.valid``, and ``o.valid`` does not depend on ``o.ready`` (no combinational path
    from input to output).
    """

    def __init__(self, shape, depth):
        check_shape(shape)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        """Cycles from an entry taken on ``i`` to it being offered on an empty ``o``."""
        return 1 if self._depth <= 2 else 2

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        if self._depth <= 2:
            queue = fifo.SyncFIFO(width=width, depth=self._depth)
        else:
            queue = fifo.SyncFIFOBuffered(width=width, depth=self._depth)
        m.submodules.fifo = queue
        m.d.comb += [
            queue.w_data.eq(Value.cast(self.i.payload)),
            queue.w_en.eq(self.i.valid),
            self.i.ready.eq(queue.w_rdy),
            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
            self.level.eq(queue.level),
        ]
        return m


class StreamRegister(wiring.Component):
    """One register stage between two streams (cuts the forward path only).

    Ports
    -----
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))

    Latency and throughput
    ----------------------
    Latency 1 cycle; one entry per cycle while ``o.ready`` is high. ``i.ready`` is
    combinational from ``o.ready`` and ``o.valid`` (``~o.valid | o.ready``), so the
    backward ``ready`` path is not registered; put a :class:`StreamFifo` where the ready
    path must be cut too.
    """

    def __init__(self, shape):
        check_shape(shape)
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
