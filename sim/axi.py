"""cocotbext-axi helpers for our components: bus handles, RAMs that answer errors, pauses.

Amaranth flattens an AXI port ``m_axi`` into ``m_axi__araddr`` ...; the bus objects here
pass ``bus_separator="__"``.

:class:`ErrorRamRead` / :class:`ErrorRamWrite` are cocotbext-axi RAMs that answer SLVERR or
DECERR for beats whose address falls in a configured range (cocotbext-axi itself only
reports SLVERR, when its memory access raises). Reads of a bad address return zeros.
"""

from __future__ import annotations

import collections
import logging
import random

from cocotbext.axi import AxiReadBus, AxiResp, AxiWriteBus
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite

from .streams import random_pauses

__all__ = ["read_bus", "write_bus", "ErrorRamRead", "ErrorRamWrite", "ErrorRange",
           "set_channel_pauses", "AxiResp"]

ErrorRange = collections.namedtuple("ErrorRange", "start end resp")
"""Byte addresses ``start <= a < end`` answer ``resp`` (``AxiResp.SLVERR`` / ``DECERR``)."""


class _InjectedError(Exception):
    pass


def read_bus(dut, prefix="m_axi"):
    """The AR/R channels of an Amaranth read-master port."""
    return AxiReadBus.from_prefix(dut, prefix, bus_separator="__")


def write_bus(dut, prefix="m_axi"):
    """The AW/W/B channels of an Amaranth write-master port."""
    return AxiWriteBus.from_prefix(dut, prefix, bus_separator="__")


def _find(ranges, address):
    for r in ranges:
        if r.start <= address < r.end:
            return r
    return None


class ErrorRamRead(AxiRamRead):
    """A read-only AXI RAM (``.mem``, ``.read``, ``.write``) with error ranges.

    Parameters beyond cocotbext-axi's ``AxiRamRead``: ``error_ranges`` (list of
    :data:`ErrorRange`, changeable through ``.error_ranges``). Logs only warnings.
    """

    def __init__(self, bus, clock, reset=None, *, size=1 << 20, error_ranges=(), **kwargs):
        self._bad = collections.deque()           # resp of each failing beat, in order
        super().__init__(bus, clock, reset, size=size, **kwargs)
        self.log.setLevel(logging.WARNING)
        self.error_ranges = list(error_ranges)
        self.error_beats = 0
        send = self.r_channel.send

        async def send_with_resp(r):
            if int(r.rresp) == AxiResp.SLVERR and self._bad:
                r.rresp = self._bad.popleft()
            await send(r)
        self.r_channel.send = send_with_resp

    async def _read(self, address, length):
        bad = _find(self.error_ranges, address)
        if bad is not None:
            self._bad.append(bad.resp)
            self.error_beats += 1
            raise _InjectedError(hex(address))
        return await super()._read(address, length)

    def _handle_reset(self, state):
        super()._handle_reset(state)
        self._bad.clear()


class ErrorRamWrite(AxiRamWrite):
    """A write-only AXI RAM with error ranges: a burst with any beat in a range gets that
    range's BRESP (the first such beat's), and its bad beats are not written."""

    def __init__(self, bus, clock, reset=None, *, size=1 << 20, error_ranges=(), **kwargs):
        super().__init__(bus, clock, reset, size=size, **kwargs)
        self.log.setLevel(logging.WARNING)
        self.error_ranges = list(error_ranges)
        self._burst_resp = None
        self.error_beats = 0
        send = self.b_channel.send

        async def send_with_resp(b):
            if int(b.bresp) == AxiResp.SLVERR and self._burst_resp is not None:
                b.bresp = self._burst_resp
            self._burst_resp = None
            await send(b)
        self.b_channel.send = send_with_resp

    async def _write(self, address, data):
        bad = _find(self.error_ranges, address)
        if bad is not None:
            if self._burst_resp is None:
                self._burst_resp = bad.resp
            self.error_beats += 1
            raise _InjectedError(hex(address))
        await super()._write(address, data)


def set_channel_pauses(channels, probability: float, rng: random.Random):
    """Random pauses (``probability`` of the cycles) on cocotbext-axi channel objects;
    ``probability == 0`` turns them off (use this, not ``set_pause_generator(None)``, which
    leaves a channel paused if its generator's last value was True)."""
    for ch in channels:
        ch.set_pause_generator(random_pauses(probability, random.Random(rng.random()))
                               if probability > 0 else None)
        if probability <= 0:
            ch.pause = False      # clearing a generator leaves its last value in force


async def check_error_responses(tb, dut):
    """The error scenario both AXI masters share: an OKAY command leaves ``error`` low;
    commands touching an SLVERR range and then a DECERR range raise it with the *first*
    code (SLVERR), ``clear`` drops it; a long command over the DECERR range reports
    DECERR. Run without and with channel pauses. ``tb`` provides ``bpb`` (bytes per
    beat), ``ram.error_ranges``, ``set_pauses(p)``, ``run_commands(cmds, bad_ranges)``
    and ``clear()``."""
    bad = [ErrorRange(0x8000, 0x8000 + 4 * tb.bpb, AxiResp.SLVERR),
           ErrorRange(0x9000, 0x9000 + tb.bpb, AxiResp.DECERR)]
    tb.ram.error_ranges = bad
    for probability in (0.0, 0.3):
        tb.set_pauses(probability)
        await tb.run_commands([(0x7000, 3)])
        assert not dut.error.value
        await tb.run_commands([(0x8000 - 2 * tb.bpb, 8), (0x9000 - tb.bpb, 3), (0x100, 2)],
                              bad)
        assert dut.error.value and dut.error_resp.value.to_unsigned() == AxiResp.SLVERR
        await tb.clear()
        assert not dut.error.value
        await tb.run_commands([(0x9000, 300)], bad)
        assert dut.error.value and dut.error_resp.value.to_unsigned() == AxiResp.DECERR
        await tb.clear()
