"""The C++ harness end to end: DmaCopy (AXI-Lite registers, AXI4 read + write masters)
against the DRAM model. Expected memory contents come from NumPy copies of the same bytes;
expected cycle counts from the bandwidth and latency the model is given."""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.errors import AcceleratorError
from speedllm.hw.dma_copy import (CONTROL_CLEAR, CONTROL_START, STATUS_BUSY, STATUS_DONE,
                                  STATUS_READ_ERROR, STATUS_TIMEOUT, STATUS_WRITE_ERROR,
                                  DmaCopy, Status)
from speedllm.sim.harness import Harness

pytestmark = pytest.mark.sim

BEAT = 16                 # bytes per bus word (data_width 128: Verilator's wide words)
BURST = 16                # DmaCopy max_burst_beats
OUTSTANDING = 4           # bursts in flight per master
TIMEOUT = 2000            # DmaCopy timeout_cycles
DRAM = 1 << 20
READ_RESP_SHIFT = Status.fields["read_resp"].offset
WRITE_RESP_SHIFT = Status.fields["write_resp"].offset


@pytest.fixture(scope="module")
def dma():
    h = Harness(DmaCopy(data_width=8 * BEAT, max_burst_beats=BURST,
                        max_outstanding=OUTSTANDING, timeout_cycles=TIMEOUT),
                "dma_copy", dram_bytes=DRAM,
                max_outstanding=OUTSTANDING)
    yield h
    h.close()


@pytest.fixture
def h(dma):
    """The harness back in a known state: no cap, latency 1, no errors, random memory."""
    dma.set_bandwidth(0)
    dma.set_latency(1)
    dma.set_hang(False)
    dma.clear_error_ranges()
    dma.write_reg("control", CONTROL_CLEAR)
    dma.write_dram(0, np.random.default_rng(7).integers(0, 256, DRAM, dtype=np.uint8))
    dma.reset_counters()
    return dma


def start(h, src, dst, beats):
    h.write_reg("src", src)
    h.write_reg("dst", dst)
    h.write_reg("beats", beats)
    h.write_reg("control", CONTROL_START)


def copy(h, src, dst, beats):
    """Run one copy to the end; return (DUT cycle count, status)."""
    start(h, src, dst, beats)
    h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=40 * beats + 10_000)
    return h.read_reg("cycles"), h.read_reg("status")


