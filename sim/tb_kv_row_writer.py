"""cocotb testbench of :class:`speedllm.hw.kv_row_writer.KvRowWriter`.

Parameters: ``n_kv_heads``, ``head_size``, ``row_bytes`` (the component's, default or
explicit), ``vectors`` (random rows in the default run; ``SPEEDLLM_SIM_LONG=1`` runs ten
times as many). Rows: every kv head of a random magnitude of its own (so the heads'
exponents differ, 0..16); corners: zeros, the int32 limits, int16 saturation, one loud head
among quiet ones. Golden model: ``intops.kv_store(row, n_kv_heads, 16)`` laid out by
``dram_format.kv_rows_bytes``, read as little-endian 16-bit words. In-order checker.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from speedllm.golden import formats, intops
from speedllm.hw.tables import act_packet_layout
from speedllm.hw.x16_quantize import word16_layout
from speedllm.ops import dram_format
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset
from speedllm.sim.tb_residual import PAUSE_MIXES, check_in_order, packets
from speedllm.sim.tb_x16_quantize import TransferMonitor, random_block_act, word_beats

KV_BITS = 16


def kv_row_beats(row, n_kv_heads: int, row_bytes: int) -> list[dict]:
    """The golden output of one row: its cache bytes as word beats."""
    st = intops.kv_store(row, n_kv_heads, KV_BITS)
    store = intops.KvStore(st.mant[None], st.exp[None])
    return word_beats(dram_format.kv_rows_bytes(store, KV_BITS, row_bytes))


class TB:
    def __init__(self, dut):
        self.dut = dut
        p = tb_parameters()
        self.heads, self.head_size = p["n_kv_heads"], p["head_size"]
        self.kv_dim = self.heads * self.head_size
        self.row_bytes = p["row_bytes"]
        self.vectors = p["vectors"]
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.i = StreamSource(dut, "i", dut.clk, shape=act_packet_layout(1))
        self.o = StreamSink(dut, "o", dut.clk, shape=word16_layout())
        self.i_mon = TransferMonitor(dut, "i", dut.clk)
        self.o_mon = TransferMonitor(dut, "o", dut.clk)

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.i.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    def random_row(self) -> np.ndarray:
        """Each kv head of its own random magnitude."""
        return np.concatenate([random_block_act(self.rng, self.head_size)
                               for _ in range(self.heads)])

    async def check(self, rows):
        expected = []
        self.i_mon.clear()
        self.o_mon.clear()
        for row in rows:
            assert len(row) == self.kv_dim
            self.i.send_nowait(packets(row))
            expected += kv_row_beats(row, self.heads, self.row_bytes)
        check_in_order(await self.o.recv(len(expected)), expected)


@cocotb.test()
async def test_random_rows(dut):
    """Random rows (``vectors``, x10 with SPEEDLLM_SIM_LONG=1) under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = max(1, vector_count(tb.vectors, 10 * tb.vectors) // len(PAUSE_MIXES))
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check([tb.random_row() for _ in range(per_mix)])


@cocotb.test()
async def test_corner_rows(dut):
    """Zeros, int32 limits, int16 saturation, one loud head among quiet ones."""
    tb = TB(dut)
    await tb.reset()
    lo, hi, d, hs = formats.ACT_MIN, formats.ACT_MAX, tb.kv_dim, tb.head_size
    loud = np.zeros(d, np.int64)
    loud[:hs] = hi                                 # head 0 at e = 16, the others at 0
    quiet_last = np.full(d, lo, np.int64)
    quiet_last[-hs:] = np.arange(hs) - hs // 2     # last head small: e = 0
    corners = [
        np.zeros(d, np.int64), np.full(d, hi, np.int64), np.full(d, lo, np.int64),
        np.resize(np.array([hi, lo, 0, -1, 1]), d),
        np.resize(np.array([65535, 1, -65536]), d),     # e = 1: 65535 rounds past int16
        np.resize(np.array([32767, -32768, 5]), d),     # e = 0: exact
        loud, quiet_last,
    ]
    heads = [c.reshape(tb.heads, hs) for c in corners]
    exps = [intops.kv_store(c, tb.heads, KV_BITS).exp for c in corners]
    saturating = [h for h, e in zip(heads, exps)
                  if (formats.round_shift(h[0], int(e[0])) > formats.X_MAX).any()]
    assert saturating, "the corners must include int16 saturation"
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners)


@cocotb.test()
async def test_latency(dut):
    """Without pauses: first word 6 cycles after the row's final input beat; a row every
    ``kv_dim + row_bytes / 2 + 5`` cycles."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.0, 0.0)
    await tb.check([tb.random_row() for _ in range(3)])
    d, words = tb.kv_dim, tb.row_bytes // 2
    ins, outs = tb.i_mon.cycles, tb.o_mon.cycles
    assert len(ins) == 3 * d and len(outs) == 3 * words
    first_word = outs[0] - ins[d - 1]
    per_row = outs[words - 1] - ins[0] + 1
    period = ins[d] - ins[0]
    dut._log.info(f"{tb.heads}x{tb.head_size}, {tb.row_bytes}-byte rows: first word "
                  f"{first_word} cycles after the last input beat, {per_row} cycles per row, "
                  f"a new row every {period} cycles")
    assert first_word == 6, f"first word after {first_word} cycles"
    assert per_row == d + words + 5, f"{per_row} cycles per row"
    assert period == per_row, f"a row every {period} cycles"
