"""cocotb testbench of :class:`speedllm.hw.scratchpad.Scratchpad`.

Parameters (from :func:`speedllm.sim.runner.tb_parameters`): ``banks``, ``depth``, ``width``.

Model: a Python list per bank. A cycle monitor applies each accepted write at its clock
edge and, for each read word, looks the word up in the model *as it was at the edge that
issued the read* (the edge after which ``r_data.valid`` shows a new word), so the contract
"read-during-write returns the old word" is checked exactly. An in-order checker compares
the words and their ``first``/``last`` flags with what the sink received.
"""

from __future__ import annotations

import collections
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from speedllm.hw.scratchpad import read_command_layout, read_data_layout, write_layout
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset


_MEMORY: dict = {}


class TB:
    """Clock, reset, write/command sources, read sink, the model and the issue monitor."""

    def __init__(self, dut):
        self.dut = dut
        params = tb_parameters()
        self.banks, self.depth, self.width = params["banks"], params["depth"], params["width"]
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.writes = StreamSource(dut, "w", dut.clk,
                                   shape=write_layout(self.banks, self.depth, self.width))
        self.commands = StreamSource(dut, "r_cmd", dut.clk,
                                     shape=read_command_layout(self.banks, self.depth))
        self.sink = StreamSink(dut, "r_data", dut.clk, shape=read_data_layout(self.width))
        # The RAM keeps its contents from one cocotb test to the next: so does the model.
        self.model = _MEMORY.setdefault((self.banks, self.depth, self.width),
                                        [[0] * self.depth for _ in range(self.banks)])
        self.pending_reads = collections.deque()   # (bank, addr, first, last) in issue order
        self.expected = []

    async def reset(self):
        await start_clock_and_reset(self.dut)
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        dut = self.dut
        write = None            # the write accepted at the previous edge, not yet applied
        slot_free = True        # r_data could take a new word at the previous edge
        while True:
            await RisingEdge(dut.clk)
            valid = int(dut.r_data__valid.value)
            if valid and slot_free:
                bank, addr, first, last = self.pending_reads.popleft()
                self.expected.append({"data": self.model[bank][addr], "first": first,
                                      "last": last})
            if write is not None:
                self.model[write[0]][write[1]] = write[2]
            write = None
            if int(dut.w__valid.value):
                bits = dut.w__payload.value.to_unsigned()
                word = self.writes._decode(bits)
                write = (word["bank"], word["addr"], word["data"])
            slot_free = (not valid) or bool(int(dut.r_data__ready.value))

    def random_command(self):
        addr = self.rng.randrange(self.depth)
        count = self.rng.choice([0, 1, 1, 2, self.rng.randint(1, self.depth - addr)])
        count = min(count, self.depth - addr)
        return {"bank": self.rng.randrange(self.banks), "addr": addr, "count": count}

    def random_write(self):
        data = self.rng.choice([0, (1 << self.width) - 1, self.rng.getrandbits(self.width)])
        return {"bank": self.rng.randrange(self.banks), "addr": self.rng.randrange(self.depth),
                "data": data}

    def queue_reads(self, commands):
        for c in commands:
            for k in range(c["count"]):
                self.pending_reads.append((c["bank"], c["addr"] + k, int(k == 0),
                                           int(k == c["count"] - 1)))
        self.commands.send_nowait(commands)
        return sum(c["count"] for c in commands)

    async def finish(self):
        """Let the last accepted write reach the model before the test (and monitor) ends."""
        await self.writes.wait_idle()
        await ClockCycles(self.dut.clk, 2)

    async def check(self, words: int):
        got = await self.sink.recv(words)
        await self.commands.wait_idle()
        expected, self.expected = self.expected[:words], self.expected[words:]
        assert len(expected) == words, f"monitor saw {len(expected)} of {words} reads"
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"read word {k}: got {g}, expected {e}"


@cocotb.test()
async def test_random_traffic(dut):
    """Random writes and burst reads of random banks at once, with every pause mix."""
    tb = TB(dut)
    await tb.reset()
    n_commands = vector_count(1000, 10000) // 4
    for src_pause, snk_pause in [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)]:
        for source in (tb.writes, tb.commands):
            source.set_random_pause(src_pause, tb.rng)
        tb.sink.set_random_pause(snk_pause, tb.rng)
        tb.writes.send_nowait([tb.random_write() for _ in range(n_commands * 2)])
        words = tb.queue_reads([tb.random_command() for _ in range(n_commands)])
        await tb.check(words)
        await tb.finish()


@cocotb.test()
async def test_fill_and_read_back(dut):
    """Write every word of every bank, read each bank back in one burst."""
    tb = TB(dut)
    await tb.reset()
    tb.writes.send_nowait([{"bank": b, "addr": a, "data": tb.rng.getrandbits(tb.width)}
                           for b in range(tb.banks) for a in range(tb.depth)])
    await tb.finish()
    words = tb.queue_reads([{"bank": b, "addr": 0, "count": tb.depth}
                            for b in range(tb.banks)])
    await tb.check(words)


@cocotb.test()
async def test_read_one_bank_while_writing_another(dut):
    """A burst read of bank 0 and a burst write of bank 1 run side by side at full rate."""
    tb = TB(dut)
    await tb.reset()
    other = 1 % tb.banks
    n = tb.depth
    tb.writes.send_nowait([{"bank": other, "addr": a, "data": tb.rng.getrandbits(tb.width)}
                           for a in range(n)])
    tb.queue_reads([{"bank": 0, "addr": 0, "count": n}])
    start = cocotb.utils.get_sim_time("ns")
    await tb.check(n)
    elapsed = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert elapsed <= n + 4, f"{n}-word read beside a write took {elapsed} cycles"
    await tb.finish()
