"""cocotb testbench of :class:`speedllm.hw.matvec.MatVecEngine`.

Parameters (:func:`speedllm.sim.runner.tb_parameters`): the engine's constructor arguments
(``lanes``, ``group_size``, ``max_cols``, ``max_rows``, ``weight_beat_bits``,
``scales_per_beat``, ``x_lanes``), plus ``bench_out`` (a JSON file the ``bench_*`` test
writes its cycle counts to) and ``bench_shapes``.

A job is ``(qm, x16, x_exp)``: the driver loads ``x16`` through ``x`` (skipped when the
previous job used the same vector, so such commands run back to back), sends the command,
and queues the weight and scale regions (:mod:`speedllm.hw.matvec_layout`) on ``w`` and
``s`` ahead of time, as read masters prefetching would. The model is
:func:`speedllm.golden.formats.matvec`; the in-order checker compares every row result
and its ``first``/``last`` flags.
"""

from __future__ import annotations

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import (ClockCycles, FallingEdge, RisingEdge, SimTimeoutError,
                             with_timeout)
from cocotb.utils import get_sim_time

from speedllm.golden import formats
from speedllm.hw.matvec import MatVecEngine
from speedllm.hw.matvec_layout import (command_layout, image_words, output_layout,
                                       scale_image, weight_image, x_layout)
from speedllm.sim.runner import sim_long, tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PERIOD_NS = 10
ENGINE_PARAMS = ("lanes", "group_size", "max_cols", "max_rows", "weight_beat_bits",
                 "scales_per_beat", "x_lanes")
PAUSE_MODES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]   # (valid gaps, ready low)


def golden_defined(qm: formats.QuantizedMatrix, x16, x_exp: int) -> bool:
    """True when ``formats.matvec`` stays inside int64 (its documented domain).

    ``round_shift`` needs ``shift <= 63`` and, for left shifts, ``|t| << -shift`` in int64.
    """
    shift = qm.scale_exp - x_exp
    if shift > 63:
        return False
    if shift >= 0:
        return True
    t = (formats.matvec_group_sums(qm, x16) * qm.scale_m.astype(np.int64)).sum(axis=1)
    return int(np.abs(t).max(initial=0)) < (1 << (62 + shift))


