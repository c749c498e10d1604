"""A functional model of the accelerator behind its register map (a bus for the sim device).

:class:`AcceleratorModel` answers the registers of :data:`speedllm.hw.accel_regs.ACCEL_REGMAP`
with their access modes (``rw`` stored, ``r`` driven by the model, ``w1c`` cleared by
writing 1, ``w1p`` an action) and owns a byte-addressed memory. Writing ``control.start``
runs one decode step the way the sequencer does: fetch 64-byte commands from
``program_addr`` until END, execute each against the image at ``image_base`` with the
golden interpreter (:class:`speedllm.ops.interpreter.Interpreter`, the bit-exact contract
of the RTL), then set ``status.done``; a command that cannot run ends the step with
``status.error``, an :class:`~speedllm.hw.accel_regs.ErrorCode` and ``failing_command``.

It is untimed: the cycle and stall counters stay 0 (:attr:`timed` is False). Fault
injection for tests: ``hang`` (never done), ``fail_at=(command index, ErrorCode)``.
"""

from __future__ import annotations

import numpy as np

from speedllm.hw.accel_regs import (ACCEL_REGMAP, DEFAULT_CONFIG, HW_ID, ErrorCode,
                                    HardwareConfig)
from speedllm.ops.isa import COMMAND_BYTES, Opcode, decode
from speedllm.ops.interpreter import Interpreter

from .hwh import HwhLayout

__all__ = ["AcceleratorModel"]

_MAX_COMMANDS = 1 << 16


