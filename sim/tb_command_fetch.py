"""cocotb testbench of :class:`speedllm.hw.command_fetch.CommandFetcher`.

The program words sit in cocotbext-axi's RAM (:class:`speedllm.sim.axi.ErrorRamRead`);
the model of the fetcher's output is :func:`speedllm.ops.isa.decode_program` of the same
words. Programs: stories260K compiled by :func:`speedllm.ops.compiler.compile_model`
(fused and unfused) and random command records. Every run also goes with random pauses
on AR/R and ready backpressure on the output. Parameter: ``data_width``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from speedllm.hw.accel_regs import ErrorCode
from speedllm.hw.command_fetch import fetched_layout
from speedllm.ops import isa
from speedllm.sim.axi import AxiResp, ErrorRamRead, ErrorRange, read_bus, set_channel_pauses
from speedllm.sim.runner import tb_parameters, vector_count
from speedllm.sim.streams import StreamSink, start_clock_and_reset

RAM_BYTES = 1 << 20
TIMEOUT = 200


def random_command(rng: random.Random, opcode=None):
    """A command with a random valid opcode/epilogue and random values in every field."""
    values = {}
    for spec in isa.FIELDS:
        lo, hi = ((-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed
                  else (0, (1 << spec.bits) - 1))
        values[spec.name] = rng.choice([lo, hi, rng.randint(lo, hi)])
    values["opcode"] = rng.randint(1, max(isa.Opcode)) if opcode is None else opcode
    values["epilogue"] = rng.randint(0, max(isa.Epilogue))
    return isa.Command(**values)


def random_program(rng: random.Random, n: int) -> bytes:
    return isa.encode_program([random_command(rng) for _ in range(n)])


def compiled_program(fused: bool) -> bytes:
    from speedllm.ops.compiler import compile_model
    from speedllm.ops.fusion import FusionConfig
    from speedllm.paths import resolve_model_file
    fusion = FusionConfig() if fused else FusionConfig.none()
    return compile_model(resolve_model_file("stories260K.bin"), fusion=fusion).words


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.bpb = tb_parameters()["data_width"] // 8
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.out = StreamSink(dut, "o", dut.clk, shape=fetched_layout())
        self.ram = ErrorRamRead(read_bus(dut), dut.clk, dut.rst, size=RAM_BYTES)
        self.reads = []                    # AR addresses
        dut.start.value = 0
        dut.abort.value = 0
        dut.program_addr.value = 0
        dut.timeout_cycles.value = TIMEOUT
        cocotb.start_soon(self._monitor())

    async def reset(self):
        await start_clock_and_reset(self.dut)

    async def _monitor(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            if d.m_axi__arvalid.value and d.m_axi__arready.value:
                self.reads.append(d.m_axi__araddr.value.to_unsigned())

    def set_pauses(self, probability):
        set_channel_pauses([self.ram.ar_channel, self.ram.r_channel], probability, self.rng)
        self.out.set_random_pause(probability, self.rng)

    async def start(self, addr):
        self.reads.clear()
        self.dut.program_addr.value = addr
        self.dut.start.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.start.value = 0

    async def wait_idle(self, limit=100000):
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if not self.dut.busy.value:
                return
        raise AssertionError("fetcher still busy")

    def check(self, got, expected, first_index=0):
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g["index"] == first_index + k, (k, g["index"])
            fields = {name: v for name, v in g["command"].items() if name != "_pad"}
            assert fields == dataclasses.asdict(e), \
                f"command {k}: got {fields}, expected {dataclasses.asdict(e)}"

    async def run_program(self, words: bytes, addr: int):
        """Fetch a whole program and compare every field with decode_program."""
        self.ram.write(addr, words)
        expected = isa.decode_program(words)
        await self.start(addr)
        got = await self.out.recv(len(expected))
        await self.wait_idle()
        self.check(got, expected)
        assert not self.dut.error.value, self.dut.error_code.value
        assert self.out.count() == 0
        n = len(expected)
        assert self.dut.bytes_read.value.to_unsigned() == n * isa.COMMAND_BYTES
        # one read a command, in order, none past END
        assert self.reads == [addr + isa.COMMAND_BYTES * k for k in range(n)], self.reads[:4]

    async def expect_error(self, words: bytes, addr: int, code: ErrorCode, index: int,
                           limit=100000):
        """Fetch until an error: commands before ``index`` arrive, nothing after."""
        self.ram.write(addr, words)
        expected = isa.decode_program(words[:index * isa.COMMAND_BYTES] + bytes(64))[:index]
        await self.start(addr)
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if self.dut.error.value and not self.dut.busy.value:
                break
        else:
            raise AssertionError("no error")
        await ClockCycles(self.dut.clk, 4)
        got = self.out.recv_nowait()
        assert self.dut.error_code.value.to_unsigned() == code, \
            (self.dut.error_code.value.to_unsigned(), code)
        assert self.dut.error_index.value.to_unsigned() == index
        assert len(got) == index, (len(got), index)
        self.check(got, expected)
        assert not self.dut.busy.value


@cocotb.test(timeout_time=200, timeout_unit="ms")
async def test_compiled_programs(dut):
    """stories260K programs, fused and unfused: every field as decode_program's."""
    tb = TB(dut)
    await tb.reset()
    for fused, probability in itertools.product((True, False), (0.0, 0.3)):
        tb.set_pauses(probability)
        await tb.run_program(compiled_program(fused), 0x1C0 + 0x4000 * (1 + fused))


