"""cocotb testbench of :class:`speedllm.hw.embedding.EmbeddingFetch`.

Parameters: ``lanes``, ``group_size``. Tables: ``formats.quantize_matrix`` of random floats
of several magnitudes (so ``scale_exp`` varies), plus tables of random int8 / mantissas
with a random ``scale_exp`` in [0, 40] (left shifts that saturate, right shifts that round
to zero). Golden model: :func:`speedllm.golden.intops.embedding`; the padding lanes of a
row (``cols`` up to the group multiple) must come out 0.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data
from cocotb.triggers import ClockCycles

from speedllm.golden import formats, intops
from speedllm.hw.tables import act_packet_layout, packet_layout
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PAUSE_MIXES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = tb_parameters()
        self.lanes, self.group_size = params["lanes"], params["group_size"]
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.w = StreamSource(dut, "w", dut.clk,
                              shape=packet_layout(data.ArrayLayout(signed(8), self.lanes)))
        self.s = StreamSource(dut, "s", dut.clk, shape=formats.SCALE_BITS)
        self.o = StreamSink(dut, "o", dut.clk, shape=act_packet_layout(self.lanes))

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.w.set_random_pause(src, self.pause_rng)
        self.s.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    def random_table(self, rows: int, cols: int) -> formats.QuantizedMatrix:
        if self.rng.random() < 0.7:
            magnitude = 10.0 ** self.rng.uniform(-4, 4)
            w = self.rng.standard_normal((rows, cols)) * magnitude
            if self.rng.random() < 0.1:
                w[:] = 0.0
            return formats.quantize_matrix(w, self.group_size)
        cp = formats.padded_cols(cols, self.group_size)
        q = self.rng.choice([-127, 127, 0], (rows, cp)) if self.rng.random() < 0.3 \
            else self.rng.integers(-127, 128, (rows, cp))
        q[:, cols:] = 0
        m = self.rng.integers(0, 1 << formats.SCALE_BITS, (rows, cp // self.group_size))
        return formats.QuantizedMatrix(q=q.astype(np.int8), scale_m=m.astype(np.uint16),
                                       scale_exp=int(self.rng.integers(0, 41)), cols=cols,
                                       group_size=self.group_size)

    async def check_table(self, table: formats.QuantizedMatrix, tokens):
        """Fetch ``tokens`` of ``table`` (one scale_exp for all) and compare with golden."""
        self.dut.scale_exp.value = table.scale_exp
        await ClockCycles(self.dut.clk, 2)
        cp, lanes = table.q.shape[1], self.lanes
        expected = []
        for token in tokens:
            row = table.q[token].astype(int).reshape(-1, lanes)
            self.w.send_nowait([{"data": list(b), "first": int(k == 0),
                                 "last": int(k == len(row) - 1)} for k, b in enumerate(row)])
            self.s.send_nowait([int(v) for v in table.scale_m[token]])
            values = np.zeros(cp, np.int64)
            values[: table.cols] = intops.embedding(table, int(token))
            beats = values.reshape(-1, lanes)
            expected += [{"data": [int(v) for v in b] if lanes > 1 else int(b[0]),
                          "first": int(k == 0), "last": int(k == len(beats) - 1)}
                         for k, b in enumerate(beats)]
        got = await self.o.recv(len(expected))
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"scale_exp {table.scale_exp}, beat {k}: got {g}, expected {e}"


@cocotb.test()
async def test_random_rows(dut):
    """>= 1,000 rows of random tables (small dims) under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    rows_per_table = 25
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        for _ in range(per_mix // rows_per_table):
            cols = int(tb.rng.integers(1, 3 * tb.group_size + 1))
            table = tb.random_table(8, cols)
            await tb.check_table(table, tb.rng.integers(0, 8, rows_per_table))


@cocotb.test()
async def test_corners_and_full_size(dut):
    """dim 1, 65, 172 and the stories dims; saturating and all-zero tables."""
    tb = TB(dut)
    await tb.reset()
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        for cols in [1, 65, 172, 64, 288, 768]:
            await tb.check_table(tb.random_table(4, cols), [0, 3, 1])
        cp = formats.padded_cols(9, tb.group_size)
        extreme = formats.QuantizedMatrix(
            q=np.tile(np.array([127, -127], np.int8), cp // 2)[None, :].repeat(2, 0),
            scale_m=np.full((2, cp // tb.group_size), 0xFFFF, np.uint16),
            scale_exp=0, cols=cp, group_size=tb.group_size)
        await tb.check_table(extreme, [0, 1])
