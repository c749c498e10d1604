"""cocotb testbench of the attention core and unit (``speedllm.hw.attention``).

Parameters (from :func:`speedllm.sim.runner.tb_parameters`): ``head_size``, ``n_heads``,
``n_kv_heads``, ``max_seq_len``, ``beat_bits``, ``kv_bits``, optional ``vectors`` (random
calls in the main test; default :func:`vector_count`) and ``kv_frac_choices``.

A vector is one attention call: random q (ACT), random K/V cache rows (ACT, stored with
``intops.kv_store``), random ``pos``. The expected output is ``intops.attention`` on the
same stored cache; the checker compares every output value (and its first/last markers)
in order. Corner vectors: ``pos = 0``, ``pos = max_seq_len - 1``, all-equal scores, one
dominant score, extreme values (ACT min/max everywhere: scores saturate), zeros.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from amaranth import signed
from amaranth.lib import data

from speedllm.golden import formats, intops
from speedllm.hw.attention import kv_cache_image, kv_row_geometry
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset

OUT_LAYOUT = data.StructLayout({"data": signed(32), "first": 1, "last": 1})
CLOCK_NS = 10


class AttentionVector:
    """One attention call: inputs, stored caches and the golden output."""

    def __init__(self, q, k_act, v_act, pos, *, n_heads, n_kv_heads, head_size,
                 kv_bits, kv_frac):
        self.q = np.asarray(q, dtype=np.int64)
        self.pos = pos
        ks = [intops.kv_store(r, n_kv_heads, kv_bits, kv_frac) for r in k_act[:pos + 1]]
        vs = [intops.kv_store(r, n_kv_heads, kv_bits, kv_frac) for r in v_act[:pos + 1]]
        self.k = intops.KvStore(np.stack([s.mant for s in ks]), np.stack([s.exp for s in ks]))
        self.v = intops.KvStore(np.stack([s.mant for s in vs]), np.stack([s.exp for s in vs]))
        self.expected = [int(x) for x in intops.attention(
            self.q, self.k, self.v, pos, n_heads, n_kv_heads, head_size)]

    def kv_image(self, beat_bits, kv_bits) -> tuple[bytes, bytes]:
        return (kv_cache_image(self.k.mant, self.k.exp, beat_bits=beat_bits, kv_bits=kv_bits),
                kv_cache_image(self.v.mant, self.v.exp, beat_bits=beat_bits, kv_bits=kv_bits))


class VectorFactory:
    """Random and corner attention calls for one set of dimensions."""

    def __init__(self, params, rng: random.Random):
        self.p = params
        self.rng = rng
        self.np_rng = np.random.default_rng(rng.randrange(1 << 32))
        self.dim = params["n_heads"] * params["head_size"]
        self.kv_dim = params["n_kv_heads"] * params["head_size"]
        self.kv_frac_choices = params.get("kv_frac_choices", [None, None, None, 8, 16])

    def _make(self, q, k, v, pos, kv_frac=None):
        p = self.p
        return AttentionVector(q, k, v, pos, n_heads=p["n_heads"], n_kv_heads=p["n_kv_heads"],
                               head_size=p["head_size"], kv_bits=p["kv_bits"],
                               kv_frac=kv_frac)

    def _act(self, shape, scale):
        return formats.to_act(self.np_rng.normal(0.0, scale, size=shape))

    def random(self, pos=None):
        S = self.p["max_seq_len"]
        pos = self.rng.randrange(S) if pos is None else pos
        scale_q = self.rng.choice([0.05, 0.5, 1.0, 3.0, 20.0, 300.0])
        scale_kv = self.rng.choice([0.05, 0.5, 1.0, 3.0, 20.0, 300.0])
        q = self._act(self.dim, scale_q)
        k = self._act((pos + 1, self.kv_dim), scale_kv)
        v = self._act((pos + 1, self.kv_dim), self.rng.choice([0.01, 1.0, 10.0, 1000.0]))
        return self._make(q, k, v, pos, self.rng.choice(self.kv_frac_choices))

    def corners(self):
        S, dim, kvd = self.p["max_seq_len"], self.dim, self.kv_dim
        last = S - 1
        lo, hi = formats.ACT_MIN, formats.ACT_MAX
        out = [self.random(0), self.random(last), self.random(0), self.random(last)]
        # all-equal scores: every K row the same (and q = 0: all scores 0)
        k_row = self._act(kvd, 1.0)
        out.append(self._make(self._act(dim, 1.0), np.tile(k_row, (S, 1)),
                              self._act((S, kvd), 1.0), last))
        out.append(self._make(np.zeros(dim, np.int64), self._act((S, kvd), 1.0),
                              self._act((S, kvd), 1.0), last))
        # one dominant score: one K row aligned with q and large
        q = self._act(dim, 1.0)
        k = self._act((S, kvd), 0.1)
        t = self.rng.randrange(S)
        hs, km = self.p["head_size"], self.p["n_heads"] // self.p["n_kv_heads"]
        for g in range(self.p["n_kv_heads"]):
            qh = q[g * km * hs:(g * km + 1) * hs]
            k[t, g * hs:(g + 1) * hs] = formats.to_act(np.where(qh >= 0, 50.0, -50.0))
        out.append(self._make(q, k, self._act((S, kvd), 2.0), last))
        # extreme values: saturated scores, largest products and accumulators
        for qv, kv, vv in [(hi, hi, hi), (lo, lo, lo), (hi, lo, hi), (lo, hi, lo)]:
            out.append(self._make(np.full(dim, qv), np.full((S, kvd), kv),
                                  np.full((S, kvd), vv), last))
        mixed = self.np_rng.choice([lo, hi, 0, 1, -1], size=(2 * S + 1, max(dim, kvd)))
        out.append(self._make(mixed[0, :dim], mixed[1:S + 1, :kvd],
                              mixed[S + 1:, :kvd], last))
        out.append(self._make(mixed[0, :dim], mixed[1:S + 1, :kvd],
                              mixed[S + 1:, :kvd], last, kv_frac=16))
        # zeros
        out.append(self._make(np.zeros(dim, np.int64), np.zeros((S, kvd), np.int64),
                              np.zeros((S, kvd), np.int64), self.rng.randrange(S)))
        return out


class CoreTB:
    """Sources on ``cmd``, ``q``, ``kv``; a sink on ``o``; the in-order checker."""

    def __init__(self, dut):
        self.dut = dut
        self.p = tb_parameters()
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.factory = VectorFactory(self.p, self.rng)
        self.cmd = StreamSource(dut, "cmd", dut.clk)
        self.q = StreamSource(dut, "q", dut.clk, shape=signed(32))
        self.kv = StreamSource(dut, "kv", dut.clk)
        self.o = StreamSink(dut, "o", dut.clk, shape=OUT_LAYOUT)
        self.beat_bytes = self.p["beat_bits"] // 8

    async def reset(self):
        await start_clock_and_reset(self.dut, period_ns=CLOCK_NS)

    def set_pauses(self, p_in: float, p_out: float):
        for src in (self.cmd, self.q, self.kv):
            src.set_random_pause(p_in, self.rng)
        self.o.set_random_pause(p_out, self.rng)

    def queue(self, vec: AttentionVector):
        k_img, v_img = vec.kv_image(self.p["beat_bits"], self.p["kv_bits"])
        img = k_img + v_img
        bb = self.beat_bytes
        self.cmd.send_nowait([vec.pos])
        self.q.send_nowait([int(x) for x in vec.q])
        self.kv.send_nowait([int.from_bytes(img[i:i + bb], "little")
                             for i in range(0, len(img), bb)])

    def state(self) -> str:
        """Handshake signals of the ports (for a hang report)."""
        names = [n for n in ("cmd", "q", "kv", "o") if hasattr(self.dut, f"{n}__valid")]
        return ", ".join(f"{n}: valid {self.dut._id(n + '__valid', extended=False).value} "
                         f"ready {self.dut._id(n + '__ready', extended=False).value}"
                         for n in names) + f"; sent q {self.q.sent}, cmd {self.cmd.sent}"

    async def check(self, vectors, what: str):
        """Queue every vector at once (the core takes them one after another) and check."""
        for vec in vectors:
            self.queue(vec)
        dim = len(vectors[0].expected)
        for n, vec in enumerate(vectors):
            # generous bound: 40 cycles per row element of both passes, plus the output
            limit = CLOCK_NS * (40 * (vec.pos + 1) * dim + 200 * dim + 5000)
            try:
                got = await with_timeout(self.o.recv(dim), limit, "ns")
            except SimTimeoutError:
                raise AssertionError(f"{what} vector {n} (pos {vec.pos}): no output after "
                                     f"{limit // CLOCK_NS} cycles; {self.state()}") from None
            values = [g["data"] for g in got]
            marks = [(g["first"], g["last"]) for g in got]
            want_marks = [(int(i == 0), int(i == dim - 1)) for i in range(dim)]
            if values != vec.expected or marks != want_marks:
                bad = next(i for i in range(dim)
                           if values[i] != vec.expected[i] or marks[i] != want_marks[i])
                raise AssertionError(
                    f"{what} vector {n} (pos {vec.pos}): output {bad} got {values[bad]} "
                    f"{marks[bad]}, expected {vec.expected[bad]} {want_marks[bad]}")


@cocotb.test()
async def test_random_calls(dut):
    """Random attention calls, with and without valid gaps and ready backpressure."""
    tb = CoreTB(dut)
    await tb.reset()
    n = tb.p.get("vectors") or vector_count(1000, 10000)
    configs = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]
    for i, (p_in, p_out) in enumerate(configs):
        tb.set_pauses(p_in, p_out)
        count = n // len(configs) + (1 if i < n % len(configs) else 0)
        await tb.check([tb.factory.random() for _ in range(count)],
                       f"random (pauses in {p_in}, out {p_out})")


@cocotb.test()
async def test_corners(dut):
    """pos 0 / last, equal scores, a dominant score, extreme values, zeros; paused too."""
    tb = CoreTB(dut)
    await tb.reset()
    for p_in, p_out in [(0.0, 0.0), (0.5, 0.5)]:
        tb.set_pauses(p_in, p_out)
        await tb.check(tb.factory.corners(), f"corner (pauses {p_in}/{p_out})")


async def time_calls(tb, positions, repeats: int = 1) -> dict:
    """Cycles of single calls (inputs queued at once, no pauses), each checked against
    the golden output: ``{pos: [cycles, ...]}``. A call is timed from queuing its inputs to
    its last output value."""
    tb.set_pauses(0.0, 0.0)
    results = {}
    for pos in positions:
        for _ in range(repeats):
            vec = tb.factory.random(pos)
            await RisingEdge(tb.dut.clk)
            start = get_sim_time(unit="ns")
            await tb.check([vec], f"timed pos {pos}")
            results.setdefault(pos, []).append(round((get_sim_time(unit="ns") - start)
                                                     / CLOCK_NS))
    return results


@cocotb.test()
async def test_cycles(dut):
    """Cycles of single calls vs ``AttentionCore.cycle_estimate`` (the documented model):
    within ``cycle_tolerance`` (parameter, default 2 %). Writes ``out_json`` if given."""
    import json
    from speedllm.hw.attention import cycle_estimate
    tb = UnitTB(dut) if tb_parameters().get("unit") else CoreTB(dut)
    await tb.reset()
    p = tb.p
    positions = p.get("positions") or sorted({0, p["max_seq_len"] // 2, p["max_seq_len"] - 1})
    measured = await time_calls(tb, positions)
    tol = p.get("cycle_tolerance", 0.02)
    rows = []
    for pos, cycles in measured.items():
        est = cycle_estimate(pos, head_size=p["head_size"], n_heads=p["n_heads"],
                             n_kv_heads=p["n_kv_heads"], max_seq_len=p["max_seq_len"],
                             beat_bits=p["beat_bits"], kv_bits=p["kv_bits"],
                             lanes=p.get("lanes"))
        rows.append({"pos": pos, "cycles": cycles[0], "model": est})
        dut._log.info(f"pos {pos}: {cycles[0]} cycles (model {est})")
        if not p.get("unit"):
            assert abs(cycles[0] - est) <= tol * est, f"pos {pos}: {cycles[0]} vs model {est}"
    if p.get("out_json"):
        with open(p["out_json"], "w") as f:
            json.dump(rows, f)


# ---------------------------------------------------------------------------------------
# AttentionUnit: the same vectors, K/V caches in an AXI RAM
# ---------------------------------------------------------------------------------------

RAM_BYTES = 1 << 20


class UnitTB(CoreTB):
    """The unit's ``cmd``/``q``/``o`` streams and an AXI RAM (with error ranges) on ``m_axi``."""

    def __init__(self, dut):
        from speedllm.hw.attention import unit_command_layout
        from speedllm.sim.axi import ErrorRamRead, read_bus
        self.dut = dut
        self.p = tb_parameters()
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.factory = VectorFactory(self.p, self.rng)
        self.cmd = StreamSource(dut, "cmd", dut.clk,
                                shape=unit_command_layout(self.p["max_seq_len"]))
        self.q = StreamSource(dut, "q", dut.clk, shape=signed(32))
        self.o = StreamSink(dut, "o", dut.clk, shape=OUT_LAYOUT)
        self.ram = ErrorRamRead(read_bus(dut), dut.clk, dut.rst, size=RAM_BYTES)
        self.beat_bytes = self.p["beat_bits"] // 8
        self.next_free = 0

    def set_pauses(self, p_in: float, p_out: float):
        from speedllm.sim.axi import set_channel_pauses
        for src in (self.cmd, self.q):
            src.set_random_pause(p_in, self.rng)
        self.o.set_random_pause(p_out, self.rng)
        set_channel_pauses([self.ram.ar_channel, self.ram.r_channel], p_in, self.rng)

    def _place(self, nbytes: int) -> int:
        """A beat-aligned address for ``nbytes`` after a random gap (wraps around)."""
        bb = self.beat_bytes
        addr = self.next_free + bb * self.rng.randrange(0, 64)
        if addr + nbytes > RAM_BYTES:
            addr = 0
        self.next_free = addr + nbytes
        return addr

    def queue(self, vec: AttentionVector):
        k_img, v_img = vec.kv_image(self.p["beat_bits"], self.p["kv_bits"])
        # the rows after pos hold junk the unit must not read
        junk = self.rng.randbytes(len(k_img))
        k_base, v_base = self._place(2 * len(k_img)), self._place(2 * len(v_img))
        self.ram.write(k_base, k_img + junk)
        self.ram.write(v_base, v_img + junk)
        self.cmd.send_nowait([{"pos": vec.pos, "k_base": k_base, "v_base": v_base}])
        self.q.send_nowait([int(x) for x in vec.q])
        return k_base, v_base


