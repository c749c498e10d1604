"""cocotb testbench of :class:`speedllm.hw.residual.ResidualAdd`.

Parameters: none. Vectors: random ACT vector pairs (full range, small values, the int32
limits, so both saturation directions occur) of ragged lengths; a few full-size ones.
Golden model: :func:`speedllm.golden.intops.residual_add`; in-order checker on ``o``.

:func:`packets`, :func:`random_act` and :func:`check_in_order` are shared by the testbenches
of the other element-wise units (RMSNorm, RoPE, SwiGLU).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from speedllm.golden import formats, intops
from speedllm.hw.tables import act_packet_layout
from speedllm.sim.runner import vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PAUSE_MIXES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]
FULL_SIZES = [64, 172, 288, 768]


def packets(vector):
    """ACT vector -> beats with ``first``/``last``."""
    n = len(vector)
    return [{"data": int(v), "first": int(k == 0), "last": int(k == n - 1)}
            for k, v in enumerate(vector)]


def random_act(rng: np.random.Generator, n: int) -> np.ndarray:
    """ACT values: a random mix of full-range, small and extreme values."""
    kind = rng.integers(4)
    if kind == 0:
        v = rng.integers(formats.ACT_MIN, formats.ACT_MAX, n, endpoint=True)
    elif kind == 1:
        v = rng.integers(-(1 << 20), 1 << 20, n)
    elif kind == 2:
        v = rng.choice([formats.ACT_MIN, formats.ACT_MAX, 0, -1, 1], n)
    else:
        v = rng.integers(1 << 30, formats.ACT_MAX, n, endpoint=True) * rng.choice([-1, 1], n)
    return v.astype(np.int64)


def check_in_order(got, expected, what=""):
    """Assert ``got == expected`` beat by beat, naming the first difference."""
    assert len(got) == len(expected), f"{what}got {len(got)} beats, expected {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{what}beat {k}: got {g}, expected {e}"


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        layout = act_packet_layout(1)
        self.x = StreamSource(dut, "x", dut.clk, shape=layout)
        self.y = StreamSource(dut, "y", dut.clk, shape=layout)
        self.o = StreamSink(dut, "o", dut.clk, shape=layout)

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.x.set_random_pause(src, self.pause_rng)
        self.y.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    async def check(self, pairs):
        expected = []
        for x, y in pairs:
            self.x.send_nowait(packets(x))
            self.y.send_nowait(packets(y))
            expected += packets(intops.residual_add(x, y))
        check_in_order(await self.o.recv(len(expected)), expected)


@cocotb.test()
async def test_random_vectors(dut):
    """>= 1,000 random vector pairs of lengths 1..16 under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        lengths = tb.rng.integers(1, 17, per_mix)
        await tb.check([(random_act(tb.rng, n), random_act(tb.rng, n)) for n in lengths])


@cocotb.test()
async def test_corners_and_full_size(dut):
    """Zeros, both saturation directions, length 1, ragged and full-size dims."""
    tb = TB(dut)
    await tb.reset()
    lo, hi = formats.ACT_MIN, formats.ACT_MAX
    corners = [
        (np.zeros(8, np.int64), np.zeros(8, np.int64)),
        (np.full(5, hi, np.int64), np.full(5, hi, np.int64)),
        (np.full(5, lo, np.int64), np.full(5, lo, np.int64)),
        (np.array([hi, lo, hi, lo]), np.array([lo, hi, 1, -1])),
        (np.array([7]), np.array([-9])),
        (random_act(tb.rng, 65), random_act(tb.rng, 65)),
    ]
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners + [(random_act(tb.rng, n), random_act(tb.rng, n))
                                  for n in FULL_SIZES])


@cocotb.test()
async def test_throughput(dut):
    """With no pauses a 768-element vector passes at one beat per cycle."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.0, 0.0)
    n = 768
    start = cocotb.utils.get_sim_time("ns")
    await tb.check([(random_act(tb.rng, n), random_act(tb.rng, n))])
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert cycles <= n + 4, f"{n} beats took {cycles} cycles"
