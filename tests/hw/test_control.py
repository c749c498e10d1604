"""The accelerator's register map (accel_regs) and the sequencer + control block."""

from __future__ import annotations

import json

import pytest

from speedllm.hw import accel_regs as A
from speedllm.hw.sequencer import DEFAULT_UNITS, Sequencer
from speedllm.ops import dram_format, isa
from speedllm.ops.compiler import compile_model
from speedllm.ops.fusion import FusionConfig
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
def test_control_block():
    ran = run_cocotb(lambda: Sequencer(), toplevel="sequencer",
                     test_module="speedllm.sim.tb_control")
    assert ran == 5


def test_regmap_layout_and_exports(tmp_path):
    offsets = A.ACCEL_REGMAP.offsets()
    assert len(set(offsets.values())) == len(offsets)
    assert all(o % 4 == 0 for o in offsets.values())
    # one cycle and one stall counter per opcode, indexed by opcode value
    for op in isa.Opcode:
        for kind, base in (("cycles", A.CYCLES_BASE), ("stalls", A.STALLS_BASE)):
            assert A.counter_offset(kind, op) == base + 4 * op.value
            assert A.counter_offset(kind, A.COUNTER_CLASSES[op.value]) == \
                A.counter_offset(kind, int(op))
    assert A.COUNTER_CLASSES[0] == "fetch"
    for name in ("control", "status", "hw_id", "config_hash", "program_addr", "image_base",
                 "token", "position", "timeout_cycles", "failing_command", "total_cycles",
                 "bytes_read", "bytes_written"):
        assert name in offsets
    path = A.write_offsets_json(tmp_path / "accel.json")
    described = json.loads(path.read_text())
    assert {r["name"]: r["offset"] for r in described["registers"]} == offsets
    assert described["error_codes"] == {e.name: e.value for e in A.ErrorCode}
    assert described["config_hash"] == A.DEFAULT_CONFIG.hash()
    assert A.HardwareConfig(**described["config"]).hash() == described["config_hash"]
    namespace = {}
    exec(A.ACCEL_REGMAP.to_python(), namespace)
    assert all(namespace[n.upper()] == o for n, o in offsets.items())
    with pytest.raises(ValueError, match="kind"):
        A.counter_name("bytes", 1)
    with pytest.raises(ValueError, match="class"):
        A.counter_name("cycles", "nope")


def test_hw_id_carries_the_versions():
    f = A.HwId.fields
    field = lambda name: (A.HW_ID >> f[name].offset) & ((1 << f[name].width) - 1)  # noqa: E731
    assert field("magic") == A.HW_ID_MAGIC
    assert field("isa_version") == isa.ISA_VERSION
    assert field("format_version") == dram_format.IMAGE_FORMAT_VERSION
    assert "magic" in A.HwId.__doc__ and "w1c" in A.Status.__doc__


def test_config_hash_tracks_the_configuration():
    base = A.HardwareConfig()
    assert base.hash() == A.HardwareConfig().hash()
    hashes = {base.hash(), A.HardwareConfig(lanes=16).hash(),
              A.HardwareConfig(beat_bytes=16).hash(), A.HardwareConfig(max_dim=4096).hash(),
              A.HardwareConfig(isa_version=isa.ISA_VERSION + 1).hash()}
    assert len(hashes) == 5 and all(0 <= h < 1 << 32 for h in hashes)
    with pytest.raises(ValueError, match="lanes"):
        A.HardwareConfig(lanes=0)


def test_program_fit_check(model_path):
    program = compile_model(model_path, fusion=FusionConfig.none())
    header = dram_format.read_header(program.image)
    assert A.DEFAULT_CONFIG.problems_with(header) == []
    small = A.HardwareConfig(max_dim=header["dim"] - 1, beat_bytes=2 * header["beat_bytes"])
    problems = small.problems_with(header)
    assert len(problems) == 2
    assert any("dim=" in p for p in problems) and any("beat_bytes" in p for p in problems)
    other = A.HardwareConfig(group_size=64).problems_with(header)
    assert other == [f"program scheme={header['scheme']} does not fit the hardware (g64-kv16)"]