class TB:
    """Clock, reset, stream drivers on ``cmd``/``x``/``w``/``s``, a sink on ``o``."""

    def __init__(self, dut):
        self.dut = dut
        p = tb_parameters()
        self.params = p
        self.lanes = p["lanes"]
        self.group_size = p["group_size"]
        self.max_cols = p["max_cols"]
        self.max_rows = p["max_rows"]
        self.beat_bytes = p["weight_beat_bits"] // 8
        self.scales_per_beat = p["scales_per_beat"]
        self.x_lanes = p["x_lanes"]
        self.engine_params = {k: p[k] for k in ENGINE_PARAMS}
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.nprng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.cmd = StreamSource(dut, "cmd", dut.clk,
                                shape=command_layout(self.max_rows, self.max_cols))
        self.x = StreamSource(dut, "x", dut.clk, shape=x_layout(self.x_lanes))
        self.w = StreamSource(dut, "w", dut.clk)
        self.s = StreamSource(dut, "s", dut.clk)
        self.o = StreamSink(dut, "o", dut.clk, shape=output_layout())
        self._loaded_x = None
        self._busy_rise = self._busy_fall = None
        self.busy_rises = 0
        cocotb.start_soon(self._watch_busy())

    async def _watch_busy(self):
        """Note when ``busy`` rises (first time since :meth:`run_jobs` started) and falls
        (edge-triggered: no Python runs per cycle)."""
        while True:
            await RisingEdge(self.dut.busy)
            self.busy_rises += 1
            if self._busy_rise is None:
                self._busy_rise = get_sim_time("ns")
            await FallingEdge(self.dut.busy)
            self._busy_fall = get_sim_time("ns")

    async def reset(self):
        await start_clock_and_reset(self.dut, period_ns=PERIOD_NS)

    def set_pauses(self, valid_gaps: float, ready_low: float):
        for src in (self.cmd, self.x, self.w, self.s):
            src.set_random_pause(valid_gaps, self.rng)
        self.o.set_random_pause(ready_low, self.rng)

    # ---- stimulus -----------------------------------------------------------------------
    def x_beats(self, x16):
        x = np.zeros(-(-len(x16) // self.x_lanes) * self.x_lanes, dtype=np.int64)
        x[: len(x16)] = x16
        groups = x.reshape(-1, self.x_lanes).tolist()
        n = len(groups)
        return [{"data": g[0] if self.x_lanes == 1 else g, "first": int(k == 0),
                 "last": int(k == n - 1)} for k, g in enumerate(groups)]

    def queue_regions(self, qm: formats.QuantizedMatrix):
        """Queue the weight and scale regions of ``qm`` (the read masters' prefetch)."""
        self.w.send_nowait(image_words(weight_image(qm, self.beat_bytes)))
        self.s.send_nowait(image_words(scale_image(qm, self.scales_per_beat)))

    async def issue(self, qm, x16, x_exp):
        """Load ``x16`` unless it is already loaded, then send the command."""
        key = (len(x16), np.asarray(x16).tobytes())
        if key != self._loaded_x:
            await self.x.send(self.x_beats(x16))
            self._loaded_x = key
        await self.cmd.send([{"rows": qm.rows, "cols": qm.cols,
                              "scale_exp": qm.scale_exp, "x_exp": x_exp}])

    async def run_jobs(self, jobs):
        """Run ``jobs`` in order and check every result; returns the cycles from the rise
        of ``busy`` (the cycle after the first command is taken) to its final fall (the
        cycle after the last result left)."""
        async def drive():
            for qm, _x16, _e in jobs:           # prefetch every region up front
                self.queue_regions(qm)
            for qm, x16, x_exp in jobs:
                await self.issue(qm, x16, x_exp)
        expected = []
        for qm, x16, x_exp in jobs:
            assert golden_defined(qm, x16, x_exp), "stimulus outside the golden's domain"
            y = formats.matvec(qm, x16, x_exp)
            expected += [{"data": int(v), "first": int(r == 0), "last": int(r == qm.rows - 1)}
                         for r, v in enumerate(y)]
        self._busy_rise = self._busy_fall = None
        driver = cocotb.start_soon(drive())
        # watchdog: a lost or stuck beat fails the test instead of hanging it
        per_cycle = min(self.lanes, self.beat_bytes)
        work = sum(qm.rows * formats.padded_cols(qm.cols, self.group_size) // per_cycle
                   + qm.cols // self.x_lanes + 100 for qm, _, _ in jobs)
        try:
            got = await with_timeout(self.o.recv(len(expected)), 20 * work * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"only {self.o.count()} of {len(expected)} results after "
                                 f"{20 * work} cycles") from None
        await driver
        while self.dut.busy.value:
            await FallingEdge(self.dut.busy)
        await ClockCycles(self.dut.clk, 1)
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"result {k}: got {g}, expected {e}"
        return round((self._busy_fall - self._busy_rise) / PERIOD_NS)

    async def drain(self):
        """Wait until the engine is idle and no beat is left in a driver."""
        while self.dut.busy.value or not (self.w.idle() and self.s.idle()):
            await RisingEdge(self.dut.clk)
        assert self.o.count() == 0, f"{self.o.count()} unexpected results"

    # ---- random jobs --------------------------------------------------------------------
    def random_x(self, cols):
        x_exp = self.rng.randint(0, 16)
        kind = self.rng.random()
        if kind < 0.1:
            x16 = self.nprng.choice([formats.X_MIN, formats.X_MAX, 0, -1, 1], cols)
        else:
            scale = 2 ** self.rng.uniform(0, 15)
            x16 = np.clip(np.round(self.nprng.standard_normal(cols) * scale),
                          formats.X_MIN, formats.X_MAX)
        return x16.astype(np.int16), x_exp

    def random_matrix(self, rows, cols):
        """A matrix from ``quantize_matrix`` of random floats (80 %), or raw random int8
        weights, mantissas, scale exponents and garbage padding (20 %)."""
        gs = self.group_size
        if self.rng.random() < 0.8:
            w = self.nprng.standard_normal((rows, cols)) * 10 ** self.rng.uniform(-3, 2)
            return formats.quantize_matrix(w, gs)
        cp = formats.padded_cols(cols, gs)
        q = self.nprng.integers(-128, 128, (rows, cp), dtype=np.int64).astype(np.int8)
        m = self.nprng.integers(0, 1 << 16, (rows, cp // gs), dtype=np.int64).astype(np.uint16)
        return formats.QuantizedMatrix(q=q, scale_m=m, scale_exp=self.rng.randint(-8, 63),
                                       cols=cols, group_size=gs)

    def random_job(self, max_rows=6, max_cols=None):
        max_cols = min(max_cols or 3 * self.group_size + 5, self.max_cols)
        rows = self.rng.randint(1, min(max_rows, self.max_rows))
        cols = self.rng.choice([1, self.rng.randint(1, max_cols), max_cols])
        while True:
            qm = self.random_matrix(rows, cols)
            x16, x_exp = self.random_x(cols)
            if golden_defined(qm, x16, x_exp):
                return qm, x16, x_exp


def _corner_matrix(rows, cols, gs, q_value, m_value, scale_exp, padding=0):
    """Every weight ``q_value``, every mantissa ``m_value``; the padding columns hold
    ``padding`` (the engine must ignore them, as the golden model does)."""
    cp = formats.padded_cols(cols, gs)
    q = np.full((rows, cp), padding, dtype=np.int8)
    q[:, :cols] = q_value
    m = np.full((rows, cp // gs), m_value, dtype=np.uint16)
    return formats.QuantizedMatrix(q=q, scale_m=m, scale_exp=scale_exp, cols=cols,
                                   group_size=gs)


def corner_jobs(tb: TB):
    """Zeros, extreme weights and activations, saturation both ways, ragged and tiny dims.

    The longest vector comes first, so the shorter ones leave stale non-zero activations
    past ``cols`` in the buffer; their padding weights are non-zero too: the engine must
    mask every column ``>= cols``."""
    gs, mc = tb.group_size, tb.max_cols
    dims = [(1, mc), (1, 1), (3, 1), (1, min(65, mc)), (2, min(172, mc)),
            (4, min(64 + 1, mc)), (2, gs), (2, gs + 1), (1, gs - 1)]
    jobs = []
    for rows, cols in dims:
        jobs.append((_corner_matrix(rows, cols, gs, 0, 0, 0), np.zeros(cols, np.int16), 0))
        for qv, xv in [(127, formats.X_MAX), (-127, formats.X_MAX), (127, formats.X_MIN),
                       (-128, formats.X_MIN), (-128, formats.X_MAX)]:
            x16 = np.full(cols, xv, dtype=np.int16)
            for scale_exp, x_exp in [(40, 0), (20, 16), (0, 16), (-8, 0), (63, 0)]:
                qm = _corner_matrix(rows, cols, gs, qv, 0xFFFF, scale_exp, padding=-77)
                if golden_defined(qm, x16, x_exp):
                    jobs.append((qm, x16, x_exp))
        rng = np.random.default_rng(rows * 1000 + cols)
        qm = formats.quantize_matrix(rng.standard_normal((rows, cols)), gs)
        x16 = (np.arange(cols, dtype=np.int64) * 997 % 65536 - 32768).astype(np.int16)
        jobs.append((qm, x16, 3))
        jobs.append((_unsaturated_garbage_matrix(rng, rows, cols, gs, x16), x16, 3))
    return jobs


def _unsaturated_garbage_matrix(rng, rows, cols, gs, x16):
    """Random int8 weights, random non-zero padding and mantissas, and a ``scale_exp``
    that keeps the results well inside int32 (so a wrong column changes the output)."""
    cp = formats.padded_cols(cols, gs)
    q = rng.integers(-128, 128, (rows, cp)).astype(np.int8)
    q[:, cols:] = rng.integers(1, 128, (rows, cp - cols))
    m = rng.integers(1, 1 << 16, (rows, cp // gs)).astype(np.uint16)
    qm = formats.QuantizedMatrix(q=q, scale_m=m, scale_exp=0, cols=cols, group_size=gs)
    t = (formats.matvec_group_sums(qm, x16) * m.astype(np.int64)).sum(axis=1)
    exp = max(0, int(np.abs(t).max()).bit_length() - 24) + 3      # results < 2**24
    return formats.QuantizedMatrix(q=q, scale_m=m, scale_exp=exp, cols=cols, group_size=gs)


@cocotb.test()
async def test_random(dut):
    """Random matvecs under every valid-gap/backpressure mix: ``random_share`` (default 1)
    of 1,000 (10,000 under ``SPEEDLLM_SIM_LONG=1``); the pytest wrapper splits the count
    over the engine builds it tests."""
    tb = TB(dut)
    await tb.reset()
    share = tb.params.get("random_share", 1.0)       # of the component's vector count
    n = round(vector_count(1000, 10000) * share) // len(PAUSE_MODES)
    for gaps, low in PAUSE_MODES:
        tb.set_pauses(gaps, low)
        for start in range(0, n, 50):
            await tb.run_jobs([tb.random_job() for _ in range(min(50, n - start))])
        await tb.drain()


@cocotb.test()
async def test_corners(dut):
    """Corner jobs (see :func:`corner_jobs`) with and without pauses."""
    tb = TB(dut)
    await tb.reset()
    jobs = corner_jobs(tb)
    for gaps, low in [(0.0, 0.0), (0.4, 0.4)]:
        tb.set_pauses(gaps, low)
        await tb.run_jobs(jobs)
        await tb.drain()


@cocotb.test()
async def test_empty_commands(dut):
    """Commands with 0 rows or 0 cols are taken and produce nothing."""
    tb = TB(dut)
    await tb.reset()
    qm, x16, x_exp = tb.random_job()
    await tb.issue(qm, x16, x_exp)          # loads x, and a real command ...
    tb.queue_regions(qm)
    for rows, cols in [(0, 5), (3, 0)]:
        await tb.cmd.send([{"rows": rows, "cols": cols, "scale_exp": 0, "x_exp": 0}])
    got = await tb.o.recv(qm.rows)
    want = formats.matvec(qm, x16, x_exp)
    assert [g["data"] for g in got] == want.tolist()
    await ClockCycles(dut.clk, 30)
    await tb.drain()


@cocotb.test()
async def test_throughput(dut):
    """Back-to-back commands on one vector: cycles == intake beats + a fixed latency."""
    tb = TB(dut)
    await tb.reset()
    cols = min(tb.max_cols, 3 * tb.group_size + 7)
    x16, x_exp = tb.random_x(cols)
    jobs = [(tb.random_matrix(rows, cols), x16, x_exp) for rows in (5, 1, 7)]
    jobs = [j for j in jobs if golden_defined(*j)]
    # one lane vector a cycle, or one weight beat a cycle when beats are narrower
    per_cycle = min(tb.lanes, tb.beat_bytes)
    ideal = sum(qm.rows * formats.padded_cols(cols, tb.group_size) // per_cycle
                for qm, _, _ in jobs)
    first = await tb.run_jobs(jobs[:1])            # measures the latency of one command
    latency = first - jobs[0][0].rows * formats.padded_cols(cols, tb.group_size) // per_cycle
    if tb.beat_bytes >= tb.lanes:                  # (a gathering intake prefetches a beat)
        documented = MatVecEngine(**tb.engine_params).latency + 2     # + the output FIFO
        assert latency == documented, f"latency {latency}, documented {documented}"
    await tb.drain()
    rises = tb.busy_rises
    cycles = await tb.run_jobs(jobs)
    dut._log.info(f"{len(jobs)} commands: {cycles} cycles, ideal {ideal}, latency {latency}")
    assert cycles == ideal + latency, (cycles, ideal, latency)
    assert tb.busy_rises == rises + 1, "busy dropped between back-to-back commands"
    await tb.drain()


@cocotb.test()
async def test_full_size(dut):
    """A few stories15M-sized matvecs (rows x cols from ``full_shapes``), with pauses."""
    tb = TB(dut)
    await tb.reset()
    assert tb.params.get("full_shapes"), "run test_full_size with full_shapes set"
    shapes = tb.params["full_shapes"] + (tb.params.get("long_full_shapes", []) if sim_long()
                                         else [])
    for rows, cols in shapes:
        if cols > tb.max_cols or rows > tb.max_rows:
            raise ValueError(f"{rows}x{cols} exceeds the build's maximum size")
        w = tb.nprng.standard_normal((rows, cols)) * 0.05
        qm = formats.quantize_matrix(w, tb.group_size)
        x16, x_exp = tb.random_x(cols)
        tb.set_pauses(0.2, 0.2)
        await tb.run_jobs([(qm, x16, x_exp)])
        await tb.drain()


@cocotb.test()
async def bench_cycles(dut):
    """Cycles of each ``bench_shapes`` matvec, with and without input-stream pauses;
    written as JSON to ``bench_out`` (used by bench/matvec_cycles.py)."""
    tb = TB(dut)
    out = tb.params.get("bench_out")
    assert out, "run bench_cycles with bench_out set (bench/matvec_cycles.py does)"
    await tb.reset()
    results = []
    for rows, cols in tb.params["bench_shapes"]:
        w = tb.nprng.standard_normal((rows, cols)) * 0.05
        qm = formats.quantize_matrix(w, tb.group_size)
        x16, x_exp = tb.random_x(cols)
        for gaps, low in tb.params.get("bench_pauses", [[0.0, 0.0]]):
            tb.set_pauses(0.0, 0.0)
            tb._loaded_x = None
            await tb.x.send(tb.x_beats(x16))
            tb._loaded_x = (len(x16), np.asarray(x16).tobytes())
            tb.cmd.set_random_pause(0.0)
            for src in (tb.w, tb.s):
                src.set_random_pause(gaps, tb.rng)
            tb.o.set_random_pause(low, tb.rng)
            cycles = await tb.run_jobs([(qm, x16, x_exp)])
            await tb.drain()
            ideal = rows * formats.padded_cols(cols, tb.group_size) // tb.lanes
            results.append({"rows": rows, "cols": cols, "input_pause": gaps,
                            "output_pause": low, "cycles": cycles, "ideal": ideal,
                            "ratio": cycles / ideal})
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