@cocotb.test(timeout_time=500, timeout_unit="ms")
async def test_random_commands(dut):
    """Random command records (every field, extreme values), one program after another."""
    tb = TB(dut)
    await tb.reset()
    total = vector_count(1000, 10000)
    done = 0
    while done < total:
        n = min(tb.rng.choice([0, 1, 7, 100]), total - done)
        tb.set_pauses(tb.rng.choice([0.0, 0.3]))
        await tb.run_program(random_program(tb.rng, n), 64 * tb.rng.randrange(0, 8000))
        done += max(n, 1)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_axi_errors(dut):
    """SLVERR / DECERR on a command: AXI_READ with its index, earlier commands delivered."""
    tb = TB(dut)
    await tb.reset()
    for probability, (resp, index, beat) in itertools.product(
            (0.0, 0.3), ((AxiResp.SLVERR, 3, 0), (AxiResp.DECERR, 0, 7), (AxiResp.SLVERR, 5, 4))):
        tb.set_pauses(probability)
        addr = 0x8000
        bad = addr + index * isa.COMMAND_BYTES + (beat * tb.bpb) % isa.COMMAND_BYTES
        tb.ram.error_ranges = [ErrorRange(bad, bad + tb.bpb, resp)]
        await tb.expect_error(random_program(tb.rng, 8), addr, ErrorCode.AXI_READ, index)
        tb.ram.error_ranges = []
        await tb.run_program(random_program(tb.rng, 3), addr)     # recovers


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_bad_opcode_and_epilogue(dut):
    """An opcode or epilogue outside the ISA: BAD_OPCODE with its index."""
    tb = TB(dut)
    await tb.reset()
    for field, value, index in (("opcode", max(isa.Opcode) + 1, 2), ("opcode", 255, 0),
                                ("epilogue", max(isa.Epilogue) + 1, 4)):
        cmds = [random_command(tb.rng) for _ in range(6)]
        raw = bytearray(isa.encode_program(cmds))
        offset = isa.COMMAND_BYTES * index + [s.name for s in isa.FIELDS].index(field)
        raw[offset] = value          # opcode and epilogue are bytes 0 and 2 of a record
        await tb.expect_error(bytes(raw), 0x100, ErrorCode.BAD_OPCODE, index)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_bus_timeout_and_recovery(dut):
    """A silent R channel: BUS_TIMEOUT within timeout_cycles, busy low; the next start
    drains the abandoned read and fetches normally."""
    tb = TB(dut)
    await tb.reset()
    words = random_program(tb.rng, 4)
    tb.ram.write(0x200, words)
    tb.ram.r_channel.set_pause_generator(itertools.repeat(True))
    await tb.start(0x200)
    for cycles in range(10 * TIMEOUT):
        await RisingEdge(dut.clk)
        if not dut.busy.value:
            break
    assert TIMEOUT <= cycles <= TIMEOUT + 20, cycles
    assert dut.error.value and dut.error_code.value.to_unsigned() == ErrorCode.BUS_TIMEOUT
    assert dut.error_index.value.to_unsigned() == 0
    set_channel_pauses([tb.ram.r_channel], 0, tb.rng)
    await ClockCycles(dut.clk, 2)
    await tb.run_program(words, 0x200)
    # timeout 0 disables the watchdog: a slow bus just takes longer
    dut.timeout_cycles.value = 0
    tb.ram.r_channel.set_pause_generator(itertools.cycle([True] * (2 * TIMEOUT) + [False]))
    await tb.run_program(random_program(tb.rng, 1), 0x400)
