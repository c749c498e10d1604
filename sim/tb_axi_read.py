"""cocotb testbench of :class:`speedllm.hw.axi_read.AxiReadMaster` against an AXI RAM.

Parameters: ``data_width``, ``max_burst_beats``, ``max_outstanding``, ``timeout_cycles``.
The RAM is cocotbext-axi's (with error ranges, :class:`speedllm.sim.axi.ErrorRamRead`),
filled with random bytes; the model of a command is the RAM's own bytes, beat by beat. A
monitor on AR/R checks every burst (length, 4 KiB, in-flight limit).
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from speedllm.hw.axi import command_layout
from speedllm.hw.axi_read import read_data_layout
from speedllm.sim.axi import ErrorRamRead, check_error_responses, read_bus, set_channel_pauses
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, StreamSource, start_clock_and_reset

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
        self.data = StreamSink(dut, "data", dut.clk, shape=read_data_layout(p["data_width"]))
        self.ram = ErrorRamRead(read_bus(dut), dut.clk, dut.rst, size=RAM_BYTES)
        self.ram.write(0, self.rng.randbytes(RAM_BYTES))
        self.bursts = []            # (addr, beats) of every AR handshake
        self.max_in_flight = 0
        cocotb.start_soon(self._monitor())

    async def reset(self):
        await start_clock_and_reset(self.dut)

    async def _monitor(self):
        axi = "m_axi__"
        d = self.dut
        arvalid, arready = getattr(d, axi + "arvalid"), getattr(d, axi + "arready")
        araddr, arlen = getattr(d, axi + "araddr"), getattr(d, axi + "arlen")
        rvalid, rready, rlast = (getattr(d, axi + n) for n in ("rvalid", "rready", "rlast"))
        in_flight = 0
        while True:
            await RisingEdge(d.clk)
            if arvalid.value and arready.value:
                addr, beats = araddr.value.to_unsigned(), arlen.value.to_unsigned() + 1
                assert beats <= self.max_burst, f"burst of {beats} beats"
                assert addr % self.bpb == 0, f"unaligned burst address {addr:#x}"
                assert addr // 4096 == (addr + beats * self.bpb - 1) // 4096, \
                    f"burst {addr:#x}+{beats} crosses 4 KiB"
                self.bursts.append((addr, beats))
                in_flight += 1
            if rvalid.value and rready.value and rlast.value:
                in_flight -= 1
            self.max_in_flight = max(self.max_in_flight, in_flight)
            assert in_flight <= self.max_outstanding

    def set_pauses(self, probability):
        set_channel_pauses([self.ram.ar_channel, self.ram.r_channel], probability, self.rng)
        self.cmd.set_random_pause(probability, self.rng)
        self.data.set_random_pause(probability, self.rng)

    def expected(self, addr, beats, bad=()):
        """The beats a command must produce: RAM words (zeros where an error range hits)."""
        base = addr - addr % self.bpb
        out = []
        for k in range(beats):
            a = base + k * self.bpb
            word = 0 if any(r.start <= a < r.end for r in bad) else \
                int.from_bytes(self.ram.read(a, self.bpb), "little")
            out.append({"data": word, "first": int(k == 0), "last": int(k == beats - 1)})
        return out

    def random_command(self):
        r = self.rng.random()
        beats = (self.rng.randint(1, 8) if r < 0.75 else self.rng.randint(9, 40) if r < 0.985
                 else self.rng.randint(257, 600))
        if self.rng.random() < 0.2:      # start just below a 4 KiB boundary
            page = self.rng.randrange(RAM_BYTES // 4096 - 1)
            addr = page * 4096 + 4096 - self.bpb * self.rng.randint(1, 8)
        else:
            addr = self.rng.randrange(0, RAM_BYTES - beats * self.bpb)
        addr = min(addr, RAM_BYTES - beats * self.bpb)
        # unaligned addresses are rounded down to a beat by the master
        return addr + (self.rng.randrange(self.bpb) if self.rng.random() < 0.1 else 0), beats

    async def run_commands(self, commands, bad=()):
        expected = list(itertools.chain.from_iterable(self.expected(a, n, bad)
                                                      for a, n in commands))
        self.cmd.send_nowait([{"addr": a, "beats": n} for a, n in commands])
        got = await self.data.recv(len(expected))
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"beat {k}: got {g}, expected {e}"
        await self.wait_idle()

    async def wait_idle(self, limit=10000):
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if not self.dut.busy.value and self.cmd.idle():
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
    dut.clear.value = 0
    await tb.reset()
    n = vector_count(1000, 10000)
    for probability in (0.0, 0.3):
        tb.set_pauses(probability)
        await tb.run_commands([tb.random_command() for _ in range(n // 2)])
        assert not dut.error.value and not dut.timeout.value
    dut._log.info("%d bursts, up to %d in flight", len(tb.bursts), tb.max_in_flight)
    assert any(b == tb.max_burst for _, b in tb.bursts)
    if tb.max_outstanding > 1:
        assert tb.max_in_flight > 1


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_zero_length_and_single_beat(dut):
    """A zero-beat command produces nothing; single beats carry first and last."""
    tb = TB(dut)
    dut.clear.value = 0
    await tb.reset()
    tb.cmd.send_nowait([{"addr": 64, "beats": 0}])
    await tb.run_commands([(128, 1), (RAM_BYTES - tb.bpb, 1), (0, 1)])
    assert tb.data.count() == 0


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_error_responses(dut):
    """SLVERR and DECERR beats: every beat still arrives, the first error code sticks."""
    tb = TB(dut)
    dut.clear.value = 0
    await tb.reset()
    await check_error_responses(tb, dut)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_stall_counter_and_timeout(dut):
    """A silent R channel raises timeout without losing data; stalls are counted."""
    tb = TB(dut)
    dut.clear.value = 0
    await tb.reset()
    assert dut.stall_cycles.value.to_unsigned() == 0
    tb.ram.r_channel.set_pause_generator(itertools.repeat(True))
    tb.cmd.send_nowait([{"addr": 0x400, "beats": 4}])
    await ClockCycles(dut.clk, tb.timeout_cycles + 20)
    assert dut.timeout.value and dut.busy.value
    stalls = dut.stall_cycles.value.to_unsigned()
    assert tb.timeout_cycles <= stalls <= tb.timeout_cycles + 20
    set_channel_pauses([tb.ram.r_channel], 0, tb.rng)
    got = await tb.data.recv(4)
    assert got == tb.expected(0x400, 4)
    assert dut.timeout.value          # sticky until cleared
    await tb.clear()
    assert not dut.timeout.value and dut.stall_cycles.value.to_unsigned() == 0
