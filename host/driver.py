"""The PYNQ driver of the speedllm accelerator: ``SpeedLLMAccelerator(pynq.DefaultIP)``.

PYNQ binds it to every IP of VLNV :data:`~speedllm.host.hwh.ACCEL_VLNV` in an overlay's
``.hwh``: ``pynq.Overlay("speedllm.bit").speedllm_0`` is one. The same class runs on a
board and on the simulated device (:mod:`speedllm.host.sim_device`).

Registers are properties generated from :data:`speedllm.hw.accel_regs.ACCEL_REGMAP`
(``acc.token = 5``, ``acc.total_cycles``): no offset is typed here. Use::

    acc.load_program(program)        # weights + program into pynq.allocate buffers, once
    acc.check_hardware(program)      # HW_ID / CONFIG_HASH against the program
    logits = acc.step(token, pos)    # float32 [vocab_size]

Per token the driver clears a stale ``status.done``, writes ``token``, ``position`` and
``control.start``, polls ``status`` until ``done`` or ``error`` (or the timeout), clears
``done``, reads
``total_cycles`` and invalidates only the logits region of the image buffer. Errors are
:class:`speedllm.errors.AcceleratorError` naming the error code and the failing command.
"""

from __future__ import annotations

import time

import numpy as np
import pynq

from speedllm.errors import AcceleratorError
from speedllm.golden.formats import ACT_FRAC
from speedllm.hw.accel_regs import (ACCEL_REGMAP, COUNTER_CLASSES, DEFAULT_CONFIG,
                                    HW_ID_MAGIC, ErrorCode, HardwareConfig, counter_name)
from speedllm.ops.dram_format import read_header
from speedllm.ops.isa import Opcode

from .hwh import ACCEL_VLNV

__all__ = ["SpeedLLMAccelerator", "REGISTER_OFFSETS", "field_bits"]

#: Register name -> byte offset, from the register map.
REGISTER_OFFSETS: dict[str, int] = ACCEL_REGMAP.offsets()
_REGISTERS = {name: reg for name, _, reg in ACCEL_REGMAP}
_UPLOAD_CHUNK = 1 << 20


def field_bits(register: str, field: str) -> tuple[int, int]:
    """``(shift, mask)`` of a field (mask already shifted), from the register map."""
    f = _REGISTERS[register].fields[field]
    return f.offset, f.mask


def _register_property(name: str, offset: int, writable: bool, doc: str) -> property:
    def get(self):
        return self.read(offset)

    def put(self, value):
        self.write(offset, int(value) & 0xFFFF_FFFF)
    return property(get, put if writable else None, doc=doc)


