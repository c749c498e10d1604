"""Fast Verilator C++ harness: a DUT with an AXI4-Lite control port and AXI4 master ports
run against a C++ DRAM model, many cycles per Python call.

::

    from speedllm.sim.harness import Harness

    h = Harness(DmaCopy(), "dma_copy", dram_bytes=1 << 20, bandwidth_bytes_per_cycle=4,
                latency=20, max_outstanding=4)
    h.dram[0x1000:0x1100] = np.arange(256, dtype=np.uint8)     # a numpy view, no copy
    h.write_reg("src", 0x1000); h.write_reg("dst", 0x8000); h.write_reg("beats", 32)
    h.write_reg("control", 1)
    cycles = h.run_until("status", mask=1, value=1, max_cycles=100_000)

How the build works
-------------------
1. The top's Verilog (from ``amaranth.back.verilog.convert`` or given as text) is parsed for
   its ports. Ports ending in an AXI field name (``<prefix>__araddr`` as Amaranth flattens
   ``m_axi.araddr``, or ``<prefix>_araddr``) are grouped by prefix: a group whose
   ``araddr``/``awaddr`` is an output is an AXI4 master port (read, write or both
   channels); the one group whose ``awaddr`` is an input is the AXI4-Lite control port.
2. :func:`~speedllm.sim.harness_ports.render_ports_header` writes ``harness_ports.h``:
   the C++ glue between those Verilator port members and the generic harness in
   ``sim/harness/`` (DRAM model, AXI-Lite master, main loop, ``extern "C"`` API).
   Nothing in the C++ names a port.
3. :func:`input_register_wrapper` writes a module ``harness_top`` with the top's ports that
   registers every input but the clock; it is Verilator's top. The C++ drives a cycle's
   inputs before the rising edge, so the DUT sees the same values in the same cycles, but
   its logic is evaluated once a cycle instead of at every ``eval()`` (about 2x faster on
   the accelerator top; docs/harness.md, "Speed of the accelerator top").
4. ``verilator --cc --exe -O3 --x-assign fast --x-initial fast`` then ``make`` (``-O2``
   for the per-cycle code, ``-march=native -fPIC``, linked ``-shared``) build a library in
   ``sim_build/harness-<hash>/``; the hash covers the Verilog, the generated header, the
   C++ sources, the options and the CPU, and a file lock makes parallel pytest workers
   share one build. Top-independent objects are reused from ``harness-runtime-<hash>/``.
   ``$SPEEDLLM_HARNESS_EXTRA`` adds Verilator options (e.g. ``--prof-cfuncs`` to profile
   with ``perf``); they are part of the cache key.

DUT inputs that are neither clock, reset nor an AXI field stay 0. The DRAM parameters
(size, bandwidth, latency, outstanding bursts, error ranges, hang) are run-time settings:
changing them does not rebuild.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from speedllm.errors import AcceleratorError

from .harness_ports import PortDescription, verilog_ports, describe_ports, render_ports_header
from .runner import VERILATOR_MAKE_FIXES, BuildLock, build_root, strip_src_attributes, verilator_bin_dir, verilog_of

__all__ = ["Harness", "PortDescription", "describe_ports", "render_ports_header",
           "build_harness", "build_flags", "input_register_wrapper", "RESP_NAMES"]

SOURCE_DIR = Path(__file__).resolve().parent / "harness"
SOURCES = ("harness.cpp", "dram_model.cpp")
HEADERS = ("axi_signals.h", "dram_model.h", "axil_master.h")
RESP_NAMES = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}
_RANGE_KINDS = {"slverr": 2, "decerr": 3, "hang": 4}
_TIMEOUT, _BUS_ERROR, _NO_CONTROL, _OUT_OF_RANGE = -1, -2, -3, -4


def _verilator() -> str:
    return os.path.join(verilator_bin_dir(), "verilator")


# Verilator's make defaults to -Os. The model's per-cycle code and the harness loop
# (OPT_FAST) want -O2; its run-time library and initialisation code (OPT_GLOBAL, OPT_SLOW)
# compile faster at -O1. -march=native gave 10-25 % more cycles/s here: builds are per
# machine (its CPU is in the cache key).
_MAKE_OPT = ["OPT_FAST=-O2", "OPT_GLOBAL=-O1", "OPT_SLOW=-O1", *VERILATOR_MAKE_FIXES]


def _verilator_options(trace: bool) -> list[str]:
    options = ["--cc", "--exe", "-O3", "-Wno-fatal", "--x-assign", "fast",
               "--x-initial", "fast", "--prefix", "Vtop",
               "-CFLAGS", f"-march=native -fPIC -I{SOURCE_DIR}",
               "-LDFLAGS", "-shared -Wl,-Bsymbolic"]
    if trace:
        options += ["--trace", "-CFLAGS", "-DHARNESS_TRACE"]
    return options + os.environ.get("SPEEDLLM_HARNESS_EXTRA", "").split()


def build_flags(trace: bool = False) -> dict:
    """The flags a harness build uses (for benchmark reports)."""
    return {"verilator": _verilator_options(trace), "make": list(_MAKE_OPT),
            "inputs": f"registered by the {WRAPPER} wrapper"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run_logged(cmd, cwd, log: Path):
    """Run a build step, appending its output to ``log``; raise RuntimeError if it fails."""
    env = dict(os.environ, PATH=verilator_bin_dir() + os.pathsep + os.environ["PATH"])
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise RuntimeError(f"harness build step {Path(cmd[0]).name} failed; log {log}:\n{tail}")


WRAPPER = "harness_top"
LOAD_PORT = "harness_load"


def input_register_wrapper(verilog: str, toplevel: str, clock: str = "clk") -> str:
    """Verilog of a module :data:`WRAPPER` with the ports of ``toplevel`` (plus an input
    :data:`LOAD_PORT`) that registers every input but the clock before the DUT sees it.

    The harness drives a cycle's inputs *before* the rising edge that starts the cycle
    (``step()`` in ``harness/harness.cpp``), so the DUT sees each input value in the same
    cycle as it would unregistered. What this buys: Verilator re-evaluates all logic that depends
    on a top-level input at every ``eval()`` (its ``ico`` region, twice a cycle), and in an
    Amaranth design the synchronous reset and the AXI inputs reach nearly every flop's
    next-state logic. With registered inputs that logic is evaluated once a cycle, after
    the edge. A rising edge of :data:`LOAD_PORT` loads the registers without a clock edge
    of the DUT, for inputs that must change between cycles (reset, an AXI-Lite transfer
    started from Python).
    """
    ports = verilog_ports(verilog, toplevel)
    decl, regs, conns = [f"input {LOAD_PORT}"], [], []
    for name, (direction, width) in ports.items():
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decl.append(f"{direction} {rng}{name}")
        if direction == "input" and name != clock:
            regs.append(f"  reg {rng}hq__{name} = 0;\n"
                        f"  always @(posedge {clock} or posedge {LOAD_PORT}) "
                        f"hq__{name} <= {name};")
            conns.append(f"    .{name}(hq__{name})")
        else:
            conns.append(f"    .{name}({name})")
    return "\n".join([
        f"// Generated by speedllm.sim.harness: {toplevel}'s inputs, registered.",
        f"module {WRAPPER}(", ",\n".join(f"  {d}" for d in decl), ");", *regs,
        f"  {toplevel} dut (", ",\n".join(conns), "  );", "endmodule", ""])


def _runtime_key(options) -> str:
    """What the top-independent objects (verilated.o, ..., dram_model.o) depend on."""
    version = (Path(verilator_bin_dir()).parent / "include" / "verilated_config.h").read_text()
    sources = [(SOURCE_DIR / f).read_text() for f in ("dram_model.cpp",) + HEADERS]
    text = "\0".join(options + _MAKE_OPT + [version, _cpu_model()] + sources)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_harness(verilog: str, toplevel: str, *, clock="clk", reset="rst", trace=False,
                  jobs=2) -> tuple[Path, PortDescription]:
    """Build (or find cached) the harness library for a top; return (library, ports).

    Verilator's run-time objects (``verilated.o`` ...) and the DRAM model's are the same
    for every top: the first build keeps them in ``sim_build/harness-runtime-<hash>/`` and
    later builds start from copies, which saves about half of the C++ compile time.
    """
    # Yosys's source-location attributes change with every edit of a Python file above
    # the design; they mean nothing to Verilator, so they do not take part in the cache.
    verilog = strip_src_attributes(verilog)
    desc = describe_ports(verilog, toplevel, clock, reset)
    header = render_ports_header(desc)
    wrapper = input_register_wrapper(verilog, toplevel, clock)
    options = _verilator_options(trace)
    digest = hashlib.sha256()
    for part in [verilog, wrapper, toplevel, header, " ".join(options + _MAKE_OPT),
                 _cpu_model()] + [(SOURCE_DIR / f).read_text() for f in SOURCES + HEADERS]:
        digest.update(part.encode())
        digest.update(b"\0")
    build_dir = build_root() / f"harness-{digest.hexdigest()[:16]}"
    library = build_dir / "libharness.so"
    if library.exists():
        return library, desc
    runtime = build_root() / f"harness-runtime-{_runtime_key(options)}"
    with BuildLock(build_dir):
        if library.exists():           # another worker built it while we waited
            return library, desc
        if build_dir.exists():         # an interrupted build: start over
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        (build_dir / f"{toplevel}.v").write_text(verilog)
        (build_dir / f"{WRAPPER}.v").write_text(wrapper)
        (build_dir / "harness_ports.h").write_text(header)
        obj = build_dir / "obj"
        obj.mkdir(exist_ok=True)
        cmd = [_verilator(), *options, "--top-module", WRAPPER, "-Mdir", str(obj),
               "-CFLAGS", f"-I{build_dir}", "-o", str(library.with_suffix(".tmp")),
               str(build_dir / f"{toplevel}.v"), str(build_dir / f"{WRAPPER}.v"),
               *[str(SOURCE_DIR / f) for f in SOURCES]]
        make = ["make", "-C", str(obj), "-f", "Vtop.mk", "-j", str(jobs), *_MAKE_OPT]
        log = build_dir / "build.log"
        _run_logged(cmd, build_dir, log)
        if (runtime / ".done").exists():
            for f in runtime.iterdir():
                if f.suffix in (".o", ".d"):
                    shutil.copy(f, obj / f.name)   # newer than Vtop.mk: make keeps them
        _run_logged(make, build_dir, log)
        os.replace(library.with_suffix(".tmp"), library)   # atomic: a library is complete
    if not (runtime / ".done").exists():
        with BuildLock(runtime):
            if not (runtime / ".done").exists():
                runtime.mkdir(parents=True, exist_ok=True)
                for f in [*obj.glob("verilated*.[od]"), *obj.glob("dram_model.[od]")]:
                    shutil.copy2(f, runtime / f.name)
                (runtime / ".done").write_text("")
    return library, desc


class _Config(ctypes.Structure):
    _fields_ = [("dram_base", ctypes.c_uint64), ("dram_size", ctypes.c_uint64),
                ("bytes_per_cycle", ctypes.c_double),
                ("read_latency", ctypes.c_uint32), ("write_latency", ctypes.c_uint32),
                ("max_outstanding_reads", ctypes.c_uint32),
                ("max_outstanding_writes", ctypes.c_uint32), ("reset_cycles", ctypes.c_uint32)]


class Counters(ctypes.Structure):
    """DRAM counters (mirror of ``DramCounters`` in ``dram_model.h``)."""
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "bytes_read", "bytes_written", "read_bursts", "write_bursts", "read_beats",
        "write_beats", "busy_cycles", "bandwidth_stall_cycles", "backpressure_cycles",
        "error_responses", "protocol_errors")]


_libraries: dict = {}


def _load(path: Path) -> ctypes.CDLL:
    lib = _libraries.get(path)
    if lib is not None:
        return lib
    lib = ctypes.CDLL(str(path))
    H, u64, u32, i64 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int64
    sig = {"harness_create": (H, [ctypes.POINTER(_Config)]), "harness_destroy": (None, [H]),
           "harness_reset": (None, [H, u32]),
           "harness_dram": (ctypes.POINTER(ctypes.c_uint8), [H]),
           "harness_dram_write": (ctypes.c_int, [H, u64, ctypes.c_void_p, u64]),
           "harness_dram_read": (ctypes.c_int, [H, u64, ctypes.c_void_p, u64]),
           "harness_reg_write": (ctypes.c_int, [H, u64, u64, u32, u64]),
           "harness_reg_read": (ctypes.c_int, [H, u64, ctypes.POINTER(u64), u64]),
           "harness_run": (None, [H, u64]),
           "harness_run_until": (i64, [H, u64, u64, u64, u64, u32, ctypes.POINTER(u64)]),
           "harness_cycles": (u64, [H]),
           "harness_counters": (None, [H, ctypes.POINTER(Counters)]),
           "harness_reset_counters": (None, [H]),
           "harness_protocol_error": (ctypes.c_char_p, [H]),
           "harness_dram_idle": (ctypes.c_int, [H]),
           "harness_set_bandwidth": (None, [H, ctypes.c_double]),
           "harness_set_latency": (None, [H, u32, u32]),
           "harness_set_hang": (None, [H, ctypes.c_int]),
           "harness_add_error_range": (None, [H, u64, u64, u32]),
           "harness_clear_error_ranges": (None, [H]),
           "harness_trace_open": (ctypes.c_int, [H, ctypes.c_char_p])}
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    _libraries[path] = lib
    return lib


class Harness:
    """A DUT in the C++ harness: DRAM model on its AXI4 masters, AXI-Lite master on its
    control port.

    Parameters
    ----------
    design : wiring.Component, zero-argument factory of one, or str
        The top; a string is taken as Verilog text.
    toplevel : str
        Verilog module name of the top.
    dram_bytes, dram_base : int
        Size and first address of the memory; other addresses answer DECERR.
    bandwidth_bytes_per_cycle : float
        Bytes per cycle the memory moves over all ports and both directions (0: no cap).
    latency : int
        Cycles from an AR handshake to the first R beat it may offer (>= 1).
    write_latency : int, optional
        Cycles from a burst's last W beat to its B response (default ``latency``).
    max_outstanding : int
        Bursts open at once per port and direction.
    regmap : dict or object with ``offsets()``, optional
        Register names -> byte offsets, so registers can be named. Default: the
        component's ``regmap`` attribute, when it has one.
    clock, reset : str
        Names of the top's clock and (synchronous, active-high) reset inputs.
    reset_cycles : int
        Cycles the DUT is held in reset after creation.
    poll_interval : int
        Cycles between status reads in :meth:`run_until`.
    trace : bool
        Build with VCD wave dumping (:meth:`trace`); a separate, slower build.

    Attributes
    ----------
    dram : numpy.ndarray
        The memory (uint8, writable, no copy).
    ports : PortDescription
        The AXI ports found in the top.
    """

    def __init__(self, design, toplevel="top", *, dram_bytes=1 << 24, dram_base=0,
                 bandwidth_bytes_per_cycle=0.0, latency=1, write_latency=None,
                 max_outstanding=8, regmap=None, clock="clk", reset="rst", reset_cycles=4,
                 poll_interval=16, trace=False):
        for name, value, lo in [("dram_bytes", dram_bytes, 1), ("latency", latency, 1),
                                ("max_outstanding", max_outstanding, 1),
                                ("poll_interval", poll_interval, 1)]:
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        if bandwidth_bytes_per_cycle < 0:
            raise ValueError(f"bandwidth_bytes_per_cycle must be >= 0, not "
                             f"{bandwidth_bytes_per_cycle!r}")
        if isinstance(design, str):
            verilog = design
        else:
            if regmap is None:
                regmap = getattr(design, "regmap", None)
            verilog = verilog_of(design, toplevel)
        library, self.ports = build_harness(verilog, toplevel, clock=clock, reset=reset,
                                            trace=trace)
        self._lib = _load(library)
        self._offsets = dict(regmap.offsets() if hasattr(regmap, "offsets") else regmap or {})
        self._lite_bytes = (self.ports.control.width("wdata") // 8
                            if self.ports.control is not None else 4)
        self.poll_interval = poll_interval
        cfg = _Config(dram_base, dram_bytes, float(bandwidth_bytes_per_cycle), latency,
                      latency if write_latency is None else write_latency,
                      max_outstanding, max_outstanding, reset_cycles)
        self._h = self._lib.harness_create(ctypes.byref(cfg))
        if not self._h:
            raise MemoryError(f"harness: cannot allocate {dram_bytes} bytes of DRAM")
        self.dram_base = dram_base
        self.dram = np.ctypeslib.as_array(self._lib.harness_dram(self._h), shape=(dram_bytes,))
        """The memory as a writable uint8 array (index = address - dram_base); valid until
        :meth:`close`."""

    # -- life cycle --------------------------------------------------------------------
    def close(self):
        """Free the simulation (the :attr:`dram` view dies with it)."""
        if getattr(self, "_h", None):
            self.dram = None
            self._lib.harness_destroy(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def reset(self, cycles=4):
        """Hold the DUT in reset for ``cycles`` cycles; open DRAM bursts are forgotten."""
        self._lib.harness_reset(self._h, cycles)

    def trace(self, path):
        """Dump waves (VCD) to ``path`` from now on (needs ``trace=True``)."""
        if self._lib.harness_trace_open(self._h, str(path).encode()) != 0:
            raise AcceleratorError("harness: built without trace=True, cannot dump waves")

    # -- memory ------------------------------------------------------------------------
    def write_dram(self, addr, array):
        """Copy the bytes of ``array`` (any dtype, C order) to ``addr``."""
        buf = np.ascontiguousarray(array)
        if self._lib.harness_dram_write(self._h, addr, buf.ctypes.data, buf.nbytes) != 0:
            raise AcceleratorError(f"DRAM write of {buf.nbytes} bytes at {addr:#x} is outside "
                                   f"the memory")

    def read_dram(self, addr, count, dtype=np.uint8):
        """``count`` items of ``dtype`` from ``addr``, as a new array."""
        out = np.empty(count, dtype)
        if self._lib.harness_dram_read(self._h, addr, out.ctypes.data, out.nbytes) != 0:
            raise AcceleratorError(f"DRAM read of {out.nbytes} bytes at {addr:#x} is outside "
                                   f"the memory")
        return out

    # -- registers ---------------------------------------------------------------------
    def offset(self, reg):
        """Byte offset of a register given by name (through the register map) or offset."""
        if isinstance(reg, str):
            if reg not in self._offsets:
                raise AcceleratorError(f"no register {reg!r} in the register map "
                                       f"({', '.join(self._offsets) or 'none given'})")
            return self._offsets[reg]
        return int(reg)

    def _check(self, code, what):
        if code == _NO_CONTROL:
            raise AcceleratorError(f"{self.ports.toplevel}: no AXI-Lite control port")
        if code == _TIMEOUT:
            raise AcceleratorError(f"{what}: no AXI-Lite response (timeout)")
        if code != 0:
            raise AcceleratorError(f"{what} answered {RESP_NAMES.get(code, code)}")

    def write_reg(self, reg, value, max_cycles=1000):
        """Write a register over AXI-Lite; raise AcceleratorError on SLVERR/DECERR/timeout."""
        off = self.offset(reg)
        code = self._lib.harness_reg_write(self._h, off, value & ((1 << 8 * self._lite_bytes) - 1),
                                           (1 << self._lite_bytes) - 1, max_cycles)
        self._check(code, f"register write {reg!r} ({off:#x})")

    def read_reg(self, reg, max_cycles=1000):
        """Read a register over AXI-Lite; raise AcceleratorError on SLVERR/DECERR/timeout."""
        off = self.offset(reg)
        value = ctypes.c_uint64()
        code = self._lib.harness_reg_read(self._h, off, ctypes.byref(value), max_cycles)
        self._check(code, f"register read {reg!r} ({off:#x})")
        return value.value

    # -- running -----------------------------------------------------------------------
    def run(self, cycles):
        """Run ``cycles`` clock cycles."""
        self._lib.harness_run(self._h, cycles)

    def run_until(self, reg, mask, value, max_cycles, poll_interval=None):
        """Run until ``read_reg(reg) & mask == value`` (polled in C every ``poll_interval``
        cycles); return the cycles it took. Raise AcceleratorError after ``max_cycles``."""
        off = self.offset(reg)
        last = ctypes.c_uint64()
        code = self._lib.harness_run_until(self._h, off, mask, value, max_cycles,
                                           poll_interval or self.poll_interval,
                                           ctypes.byref(last))
        if code == _TIMEOUT:
            c = self.counters()
            dram = "idle" if self.dram_idle else "busy"
            raise AcceleratorError(
                f"timeout after {max_cycles} cycles waiting for {reg!r} & {mask:#x} == "
                f"{value:#x} (last read {last.value:#x}; DRAM {dram}, {c['read_beats']} R / "
                f"{c['write_beats']} W beats)")
        if code == _BUS_ERROR:
            raise AcceleratorError(f"status poll {reg!r} ({off:#x}) answered SLVERR/DECERR")
        if code < 0:
            self._check(code, f"status poll {reg!r} ({off:#x})")
        return code

    @property
    def cycles(self):
        """Clock cycles run since the harness was made (reset cycles included)."""
        return self._lib.harness_cycles(self._h)

    # -- DRAM model --------------------------------------------------------------------
    def counters(self):
        """The DRAM counters as a dict (see ``DramCounters`` in ``dram_model.h``)."""
        c = Counters()
        self._lib.harness_counters(self._h, ctypes.byref(c))
        out = {name: getattr(c, name) for name, _ in Counters._fields_}
        out["protocol_error"] = self._lib.harness_protocol_error(self._h).decode()
        return out

    def reset_counters(self):
        self._lib.harness_reset_counters(self._h)

    @property
    def dram_idle(self):
        """No burst open on any port."""
        return bool(self._lib.harness_dram_idle(self._h))

    def set_bandwidth(self, bytes_per_cycle):
        """Change the bandwidth cap (0: none)."""
        self._lib.harness_set_bandwidth(self._h, float(bytes_per_cycle))

    def set_latency(self, latency, write_latency=None):
        """Change the read (and write) latency, for bursts accepted from now on."""
        self._lib.harness_set_latency(self._h, latency,
                                      latency if write_latency is None else write_latency)

    def set_hang(self, hang=True):
        """Stop (or resume) answering: no AR/AW/W accepted, no new R/B beats."""
        self._lib.harness_set_hang(self._h, int(bool(hang)))

    def add_error_range(self, start, end, kind="slverr"):
        """Make addresses ``start <= a < end`` answer ``kind``: "slverr", "decerr", or
        "hang" (bursts touching the range are never answered)."""
        if kind not in _RANGE_KINDS:
            raise ValueError(f"kind must be one of {sorted(_RANGE_KINDS)}, not {kind!r}")
        self._lib.harness_add_error_range(self._h, start, end, _RANGE_KINDS[kind])

    def clear_error_ranges(self):
        self._lib.harness_clear_error_ranges(self._h)
