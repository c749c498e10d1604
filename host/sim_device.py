"""A simulated ``pynq.Device``: PYNQ's MMIO, ``allocate`` and ``Overlay`` without a board.

:class:`SimulatedDevice` registers itself with PYNQ (``_probe_``, ``_probe_priority_``
:data:`PROBE_PRIORITY`, after every built-in device, so a real board always wins). It
serves PYNQ's register path (``REGISTER_RW``: ``read_registers``/``write_registers``) and
``allocate`` (``PynqBuffer`` whose ``flush``/``invalidate`` copy to and from the device's
memory) through a pluggable **bus** object, so :class:`speedllm.host.driver.SpeedLLMAccelerator`
runs unchanged in CI and on a board:

``RecordingBus``
    Records every register read and write and every flush/invalidate; reads are answered
    from a script (PYNQ's own driver tests check transactions the same way).
``AcceleratorModel`` (:mod:`speedllm.host.accel_model`)
    A functional model of the accelerator behind its register map: ``start`` runs the
    command program found in memory with the golden interpreter
    (:class:`speedllm.ops.interpreter.Interpreter`), bit for bit what the RTL must do.
``HarnessBus``
    The Verilator harness (:class:`speedllm.sim.harness.Harness`) of the accelerator top.

A bus has ``read_word(addr) -> int``, ``write_word(addr, value)``,
``write_memory(addr, bytes)``, ``read_memory(addr, n) -> bytes``, ``memory_base`` and
``memory_bytes``. Register addresses reach the bus inside the accelerator's window
(``ctrl_base``, ``ctrl_range``); any other register address (the Zynq SLCR, which
``Overlay.download`` programs for the PL clocks) goes to a plain register store, the
stand-in for the PS.

``Overlay(path)`` on this device takes the ``.hwh`` itself (or a ``.bit`` with a ``.hwh``
beside it) and parses it with ``pynqmetadata``; no bitstream is loaded anywhere.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from . import driver as _driver  # noqa: F401  (defines the DefaultIP subclass PYNQ binds)
from .accel_model import AcceleratorModel
from .hwh import HwhLayout, parse_hwh

__all__ = ["SimulatedDevice", "SimulatedClocks", "RecordingBus", "AcceleratorModel", "HarnessBus",
           "PROBE_PRIORITY"]

#: PYNQ's built-in devices use 40-200; the lowest present one becomes the active device.
PROBE_PRIORITY = 900
_PAGE = 4096


class SimulatedDevice(pynq.Device):
    """A PYNQ device whose registers and memory are served by ``bus``.

    Parameters
    ----------
    bus : object, optional
        See the module docstring; attach later with :meth:`attach`.
    layout : HwhLayout
        Where the accelerator's register window is (``ctrl_base``, ``ctrl_range``).
    """

    _probe_priority_ = PROBE_PRIORITY

    @classmethod
    def _probe_(cls):
        return [cls()]

    def __init__(self, bus=None, layout: HwhLayout = HwhLayout(), tag: str = "speedllm_sim"):
        super().__init__(tag)
        self.name = "speedllm-sim"
        self.arch = "armv7l"           # Zynq-7000: PYNQ picks its Zynq clock code
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.layout = layout
        self.ps_registers: dict[int, int] = {}
        self.bus = None
        self._bos: dict[int, int] = {}
        self._bo_ids = itertools.count(1)
        self.bitfile_name = None
        self.timestamp = None
        if bus is not None:
            self.attach(bus)

    @classmethod
    def activate(cls, bus=None, layout: HwhLayout = HwhLayout()) -> "SimulatedDevice":
        """A new device over ``bus``, made PYNQ's active device (``pynq.Device.active_device``)."""
        dev = cls(bus, layout)
        pynq.Device.active_device = dev
        pynq.ps.Clocks.set_device(dev)
        return dev

    def attach(self, bus) -> None:
        """Serve registers and memory from ``bus`` from now on (frees all buffers).

        Also puts :class:`SimulatedClocks` in place of PYNQ's PS clock driver, which would
        otherwise program the Zynq SLCR when ``Overlay.download`` sets the PL clocks.
        """
        self.bus = bus
        pynq.ps.Clocks._real_instance = SimulatedClocks()
        self._next_free = int(bus.memory_base)
        self._bos.clear()

    def _need_bus(self):
        if self.bus is None:
            raise RuntimeError("speedllm simulated device: no bus attached "
                               "(SimulatedDevice.activate(bus) or device.attach(bus))")
        return self.bus

    # ---- registers (PYNQ's REGISTER_RW capability) ----------------------------------
    def _in_window(self, addr: int) -> bool:
        return self.layout.ctrl_base <= addr < self.layout.ctrl_base + self.layout.ctrl_range

    def read_registers(self, address: int, length: int) -> bytes:
        words = []
        for a in range(address, address + length, 4):
            if self._in_window(a):
                words.append(self._need_bus().read_word(a) & 0xFFFF_FFFF)
            else:
                words.append(self.ps_registers.get(a, 0))
        return struct.pack(f"<{len(words)}I", *words)[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        data = bytes(data) + b"\0" * (-len(data) % 4)
        for k, (value,) in enumerate(struct.iter_unpack("<I", data)):
            a = address + 4 * k
            if self._in_window(a):
                self._need_bus().write_word(a, value)
            else:
                self.ps_registers[a] = value

    # ---- memory ---------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        """A ``PynqBuffer`` at the next free page of the bus's memory."""
        bus = self._need_bus()
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        addr = self._next_free
        end = bus.memory_base + bus.memory_bytes
        if addr + nbytes > end:
            raise RuntimeError(f"cannot allocate {nbytes} bytes: the device memory has "
                               f"{max(end - addr, 0)} of {bus.memory_bytes} bytes free")
        self._next_free = addr + -(-max(nbytes, 1) // _PAGE) * _PAGE
        bo = next(self._bo_ids)
        self._bos[bo] = addr
        buf = PynqBuffer(shape, dtype, device=self, device_address=addr, bo=bo,
                         coherent=False)
        buf[...] = 0
        return buf

    def flush(self, bo, offset, vaddr, nbytes):
        self._need_bus().write_memory(self._bos[bo] + offset, ctypes.string_at(vaddr, nbytes))

    def invalidate(self, bo, offset, vaddr, nbytes):
        data = self._need_bus().read_memory(self._bos[bo] + offset, nbytes)
        ctypes.memmove(vaddr, data, nbytes)

    # ---- bitstreams -----------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name, partial: bool = False):
        path = Path(bitfile_name)
        hwh = path if path.suffix == ".hwh" else path.with_suffix(".hwh")
        if not hwh.is_file():
            raise RuntimeError(f"{path}: no .hwh metadata beside it ({hwh})")
        return parse_hwh(hwh)

    def download(self, bitstream, parser=None):
        """Nothing to program: record the name and reset PYNQ's dictionaries."""
        bus = self._need_bus()
        if hasattr(bus, "on_download"):
            bus.on_download(bitstream.bitfile_name)
        self.post_download(bitstream, parser, self.name)

    def gen_cache(self, bitstream, parser=None):
        pass

    def close(self):
        pass


class SimulatedClocks:
    """Stand-in for PYNQ's PS clock driver: remembers the PL clock each index was set to."""

    cpu_mhz = 650.0

    def __init__(self):
        self.pl_mhz = {0: 100.0, 1: 0.0, 2: 0.0, 3: 0.0}

    def get_cpu_mhz(self) -> float:
        return self.cpu_mhz

    def get_pl_clk(self, clk_idx: int) -> float:
        return self.pl_mhz[clk_idx]

    def set_pl_clk(self, clk_idx: int, div0=None, div1=None, clk_mhz=None) -> None:
        if clk_mhz is None:
            clk_mhz = 1000.0 / (div0 or 1) / (div1 or 1)
        self.pl_mhz[clk_idx] = float(clk_mhz)


class RecordingBus:
    """Records bus traffic; answers register reads from a script.

    Parameters
    ----------
    responses : dict, optional
        Address -> an int (always that value), a list (one value per read, the last
        repeating) or a callable ``f(addr) -> int``. Unlisted addresses read 0.
    memory_base, memory_bytes : int
        The memory window that ``allocate`` hands out (bytes are kept, so invalidate
        returns what flush wrote or what a test put in :attr:`memory`).

    ``transactions`` lists ``("read", addr, value)``, ``("write", addr, value)``,
    ``("flush", addr, nbytes)`` and ``("invalidate", addr, nbytes)`` in order.
    """

    def __init__(self, responses: dict | None = None, *, memory_base: int = 0x1000_0000,
                 memory_bytes: int = 1 << 24):
        self.responses = dict(responses or {})
        self.memory_base, self.memory_bytes = memory_base, memory_bytes
        self.memory = np.zeros(memory_bytes, np.uint8)
        self.transactions: list[tuple[str, int, int]] = []

    def read_word(self, addr: int) -> int:
        r = self.responses.get(addr, 0)
        if callable(r):
            value = r(addr)
        elif isinstance(r, list):
            value = r.pop(0) if len(r) > 1 else r[0]
        else:
            value = r
        self.transactions.append(("read", addr, int(value)))
        return int(value)

    def write_word(self, addr: int, value: int) -> None:
        self.transactions.append(("write", addr, int(value)))

    def _span(self, addr: int, n: int) -> slice:
        lo = addr - self.memory_base
        if lo < 0 or lo + n > self.memory_bytes:
            raise RuntimeError(f"memory access of {n} bytes at {addr:#x} outside the window")
        return slice(lo, lo + n)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.memory[self._span(addr, len(data))] = np.frombuffer(data, np.uint8)
        self.transactions.append(("flush", addr, len(data)))

    def read_memory(self, addr: int, n: int) -> bytes:
        self.transactions.append(("invalidate", addr, n))
        return self.memory[self._span(addr, n)].tobytes()

    def registers(self, base: int) -> list[tuple[str, int, int]]:
        """Register transactions only, addresses made relative to ``base``."""
        return [(k, a - base, v) for k, a, v in self.transactions if k in ("read", "write")]


class HarnessBus:
    """The accelerator top in the Verilator harness (:class:`speedllm.sim.harness.Harness`).

    Register accesses are AXI-Lite transfers in the simulation. A read of the ``status``
    register first lets the design run until ``status.done`` (at most ``cycles_per_poll``
    cycles), so a polling driver sees a step finish without spinning through Python.
    Memory is the harness's DRAM model (``dram_base``, ``dram``). ``sim_seconds`` and
    ``sim_cycles`` add up the wall time and cycles spent running the design.
    """

    def __init__(self, harness, ctrl_base: int = HwhLayout().ctrl_base,
                 cycles_per_poll: int = 1 << 20):
        from speedllm.hw.accel_regs import ACCEL_REGMAP
        self.harness, self.ctrl_base, self.cycles_per_poll = harness, ctrl_base, cycles_per_poll
        self.memory_base = int(harness.dram_base)
        self.memory_bytes = int(harness.dram.size)
        self._status = ACCEL_REGMAP.offsets()["status"]
        self._done = _driver.field_bits("status", "done")[1]
        self.sim_seconds = 0.0
        self.sim_cycles = 0

    def read_word(self, addr: int) -> int:
        off = addr - self.ctrl_base
        if off == self._status:
            import time
            from speedllm.errors import AcceleratorError
            t0, c0 = time.perf_counter(), self.harness.cycles
            try:
                self.harness.run_until(off, self._done, self._done, self.cycles_per_poll)
            except AcceleratorError:
                pass                      # not done yet: the driver polls again
            self.sim_seconds += time.perf_counter() - t0
            self.sim_cycles += self.harness.cycles - c0
        return int(self.harness.read_reg(off))

    def write_word(self, addr: int, value: int) -> None:
        self.harness.write_reg(addr - self.ctrl_base, value)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.harness.write_dram(addr, np.frombuffer(data, np.uint8))

    def read_memory(self, addr: int, n: int) -> bytes:
        return self.harness.read_dram(addr, n).tobytes()
