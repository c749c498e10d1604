"""cocotb testbench of :class:`speedllm.hw.x16_quantize.ActToX16`.

Parameters: ``max_n``. Vectors: random ACT vectors whose magnitudes span the whole range
(so the block exponent takes every value 0..16); corners: zeros, the int32 limits, values
that round up past int16 (saturation), length 1, ragged 65 and 172, ``max_n``.
Golden model: ``dram_format.x16_bytes(*formats.quantize_act(x))`` read as little-endian
16-bit words; ``exp`` is checked at every transfer on ``o``. In-order checker.

:class:`TransferMonitor`, :func:`word_beats` and :func:`random_block_act` are shared with
:mod:`speedllm.sim.tb_kv_row_writer`.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from speedllm.golden import formats
from speedllm.hw.tables import act_packet_layout
from speedllm.hw.x16_quantize import word16_layout
from speedllm.ops import dram_format
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset
from speedllm.sim.tb_residual import PAUSE_MIXES, check_in_order, packets


def word_beats(byte_string: bytes) -> list[dict]:
    """A byte string -> ``word16_layout`` beats (little-endian words, ``first``/``last``)."""
    words = np.frombuffer(byte_string, "<u2")
    n = len(words)
    return [{"data": int(w), "first": int(k == 0), "last": int(k == n - 1)}
            for k, w in enumerate(words)]


def x16_beats(x) -> tuple[list[dict], int]:
    """The golden output of one vector: its X16 bytes as word beats, and its exponent."""
    x16, e = formats.quantize_act(x)
    return word_beats(dram_format.x16_bytes(x16, e)), e


def random_block_act(rng: np.random.Generator, n: int) -> np.ndarray:
    """ACT values of a random magnitude ``2**k`` (k in 0..31), sometimes with int32 limits."""
    k = int(rng.integers(0, 32))
    v = rng.integers(-(1 << k), 1 << k, n, endpoint=True)
    if rng.random() < 0.1:
        v[rng.integers(n)] = rng.choice([formats.ACT_MIN, formats.ACT_MAX])
    return np.clip(v, formats.ACT_MIN, formats.ACT_MAX).astype(np.int64)


class TransferMonitor:
    """Records the clock cycle of every transfer on a stream port (and optionally the value
    of another signal at that moment), sampling as :class:`StreamSink` does."""

    def __init__(self, dut, prefix: str, clk, *, also=None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.also = also
        self.cycle = 0
        self.cycles: list[int] = []
        self.values: list[int] = []
        self.clk = clk
        cocotb.start_soon(self._run())

    def clear(self):
        self.cycles.clear()
        self.values.clear()

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if int(self.valid.value) and int(self.ready.value):
                self.cycles.append(self.cycle)
                if self.also is not None:
                    self.values.append(int(self.also.value))


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.max_n = tb_parameters()["max_n"]
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.pause_rng = random.Random(cocotb.RANDOM_SEED)
        self.i = StreamSource(dut, "i", dut.clk, shape=act_packet_layout(1))
        self.o = StreamSink(dut, "o", dut.clk, shape=word16_layout())
        self.i_mon = TransferMonitor(dut, "i", dut.clk)
        self.o_mon = TransferMonitor(dut, "o", dut.clk, also=dut.exp)

    async def reset(self):
        await start_clock_and_reset(self.dut)

    def set_pauses(self, src, snk):
        self.i.set_random_pause(src, self.pause_rng)
        self.o.set_random_pause(snk, self.pause_rng)

    async def check(self, vectors):
        """Send the vectors, compare every word and the ``exp`` seen with it."""
        expected, exponents = [], []
        self.i_mon.clear()
        self.o_mon.clear()
        for x in vectors:
            self.i.send_nowait(packets(x))
            beats, e = x16_beats(x)
            expected += beats
            exponents += [e] * len(beats)
        check_in_order(await self.o.recv(len(expected)), expected)
        check_in_order(self.o_mon.values, exponents, "exp: ")


@cocotb.test()
async def test_random_vectors(dut):
    """>= 1,000 random vectors of lengths 1..16 under every pause mix."""
    tb = TB(dut)
    await tb.reset()
    per_mix = vector_count(1000, 10000) // len(PAUSE_MIXES)
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        lengths = tb.rng.integers(1, 17, per_mix)
        await tb.check([random_block_act(tb.rng, n) for n in lengths])


@cocotb.test()
async def test_corners_and_full_size(dut):
    """Zeros, int32 limits, int16 saturation, length 1, ragged dims and ``max_n``."""
    tb = TB(dut)
    await tb.reset()
    lo, hi = formats.ACT_MIN, formats.ACT_MAX
    corners = [
        np.zeros(8, np.int64), np.zeros(1, np.int64),
        np.full(5, hi, np.int64), np.full(5, lo, np.int64),
        np.array([hi, lo, 0, 1, -1, 1 << 15, -(1 << 15), 3]),
        np.array([65535, 1, -65536]),              # e = 1: 65535 rounds up past int16
        np.array([32767, -32768, 0]),              # e = 0: exact
        np.array([32768, -32769]),                 # e = 1 by one bit either side
        np.array([7]), np.array([lo]),
    ]
    saturating = [x for x in corners
                  if (formats.round_shift(x, formats.act_block_exponent(x)) > formats.X_MAX).any()]
    assert len(saturating) >= 2, "the corners must include int16 saturation"
    sizes = [65, 172, tb.max_n]
    for src, snk in PAUSE_MIXES:
        tb.set_pauses(src, snk)
        await tb.check(corners + [random_block_act(tb.rng, n) for n in sizes])


@cocotb.test()
async def test_latency(dut):
    """Without pauses: first output word 6 cycles after the last input beat, ``2 n + 7``
    cycles from a vector's first beat to its final word, and the next vector's first beat
    taken the cycle after that final word (one vector every ``2 n + 7`` cycles)."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.0, 0.0)
    for n in sorted({1, 16, 172, tb.max_n}):
        await tb.check([random_block_act(tb.rng, n) for _ in range(3)])
        ins, outs = tb.i_mon.cycles, tb.o_mon.cycles
        assert len(ins) == 3 * n and len(outs) == 3 * (n + 2)
        first_word = outs[0] - ins[n - 1]
        per_vector = outs[n + 1] - ins[0] + 1
        period = ins[n] - ins[0]
        dut._log.info(f"n={n}: first word {first_word} cycles after the last input beat, "
                      f"{per_vector} cycles per vector, a new vector every {period} cycles")
        assert first_word == 6, f"n={n}: first word after {first_word} cycles"
        assert per_vector == 2 * n + 7, f"n={n}: {per_vector} cycles per vector"
        assert period == 2 * n + 7, f"n={n}: a vector every {period} cycles"
