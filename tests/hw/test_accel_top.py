"""The accelerator top in the C++ harness: whole decode steps equal the golden interpreter,
fused and unfused, scratchpad and DRAM activations; bus faults end with an error code."""

import numpy as np
import pytest

from speedllm.golden.checkpoint import load_checkpoint
from speedllm.hw.accel_regs import ErrorCode
from speedllm.hw.accel_top import AcceleratorTop
from speedllm.ops.compiler import compile_model
from speedllm.ops.fusion import FusionConfig
from speedllm.ops.interpreter import Interpreter
from speedllm.ops.isa import Opcode
from speedllm.sim.harness import Harness
from speedllm.sim.top_check import TopRunner, compare_step

pytestmark = pytest.mark.sim

BASE = 0x1000_0000


@pytest.fixture(scope="module")
def checkpoint(model_path):
    return load_checkpoint(model_path)


@pytest.fixture(scope="module")
def runner():
    h = Harness(AcceleratorTop(), "accel_top", dram_base=BASE, dram_bytes=1 << 22,
                latency=20, bandwidth_bytes_per_cycle=8, max_outstanding=8)
    yield TopRunner(h, timeout_cycles=300_000)
    h.close()


def run_steps(runner, program, positions):
    runner.load(program)
    ref = Interpreter.from_program(program)
    token, cycles = 1, []
    for pos in range(positions):
        result = compare_step(runner, ref, token, pos)
        assert not result["error"]
        assert result["commands_done"] == len(program.commands) - 1
        cycles.append(result["total_cycles"])
        token = int(np.argmax(result["logits"]))
    return cycles


@pytest.mark.parametrize("act_space", ["scratchpad", "dram"])
def test_fused_steps_equal_the_interpreter(runner, checkpoint, act_space):
    program = compile_model(checkpoint, act_space=act_space)
    cycles = run_steps(runner, program, 3)
    assert all(c > 0 for c in cycles)


@pytest.mark.parametrize("reuse", [True, False])
def test_unfused_steps_equal_the_interpreter(runner, checkpoint, reuse):
    program = compile_model(checkpoint, fusion=FusionConfig.only("attention_pass"),
                            reuse=reuse)
    kinds = {c.kind for c in program.commands}
    assert {Opcode.RMSNORM, Opcode.ROPE, Opcode.KV_WRITE, Opcode.RESIDUAL,
            Opcode.SWIGLU} <= kinds
    run_steps(runner, program, 2)


def test_split_attention_has_no_unit(runner, checkpoint):
    program = compile_model(checkpoint, fusion=FusionConfig.none())
    runner.load(program)
    result = runner.step(1, 0)
    first_split = next(i for i, c in enumerate(program.commands)
                       if c.kind is Opcode.ATT_SCORES)
    assert result["error"] and result["error_code"] == ErrorCode.NO_UNIT
    assert result["failing_command"] == first_split


def _first_reader(program, region):
    r = program.layout[region]
    for i, c in enumerate(program.commands):
        if c.kind in (Opcode.MATVEC, Opcode.CLASSIFIER) and r.addr <= c.w_addr < r.end:
            return i
    raise AssertionError(region)


def test_read_error_on_weights_names_the_command(runner, checkpoint):
    program = compile_model(checkpoint)
    name = "l2.w13.weights"
    region = program.layout[name]
    runner.load(program)
    runner.h.add_error_range(BASE + region.addr, BASE + region.end, "slverr")
    try:
        result = runner.step(1, 0)
    finally:
        runner.h.clear_error_ranges()
    assert result["error"] and result["error_code"] == ErrorCode.AXI_READ
    assert result["failing_command"] == _first_reader(program, name)


def test_write_error_on_kv_cache_is_axi_write(runner, checkpoint):
    program = compile_model(checkpoint)
    region = program.layout["l0.k_cache"]
    runner.load(program)
    runner.h.add_error_range(BASE + region.addr, BASE + region.end, "decerr")
    try:
        result = runner.step(1, 0)
    finally:
        runner.h.clear_error_ranges()
    assert result["error"] and result["error_code"] == ErrorCode.AXI_WRITE
    assert program.names[result["failing_command"]] == "l0.qkv"


def test_stalled_bus_ends_with_a_timeout_code(runner, checkpoint):
    program = compile_model(checkpoint)
    region = program.layout["l1.wo.weights"]
    runner.load(program)
    runner.h.add_error_range(BASE + region.addr, BASE + region.end, "hang")
    try:
        result = runner.step(1, 0, max_cycles=2_000_000)
    finally:
        runner.h.clear_error_ranges()
    assert result["error"]
    assert result["error_code"] in (ErrorCode.BUS_TIMEOUT, ErrorCode.UNIT_TIMEOUT)
    assert program.names[result["failing_command"]] == "l1.wo"
    # after a reset the same program runs clean again
    runner.load(program)
    assert not runner.step(1, 0)["error"]
