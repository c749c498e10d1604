"""cocotb testbench of :class:`speedllm.hw.sequencer.Sequencer` (the control block).

The host side is cocotbext-axi's ``AxiLiteMaster`` on ``s_axil`` using the offsets of
:data:`speedllm.hw.accel_regs.ACCEL_REGMAP`; the program (stories260K compiled by
:mod:`speedllm.ops.compiler`, fused and unfused) sits in a cocotbext-axi RAM on ``m_axi``.
Each unit port is answered by a :class:`StandInUnit`: a coroutine that checks the command
it is handed against ``decode_program`` (and that it is the unit of that opcode), then
answers ``done`` after a random number of cycles, raising ``stall`` and reporting bytes on
random cycles. What the stand-ins consumed is the model of the counters.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from speedllm.hw import accel_regs as A
from speedllm.hw.sequencer import DEFAULT_UNITS
from speedllm.ops import isa
from speedllm.sim.axi import AxiResp, ErrorRamRead, ErrorRange, read_bus, set_channel_pauses
from speedllm.sim.streams import start_clock_and_reset, unpack
from speedllm.sim.tb_command_fetch import compiled_program

RAM_BYTES = 1 << 20
PROGRAM_ADDR = 0x10000
OFF = A.ACCEL_REGMAP.offsets()
UNIT_OF = {op: name for name, ops in DEFAULT_UNITS.items() for op in ops}
STATUS = A.Status.fields


class StandInUnit:
    """Answers ``start`` on ``units__<name>__*`` with ``done`` after a random delay.

    ``mode``: ``"ok"``; ``"hang"`` (never answers; returns to idle on ``abort``);
    ``"error"`` (answers done with ``error`` and :attr:`error_code`).
    """

    def __init__(self, tb, name):
        self.tb, self.name = tb, name
        d = tb.dut
        self.sig = {s: getattr(d, f"units__{name}__{s}") for s in (
            "start", "abort", "command", "token", "position", "image_base", "done", "error",
            "error_code", "stall", "bytes_read", "bytes_written")}
        for s in ("done", "error", "error_code", "stall", "bytes_read", "bytes_written"):
            self.sig[s].value = 0
        self.mode, self.error_code = "ok", A.ErrorCode.AXI_WRITE
        self.aborts = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        tb, sig = self.tb, self.sig
        while True:
            await RisingEdge(tb.dut.clk)
            if not sig["start"].value:
                continue
            start_edge = tb.edge
            cmd = isa.Command(**{k: v for k, v in unpack(
                isa.struct_layout(), int(sig["command"].value)).items() if k != "_pad"})
            tb.started(self.name, cmd, int(sig["token"].value), int(sig["position"].value),
                       int(sig["image_base"].value))
            delay = tb.fixed_delay or tb.rng.choice([1, 2, tb.rng.randint(3, 40)])
            stalls = read = written = 0
            for k in range(delay if self.mode != "hang" else 1 << 30):
                if self.mode == "hang" and k and sig["abort"].value:
                    self.aborts += 1
                    break
                last = self.mode != "hang" and k == delay - 1
                stall = tb.rng.random() < 0.3
                r, w = tb.rng.choice([0, 8, 64, 65535]), tb.rng.choice([0, 4, 16])
                sig["stall"].value, sig["bytes_read"].value = int(stall), r
                sig["bytes_written"].value = w
                stalls, read, written = stalls + stall, read + r, written + w
                if last:
                    sig["done"].value = 1
                    sig["error"].value = int(self.mode == "error")
                    sig["error_code"].value = int(self.error_code)
                await RisingEdge(tb.dut.clk)
            for s in ("done", "error", "error_code", "stall", "bytes_read", "bytes_written"):
                sig[s].value = 0
            if self.mode == "ok":
                tb.finished(cmd, tb.edge - start_edge + 1, stalls, read, written)


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.edge = 0
        self.fixed_delay = 0             # stand-ins' done delay (0: random)
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                    dut.clk, dut.rst)
        self.master.write_if.log.setLevel("WARNING")
        self.master.read_if.log.setLevel("WARNING")
        self.ram = ErrorRamRead(read_bus(dut), dut.clk, dut.rst, size=RAM_BYTES)
        self.units = {name: StandInUnit(self, name) for name in DEFAULT_UNITS}
        self.expected_commands: list = []
        self.context = (0, 0, 0)
        self.reset_model()
        cocotb.start_soon(self._count_edges())

    async def _count_edges(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.edge += 1

    def reset_model(self):
        self.executed = 0
        self.cycles = collections.Counter()
        self.stalls = collections.Counter()
        self.bytes_read = self.bytes_written = 0

    # -- stand-in callbacks: the model of the counters ---------------------------------
    def started(self, unit, cmd, token, position, image_base):
        k = self.executed
        assert k < len(self.expected_commands), f"{unit}: command {k} after the program end"
        want = self.expected_commands[k]
        assert cmd == want, f"command {k} at {unit}: {dataclasses.asdict(cmd)} != " \
                            f"{dataclasses.asdict(want)}"
        assert UNIT_OF[isa.Opcode(cmd.opcode)] == unit, (k, cmd.opcode, unit)
        assert (token, position, image_base) == self.context

    def finished(self, cmd, cycles, stalls, read, written):
        self.executed += 1
        self.cycles[cmd.opcode] += cycles
        self.stalls[cmd.opcode] += stalls
        self.bytes_read += read
        self.bytes_written += written

    # -- host side ---------------------------------------------------------------------
    async def read(self, name):
        return await self.master.read_dword(OFF[name])

    async def write(self, name, value):
        await self.master.write_dword(OFF[name], value)

    def set_pauses(self, probability):
        m = self.master
        set_channel_pauses([m.write_if.aw_channel, m.write_if.w_channel, m.write_if.b_channel,
                            m.read_if.ar_channel, m.read_if.r_channel,
                            self.ram.ar_channel, self.ram.r_channel], probability, self.rng)

    async def run(self, words, *, token=0, position=0, image_base=0, limit=200000):
        """Load ``words``, start one run, wait for status.done; return the status word."""
        self.ram.write(PROGRAM_ADDR, words)
        self.expected_commands = isa.decode_program(words)
        self.context = (token, position, image_base)
        self.reset_model()
        for name, value in (("program_addr", PROGRAM_ADDR), ("token", token),
                            ("position", position), ("image_base", image_base)):
            await self.write(name, value)
        await self.write("status", STATUS["done"].mask)          # clear done
        await self.write("control", A.Control.fields["start"].mask
                         | A.Control.fields["irq_enable"].mask)
        for _ in range(limit // 20):
            await ClockCycles(self.dut.clk, 20)
            status = await self.read("status")
            if status & STATUS["done"].mask:
                assert not status & STATUS["busy"].mask
                assert self.dut.irq.value
                return status
        raise AssertionError("the run did not end")

    async def check_counters(self, n_fetched):
        """Every counter register equals the model (what the stand-ins consumed)."""
        classes = {}
        for k in range(len(A.COUNTER_CLASSES)):
            classes[k] = (await self.master.read_dword(A.counter_offset("cycles", k)),
                          await self.master.read_dword(A.counter_offset("stalls", k)))
        for op in isa.Opcode:
            if op is not isa.Opcode.END:
                assert classes[op][0] == self.cycles[op], (op.name, classes[op], self.cycles[op])
                assert classes[op][1] == self.stalls[op], (op.name, classes[op], self.stalls[op])
        total = await self.read("total_cycles")
        fetch_cycles, fetch_stalls = classes[0]
        assert total == sum(c for c, _ in classes.values()) and fetch_cycles > 0
        assert fetch_stalls < fetch_cycles
        assert await self.read("commands_done") == self.executed
        assert await self.read("bytes_read") == \
            self.bytes_read + n_fetched * isa.COMMAND_BYTES
        assert await self.read("bytes_written") == self.bytes_written
        self.dut._log.info("%d commands, %d cycles (%d fetching, %d of them stalled)",
                           self.executed, total, fetch_cycles, fetch_stalls)

    async def expect_error(self, status, code, index):
        assert status & STATUS["error"].mask, hex(status)
        got = (status & STATUS["error_code"].mask) >> STATUS["error_code"].offset
        assert got == code, (A.ErrorCode(got), code)
        assert await self.read("failing_command") == index


async def setup(dut):
    tb = TB(dut)
    await start_clock_and_reset(dut)
    return tb


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_identity_and_registers(dut):
    """hw_id, config_hash, reset values; rw registers read back; soft reset; done w1c."""
    tb = await setup(dut)
    assert await tb.read("hw_id") == A.HW_ID
    assert await tb.read("config_hash") == A.DEFAULT_CONFIG.hash()
    assert await tb.read("timeout_cycles") == A.Timeout.reset_value()
    assert await tb.read("status") == 0
    for name in ("program_addr", "image_base", "token", "position", "timeout_cycles"):
        value = tb.rng.getrandbits(32)
        await tb.write(name, value)
        assert await tb.read(name) == value
    await tb.write("control", A.Control.fields["irq_enable"].mask)
    assert await tb.read("control") == A.Control.fields["irq_enable"].mask
    assert await tb.read("hw_id") == A.HW_ID          # read only: writes are ignored
    await tb.write("hw_id", 0)
    assert await tb.read("hw_id") == A.HW_ID
    await tb.write("timeout_cycles", 1000)
    status = await tb.run(compiled_program(True), token=7, position=3, image_base=0x1000_0000)
    assert status == STATUS["done"].mask, hex(status)
    assert await tb.read("commands_done") > 0
    await tb.write("control", A.Control.fields["soft_reset"].mask
                   | A.Control.fields["irq_enable"].mask)
    for name in ("commands_done", "total_cycles", "bytes_read", "bytes_written"):
        assert await tb.read(name) == 0, name
    assert await tb.read("status") == STATUS["done"].mask and dut.irq.value
    await tb.write("status", STATUS["done"].mask)
    assert await tb.read("status") == 0 and not dut.irq.value


@cocotb.test(timeout_time=500, timeout_unit="ms")
async def test_programs_and_counters(dut):
    """Fused and unfused stories260K programs run to END; every counter equals the
    stand-ins' consumption; with and without bus pauses."""
    tb = await setup(dut)
    await tb.write("timeout_cycles", 1000)
    for fused, probability in itertools.product((True, False), (0.0, 0.3)):
        tb.set_pauses(probability)
        words = compiled_program(fused)
        token, position = tb.rng.randrange(512), tb.rng.randrange(512)
        status = await tb.run(words, token=token, position=position,
                              image_base=tb.rng.getrandbits(32))
        assert status == STATUS["done"].mask, hex(status)
        n = len(tb.expected_commands)
        assert tb.executed == n - 1
        await tb.check_counters(n)
    # command rate when units are instant (fetch bound) and when they take 20 cycles
    tb.set_pauses(0.0)
    for delay in (1, 20):
        tb.fixed_delay = delay
        await tb.run(words)
        await tb.check_counters(len(tb.expected_commands))
        total = await tb.read("total_cycles")
        dut._log.info("units answering after %d cycles: %.1f cycles per command", delay,
                      total / len(tb.expected_commands))
    tb.fixed_delay = 0


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def test_unit_timeout(dut):
    """A unit that never answers: UNIT_TIMEOUT, its command's index, abort pulsed, busy
    low; the next run completes."""
    tb = await setup(dut)
    timeout = 300
    await tb.write("timeout_cycles", timeout)
    words = compiled_program(True)
    cmds = isa.decode_program(words)
    victim = tb.units[UNIT_OF[isa.Opcode(cmds[3].opcode)]]
    victim.mode = "hang"
    index = next(k for k, c in enumerate(cmds) if UNIT_OF.get(c.kind) == victim.name)
    start = tb.edge
    status = await tb.run(words)
    await tb.expect_error(status, A.ErrorCode.UNIT_TIMEOUT, index)
    assert victim.aborts == 1
    assert tb.executed == index
    assert await tb.read("total_cycles") < tb.edge - start
    victim.mode = "ok"
    status = await tb.run(words)
    assert status == STATUS["done"].mask, hex(status)
    await tb.check_counters(len(cmds))


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def test_unit_error(dut):
    """A unit answering done with an error: its code and the failing index."""
    tb = await setup(dut)
    words = compiled_program(False)
    cmds = isa.decode_program(words)
    unit = tb.units["residual"]
    index = next(k for k, c in enumerate(cmds) if c.opcode == isa.Opcode.RESIDUAL)
    for code in (A.ErrorCode.AXI_WRITE, A.ErrorCode.NONE):     # 0 reads as UNIT_ERROR
        unit.mode, unit.error_code = "error", code
        status = await tb.run(words)
        await tb.expect_error(status, code or A.ErrorCode.UNIT_ERROR, index)
        assert tb.executed == index
    unit.mode = "ok"


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def test_fetch_errors(dut):
    """An AXI error on the program fetch (AXI_READ) and a silent bus (BUS_TIMEOUT): the
    failing command's index, the commands before it executed, busy low."""
    tb = await setup(dut)
    await tb.write("timeout_cycles", 500)
    words = compiled_program(True)
    for index, resp in ((0, AxiResp.SLVERR), (5, AxiResp.DECERR)):
        bad = PROGRAM_ADDR + index * isa.COMMAND_BYTES + 8
        tb.ram.error_ranges = [ErrorRange(bad, bad + 8, resp)]
        status = await tb.run(words)
        await tb.expect_error(status, A.ErrorCode.AXI_READ, index)
        assert tb.executed == index
    tb.ram.error_ranges = []
    tb.ram.r_channel.set_pause_generator(itertools.repeat(True))
    status = await tb.run(words)
    await tb.expect_error(status, A.ErrorCode.BUS_TIMEOUT, 0)
    set_channel_pauses([tb.ram.r_channel], 0, tb.rng)
    status = await tb.run(words)
    assert status == STATUS["done"].mask, hex(status)
