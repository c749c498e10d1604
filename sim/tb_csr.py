"""cocotb testbench of :class:`speedllm.hw.axil.AxiLiteRegisters` (and the csr builder).

The design under test serves :func:`demo_regmap`, which has every access mode, a field
with a reset value, a field not at bit 0 and a hole in the address map. A Python model of
the map (`RegisterModel`) predicts every read; cocotbext-axi's ``AxiLiteMaster`` drives
the bus with random pauses on all five channels.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from speedllm.hw import csr
from speedllm.sim.axi import set_channel_pauses
from speedllm.sim.runner import vector_count
from speedllm.sim.streams import start_clock_and_reset


class Control(csr.Register):
    """Control: enable, a mode with a non-zero reset value, a threshold."""
    enable = csr.Field(1, "rw")
    mode = csr.Field(3, "rw", init=5)
    threshold = csr.Field(16, "rw", offset=8)


class Status(csr.Register):
    """Status driven by the hardware."""
    busy = csr.Field(1, "r")
    count = csr.Field(8, "r", offset=8)


class Events(csr.Register):
    """Sticky event flags (write 1 to clear)."""
    done = csr.Field(1, "w1c")
    errors = csr.Field(4, "w1c", offset=4)


class Doorbell(csr.Register):
    """Write 1 to start."""
    go = csr.Field(1, "w1p")
    kick = csr.Field(8, "w1p", offset=8)


class Address(csr.Register):
    """A full 32-bit value."""
    value = csr.Field(32, "rw")


def demo_regmap() -> csr.RegisterMap:
    regmap = csr.RegisterMap("demo")
    regmap.add("control", Control)
    regmap.add("status", Status)
    regmap.add("events", Events)
    regmap.add("doorbell", Doorbell)
    regmap.add("base", Address, offset=0x20)    # 0x10..0x1c unmapped
    return regmap


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.regmap = demo_regmap()
        self.offsets = self.regmap.offsets()
        self.regs = {name: reg for name, _, reg in self.regmap}
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                    dut.clk, dut.rst)
        self.master.write_if.log.setLevel("WARNING")
        self.master.read_if.log.setLevel("WARNING")
        # model: stored values of rw / w1c registers; r inputs we drive
        self.value = {name: reg.reset_value() for name, reg in self.regs.items()}
        self.pulses = []
        self.set_inputs(busy=0, count=0)
        self._set("events", "done", 0)
        self._set("events", "errors", 0)
        cocotb.start_soon(self._watch_pulses())

    def _port(self, reg, field):
        return getattr(self.dut, f"regs__{reg}__{field}")

    def _set(self, reg, field, bits):
        self._port(reg, field + "_set").value = bits

    def set_inputs(self, busy, count):
        self._port("status", "busy").value = busy
        self._port("status", "count").value = count
        self.value["status"] = busy | count << 8

    async def _watch_pulses(self):
        go, kick = self._port("doorbell", "go"), self._port("doorbell", "kick")
        while True:
            await RisingEdge(self.dut.clk)
            g, k = int(go.value), int(kick.value)
            if g or k:
                self.pulses.append(g | k << 8)

    def apply_write(self, name, data, mask):
        """Model a write of ``data`` under the bit ``mask`` (from the byte strobes)."""
        if name is None:
            return
        reg = self.regs[name]
        for f in reg.fields.values():
            fmask = f.mask & mask
            if f.access == "rw":
                self.value[name] = (self.value[name] & ~fmask) | (data & fmask)
            elif f.access == "w1c":
                self.value[name] &= ~(data & fmask)
        if name == "doorbell":
            self.expected_pulse = data & mask & sum(f.mask for f in reg.fields.values())

    async def write(self, addr, data: bytes):
        word, lane = addr & ~3, addr & 3
        name = next((n for n, o in self.offsets.items() if o == word), None)
        self.expected_pulse = 0
        before = len(self.pulses)
        resp = await self.master.write(addr, data)
        assert resp.resp == (AxiResp.OKAY if name else AxiResp.SLVERR), \
            f"write {addr:#x}: {resp.resp!r}"
        value = int.from_bytes(data, "little") << 8 * lane
        mask = ((1 << 8 * len(data)) - 1) << 8 * lane
        self.apply_write(name, value, mask)
        await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)
        pulses = self.pulses[before:]
        assert pulses == ([self.expected_pulse] if self.expected_pulse else []), \
            f"doorbell pulses {pulses} after writing {value:#x} to {addr:#x}"

    async def read_check(self, addr):
        word = addr & ~3
        name = next((n for n, o in self.offsets.items() if o == word), None)
        resp = await self.master.read(word, 4)
        got = int.from_bytes(resp.data, "little")
        if name is None:
            assert resp.resp == AxiResp.SLVERR and got == 0, f"read {addr:#x}: {resp!r}"
        else:
            assert resp.resp == AxiResp.OKAY, f"read {addr:#x}: {resp.resp!r}"
            want = 0 if name == "doorbell" else self.value[name]
            assert got == want, f"read {name} ({addr:#x}): {got:#x}, model {want:#x}"

    def set_pauses(self, probability):
        m = self.master
        set_channel_pauses([m.write_if.aw_channel, m.write_if.w_channel, m.write_if.b_channel,
                            m.read_if.ar_channel, m.read_if.r_channel], probability, self.rng)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_reset_values(dut):
    """After reset every register reads its fields' init values."""
    tb = TB(dut)
    await start_clock_and_reset(dut)
    for name, offset, _ in tb.regmap:
        await tb.read_check(offset)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def test_random_accesses(dut):
    """Random reads/writes/strobes over the map and the holes, hardware events in between."""
    tb = TB(dut)
    await start_clock_and_reset(dut)
    span = tb.regmap.size + 16
    n = vector_count(1000, 10000)
    for k in range(n):
        if k == n // 2:
            tb.set_pauses(0.4)
        r = tb.rng.random()
        addr = tb.rng.randrange(0, span, 4)
        if r < 0.4:
            lane = tb.rng.randrange(4) if tb.rng.random() < 0.3 else 0
            length = tb.rng.randint(1, 4 - lane) if lane or tb.rng.random() < 0.2 else 4
            await tb.write(addr + lane, tb.rng.randbytes(length))
        elif r < 0.8:
            await tb.read_check(addr)
        else:       # the hardware changes its inputs or raises events
            tb.set_inputs(tb.rng.randint(0, 1), tb.rng.randrange(256))
            done, errors = tb.rng.randint(0, 1), tb.rng.randrange(16)
            tb._set("events", "done", done)
            tb._set("events", "errors", errors)
            await RisingEdge(dut.clk)
            tb._set("events", "done", 0)
            tb._set("events", "errors", 0)
            tb.value["events"] |= done | errors << 4
            await RisingEdge(dut.clk)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_set_wins_over_clear(dut):
    """A w1c flag set by hardware in the cycle the bus clears it stays set."""
    tb = TB(dut)
    await start_clock_and_reset(dut)
    offset = tb.offsets["events"]
    tb._set("events", "done", 1)              # the hardware sets `done` on every cycle ...
    resp = await tb.master.write(offset, (1).to_bytes(4, "little"))   # ... while we clear it
    assert resp.resp == AxiResp.OKAY
    tb._set("events", "done", 0)
    resp = await tb.master.read(offset, 4)
    assert int.from_bytes(resp.data, "little") & 1 == 1
    await tb.master.write(offset, (1).to_bytes(4, "little"))          # now it clears
    resp = await tb.master.read(offset, 4)
    assert int.from_bytes(resp.data, "little") & 1 == 0
    await tb.read_check(0x1000)               # unmapped inside the window: SLVERR
