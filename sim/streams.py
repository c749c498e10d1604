"""cocotb drivers for Amaranth ``lib.stream`` ports, plus payload packing.

Amaranth's Verilog back end flattens a stream port ``i`` into ``i__valid``, ``i__ready`` and
``i__payload`` (the whole payload, struct fields included, is one vector; the first field of
a ``StructLayout`` sits in the low bits). A stream nested in an interface gets a longer
prefix (``cmd__i``); pass it as ``prefix``.

Use in a cocotb test::

    src = StreamSource(dut, "i", dut.clk, shape=layout)   # drives i__valid / i__payload
    snk = StreamSink(dut, "o", dut.clk, shape=layout)     # drives o__ready
    src.set_random_pause(0.3, rng)                          # valid gaps, 30 % of cycles
    snk.set_random_pause(0.3, rng)                          # ready low 30 % of cycles
    await start_clock_and_reset(dut)
    src.send_nowait([{"data": 5, "last": 1}, ...])
    got = await snk.recv(n)                                 # dicts for struct payloads

Both drivers act right after each rising clock edge: a beat transfers on the edge where
``valid`` and ``ready`` were both high. A source keeps ``valid`` and the payload stable
until its beat is taken (pauses only delay the *next* beat); a sink may lower ``ready`` at
any time. Values are Python ints (signed for signed shapes), dicts for ``StructLayout``
and lists for ``ArrayLayout``, converted with :func:`pack` / :func:`unpack`.
"""

from __future__ import annotations

import collections
import itertools
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["StreamSource", "StreamSink", "pack", "unpack", "start_clock_and_reset",
           "random_pauses"]


def _as_layout(shape):
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def pack(shape, value) -> int:
    """Bits (an unsigned int) of ``value`` in ``shape``.

    ``value`` is an int for plain shapes (negative allowed for signed ones), a dict of
    field values for a ``StructLayout``/``UnionLayout`` (missing fields are 0), a list for an
    ``ArrayLayout``; an int given for a layout is taken as the raw bits.
    """
    layout = _as_layout(shape)
    if layout is None or isinstance(value, int):
        width = Shape.cast(layout if layout is not None else shape).width
        v = int(value)
        if not -(1 << width) < v < (1 << width):
            raise ValueError(f"{value!r} does not fit in {width} bits of {shape!r}")
        return v & ((1 << width) - 1)
    bits = 0
    if isinstance(layout, data.ArrayLayout):
        items = enumerate(value)
        fields = dict(iter(layout))
    else:
        items = value.items()
        fields = {name: field for name, field in layout}
    for name, v in items:
        if name not in fields:
            raise KeyError(f"{name!r} is not a field of {shape!r}")
        field = fields[name]
        bits |= pack(field.shape, v) << field.offset
    return bits


def unpack(shape, bits: int):
    """Inverse of :func:`pack`: an int (signed for signed shapes), a dict or a list."""
    layout = _as_layout(shape)
    if layout is None:
        sh = Shape.cast(shape)
        bits &= (1 << sh.width) - 1
        if sh.signed and bits >> (sh.width - 1):
            bits -= 1 << sh.width
        return bits
    out = [] if isinstance(layout, data.ArrayLayout) else {}
    for name, field in layout:
        width = Shape.cast(field.shape).width
        v = unpack(field.shape, (bits >> field.offset) & ((1 << width) - 1))
        if isinstance(out, list):
            out.append(v)
        else:
            out[name] = v
    return out


def random_pauses(probability: float, rng: random.Random | None = None):
    """An endless generator of booleans, each True with ``probability`` (a pause)."""
    rng = rng or random.Random(0)
    while True:
        yield rng.random() < probability


async def start_clock_and_reset(dut, *, period_ns: int = 10, reset_cycles: int = 2,
                                clk: str = "clk", rst: str = "rst") -> None:
    """Start a clock on ``dut.clk`` and hold ``dut.rst`` high for ``reset_cycles``."""
    clock, reset = getattr(dut, clk), getattr(dut, rst)
    Clock(clock, period_ns, unit="ns").start()
    reset.value = 1
    await ClockCycles(clock, reset_cycles)
    reset.value = 0
    await RisingEdge(clock)


