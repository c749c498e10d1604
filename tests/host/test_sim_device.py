"""The simulated pynq Device: Overlay from our .hwh binds the driver; buffers, clocks; the
driver on the accelerator model equals the golden interpreter bit for bit. ~5 s."""

from __future__ import annotations

import numpy as np
import pytest

import pynq  # noqa: E402  (the test extras install it)

from speedllm.errors import AcceleratorError  # noqa: E402
from speedllm.golden.formats import ACT_FRAC  # noqa: E402
from speedllm.host.accel_model import AcceleratorModel  # noqa: E402
from speedllm.host.driver import SpeedLLMAccelerator  # noqa: E402
from speedllm.host.hwh import (ACCEL_INSTANCE, ACCEL_VLNV, HwhLayout, parse_hwh,  # noqa: E402
                               write_hwh)
from speedllm.host.sim_device import PROBE_PRIORITY, RecordingBus, SimulatedDevice  # noqa: E402
from speedllm.hw.accel_regs import ACCEL_REGMAP, DEFAULT_CONFIG, HW_ID, ErrorCode  # noqa: E402
from speedllm.ops.compiler import compile_model  # noqa: E402
from speedllm.ops.interpreter import Interpreter  # noqa: E402


@pytest.fixture(scope="module")
def program(model_path):
    return compile_model(model_path)


def overlay_on(tmp_path, bus, layout=HwhLayout()):
    device = SimulatedDevice.activate(bus, layout)
    return pynq.Overlay(str(write_hwh(tmp_path / "accel.hwh", layout=layout)),
                        device=device), device


def test_device_is_registered_with_pynq():
    from pynq.pl_server.device import DeviceMeta
    assert DeviceMeta._subclasses[PROBE_PRIORITY] is SimulatedDevice
    assert SimulatedDevice().arch == "armv7l"


def test_hwh_describes_the_register_map(tmp_path):
    layout = HwhLayout(ctrl_base=0xA000_0000, ddr_range=1 << 30)
    ip = parse_hwh(write_hwh(tmp_path / "a.hwh", layout=layout)).ip_dict[ACCEL_INSTANCE]
    assert ip["type"] == ACCEL_VLNV
    assert (ip["phys_addr"], ip["addr_range"]) == (layout.ctrl_base, layout.ctrl_range)
    assert int(ip["parameters"]["C_M_AXI_DDR_RANGE"], 0) == 1 << 30
    regs = {n.lower(): r["address_offset"] for n, r in ip["registers"].items()}
    assert regs == ACCEL_REGMAP.offsets()
    for name, _, reg in ACCEL_REGMAP:
        fields = ip["registers"][name.upper()]["fields"]
        assert {n.lower(): (f["bit_offset"], f["bit_width"]) for n, f in fields.items()} == \
            {n: (f.offset, f.width) for n, f in reg.fields.items()}


def test_overlay_binds_the_driver_and_sets_clocks(tmp_path):
    bus = RecordingBus()
    overlay, device = overlay_on(tmp_path, bus)
    acc = getattr(overlay, ACCEL_INSTANCE)
    assert type(acc) is SpeedLLMAccelerator
    assert acc.mmio.base_addr == HwhLayout().ctrl_base
    assert overlay.is_loaded()
    assert pynq.ps.Clocks.fclk0_mhz == HwhLayout().fclk_mhz
    assert bus.transactions == []          # downloading touched no accelerator register


def test_buffers_flush_and_invalidate_through_the_bus(tmp_path):
    bus = RecordingBus()
    _, device = overlay_on(tmp_path, bus)
    buf = pynq.allocate((1000,), np.int32, target=device)
    buf[:] = np.arange(1000)
    buf.flush()
    lo = buf.physical_address - bus.memory_base
    assert np.array_equal(bus.memory[lo:lo + 4000].view(np.int32), np.arange(1000))
    bus.memory[lo + 40:lo + 80] = 0xFF                     # the device writes words 10..19
    part = buf[10:20]
    part.invalidate()
    assert bus.transactions[-1] == ("invalidate", buf.physical_address + 40, 40)
    assert np.all(buf[10:20] == -1) and buf[9] == 9 and buf[20] == 20
    other = pynq.allocate((10,), np.uint8, target=device)
    assert other.physical_address >= buf.physical_address + 4000


