"""cocotb testbench of :class:`speedllm.hw.rope.RopeUnit`.

Parameters: ``head_size``, ``seq_len``, ``tables`` (``"rom"`` or ``"stream"``). A vector is
one call: ``n_heads`` heads of random ACT values at a random position. In ``"stream"`` mode
the testbench streams the (cos, sin) entries from the same golden tables. Golden model:
:func:`speedllm.golden.intops.rope` with ``intops.build_rope_tables(head_size, seq_len)``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from speedllm.golden import formats, intops
from speedllm.hw.rope import COS_SIN_LAYOUT
from speedllm.hw.tables import act_packet_layout
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset
from speedllm.sim.tb_residual import PAUSE_MIXES, check_in_order, packets, random_act


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = tb_parameters()
        self.head_size, self.seq_len = params["head_size"], params["seq_len"]
        self.stream_tables = params["tables"] == "stream"
        self.tables = intops.build_rope_tables(self.head_size, self.seq_len)
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.i = StreamSource(dut, "i", dut.clk, shape=act_packet_layout(1))
        self.o = StreamSink(dut, "o", dut.clk, shape=act_packet_layout(1))
        self.cs = StreamSource(dut, "cs", dut.clk, shape=COS_SIN_LAYOUT) \
            if self.stream_tables else None

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.i.set_random_pause(src, self.pause_rng)
        if self.cs is not None:
            self.cs.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    async def check(self, calls):
        """``calls``: (x, pos) pairs; each x holds whole heads."""
        expected = []
        half = self.head_size // 2
        for x, pos in calls:
            if self.cs is None:
                await self.i.wait_idle()           # the previous packet has been read
                self.dut.pos.value = pos
                await ClockCycles(self.dut.clk, 1)
            else:
                self.cs.send_nowait([{"cos": int(self.tables.cos[pos][k % half]),
                                      "sin": int(self.tables.sin[pos][k % half])}
                                     for k in range(len(x) // 2)])
            self.i.send_nowait(packets(x))
            expected += packets(intops.rope(x, pos, self.head_size, self.tables))
        check_in_order(await self.o.recv(len(expected)), expected)

    def random_call(self, n_heads):
        return random_act(self.rng, n_heads * self.head_size), int(self.rng.integers(self.seq_len))


@cocotb.test()
async def test_random_vectors(dut):
    """>= 1,000 random calls of 1..4 heads at random positions, every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check([tb.random_call(int(n)) for n in tb.rng.integers(1, 5, per_mix)])


@cocotb.test()
async def test_corners_and_full_size(dut):
    """Zeros, int32 limits (saturation), first and last position, 12 heads at once."""
    tb = TB(dut)
    await tb.reset()
    hs, lo, hi = tb.head_size, formats.ACT_MIN, formats.ACT_MAX
    corners = [
        (np.zeros(hs, np.int64), tb.seq_len - 1),
        (np.full(hs, hi, np.int64), tb.seq_len - 1),
        (np.tile([hi, lo], hs // 2), tb.seq_len // 2),
        (np.tile([lo, lo], hs // 2), tb.seq_len - 1),
        (random_act(tb.rng, hs), 0),
        (random_act(tb.rng, 12 * hs), tb.seq_len - 1),
    ]
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners)


@cocotb.test()
async def test_throughput(dut):
    """With no pauses, 12 heads pass at one element per cycle."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.0, 0.0)
    x, pos = tb.random_call(12)
    start = cocotb.utils.get_sim_time("ns")
    await tb.check([(x, pos)])
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert cycles <= len(x) + 8, f"{len(x)} elements took {cycles} cycles"
