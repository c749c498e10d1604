"""cocotb testbench of :class:`speedllm.hw.rmsnorm.RmsNormUnit`.

Parameters: ``max_dim``, ``output`` (``"act"``, or ``"x16"``: then the golden value is
``formats.quantize_act(intops.rmsnorm(x, g))`` and ``x_exp`` is checked with every beat).
Vectors: random ACT vectors whose magnitudes span the whole range
(so the block exponent takes every value 0..16), weights from ``quantize_norm_weight`` of
random floats or raw extreme int32 (saturation); corners: zeros, the int32 limits, length 1,
ragged 65 and 172, and the stories dims. Golden model: :func:`speedllm.golden.intops.rmsnorm`.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from speedllm.golden import formats, intops
from amaranth.hdl import signed
from cocotb.triggers import RisingEdge

from speedllm.hw.tables import act_packet_layout, packet_layout
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset
from speedllm.sim.tb_residual import PAUSE_MIXES, check_in_order, packets

FULL_SIZES = [64, 172, 288, 768]


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = tb_parameters()
        self.max_dim = params["max_dim"]
        self.x16 = params["output"] == "x16"
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.i = StreamSource(dut, "i", dut.clk, shape=act_packet_layout(1))
        self.g = StreamSource(dut, "g", dut.clk, shape=formats.ACT_BITS)
        self.o = StreamSink(dut, "o", dut.clk, shape=packet_layout(signed(formats.X_BITS))
                            if self.x16 else act_packet_layout(1))
        if self.x16:
            cocotb.start_soon(self._tag_exponents())
        self.exponents = []

    async def _tag_exponents(self):
        """Record ``x_exp`` at every transfer on ``o`` (it must hold the vector's exponent)."""
        while True:
            await RisingEdge(self.dut.clk)
            if int(self.dut.o__valid.value) and int(self.dut.o__ready.value):
                self.exponents.append(int(self.dut.x_exp.value))

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.i.set_random_pause(src, self.pause_rng)
        self.g.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    def random_x(self, n):
        scale = 2.0 ** self.rng.uniform(-16, 15)
        x = np.round(self.rng.standard_normal(n) * scale * (1 << formats.ACT_FRAC))
        return np.clip(x, formats.ACT_MIN, formats.ACT_MAX).astype(np.int64)

    def random_g(self, n):
        if self.rng.random() < 0.1:
            return self.rng.integers(formats.ACT_MIN, formats.ACT_MAX, n, endpoint=True)
        return formats.quantize_norm_weight(self.rng.uniform(-3, 3, n)).astype(np.int64)

    async def check(self, vectors):
        expected, exponents = [], []
        for x, g in vectors:
            self.i.send_nowait(packets(x))
            self.g.send_nowait([int(v) for v in g])
            y = intops.rmsnorm(x, g)
            if self.x16:
                y, e = formats.quantize_act(y)
                exponents += [e] * len(y)
            expected += packets(y)
        self.exponents.clear()
        check_in_order(await self.o.recv(len(expected)), expected)
        if self.x16:
            check_in_order(self.exponents, exponents, "x_exp: ")


@cocotb.test()
async def test_random_vectors(dut):
    """>= 1,000 random vectors of lengths 1..16 under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        lengths = tb.rng.integers(1, 17, per_mix)
        await tb.check([(tb.random_x(n), tb.random_g(n)) for n in lengths])


@cocotb.test()
async def test_corners_and_full_size(dut):
    """Zeros, int32 limits, saturating weights, length 1, ragged and full-size dims."""
    tb = TB(dut)
    await tb.reset()
    lo, hi = formats.ACT_MIN, formats.ACT_MAX
    ones = formats.quantize_norm_weight(np.ones(8)).astype(np.int64)
    corners = [
        (np.zeros(8, np.int64), ones),
        (np.full(8, hi, np.int64), ones),
        (np.full(8, lo, np.int64), np.full(8, hi, np.int64)),
        (np.array([hi, lo, 0, 1, -1, 1 << 15, -(1 << 15), 3]), np.full(8, lo, np.int64)),
        (np.array([1]), np.array([hi])),
        (np.array([lo]), ones[:1]),
        (np.array([0, 0, 0, 1]), np.full(4, hi, np.int64)),
    ]
    sizes = [n for n in [65] + FULL_SIZES if n <= tb.max_dim]
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners + [(tb.random_x(n), tb.random_g(n)) for n in sizes])


@cocotb.test()
async def test_cycles(dut):
    """Cycles per vector stay within 3 n + divider + normalization + pipeline overhead."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.0, 0.0)
    for n in [n for n in [64, 288, 768] if n <= tb.max_dim]:
        start = cocotb.utils.get_sim_time("ns")
        await tb.check([(tb.random_x(n), tb.random_g(n))])
        cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
        divider = 2 * (formats.X_BITS - 1) + int(tb.max_dim).bit_length() + 1
        dut._log.info("rmsnorm n=%d: %d cycles (measured)", n, cycles)
        passes = 4 if tb.x16 else 3
        assert cycles <= passes * n + divider + 60, f"n={n}: {cycles} cycles"