def test_register_writes_outside_the_window_go_to_the_ps(tmp_path):
    bus = RecordingBus()
    _, device = overlay_on(tmp_path, bus)
    mmio = pynq.MMIO(0xF800_0000, 0x1000, device=device)
    mmio.write(0x170, 0x1234)
    assert mmio.read(0x170) == 0x1234 and bus.transactions == []


def model_driver(tmp_path, program, **model_options):
    overlay, _ = overlay_on(tmp_path, AcceleratorModel(**model_options))
    acc = getattr(overlay, ACCEL_INSTANCE)
    acc.load_program(program)
    return acc


def test_model_logits_equal_the_interpreter(tmp_path, program, reference_outputs):
    acc = model_driver(tmp_path, program)
    acc.check_hardware()
    interp = Interpreter.from_program(program)
    tokens = reference_outputs[0]["token_ids"][:6]
    for pos, token in enumerate(tokens):
        expected = (interp.step(token, pos) / 2**ACT_FRAC).astype(np.float32)
        assert np.array_equal(acc.step(token, pos), expected)
    # a new sequence: the KV cache starts from zero again
    acc.reset_state()
    interp.reset()
    assert np.array_equal(acc.step(tokens[0], 0),
                          (interp.step(tokens[0], 0) / 2**ACT_FRAC).astype(np.float32))


def test_model_id_mismatch(tmp_path, program):
    acc = model_driver(tmp_path, program, hw_id=HW_ID + 1)
    with pytest.raises(AcceleratorError, match="hardware ID"):
        acc.check_hardware()


def test_model_error_names_the_command(tmp_path, program):
    acc = model_driver(tmp_path, program, fail_at=(2, ErrorCode.AXI_WRITE))
    with pytest.raises(AcceleratorError, match=f"AXI_WRITE at command 2 {program.names[2]}"):
        acc.step(1, 0)


def test_model_hang_times_out(tmp_path, program):
    acc = model_driver(tmp_path, program, hang=True)
    with pytest.raises(AcceleratorError, match="timeout"):
        acc.step(1, 0, timeout_s=0.1)


def test_model_config_hash_is_the_default_build(tmp_path, program):
    acc = model_driver(tmp_path, program)
    assert acc.config_hash == DEFAULT_CONFIG.hash() and acc.hw_id == HW_ID


@pytest.mark.sim
def test_pynq_buffers_and_mmio_over_the_verilator_harness():
    """PYNQ's MMIO and allocate through HarnessBus: DmaCopy (the harness's test DUT, shaped
    like the accelerator top) copies a flushed buffer into another, read back by invalidate."""
    from speedllm.host.sim_device import HarnessBus
    from speedllm.hw.dma_copy import CONTROL_START, REGISTER_MAP, STATUS_DONE, DmaCopy
    from speedllm.sim.harness import Harness

    # the same DmaCopy build as tests/sim/test_harness.py, so the Verilator build is shared
    dut = DmaCopy(max_burst_beats=16, max_outstanding=4, timeout_cycles=2000)
    with Harness(dut, "dma_copy", dram_bytes=1 << 20, dram_base=0x1000_0000,
                 max_outstanding=4) as h:
        device = SimulatedDevice.activate(HarnessBus(h, cycles_per_poll=64))
        base, off = HwhLayout().ctrl_base, REGISTER_MAP.offsets()
        mmio = pynq.MMIO(base, HwhLayout().ctrl_range, device=device)
        src = pynq.allocate((4096,), np.uint8, target=device)
        dst = pynq.allocate((4096,), np.uint8, target=device)
        src[:] = np.random.default_rng(3).integers(0, 256, src.size, dtype=np.uint8)
        src.flush()
        mmio.write(off["src"], src.physical_address)
        mmio.write(off["dst"], dst.physical_address)
        mmio.write(off["beats"], src.nbytes // 8)
        mmio.write(off["control"], CONTROL_START)
        for _ in range(1000):
            if mmio.read(off["status"]) & STATUS_DONE:
                break
        assert mmio.read(off["status"]) & STATUS_DONE
        dst.invalidate()
        assert np.array_equal(dst, src)
        assert mmio.read(off["cycles"]) > src.nbytes // 8