def test_default_units_cover_every_opcode():
    seq = Sequencer()
    assert {seq.unit_of(op) for op in isa.Opcode if op is not isa.Opcode.END} == \
        set(DEFAULT_UNITS)
    assert seq.unit_of(isa.Opcode.END) is None


@pytest.mark.parametrize("units,exc,match", [
    ({"a": (isa.Opcode.MATVEC,), "b": (isa.Opcode.MATVEC,)}, ValueError, "MATVEC"),
    ({"a": (isa.Opcode.END,)}, ValueError, "END"),
    ({"not a name": (isa.Opcode.EMBED,)}, ValueError, "identifier"),
    ({"a": (99,)}, ValueError, "99"),
])
def test_bad_unit_maps(units, exc, match):
    with pytest.raises(exc, match=match):
        Sequencer(units=units)


def test_opcode_without_unit_ends_with_no_unit():
    """A build without a unit for MATVEC (Amaranth simulator, a few hundred cycles): the
    EMBED before it runs, the MATVEC ends the run with NO_UNIT and its index."""
    from amaranth.sim import Simulator
    dut = Sequencer(units={"embed": (isa.Opcode.EMBED,)})
    words = isa.encode_program([isa.Command(opcode=isa.Opcode.EMBED, rows=5),
                                isa.Command(opcode=isa.Opcode.MATVEC, rows=6)])
    program_addr, bus, unit = 0x1000, dut.s_axil, dut.units.embed
    starts, result = [], {}

    async def axil_write(ctx, name, value):
        ctx.set(bus.awaddr, A.ACCEL_REGMAP.offsets()[name])
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        await ctx.tick().until(bus.bvalid)
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        await ctx.tick()

    async def axil_read(ctx, name):
        ctx.set(bus.araddr, A.ACCEL_REGMAP.offsets()[name])
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        (data,) = await ctx.tick().sample(bus.rdata).until(bus.rvalid)
        ctx.set(bus.arvalid, 0)
        await ctx.tick()
        return data

    async def memory(ctx):          # an AXI RAM holding the program, one burst at a time
        axi = dut.m_axi
        ctx.set(axi.arready, 1)
        while True:
            _, _, arvalid, addr, length = await ctx.tick().sample(axi.arvalid, axi.araddr,
                                                                  axi.arlen)
            if not arvalid:
                continue
            ctx.set(axi.arready, 0)
            for k in range(length + 1):
                offset = addr - program_addr + 8 * k
                ctx.set(axi.rdata, int.from_bytes(words[offset:offset + 8], "little"))
                ctx.set(axi.rlast, k == length)
                ctx.set(axi.rvalid, 1)
                await ctx.tick().until(axi.rready)
            ctx.set(axi.rvalid, 0)
            ctx.set(axi.arready, 1)

    async def embed_unit(ctx):
        while True:
            _, _, start, opcode = await ctx.tick().sample(unit.start, unit.command.opcode)
            ctx.set(unit.done, 0)
            if start:
                starts.append(opcode)
                ctx.set(unit.done, 1)

    async def host(ctx):
        await axil_write(ctx, "program_addr", program_addr)
        await axil_write(ctx, "control", A.Control.fields["start"].mask)
        for _ in range(100):
            status = await axil_read(ctx, "status")
            if status & A.Status.fields["done"].mask:
                break
        result["status"] = status
        result["failing"] = await axil_read(ctx, "failing_command")
        result["done"] = await axil_read(ctx, "commands_done")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(memory, background=True)
    sim.add_testbench(embed_unit, background=True)
    sim.add_testbench(host)
    sim.run()
    f = A.Status.fields
    status = result["status"]
    assert status & f["done"].mask and status & f["error"].mask and not status & f["busy"].mask
    assert (status & f["error_code"].mask) >> f["error_code"].offset == A.ErrorCode.NO_UNIT
    assert result["failing"] == 1 and result["done"] == 1
    assert starts == [isa.Opcode.EMBED]
