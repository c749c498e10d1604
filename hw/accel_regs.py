"""The accelerator's register map (AXI4-Lite, 32-bit registers), built with :mod:`.csr`.

One map serves the hardware (:class:`speedllm.hw.sequencer.Sequencer` wires its fields)
and the host (:func:`write_offsets_json` / ``ACCEL_REGMAP.to_python()``): no offset is
typed by hand anywhere else.

=======  ====================  ======  ===================================================
offset   register              access  meaning
=======  ====================  ======  ===================================================
0x00     ``control``           w1p/rw  ``start`` (w1p) runs one decode step; ``soft_reset``
                                       (w1p) clears error and counters when idle;
                                       ``irq_enable`` (rw): ``irq = irq_enable & done``
0x04     ``status``            r/w1c   ``busy``; ``done`` (w1c, sticky: the last run ended,
                                       at END or with an error); ``error`` (until the
                                       next start or soft reset); ``error_code``
                                       (:class:`ErrorCode`)
0x08     ``hw_id``             r       :data:`HW_ID_MAGIC`, ISA and image-format versions
0x0C     ``config_hash``       r       :meth:`HardwareConfig.hash`, elaborated constant
0x10     ``program_addr``      rw      DRAM byte address of command 0
0x14     ``image_base``        rw      DRAM byte address of image byte 0 (added to every
                                       address in the commands)
0x18     ``token``             rw      token of this step (EMBED row)
0x1C     ``position``          rw      position of this step (RoPE row, KV row)
0x20     ``timeout_cycles``    rw      cycles a unit or the bus may take before the run
                                       ends with a timeout error; 0 disables
0x24     ``failing_command``   r       index of the command that erred (while ``error``)
0x28     ``commands_done``     r       commands completed in this run (END excluded)
0x2C     ``total_cycles``      r       cycles from start to done/error
0x30     ``bytes_read``        r       bytes read from DRAM (command fetch + units)
0x34     ``bytes_written``     r       bytes written to DRAM
0x40+4k  ``cycles_<class>``    r       cycles spent in commands of class ``k``
0x80+4k  ``stalls_<class>``    r       cycles a unit of class ``k`` reported waiting on
                                       memory (a subset of ``cycles_<class>``)
=======  ====================  ======  ===================================================

Command classes ``k`` are the opcodes (:class:`speedllm.ops.isa.Opcode`): class 0 (the
name ``fetch``) counts the cycles of fetching and decoding commands, END included; class
``k > 0`` the cycles from a command's dispatch to its unit's ``done``. All counters are
32 bits, cleared by ``start`` and ``soft_reset``, and wrap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path

from speedllm.ops.dram_format import IMAGE_FORMAT_VERSION
from speedllm.ops.isa import COMMAND_BYTES, ISA_VERSION, Opcode

from . import csr

__all__ = ["ACCEL_REGMAP", "ErrorCode", "HardwareConfig", "DEFAULT_CONFIG", "HW_ID_MAGIC",
           "HW_ID", "COUNTER_CLASSES", "CYCLES_BASE", "STALLS_BASE", "counter_name",
           "counter_offset", "hw_id", "describe", "write_offsets_json"]

#: The upper half of ``hw_id``: ASCII "SL" (speedllm).
HW_ID_MAGIC = 0x534C


class ErrorCode(IntEnum):
    """``status.error_code``: why a run ended early (0 while no error)."""

    NONE = 0
    AXI_READ = 1        # SLVERR/DECERR on a read (command fetch or a unit)
    AXI_WRITE = 2       # SLVERR/DECERR on a write
    BUS_TIMEOUT = 3     # an AXI transfer was not answered within timeout_cycles
    UNIT_TIMEOUT = 4    # a unit did not answer done within timeout_cycles
    BAD_OPCODE = 5      # an opcode outside speedllm.ops.isa.Opcode
    NO_UNIT = 6         # a valid opcode this build has no unit for
    UNIT_ERROR = 7      # a unit reported an error of its own (bad operand, overflow)


class Control(csr.Register):
    """Control: start a run, soft reset, interrupt enable."""
    start = csr.Field(1, "w1p", doc="write 1: run the program once (ignored while busy)")
    soft_reset = csr.Field(1, "w1p", doc="write 1: clear error and counters "
                                         "(ignored while busy)")
    irq_enable = csr.Field(1, "rw", offset=8, doc="irq = irq_enable & done")


class Status(csr.Register):
    """Status: busy, done, error and its code."""
    busy = csr.Field(1, "r", doc="a run is in progress")
    done = csr.Field(1, "w1c", doc="a run ended, at END or with an error (sticky, "
                                   "write 1 to clear)")
    error = csr.Field(1, "r", doc="the last run ended with an error")
    error_code = csr.Field(8, "r", offset=8, doc="ErrorCode of the last run")


class HwId(csr.Register):
    """Hardware identification: speedllm magic, ISA and image-format versions."""
    format_version = csr.Field(8, "r", doc="speedllm.ops.dram_format.IMAGE_FORMAT_VERSION")
    isa_version = csr.Field(8, "r", doc="speedllm.ops.isa.ISA_VERSION")
    magic = csr.Field(16, "r", doc="HW_ID_MAGIC (0x534C, 'SL')")


class ConfigHash(csr.Register):
    """Hash of the hardware configuration (HardwareConfig.hash())."""
    value = csr.Field(32, "r")


class Word(csr.Register):
    """A 32-bit value written by the host."""
    value = csr.Field(32, "rw")


class Timeout(csr.Register):
    """Cycles a unit or a bus transfer may take (0: no timeout)."""
    value = csr.Field(32, "rw", init=1 << 26)


class Counter(csr.Register):
    """A 32-bit counter kept by the hardware."""
    value = csr.Field(32, "r")


CYCLES_BASE = 0x40
STALLS_BASE = 0x80
#: Counter classes: index = opcode; class 0 is command fetch (and END).
COUNTER_CLASSES: tuple[str, ...] = tuple(
    "fetch" if op is Opcode.END else op.name.lower() for op in Opcode)
assert len(COUNTER_CLASSES) <= (STALLS_BASE - CYCLES_BASE) // 4


def counter_name(kind: str, cls: int | str) -> str:
    """Register name of the ``kind`` ("cycles" or "stalls") counter of class ``cls``
    (an opcode value, an Opcode or a class name)."""
    if kind not in ("cycles", "stalls"):
        raise ValueError(f"kind must be 'cycles' or 'stalls', not {kind!r}")
    if isinstance(cls, str):
        if cls not in COUNTER_CLASSES:
            raise ValueError(f"unknown counter class {cls!r} (one of {COUNTER_CLASSES})")
        return f"{kind}_{cls}"
    return f"{kind}_{COUNTER_CLASSES[int(cls)]}"


def counter_offset(kind: str, cls: int | str) -> int:
    """Byte offset of a per-class counter (see :func:`counter_name`)."""
    return ACCEL_REGMAP.offsets()[counter_name(kind, cls)]


def _build_regmap() -> csr.RegisterMap:
    regmap = csr.RegisterMap("accel")
    for name, reg in [("control", Control), ("status", Status), ("hw_id", HwId),
                      ("config_hash", ConfigHash), ("program_addr", Word),
                      ("image_base", Word), ("token", Word), ("position", Word),
                      ("timeout_cycles", Timeout), ("failing_command", Counter),
                      ("commands_done", Counter), ("total_cycles", Counter),
                      ("bytes_read", Counter), ("bytes_written", Counter)]:
        regmap.add(name, reg)
    for kind, base in (("cycles", CYCLES_BASE), ("stalls", STALLS_BASE)):
        for k in range(len(COUNTER_CLASSES)):
            regmap.add(counter_name(kind, k), Counter, offset=base + 4 * k)
    return regmap


#: The accelerator's register map.
ACCEL_REGMAP: csr.RegisterMap = _build_regmap()


def hw_id() -> int:
    """The value of the ``hw_id`` register."""
    f = HwId.fields
    return ((HW_ID_MAGIC << f["magic"].offset) | (ISA_VERSION << f["isa_version"].offset)
            | (IMAGE_FORMAT_VERSION << f["format_version"].offset))


HW_ID = hw_id()


@dataclass(frozen=True)
class HardwareConfig:
    """What a bitstream was built with; its :meth:`hash` is the ``config_hash`` register.

    The host reads ``config_hash``, finds the configuration with that hash (shipped beside
    the bitstream in the offsets JSON), and refuses a program that does not fit it
    (:meth:`problems_with`).
    """

    lanes: int = 8                  # MAC lanes of the matvec engine
    beat_bytes: int = 8             # AXI data bus width in bytes
    group_size: int = 32            # W8 weights per scale group
    max_dim: int = 2048             # largest dim (matvec cols)
    max_hidden_dim: int = 8192      # largest hidden_dim
    max_rows: int = 32768           # largest matvec rows (vocab)
    max_seq_len: int = 2048
    max_heads: int = 32
    scratchpad_bytes: int = 1 << 16
    head_size: int = 8              # attention and RoPE are built for one head shape
    n_heads: int = 8
    n_kv_heads: int = 4
    isa_version: int = ISA_VERSION
    format_version: int = IMAGE_FORMAT_VERSION
    command_bytes: int = COMMAND_BYTES

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"HardwareConfig.{name} must be a positive int, "
                                 f"not {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> int:
        """The first 4 bytes (little-endian) of SHA-256 over the sorted-key JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")

    def problems_with(self, header: dict) -> list[str]:
        """Why a program (its image header, :func:`speedllm.ops.dram_format.read_header`)
        cannot run on this hardware; empty when it can."""
        checks = [
            ("isa_version", header["isa_version"] == self.isa_version),
            ("format_version", header["format_version"] == self.format_version),
            ("command_bytes", header["command_bytes"] == self.command_bytes),
            ("beat_bytes", header["beat_bytes"] == self.beat_bytes),
            ("dim", header["dim"] <= self.max_dim),
            ("hidden_dim", header["hidden_dim"] <= self.max_hidden_dim),
            ("vocab_size", header["vocab_size"] <= self.max_rows),
            ("seq_len", header["seq_len"] <= self.max_seq_len),
            ("n_heads", header["n_heads"] <= self.max_heads),
            ("n_heads", header["n_heads"] == self.n_heads),
            ("n_kv_heads", header["n_kv_heads"] == self.n_kv_heads),
            ("head_size", header["dim"] == self.head_size * header["n_heads"]),
            ("scratchpad_bytes", header["scratchpad_bytes"] <= self.scratchpad_bytes),
            ("scheme", header.get("scheme") == self.scheme),
        ]
        header = dict(header, head_size=header["dim"] // max(header["n_heads"], 1))
        hw = dict(self.to_dict(), scheme=self.scheme)
        return [f"program {name}={header.get(name)} does not fit the hardware "
                f"({hw.get(name, hw.get('max_' + name))})"
                for name, ok in checks if not ok]

    @property
    def scheme(self) -> str:
        """Name of the integer scheme the datapath computes (``golden.intmodel.Scheme.name``): this
        group size, 16-bit KV with a block exponent, the default table sizes."""
        from speedllm.golden.intmodel import Scheme
        return Scheme(group_size=self.group_size).name


DEFAULT_CONFIG = HardwareConfig()


def describe(config: HardwareConfig = DEFAULT_CONFIG) -> dict:
    """The register map, error codes, counter classes, ID and configuration as plain data."""
    out = ACCEL_REGMAP.describe()
    out.update({
        "hw_id": HW_ID,
        "config_hash": config.hash(),
        "config": config.to_dict(),
        "error_codes": {e.name: e.value for e in ErrorCode},
        "counter_classes": list(COUNTER_CLASSES),
        "cycles_base": CYCLES_BASE,
        "stalls_base": STALLS_BASE,
    })
    return out


def write_offsets_json(path, config: HardwareConfig = DEFAULT_CONFIG) -> Path:
    """Write :func:`describe` as JSON to ``path`` (the host's register offsets)."""
    path = Path(path)
    path.write_text(json.dumps(describe(config), indent=1) + "\n")
    return path


if __name__ == "__main__":
    import sys
    sys.stdout.write(json.dumps(describe(), indent=1) + "\n")
