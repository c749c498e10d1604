"""The PYNQ driver against a recording bus: exact register traffic and every error path.

The expected transactions come from the register map (``REGISTER_OFFSETS``,
``field_bits``), never from typed offsets. Runs in ~3 s (one program compile).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import pynq  # noqa: E402  (the test extras install it)

from speedllm.errors import AcceleratorError  # noqa: E402
from speedllm.golden.formats import ACT_FRAC  # noqa: E402
from speedllm.host.driver import REGISTER_OFFSETS, SpeedLLMAccelerator, field_bits  # noqa: E402
from speedllm.host.hwh import ACCEL_INSTANCE, HwhLayout, write_hwh  # noqa: E402
from speedllm.host.sim_device import RecordingBus, SimulatedDevice  # noqa: E402
from speedllm.hw.accel_regs import (ACCEL_REGMAP, DEFAULT_CONFIG, HW_ID, ErrorCode,  # noqa: E402
                                    HardwareConfig)
from speedllm.ops.compiler import compile_model  # noqa: E402
from speedllm.ops.isa import Opcode  # noqa: E402


@pytest.fixture(scope="module")
def program(model_path):
    return compile_model(model_path)


def bit(reg, field):
    return field_bits(reg, field)[1]


def connect(tmp_path, bus, layout=HwhLayout()):
    device = SimulatedDevice.activate(bus, layout)
    overlay = pynq.Overlay(str(write_hwh(tmp_path / "accel.hwh", layout=layout)), device=device)
    acc = getattr(overlay, ACCEL_INSTANCE)
    assert isinstance(acc, SpeedLLMAccelerator)
    return acc, layout.ctrl_base


def good_ids():
    return {"hw_id": HW_ID, "config_hash": DEFAULT_CONFIG.hash()}


def scripted(base, **regs):
    return {base + REGISTER_OFFSETS[name]: value for name, value in regs.items()}


def test_register_properties_use_the_map_offsets(tmp_path):
    bus = RecordingBus()
    acc, base = connect(tmp_path, bus)
    for name, offset, reg in ACCEL_REGMAP:
        bus.responses[base + offset] = offset + 7
        assert getattr(acc, name) == offset + 7
    reads = [a for k, a, _ in bus.registers(base) if k == "read"]
    assert reads == [offset for _, offset, _ in ACCEL_REGMAP]
    acc.token = 42
    assert bus.registers(base)[-1] == ("write", REGISTER_OFFSETS["token"], 42)
    with pytest.raises(AttributeError):
        acc.hw_id = 1                      # read-only registers have no setter


def test_load_program_uploads_image_and_words(tmp_path, program):
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, **good_ids()))
    acc, base = connect(tmp_path, bus)
    acc.load_program(program)
    img, words = acc.image_buffer, acc.program_buffer
    flushes = [(a, n) for k, a, n in bus.transactions if k == "flush"]
    assert (img.physical_address, program.image.size) in flushes
    assert (words.physical_address, len(program.words)) in flushes
    lo = img.physical_address - bus.memory_base
    assert np.array_equal(bus.memory[lo:lo + program.image.size], program.image)
    lo = words.physical_address - bus.memory_base
    assert bus.memory[lo:lo + len(program.words)].tobytes() == program.words
    assert bus.registers(base)[-3:] == [
        ("write", REGISTER_OFFSETS["image_base"], img.physical_address),
        ("write", REGISTER_OFFSETS["program_addr"], words.physical_address),
        ("write", REGISTER_OFFSETS["control"], bit("control", "soft_reset"))]
    assert acc.check_hardware(program) == DEFAULT_CONFIG


def test_one_token_exact_transactions(tmp_path, program):
    base = HwhLayout().ctrl_base
    busy, done = bit("status", "busy"), bit("status", "done")
    bus = RecordingBus(scripted(base, status=[busy, busy, done], total_cycles=123_456,
                                **good_ids()))
    acc, _ = connect(tmp_path, bus)
    acc.load_program(program)
    logits_region = program.layout["logits"]
    logits_addr = acc.image_buffer.physical_address + logits_region.addr
    act = np.random.default_rng(0).integers(-2**31, 2**31, program.args.vocab_size,
                                            dtype=np.int64).astype(np.int32)
    lo = logits_addr - bus.memory_base
    bus.memory[lo:lo + act.nbytes] = act.view(np.uint8)   # what the accelerator wrote
    bus.transactions.clear()

    logits = acc.step(token=403, pos=1)

    r = REGISTER_OFFSETS
    assert bus.transactions == [
        ("write", base + r["status"], done),            # a stale done cannot end this step
        ("write", base + r["token"], 403),
        ("write", base + r["position"], 1),
        ("write", base + r["control"], bit("control", "start")),
        ("read", base + r["status"], busy),
        ("read", base + r["status"], busy),
        ("read", base + r["status"], done),
        ("write", base + r["status"], done),            # clear the sticky done (w1c)
        ("read", base + r["total_cycles"], 123_456),
        ("invalidate", logits_addr, logits_region.size),
    ]
    assert logits.dtype == np.float32
    assert np.array_equal(logits, (act.astype(np.float64) / 2**ACT_FRAC).astype(np.float32))
    assert acc.last_cycles == 123_456


def field_value(reg, field, value):
    shift, mask = field_bits(reg, field)
    return (value << shift) & mask


def test_hw_id_mismatch_is_refused(tmp_path, program):
    wrong = HW_ID ^ field_value("hw_id", "isa_version", 0xFF)
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, hw_id=wrong,
                                config_hash=DEFAULT_CONFIG.hash()))
    acc, _ = connect(tmp_path, bus)
    acc.load_program(program)
    with pytest.raises(AcceleratorError, match="hardware ID .* is not the program's") as e:
        acc.check_hardware(program)
    assert "\n" not in str(e.value)


def test_unknown_config_hash_is_refused(tmp_path, program):
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, hw_id=HW_ID,
                                config_hash=DEFAULT_CONFIG.hash() ^ 1))
    acc, _ = connect(tmp_path, bus)
    acc.load_program(program)
    with pytest.raises(AcceleratorError, match="configuration hash .* not a known"):
        acc.check_hardware(program)


def test_config_too_small_for_the_program_is_refused(tmp_path, program):
    small = HardwareConfig(max_dim=program.args.dim - 1)
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, hw_id=HW_ID, config_hash=small.hash()))
    acc, _ = connect(tmp_path, bus)
    acc.known_configs = [small]
    acc.load_program(program)
    with pytest.raises(AcceleratorError, match="cannot run this program: program dim"):
        acc.check_hardware(program)


def test_model_quantised_with_another_scheme_is_refused(tmp_path, model_path):
    """A program whose weights use groups of 64 on hardware built for groups of 32."""
    from speedllm.golden.intmodel import Scheme
    g64 = compile_model(model_path, scheme=Scheme(group_size=64))
    hw = HardwareConfig(n_heads=g64.args.n_heads, n_kv_heads=g64.args.n_kv_heads,
                        head_size=g64.args.dim // g64.args.n_heads)
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, hw_id=HW_ID, config_hash=hw.hash()))
    acc, _ = connect(tmp_path, bus)
    acc.known_configs = [hw]
    acc.load_program(g64)
    with pytest.raises(AcceleratorError, match="program scheme=g64-kv16 does not fit the "
                                               r"hardware \(g32-kv16\)"):
        acc.check_hardware(g64)


def test_timeout_when_status_never_done(tmp_path, program):
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, status=bit("status", "busy")))
    acc, _ = connect(tmp_path, bus)
    acc.load_program(program)
    t0 = time.monotonic()
    with pytest.raises(AcceleratorError, match="timeout: token 1 at position 0 not done"):
        acc.step(1, 0, timeout_s=0.2)
    assert 0.2 <= time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("code", [ErrorCode.AXI_READ, ErrorCode.UNIT_TIMEOUT])
def test_error_status_names_code_and_command(tmp_path, program, code):
    failing = next(i for i, c in enumerate(program.commands) if c.opcode == Opcode.MATVEC)
    status = bit("status", "error") | field_value("status", "error_code", int(code))
    bus = RecordingBus(scripted(HwhLayout().ctrl_base, status=status, failing_command=failing))
    acc, _ = connect(tmp_path, bus)
    acc.load_program(program)
    with pytest.raises(AcceleratorError) as e:
        acc.step(1, 0)
    msg = str(e.value)
    assert code.name in msg and program.names[failing] in msg and "MATVEC" in msg
    assert f"command {failing} " in msg


def test_program_larger_than_the_memory_window(tmp_path, program):
    layout = HwhLayout(ddr_range=program.image.size // 2)
    acc, _ = connect(tmp_path, RecordingBus(), layout)
    with pytest.raises(AcceleratorError, match="more than the accelerator's"):
        acc.load_program(program)


def test_allocation_failure_is_an_accelerator_error(tmp_path, program):
    bus = RecordingBus(memory_bytes=program.image.size // 2)
    acc, _ = connect(tmp_path, bus)
    with pytest.raises(AcceleratorError, match="cannot allocate the DRAM image"):
        acc.load_program(program)


def test_step_before_load_is_refused(tmp_path):
    acc, _ = connect(tmp_path, RecordingBus())
    with pytest.raises(AcceleratorError, match="no program loaded"):
        acc.step(1, 0)


def test_counters_per_command_class(tmp_path):
    from speedllm.hw.accel_regs import COUNTER_CLASSES, counter_offset
    base = HwhLayout().ctrl_base
    responses = {}
    for k, cls in enumerate(COUNTER_CLASSES):
        responses[base + counter_offset("cycles", cls)] = 1000 + k
        responses[base + counter_offset("stalls", cls)] = 2000 + k
    acc, _ = connect(tmp_path, RecordingBus(responses))
    counters = acc.counters()
    for k, cls in enumerate(COUNTER_CLASSES):
        assert counters[cls] == {"cycles": 1000 + k, "stalls": 2000 + k}
    assert counters["total_cycles"] == 0