@cocotb.test()
async def test_unit_random_calls(dut):
    """Random calls with the KV cache in an AXI RAM, with and without AXI/stream pauses.
    Calls are checked one batch at a time, so each batch's RAM regions stay intact."""
    tb = UnitTB(dut)
    await tb.reset()
    n = tb.p.get("unit_vectors", 20)
    configs = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]
    for i, (p_in, p_out) in enumerate(configs):
        tb.set_pauses(p_in, p_out)
        count = n // len(configs) + (1 if i < n % len(configs) else 0)
        vectors = [tb.factory.random() for _ in range(count)]
        await tb.check(vectors, f"unit (pauses in {p_in}, out {p_out})")
    corners = tb.factory.corners()
    if tb.p.get("unit_corners"):        # pos 0, last pos, equal scores, dominant, extremes
        corners = [corners[i] for i in (0, 1, 4, 6, 7, 8)][:tb.p["unit_corners"]]
    await tb.check(corners, "unit corners")
    assert not dut.error.value and not dut.timeout.value


@cocotb.test()
async def test_unit_read_error(dut):
    """A V read answered with SLVERR: the call still completes (no hang), ``error`` rises
    with the response code; after ``clear`` the next call is exact again."""
    from speedllm.sim.axi import AxiResp, ErrorRange
    tb = UnitTB(dut)
    await tb.reset()
    vec = tb.factory.random(tb.p["max_seq_len"] - 1)
    k_base, v_base = tb.queue(vec)
    tb.ram.error_ranges = [ErrorRange(v_base, v_base + tb.beat_bytes, AxiResp.SLVERR)]
    got = await tb.o.recv(len(vec.expected))
    assert len(got) == len(vec.expected) and got[-1]["last"] == 1
    assert dut.error.value == 1 and int(dut.error_resp.value) == int(AxiResp.SLVERR)
    tb.ram.error_ranges = []
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await RisingEdge(dut.clk)
    assert dut.error.value == 0
    await tb.check([tb.factory.random()], "after clear")
    assert dut.error.value == 0
