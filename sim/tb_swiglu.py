"""cocotb testbench of :class:`speedllm.hw.swiglu.SwiGluUnit`.

Parameters: none. Vectors: (h1, h3) pairs interleaved in one stream, h1 spanning the table
range, its edges (|x| = 16 exactly, just below) and beyond (saturated sigmoid), h3 random
of every magnitude (saturating products). Golden model: :func:`speedllm.golden.intops.swiglu`.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from speedllm.golden import formats, intops
from speedllm.hw.tables import act_packet_layout
from speedllm.sim.runner import vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset
from speedllm.sim.tb_residual import PAUSE_MIXES, check_in_order, packets, random_act

EDGE = 1 << (formats.ACT_FRAC + formats.SIGMOID_RANGE_LOG2)   # |x| = 16: end of the table


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.i = StreamSource(dut, "i", dut.clk, shape=act_packet_layout(1))
        self.o = StreamSink(dut, "o", dut.clk, shape=act_packet_layout(1))

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.i.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    def random_h1(self, n):
        if self.rng.random() < 0.5:     # mostly inside the table, where the ROM matters
            x = self.rng.uniform(-20, 20, n) * (1 << formats.ACT_FRAC)
            return np.round(x).astype(np.int64)
        return random_act(self.rng, n)

    async def check(self, pairs):
        expected = []
        for h1, h3 in pairs:
            self.i.send_nowait(packets(np.stack([h1, h3], axis=1).reshape(-1)))
            out = intops.swiglu(h1, h3)
            n = len(out)
            expected += [{"data": int(v), "first": int(k == 0), "last": int(k == n - 1)}
                         for k, v in enumerate(out)]
        check_in_order(await self.o.recv(len(expected)), expected)


@cocotb.test()
async def test_random_vectors(dut):
    """>= 1,000 random vectors of 1..16 pairs under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        lengths = tb.rng.integers(1, 17, per_mix)
        await tb.check([(tb.random_h1(n), random_act(tb.rng, n)) for n in lengths])


@cocotb.test()
async def test_corners_and_full_size(dut):
    """Table edges, int32 limits, zeros, length 1, ragged 65 and 172, hidden 768."""
    tb = TB(dut)
    await tb.reset()
    lo, hi = formats.ACT_MIN, formats.ACT_MAX
    edges = np.array([0, 1, -1, EDGE, -EDGE, EDGE - 1, -(EDGE - 1), EDGE + 1, lo, hi,
                      1 << 11, -(1 << 11), (1 << 11) - 1])
    corners = [
        (edges, np.full(len(edges), 1 << formats.ACT_FRAC)),
        (edges, np.full(len(edges), hi)),
        (edges, np.full(len(edges), lo)),
        (np.zeros(4, np.int64), random_act(tb.rng, 4)),
        (np.array([hi]), np.array([hi])),
    ]
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners + [(tb.random_h1(n), random_act(tb.rng, n))
                                  for n in [65, 172, 768]])