class SpeedLLMAccelerator(pynq.DefaultIP):
    """Driver of the speedllm accelerator (AXI4-Lite control, AXI4 master to DDR).

    Parameters
    ----------
    description : dict
        PYNQ's ``ip_dict`` entry. Its ``parameters`` ``C_M_AXI_DDR_BASE`` /
        ``C_M_AXI_DDR_RANGE`` (written by :mod:`speedllm.host.hwh` and the Vivado scripts)
        bound the buffers the accelerator can reach.

    Attributes
    ----------
    known_configs : list of HardwareConfig
        Configurations whose hash ``check_hardware`` accepts (default: the default build).
    last_cycles : int or None
        ``total_cycles`` of the last step.
    """

    bindto = [ACCEL_VLNV]

    def __init__(self, description):
        super().__init__(description)
        params = description.get("parameters") or {}
        self.memory_base = int(str(params.get("C_M_AXI_DDR_BASE", "0")), 0)
        self.memory_range = int(str(params.get("C_M_AXI_DDR_RANGE", "0")), 0) or None
        self.known_configs: list[HardwareConfig] = [DEFAULT_CONFIG]
        self.program = None
        self.image_buffer = None
        self.program_buffer = None
        self.last_cycles: int | None = None
        self._logits = None

    # ---- set-up ---------------------------------------------------------------------
    def _allocate(self, nbytes: int, what: str):
        try:
            return pynq.allocate((nbytes,), np.uint8, target=self.device)
        except (RuntimeError, MemoryError, OSError, ValueError) as e:
            raise AcceleratorError(f"cannot allocate the {what} ({nbytes:,} bytes) in the "
                                   f"board's memory: {e}") from None

    def load_program(self, program, *, progress=None) -> None:
        """Upload ``program`` (a compiled :class:`speedllm.ops.compiler.Program`) once.

        The DRAM image and the command words get one ``pynq.allocate`` buffer each
        (flushed); ``image_base`` and ``program_addr`` are set to their physical
        addresses, and a soft reset clears old status. ``progress(nbytes)`` is called
        as the image is copied (e.g. a tqdm bar's ``update``).
        """
        image = np.asarray(program.image, np.uint8)
        words = np.frombuffer(program.words, np.uint8)
        need = image.size + words.size
        if self.memory_range is not None and need > self.memory_range:
            raise AcceleratorError(f"the program needs {need:,} bytes of DRAM (image + "
                                   f"commands), more than the accelerator's "
                                   f"{self.memory_range:,}-byte memory window")
        self.program = self.image_buffer = self.program_buffer = self._logits = None
        image_buffer = self._allocate(image.size, "DRAM image")
        program_buffer = self._allocate(words.size, "command program")
        for lo in range(0, image.size, _UPLOAD_CHUNK):
            chunk = image[lo:lo + _UPLOAD_CHUNK]
            image_buffer[lo:lo + chunk.size] = chunk
            if progress is not None:
                progress(chunk.size)
        program_buffer[:] = words
        image_buffer.flush()
        program_buffer.flush()
        for buf, what in ((image_buffer, "image"), (program_buffer, "program")):
            addr = int(buf.physical_address)
            if self.memory_range is not None and not (
                    self.memory_base <= addr and addr + buf.nbytes
                    <= self.memory_base + self.memory_range):
                raise AcceleratorError(f"the {what} buffer at {addr:#x} is outside the "
                                       f"accelerator's memory window")
        self.image_base = int(image_buffer.physical_address)
        self.program_addr = int(program_buffer.physical_address)
        self.control = field_bits("control", "soft_reset")[1]
        logits = program.layout["logits"]
        self._logits = image_buffer[logits.addr:logits.addr + logits.size]
        self.program, self.image_buffer, self.program_buffer = program, image_buffer, \
            program_buffer

    def check_hardware(self, program=None) -> HardwareConfig:
        """Refuse hardware that cannot run ``program`` (default: the loaded one).

        ``hw_id`` must carry the speedllm magic and the program's ISA and image-format
        versions; ``config_hash`` must be one of :attr:`known_configs`, and that
        configuration must fit the program (``HardwareConfig.problems_with``). Returns
        the matching configuration; raises :class:`AcceleratorError` otherwise.
        """
        program = self.program if program is None else program
        if program is None:
            raise AcceleratorError("no program to check the hardware against")
        header = read_header(program.image)
        expected = 0
        for field, value in (("magic", HW_ID_MAGIC), ("isa_version", header["isa_version"]),
                             ("format_version", header["format_version"])):
            shift, mask = field_bits("hw_id", field)
            expected |= (value << shift) & mask
        found = self.hw_id
        if found != expected:
            def parts(v):
                return ", ".join(f"{f} {(v & mask) >> shift:#x}" for f, (shift, mask) in
                                 ((f, field_bits("hw_id", f))
                                  for f in ("magic", "isa_version", "format_version")))
            raise AcceleratorError(f"hardware ID {found:#010x} ({parts(found)}) is not the "
                                   f"program's {expected:#010x} ({parts(expected)}): the "
                                   f"bitstream and the compiler do not match")
        configs = {c.hash(): c for c in self.known_configs}
        found = self.config_hash
        if found not in configs:
            known = ", ".join(f"{h:#010x}" for h in configs)
            raise AcceleratorError(f"hardware configuration hash {found:#010x} is not a "
                                   f"known configuration (known: {known}); give the "
                                   f"bitstream's HardwareConfig in known_configs")
        problems = configs[found].problems_with(header)
        if problems:
            raise AcceleratorError("the hardware cannot run this program: " + "; ".join(problems))
        return configs[found]

    def reset_state(self) -> None:
        """Zero the KV cache and logits in the board's memory (a new sequence)."""
        if self.program is None:
            raise AcceleratorError("no program loaded: call load_program first")
        for name, region in self.program.layout.items():
            if name.endswith(("k_cache", "v_cache")) or name == "logits":
                part = self.image_buffer[region.addr:region.end]
                part[:] = self.program.image[region.addr:region.end]
                part.flush()

    # ---- one step -------------------------------------------------------------------
    def command_name(self, index: int) -> str:
        """``"<index> <node name> (<OPCODE>)"`` of the loaded program's command."""
        p = self.program
        if p is None or not 0 <= index < len(p.commands):
            return f"{index} (outside the program)"
        return f"{index} {p.names[index]} ({Opcode(p.commands[index].opcode).name})"

    def step(self, token: int, pos: int, timeout_s: float = 10.0) -> np.ndarray:
        """Run one decode step; return the logits as float32 (ACT int32 / 2**16)."""
        if self.program is None:
            raise AcceleratorError("no program loaded: call load_program first")
        done = field_bits("status", "done")[1]
        error = field_bits("status", "error")[1]
        code_shift, code_mask = field_bits("status", "error_code")
        self.status = done                      # w1c: a done left by an earlier run
        self.token = token
        self.position = pos
        self.control = field_bits("control", "start")[1]
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status
            if status & (done | error):
                break
            if time.monotonic() > deadline:
                raise AcceleratorError(f"accelerator timeout: token {token} at position {pos} "
                                       f"not done after {timeout_s:g} s (status "
                                       f"{status:#x})")
        if status & error:
            code = (status & code_mask) >> code_shift
            name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
            raise AcceleratorError(f"accelerator error {name} at command "
                                   f"{self.command_name(self.failing_command)} "
                                   f"(token {token}, position {pos})")
        self.status = done                      # w1c: clear the sticky done
        self.last_cycles = self.total_cycles
        self._logits.invalidate()
        return (self._logits.view(np.int32).astype(np.float64) / (1 << ACT_FRAC)).astype(
            np.float32)

    def counters(self) -> dict:
        """Cycle and stall counters of the last step, per command class, plus totals."""
        out = {cls: {"cycles": self.read(REGISTER_OFFSETS[counter_name("cycles", cls)]),
                     "stalls": self.read(REGISTER_OFFSETS[counter_name("stalls", cls)])}
               for cls in COUNTER_CLASSES}
        for name in ("total_cycles", "commands_done", "bytes_read", "bytes_written"):
            out[name] = self.read(REGISTER_OFFSETS[name])
        return out


for _name, _off, _reg in ACCEL_REGMAP:
    _writable = any(f.access != "r" for f in _reg.fields.values())
    setattr(SpeedLLMAccelerator, _name,
            _register_property(_name, _off, _writable, (_reg.__doc__ or "").split("\n")[0]))
del _name, _off, _reg, _writable
