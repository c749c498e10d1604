"""StreamFifo: cocotb on Verilator (random payloads, valid gaps, ready backpressure)."""

from __future__ import annotations

import pytest
from amaranth import signed

from speedllm.hw.stream import StreamFifo, StreamRegister
from speedllm.sim.runner import CocotbFailure, run_cocotb
from speedllm.sim.tb_stream_fifo import payload_layout

# Constructors that raise leave objects Amaranth reports as "never used".
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.mark.sim
@pytest.mark.parametrize("width,depth", [(8, 2), (12, 5)])
def test_stream_fifo(width, depth):
    ran = run_cocotb(lambda: StreamFifo(payload_layout(width), depth),
                     toplevel="stream_fifo", test_module="speedllm.sim.tb_stream_fifo",
                     parameters={"width": width, "depth": depth})
    assert ran == 3


@pytest.mark.sim
def test_failing_cocotb_test_fails_pytest():
    """The runner must raise when the testbench fails: tell the TB a wrong depth."""
    with pytest.raises(CocotbFailure, match="test_fill_then_drain"):
        run_cocotb(lambda: StreamFifo(payload_layout(8), 4),
                   toplevel="stream_fifo", test_module="speedllm.sim.tb_stream_fifo",
                   parameters={"width": 8, "depth": 5}, testcase="test_fill_then_drain")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_depth(bad):
    with pytest.raises(ValueError, match="depth"):
        StreamFifo(signed(8), bad)


def test_bad_shape():
    with pytest.raises(TypeError, match="shape"):
        StreamFifo("wide", 4)
    with pytest.raises(TypeError, match="shape"):
        StreamRegister(object())


def test_stream_register_with_gaps_and_backpressure():
    """StreamRegister in Amaranth's simulator: every value passes, in order, under random
    valid gaps and ready backpressure (no Verilator build needed)."""
    import random

    from amaranth.sim import Simulator

    dut = StreamRegister(signed(8))
    rng = random.Random(3)
    values = [rng.randint(-128, 127) for _ in range(300)]
    received = []

    async def drive(ctx):
        for v in values:
            while rng.random() < 0.3:                      # a valid gap
                await ctx.tick()
            ctx.set(dut.i.payload, v)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def take(ctx):
        while len(received) < len(values):
            ready = rng.random() < 0.6                     # backpressure 40 % of cycles
            ctx.set(dut.o.ready, ready)
            _, _, payload, valid = await ctx.tick().sample(dut.o.payload, dut.o.valid)
            if ready and valid:
                received.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(take)
    sim.run_until(1e-8 * 5000)
    assert received == values
