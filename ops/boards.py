"""Board profiles: clock, AXI ports, DRAM bandwidth and latency, device capacity.

The numbers live in ``bitstreams/boards.json`` (package data of ``speedllm.bitstreams``), one
``{"value", "source", "assumption"}`` record per field: every figure names the document it
comes from, and ``assumption: true`` marks the figures we chose ourselves (fabric clock
targets, the achievable fraction of DRAM peak, read latency) until a board or a place and
route run replaces them.

Boards: ``pynq-z2`` (xc7z020, DDR3 x16), ``kv260`` (xck26, DDR4 x64), ``zcu104`` (xczu7ev,
DDR4 x64), ``u280`` (xcu280, HBM2), ``ulx3s-85f`` (ECP5 LFE5U-85F, SDR SDRAM; the open flow).

    >>> from speedllm.ops.boards import get_board
    >>> b = get_board("pynq-z2")
    >>> b.dram_peak_bytes_per_s, b.dsp, b.source("dsp")[:5]
    (2100000000.0, 220, 'DS190')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["BoardProfile", "BOARD_FIELDS", "board_names", "get_board", "load_boards"]

#: Every field a profile must give, with its Python type.
BOARD_FIELDS: dict[str, type] = {
    "device": str,
    "family": str,                    # Yosys family: xc7, xcup, ecp5
    "fabric_mhz": float,              # fabric clock target
    "axi_data_bits": int,             # data width of one weight port
    "weight_ports": int,              # ports usable to stream weights
    "max_burst_beats": int,           # longest burst the port takes (AXI3 16, AXI4 256)
    "dram_type": str,
    "dram_peak_bytes_per_s": float,   # theoretical peak
    "dram_efficiency": float,         # achievable fraction of peak (assumption)
    "dram_read_latency_ns": float,    # first-beat read latency (assumption)
    "lut": int,
    "ff": int,
    "dsp": int,
    "bram_blocks": int,
    "bram_block_kbits": int,          # 36 (Xilinx RAMB36) or 18 (ECP5 EBR)
    "uram": int,
}


@dataclass(frozen=True)
class BoardProfile:
    """One board: the values of :data:`BOARD_FIELDS`, plus ``sources`` and ``assumptions``.

    ``sources[f]`` names the document behind field ``f``; ``assumptions`` lists the fields
    that are our own choices rather than published figures.
    """

    name: str
    device: str
    family: str
    fabric_mhz: float
    axi_data_bits: int
    weight_ports: int
    max_burst_beats: int
    dram_type: str
    dram_peak_bytes_per_s: float
    dram_efficiency: float
    dram_read_latency_ns: float
    lut: int
    ff: int
    dsp: int
    bram_blocks: int
    bram_block_kbits: int
    uram: int
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    assumptions: frozenset = frozenset()

    def source(self, name: str) -> str:
        return self.sources[name]

    @property
    def bram_bits(self) -> int:
        return self.bram_blocks * self.bram_block_kbits * 1024

    @property
    def dram_attainable_bytes_per_s(self) -> float:
        """Peak times the (assumed) achievable fraction."""
        return self.dram_peak_bytes_per_s * self.dram_efficiency

    def axi_bytes_per_s(self, fabric_mhz: float | None = None, ports: int | None = None) -> float:
        """What the weight ports can carry at ``fabric_mhz``: width x ports x clock."""
        mhz = self.fabric_mhz if fabric_mhz is None else fabric_mhz
        n = self.weight_ports if ports is None else ports
        return self.axi_data_bits / 8 * n * mhz * 1e6

    def capacity(self) -> dict[str, int]:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp,
                "bram_blocks": self.bram_blocks, "uram": self.uram}

    def to_dict(self) -> dict:
        out = {"name": self.name}
        out.update({f: getattr(self, f) for f in BOARD_FIELDS})
        out["assumptions"] = sorted(self.assumptions)
        return out


def _parse(name: str, record: dict, where: str) -> BoardProfile:
    values, sources, assumed = {}, {}, set()
    missing = set(BOARD_FIELDS) - set(record)
    if missing:
        raise ValueError(f"{where}: board {name!r} lacks {sorted(missing)}")
    unknown = set(record) - set(BOARD_FIELDS)
    if unknown:
        raise ValueError(f"{where}: board {name!r} has unknown fields {sorted(unknown)}")
    for fname, ftype in BOARD_FIELDS.items():
        entry = record[fname]
        if not isinstance(entry, dict) or set(entry) != {"value", "source", "assumption"}:
            raise ValueError(f"{where}: {name}.{fname} must be {{value, source, assumption}}")
        value, source = entry["value"], entry["source"]
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{where}: {name}.{fname} has no source")
        if ftype is str:
            ok = isinstance(value, str) and value
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
            if ftype is int:
                ok = ok and float(value).is_integer()
        if not ok:
            raise ValueError(f"{where}: {name}.{fname} = {value!r} is not a valid "
                             f"{ftype.__name__}")
        values[fname] = ftype(value)
        sources[fname] = source
        if entry["assumption"]:
            assumed.add(fname)
    if not 0 < values["dram_efficiency"] <= 1:
        raise ValueError(f"{where}: {name}.dram_efficiency must be in (0, 1]")
    for fname in ("fabric_mhz", "axi_data_bits", "weight_ports", "max_burst_beats",
                  "dram_peak_bytes_per_s"):
        if values[fname] <= 0:
            raise ValueError(f"{where}: {name}.{fname} must be positive")
    return BoardProfile(name=name, sources=sources, assumptions=frozenset(assumed), **values)


def load_boards(path: str | Path | None = None) -> dict[str, BoardProfile]:
    """All profiles of ``path`` (default: the packaged ``boards.json``), by name."""
    if path is None:
        text = resources.files("speedllm.bitstreams").joinpath("boards.json").read_text()
        where = "boards.json"
    else:
        text, where = Path(path).read_text(), str(path)
    data = json.loads(text)
    return {name: _parse(name, rec, where) for name, rec in data["boards"].items()}


@lru_cache(maxsize=None)
def _packaged() -> dict[str, BoardProfile]:
    return load_boards()


def board_names() -> tuple[str, ...]:
    return tuple(_packaged())


def get_board(name: str | BoardProfile) -> BoardProfile:
    """The packaged profile ``name`` (a :class:`BoardProfile` passes through)."""
    if isinstance(name, BoardProfile):
        return name
    try:
        return _packaged()[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; boards: {', '.join(_packaged())}") from None
