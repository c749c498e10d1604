"""cocotb testbench of :class:`speedllm.hw.axi_write.AxiWriteMaster` against an AXI RAM.

Parameters: ``data_width``, ``max_burst_beats``, ``max_outstanding``, ``timeout_cycles``.
The model is a ``bytearray`` as large as the RAM: each command writes its words there too,
and after the master goes idle the whole RAM must equal it. A monitor checks every AW
burst (length, alignment, 4 KiB, bursts awaiting B); cocotbext-axi checks WLAST.
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from speedllm.hw.axi import command_layout
from speedllm.hw.axi_write import write_data_layout
from speedllm.sim.axi import ErrorRamWrite, check_error_responses, set_channel_pauses, write_bus
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSource, start_clock_and_reset

RAM_BYTES = 1 << 20


class TB:
    def __init__(self, dut):
        p = tb_parameters()
        self.dut = dut
        self.bpb = p["data_width"] // 8
        self.max_burst = p["max_burst_beats"]
        self.max_outstanding = p["max_outstanding"]
        self.timeout_cycles = p["timeout_cycles"]
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.cmd = StreamSource(dut, "cmd", dut.clk, shape=command_layout())
        self.data = StreamSource(dut, "data", dut.clk, shape=write_data_layout(p["data_width"]))
        self.ram = ErrorRamWrite(write_bus(dut), dut.clk, dut.rst, size=RAM_BYTES)
        self.model = bytearray(RAM_BYTES)
        self.bursts = []
        self.max_pending = 0
        dut.clear.value = 0
        cocotb.start_soon(self._monitor())

    async def reset(self):
        await start_clock_and_reset(self.dut)

    async def _monitor(self):
        d, axi = self.dut, "m_axi__"
        awvalid, awready = getattr(d, axi + "awvalid"), getattr(d, axi + "awready")
        awaddr, awlen = getattr(d, axi + "awaddr"), getattr(d, axi + "awlen")
        bvalid, bready = getattr(d, axi + "bvalid"), getattr(d, axi + "bready")
        pending = 0
        while True:
            await RisingEdge(d.clk)
            if awvalid.value and awready.value:
                addr, beats = awaddr.value.to_unsigned(), awlen.value.to_unsigned() + 1
                assert beats <= self.max_burst, f"burst of {beats} beats"
                assert addr % self.bpb == 0, f"unaligned burst address {addr:#x}"
                assert addr // 4096 == (addr + beats * self.bpb - 1) // 4096, \
                    f"burst {addr:#x}+{beats} crosses 4 KiB"
                self.bursts.append((addr, beats))
                pending += 1
            if bvalid.value and bready.value:
                pending -= 1
            self.max_pending = max(self.max_pending, pending)
            assert pending <= self.max_outstanding

    def set_pauses(self, probability):
        set_channel_pauses([self.ram.aw_channel, self.ram.w_channel, self.ram.b_channel],
                           probability, self.rng)
        self.cmd.set_random_pause(probability, self.rng)
        self.data.set_random_pause(probability, self.rng)

    def random_command(self):
        r = self.rng.random()
        beats = (self.rng.randint(1, 8) if r < 0.75 else self.rng.randint(9, 40) if r < 0.985
                 else self.rng.randint(257, 600))
        if self.rng.random() < 0.2:      # start just below a 4 KiB boundary
            addr = self.rng.randrange(1, RAM_BYTES // 4096) * 4096 - self.bpb * \
                self.rng.randint(1, 8)
        else:
            addr = self.rng.randrange(0, RAM_BYTES - beats * self.bpb)
        addr = min(addr, RAM_BYTES - beats * self.bpb)
        return addr + (self.rng.randrange(self.bpb) if self.rng.random() < 0.1 else 0), beats

    async def run_commands(self, commands, bad=()):
        """Write random words with ``commands``; apply them to the model (not the bad
        beats); wait until idle; compare the whole RAM."""
        words = []
        for addr, beats in commands:
            base = addr - addr % self.bpb
            for k in range(beats):
                word = self.rng.getrandbits(self.bpb * 8)
                words.append({"data": word})
                a = base + k * self.bpb
                if not any(r.start <= a < r.end for r in bad):
                    self.model[a:a + self.bpb] = word.to_bytes(self.bpb, "little")
        self.cmd.send_nowait([{"addr": a, "beats": n} for a, n in commands])
        self.data.send_nowait(words)
        await self.wait_idle()
        if self.ram.read(0, RAM_BYTES) != bytes(self.model):
            mem = self.ram.read(0, RAM_BYTES)
            first = next(i for i in range(RAM_BYTES) if mem[i] != self.model[i])
            raise AssertionError(f"RAM differs from the model first at byte {first:#x}")

    async def wait_idle(self, limit=200000):
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if not self.dut.busy.value and self.cmd.idle() and self.data.idle():
                return
        raise AssertionError("master still busy")

    async def clear(self):
        self.dut.clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.clear.value = 0
        await RisingEdge(self.dut.clk)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_random_commands(dut):
    """Random commands (short, 4 KiB-straddling, > 256 beats), with and without pauses."""
    tb = TB(dut)
    await tb.reset()
    n = vector_count(1000, 10000)
    for probability in (0.0, 0.3):
        tb.set_pauses(probability)
        for _ in range(4):
            await tb.run_commands([tb.random_command() for _ in range(n // 8)])
        assert not dut.error.value and not dut.timeout.value
    dut._log.info("%d bursts, up to %d awaiting B", len(tb.bursts), tb.max_pending)
    assert any(b == tb.max_burst for _, b in tb.bursts)
    if tb.max_outstanding > 1:
        assert tb.max_pending > 1


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_zero_length_and_single_beat(dut):
    """A zero-beat command takes no data; single beats land where they should."""
    tb = TB(dut)
    await tb.reset()
    tb.cmd.send_nowait([{"addr": 64, "beats": 0}])
    await tb.run_commands([(128, 1), (RAM_BYTES - tb.bpb, 1), (0, 1)])


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_error_responses(dut):
    """SLVERR and DECERR bursts: the rest is written, the first error code sticks."""
    tb = TB(dut)
    await tb.reset()
    await check_error_responses(tb, dut)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_b_timeout(dut):
    """A slave that withholds B raises timeout; when B comes the master finishes."""
    tb = TB(dut)
    await tb.reset()
    tb.ram.b_channel.set_pause_generator(itertools.repeat(True))
    tb.cmd.send_nowait([{"addr": 0x400, "beats": 4}])
    tb.data.send_nowait([{"data": k + 1} for k in range(4)])
    await ClockCycles(dut.clk, tb.timeout_cycles + 30)
    assert dut.timeout.value and dut.busy.value
    assert dut.stall_cycles.value.to_unsigned() >= tb.timeout_cycles
    set_channel_pauses([tb.ram.b_channel], 0, tb.rng)
    for k in range(4):
        tb.model[0x400 + k * tb.bpb:0x400 + (k + 1) * tb.bpb] = (k + 1).to_bytes(tb.bpb, "little")
    await tb.wait_idle()
    assert tb.ram.read(0, RAM_BYTES) == bytes(tb.model)
    assert dut.timeout.value
    await tb.clear()
    assert not dut.timeout.value and dut.stall_cycles.value.to_unsigned() == 0