class AcceleratorModel:
    """The register interface and memory of the accelerator, computing with the golden
    interpreter.

    Parameters
    ----------
    config : HardwareConfig
        The configuration the model claims (``config_hash`` register, scratchpad size).
    hw_id, config_hash : int, optional
        Override the identification registers (to test the host's checks).
    ctrl_base : int
        Bus address of register offset 0.
    memory_base, memory_bytes : int
        The DRAM window.
    hang : bool
        ``start`` never finishes (busy forever).
    fail_at : (int, ErrorCode), optional
        End every step with this error code at this command index.
    """

    timed = False

    def __init__(self, *, config: HardwareConfig = DEFAULT_CONFIG, hw_id: int | None = None,
                 config_hash: int | None = None, ctrl_base: int = HwhLayout().ctrl_base,
                 memory_base: int = 0x1000_0000, memory_bytes: int = 1 << 26,
                 hang: bool = False, fail_at: tuple[int, ErrorCode] | None = None):
        self.config = config
        self.ctrl_base, self.memory_base, self.memory_bytes = ctrl_base, memory_base, \
            memory_bytes
        self.memory = np.zeros(memory_bytes, np.uint8)
        self.hang, self.fail_at = hang, fail_at
        self.steps_run = 0
        self._regs = {name: (off, reg) for name, off, reg in ACCEL_REGMAP}
        self._by_offset = {off: (name, reg) for name, off, reg in ACCEL_REGMAP}
        self.values = {name: reg.reset_value() for name, _, reg in ACCEL_REGMAP}
        self.values["hw_id"] = HW_ID if hw_id is None else hw_id
        self.values["config_hash"] = config.hash() if config_hash is None else config_hash
        self._interp_key = None
        self._interp = None

    # ---- fields ---------------------------------------------------------------------
    def _field(self, reg: str, field: str):
        return self._regs[reg][1].fields[field]

    def get(self, reg: str, field: str) -> int:
        f = self._field(reg, field)
        return (self.values[reg] & f.mask) >> f.offset

    def set(self, reg: str, field: str, value: int) -> None:
        f = self._field(reg, field)
        self.values[reg] = (self.values[reg] & ~f.mask) | ((int(value) << f.offset) & f.mask)

    # ---- the bus --------------------------------------------------------------------
    def read_word(self, addr: int) -> int:
        name, reg = self._by_offset.get(addr - self.ctrl_base, (None, None))
        if name is None:
            return 0
        # w1p fields read 0
        return self.values[name] & ~sum(f.mask for f in reg.fields.values() if f.access == "w1p")

    def write_word(self, addr: int, value: int) -> None:
        name, reg = self._by_offset.get(addr - self.ctrl_base, (None, None))
        if name is None:
            return
        pulses = []
        for f in reg.fields.values():
            bits = (value & f.mask) >> f.offset
            if f.access == "rw":
                self.set(name, f.name, bits)
            elif f.access == "w1c":
                self.set(name, f.name, self.get(name, f.name) & ~bits)
            elif f.access == "w1p" and bits:
                pulses.append(f.name)
        if name == "control" and not self.get("status", "busy"):
            if "soft_reset" in pulses:
                self._clear_run_state()
            if "start" in pulses:
                self._start()

    def _span(self, addr: int, n: int) -> slice:
        lo = addr - self.memory_base
        if lo < 0 or lo + n > self.memory_bytes:
            raise RuntimeError(f"memory access of {n} bytes at {addr:#x} outside the window")
        return slice(lo, lo + n)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.memory[self._span(addr, len(data))] = np.frombuffer(data, np.uint8)

    def read_memory(self, addr: int, n: int) -> bytes:
        return self.memory[self._span(addr, n)].tobytes()

    # ---- a run ----------------------------------------------------------------------
    def _clear_run_state(self) -> None:
        for name, _, reg in ACCEL_REGMAP:
            if name.startswith(("cycles_", "stalls_")) or name in (
                    "failing_command", "commands_done", "total_cycles", "bytes_read",
                    "bytes_written"):
                self.values[name] = 0
        for field in ("done", "error", "error_code"):
            self.set("status", field, 0)

    def _fetch(self, program_addr: int) -> bytes:
        words = bytearray()
        for i in range(_MAX_COMMANDS):
            raw = self.read_memory(program_addr + i * COMMAND_BYTES, COMMAND_BYTES)
            words += raw
            if raw[0] == Opcode.END:
                return bytes(words)
        raise ValueError("no END command")

    def _end(self, error: ErrorCode | None, failing: int) -> None:
        self.set("status", "busy", 0)
        self.values["failing_command"] = failing
        if error is None:
            self.set("status", "done", 1)
        else:
            self.set("status", "error", 1)
            self.set("status", "error_code", int(error))

    def _start(self) -> None:
        self._clear_run_state()
        self.set("status", "busy", 1)
        self.steps_run += 1
        if self.hang:
            return
        program_addr, image_base = self.values["program_addr"], self.values["image_base"]
        try:
            words = self._fetch(program_addr)
        except RuntimeError:
            return self._end(ErrorCode.AXI_READ, 0)
        except ValueError:
            return self._end(ErrorCode.BAD_OPCODE, 0)
        n = len(words) // COMMAND_BYTES
        for i in range(n):
            try:
                decode(words[i * COMMAND_BYTES:(i + 1) * COMMAND_BYTES])
            except ValueError:
                return self._end(ErrorCode.BAD_OPCODE, i)
        if self.fail_at is not None:
            return self._end(ErrorCode(self.fail_at[1]), int(self.fail_at[0]))
        key = (program_addr, image_base, words)
        if self._interp_key != key:
            self._interp = Interpreter(words, np.zeros(0, np.uint8), self.config.scratchpad_bytes,
                                       self.config.beat_bytes)
            self._interp_key = key
        interp = self._interp
        interp.image = self.memory[image_base - self.memory_base:]     # the DRAM, in place
        done = []
        try:
            interp.step(self.values["token"], self.values["position"],
                        hook=lambda i, cmd, writes: done.append(i))
        except (IndexError, ValueError, OverflowError):
            return self._end(ErrorCode.UNIT_ERROR, len(done))
        self.values["commands_done"] = len(done)
        self._end(None, max(len(done) - 1, 0))