def test_random_copies_equal_numpy(h):
    rng = np.random.default_rng(1)
    model = h.dram.copy()
    for _ in range(40):
        beats = int(rng.choice([1, 2, 15, 16, 17, int(rng.integers(1, 700))]))
        n = beats * BEAT
        src = int(rng.integers(0, (DRAM - n) // BEAT)) * BEAT
        dst = src
        while abs(dst - src) < n:              # source and destination do not overlap
            dst = int(rng.integers(0, (DRAM - n) // BEAT)) * BEAT
        h.set_bandwidth(float(rng.choice([0, 3, 8, 16, 2.5])))
        h.set_latency(int(rng.choice([1, 7, 40])), int(rng.choice([1, 5, 30])))
        h.reset_counters()
        _, status = copy(h, src, dst, beats)
        model[dst:dst + n] = model[src:src + n]
        assert status == STATUS_DONE
        assert np.array_equal(h.dram, model)
        assert np.array_equal(h.read_dram(dst, n // 8, np.uint64),
                              model[dst:dst + n].view(np.uint64))
        c = h.counters()
        assert c["bytes_read"] == c["bytes_written"] == n
        assert c["protocol_errors"] == 0, c["protocol_error"]
        assert h.dram_idle


def test_bandwidth_cap_sets_cycles(h):
    beats = 4096
    cycles = {}
    for bandwidth in (0, 2 * BEAT, BEAT, BEAT / 2, BEAT / 3.2):
        h.set_bandwidth(bandwidth)
        cycles[bandwidth], status = copy(h, 0, DRAM // 2, beats)
        assert status == STATUS_DONE
        # Each word is read and written: 2 * BEAT bytes; the DUT moves one word a cycle.
        floor = max(beats, 2 * beats * BEAT / bandwidth) if bandwidth else beats
        assert floor <= cycles[bandwidth] <= 1.03 * floor + 60, (bandwidth, cycles)
    assert 1.95 <= cycles[BEAT / 2] / cycles[BEAT] <= 2.05
    assert h.counters()["bandwidth_stall_cycles"] > 0


def test_latency_adds_to_a_short_copy(h):
    base, _ = copy(h, 0, 0x8000, 1)
    h.set_latency(101, 51)
    slow, _ = copy(h, 0, 0x8000, 1)
    # One beat: the read waits its latency, then the write waits for its B response.
    assert slow - base == 100 + 50


def test_latency_bounds_a_long_copy_by_outstanding_bursts(h):
    beats, latency = 2048, 256
    h.set_latency(latency, 1)
    cycles, _ = copy(h, 0, 0x40000, beats)
    # OUTSTANDING bursts of BURST beats per round trip of `latency` cycles.
    expected = beats * latency / (OUTSTANDING * BURST)
    assert 0.95 * expected <= cycles <= 1.05 * expected + latency, (cycles, expected)


def test_read_slverr_is_reported_not_hung(h):
    src, dst, beats = 0x1000, 0x9000, 64
    h.add_error_range(src + 8 * BEAT, src + 16 * BEAT, "slverr")   # beats 8..15
    model = h.dram.copy()
    _, status = copy(h, src, dst, beats)
    assert status & (STATUS_DONE | STATUS_READ_ERROR | STATUS_BUSY) == \
        STATUS_DONE | STATUS_READ_ERROR
    assert (status >> READ_RESP_SHIFT) & 3 == 2
    model[dst:dst + beats * BEAT] = model[src:src + beats * BEAT]
    model[dst + 8 * BEAT:dst + 16 * BEAT] = 0               # failed beats read as zeros
    assert np.array_equal(h.dram, model)
    assert h.counters()["error_responses"] == 8


def test_write_decerr_and_unmapped_address(h):
    src, dst, beats = 0x2000, 0xA000, 48
    h.add_error_range(dst, dst + BURST * BEAT, "decerr")   # the first write burst
    model = h.dram.copy()
    _, status = copy(h, src, dst, beats)
    assert status & STATUS_WRITE_ERROR and not status & STATUS_READ_ERROR
    assert (status >> WRITE_RESP_SHIFT) & 3 == 3
    model[dst + BURST * BEAT:dst + beats * BEAT] = model[src + BURST * BEAT:src + beats * BEAT]
    assert np.array_equal(h.dram, model)                   # the failed burst wrote nothing
    h.clear_error_ranges()
    h.write_reg("control", CONTROL_CLEAR)
    _, status = copy(h, DRAM + 0x1000, dst, 4)              # past the end of the memory
    assert status & STATUS_READ_ERROR and (status >> READ_RESP_SHIFT) & 3 == 3


def test_hang_times_out_then_recovers(h):
    h.set_hang(True)
    start(h, 0x3000, 0xB000, 100)
    with pytest.raises(AcceleratorError, match="timeout after 5000 cycles"):
        h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=5000)
    status = h.read_reg("status")
    assert status & STATUS_BUSY and status & STATUS_TIMEOUT and not status & STATUS_DONE
    h.set_hang(False)                       # the memory answers again: the copy finishes
    h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=5000)
    n = 100 * BEAT
    assert np.array_equal(h.dram[0xB000:0xB000 + n], h.dram[0x3000:0x3000 + n])


def test_hang_range_times_out_and_reset_recovers(h):
    h.add_error_range(0x5000, 0x5001, "hang")
    start(h, 0x4f00, 0xC000, 64)
    with pytest.raises(AcceleratorError, match="timeout"):
        h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=3000)
    assert not h.dram_idle
    h.clear_error_ranges()
    h.reset()                                # forget the hung burst, reset the DUT
    assert h.dram_idle and h.read_reg("status") == 0
    _, status = copy(h, 0x4f00, 0xC000, 64)
    assert status == STATUS_DONE
    n = 64 * BEAT
    assert np.array_equal(h.dram[0xC000:0xC000 + n], h.dram[0x4f00:0x4f00 + n])


def test_register_errors(h):
    with pytest.raises(AcceleratorError, match="SLVERR"):
        h.read_reg(0x40)
    with pytest.raises(AcceleratorError, match="SLVERR"):
        h.write_reg(0x40, 1)
    before = h.read_reg("status")
    h.write_reg("status", ~before & 0x1FF)                 # read-only: the write is ignored
    assert h.read_reg("status") == before
    with pytest.raises(AcceleratorError, match="no register 'nope'"):
        h.read_reg("nope")
    h.write_reg("src", 0x1234_5678)
    assert h.read_reg("src") == 0x1234_5678


@pytest.mark.slow
def test_shared_port_with_waves(tmp_path):
    """One AXI4 port with both directions (64-bit), built with tracing: copy and dump."""
    with Harness(DmaCopy(max_burst_beats=BURST, shared_port=True), "dma_copy",
                 dram_bytes=1 << 16, bandwidth_bytes_per_cycle=6, latency=9,
                 trace=True) as h:
        assert [(g.prefix, g.has_read, g.has_write) for g in h.ports.masters] == \
            [("m_axi", True, True)]
        data = np.random.default_rng(3).integers(0, 256, 1 << 12, dtype=np.uint8)
        h.write_dram(0x1000, data)
        h.trace(tmp_path / "copy.vcd")
        start(h, 0x1000, 0x8000, len(data) // 8)
        h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=20_000)
        assert np.array_equal(h.dram[0x8000:0x9000], data)
        c = h.counters()
        assert c["bytes_read"] == c["bytes_written"] == len(data)
        # 2 * 4096 bytes at 6 bytes a cycle
        assert h.read_reg("cycles") >= 2 * len(data) / 6
    assert "m_axi__araddr" in (tmp_path / "copy.vcd").read_text()[:200_000]