class _StreamEnd:
    def __init__(self, dut, prefix, clk, shape, sep):
        self.valid = getattr(dut, f"{prefix}{sep}valid")
        self.ready = getattr(dut, f"{prefix}{sep}ready")
        self.payload = getattr(dut, f"{prefix}{sep}payload", None)
        self.clk = clk
        self.shape = shape
        self.name = prefix
        self._pause = None

    def set_pause_generator(self, generator=None):
        """Pause on each cycle where ``next(generator)`` is true (None: never pause)."""
        self._pause = iter(generator) if generator is not None else None

    def set_random_pause(self, probability: float, rng: random.Random | None = None):
        """Pause on a random ``probability`` of the cycles (0 turns pauses off)."""
        self.set_pause_generator(random_pauses(probability, rng) if probability > 0 else None)

    def _paused(self) -> bool:
        return self._pause is not None and bool(next(self._pause))

    def _encode(self, value) -> int:
        return pack(self.shape, value) if self.shape is not None else int(value)

    def _decode(self, bits: int):
        return unpack(self.shape, bits) if self.shape is not None else bits


class StreamSource(_StreamEnd):
    """Drives ``<prefix>__valid`` and ``<prefix>__payload``, reads ``<prefix>__ready``.

    Parameters
    ----------
    dut : cocotb handle of the toplevel
    prefix : str
        Port name in the Amaranth signature (``"i"``, or a flattened path ``"cmd__i"``).
    clk : cocotb handle of the clock
    shape : shape-castable, optional
        Payload shape for :func:`pack`; None sends raw ints.
    sep : str
        Separator Amaranth put between the port and its members (``"__"``).
    """

    def __init__(self, dut, prefix, clk, *, shape=None, sep="__"):
        super().__init__(dut, prefix, clk, shape, sep)
        self._queue = collections.deque()
        self._idle = Event()
        self._idle.set()
        self.sent = 0
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, values) -> None:
        """Queue ``values`` (an iterable of payload values) and return at once."""
        encoded = [self._encode(v) for v in values]
        if encoded:
            self._queue.extend(encoded)
            self._idle.clear()

    async def send(self, values) -> None:
        """Queue ``values`` and wait until every queued beat has been taken."""
        self.send_nowait(values)
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait until the queue is empty and the last beat has been taken."""
        if self._queue:
            await self._idle.wait()

    def idle(self) -> bool:
        return not self._queue

    async def _run(self):
        driving = False
        while True:
            await RisingEdge(self.clk)
            if driving and self.ready.value:
                self._queue.popleft()
                self.sent += 1
                driving = False
                if not self._queue:
                    self._idle.set()
            if driving:
                continue                       # hold valid and payload until taken
            if self._queue and not self._paused():
                if self.payload is not None:
                    self.payload.value = self._queue[0]
                self.valid.value = 1
                driving = True
            else:
                self.valid.value = 0


class StreamSink(_StreamEnd):
    """Drives ``<prefix>__ready``, collects payloads when ``valid`` and ``ready``.

    Parameters are those of :class:`StreamSource`. Received values wait in a queue until
    :meth:`recv` (or :meth:`recv_nowait`) takes them.
    """

    def __init__(self, dut, prefix, clk, *, shape=None, sep="__"):
        super().__init__(dut, prefix, clk, shape, sep)
        self._received = collections.deque()
        self._arrived = Event()
        self.received_count = 0
        self.ready.value = 0
        cocotb.start_soon(self._run())

    def count(self) -> int:
        """Number of values received and not yet taken."""
        return len(self._received)

    def recv_nowait(self, n: int | None = None) -> list:
        """Take up to ``n`` (default all) received values."""
        n = len(self._received) if n is None else min(n, len(self._received))
        return [self._received.popleft() for _ in range(n)]

    async def recv(self, n: int = 1) -> list:
        """Wait until ``n`` values have arrived and return them (in arrival order)."""
        while len(self._received) < n:
            self._arrived.clear()
            await self._arrived.wait()
        return [self._received.popleft() for _ in range(n)]

    async def _run(self):
        ready = False
        while True:
            await RisingEdge(self.clk)
            if ready and self.valid.value:
                bits = int(self.payload.value) if self.payload is not None else 0
                self._received.append(self._decode(bits))
                self.received_count += 1
                self._arrived.set()
            ready = not self._paused()
            self.ready.value = int(ready)


def cycle_pattern(pattern):
    """``itertools.cycle`` over a 0/1 pattern, for :meth:`set_pause_generator`."""
    return itertools.cycle(pattern)
