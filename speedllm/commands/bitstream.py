"""Build a bitstream (ECP5, here) or write the Vivado project that builds one (Zynq boards).

Designs (--top): accel (default), the whole accelerator (speedllm.hw.accel_top at
TOP_CONFIG: one AXI-Lite slave, eight AXI4 masters); dma_copy, a small test design with
the same kind of bus interface.

Targets:
  ulx3s-85f  ECP5 LFE5U-85F: a real build with the open YoWASP tools (yosys synth_ecp5,
             nextpnr-ecp5, ecppack), at low priority and under --timeout. Writes
             <top>_ulx3s_85f.bit, nextpnr's report and a summary; prints Fmax and
             LUT4/FF/DP16KD/MULT18 use. A design that does not fit fails with the resources
             that overflow. Builds are cached by content. The accelerator top is built
             at 25 MHz with router2 by default and takes about half an hour on a busy
             2-core machine (it routes at ~40 MHz); dma_copy a few minutes at 100 MHz.
  pynq-z2    xc7z020 (Zynq-7000), kv260 (xck26, Kria), zcu104 (xczu7ev): writes the
             Verilog, build.tcl (IP packaging, block design with the PS, address map,
             synthesis, implementation, write_bitstream, .hwh) and build.sh. With Vivado on
             PATH it then runs build.sh; without Vivado it says so and stops before
             synthesis, exit status 0 ("project written"). No .bit is ever faked.
             The accelerator's eight masters share the four HP ports through SmartConnects:
             HP0 m_w (weights, alone), HP1 m_s+m_cmd, HP2 m_rd0+m_rd1+m_att, HP3 m_wr0+m_kv.

--out defaults to build/bitstreams/<target>/. A folder that exists, is not empty and was
not written by this command is refused unless --force.

Examples:
  speedllm bitstream --target ulx3s-85f
  speedllm bitstream --target ulx3s-85f --top dma_copy
  speedllm bitstream --target ulx3s-85f --clock 25 --router router2
  speedllm bitstream --target pynq-z2 --out build/pynq
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from speedllm.errors import AcceleratorError, InputError

HELP = "build the ECP5 bitstream, or write a Zynq board's Vivado project (build.sh)"

MARKER = ".speedllm-bitstream"       # marks a folder this command wrote


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speedllm.bitstreams.ecp5 import DEFAULT_TIMEOUT_S, ROUTERS
    from speedllm.bitstreams.targets import DEFAULT_TOP, TARGETS, TOPS
    parser.add_argument("--target", required=True, choices=list(TARGETS),
                        help="the board")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default build/bitstreams/<target>/)")
    parser.add_argument("--top", default=DEFAULT_TOP, choices=list(TOPS),
                        help=f"the design to build (default {DEFAULT_TOP})")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder this command did not create")
    parser.add_argument("--no-run", action="store_true",
                        help="Vivado targets: write the project only, even if Vivado is "
                             "installed")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (ECP5)")
    parser.add_argument("--no-cache", action="store_true",
                        help="ECP5: build again even if a cached build matches")
    parser.add_argument("--router", choices=ROUTERS, default=None,
                        help="ECP5: nextpnr's router (default: router2 for accel, nextpnr's "
                             "own router1 for dma_copy)")
    parser.add_argument("--clock", type=float, default=None, metavar="MHZ",
                        help="ECP5: fabric clock the PLL makes from the 25 MHz oscillator and "
                             "nextpnr's constraint (default: 25 for accel, which routes at "
                             "~40 MHz; the board profile's 100 for dma_copy; e.g. 37.5, 50)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"ECP5: give up (and kill the tools) after this long "
                             f"(default {DEFAULT_TIMEOUT_S} s)")


def prepare_out_dir(out: Path, target: str, force: bool) -> None:
    """Create ``out`` or check that we may write into it; leave our marker in it."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists() and not force:
        raise InputError(f"{out}: folder is not empty and was not written by `speedllm "
                         f"bitstream`; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"{target}\n")


def _ecp5(args, out: Path) -> int:
    from speedllm.bitstreams.ecp5 import build_ecp5
    from speedllm.bitstreams.targets import ECP5_DEFAULTS, make_top
    defaults = ECP5_DEFAULTS.get(args.top, {})
    clock = args.clock if args.clock is not None else defaults.get("clock")
    router = args.router or defaults.get("router")
    design = make_top(args.top, args.target)
    name = f"{args.top}_{args.target.replace('-', '_')}"
    if args.timeout <= 0:
        raise InputError(f"--timeout must be positive, not {args.timeout:g}")
    if clock is not None:
        from speedllm.bitstreams.ecp5 import OSC_MHZ, pll_parameters
        try:
            pll_parameters(OSC_MHZ, clock)
        except ValueError as e:
            raise InputError(f"--clock {clock:g}: {e}") from None
    took = ("about half an hour on a busy 2-core machine" if args.top == "accel"
            else "a few minutes")
    print(f"bitstream: {args.target}: building {args.top} (synth_ecp5, nextpnr-ecp5, "
          f"ecppack; {took}, at most {args.timeout:g} s)...", flush=True)
    try:
        s = build_ecp5(design, out, name=name, seed=args.seed, use_cache=not args.no_cache,
                       timeout_s=args.timeout, router=router, fabric_mhz=clock)
    except RuntimeError as e:
        raise AcceleratorError(str(e).splitlines()[0] + f" (logs in {out})") from None
    u = s["utilization"]

    def cell(k):
        v = u.get(k, {"used": 0, "available": 0})
        return f"{k} {v['used']}/{v['available']}"
    met = "met" if s["timing_met"] else "NOT met"
    print(f"bitstream: Fmax {s['fmax_mhz']:.2f} MHz (constraint {s['constraint_mhz']:g} MHz, "
          f"{met}); {', '.join(cell(k) for k in ('LUT4', 'FF', 'DP16KD', 'MULT18'))}"
          f"{' [cached]' if s.get('cached') else ''}")
    print(f"bitstream: wrote {out / s['bit']} and {name}.summary.json")
    return 0


def _vivado(args, out: Path) -> int:
    from speedllm.bitstreams.targets import make_top
    from speedllm.bitstreams.vivado import vivado_available, write_vivado_project
    manifest = write_vivado_project(make_top(args.top, args.target), args.target, out)
    print(f"bitstream: {args.target}: wrote the Vivado project scripts to {out} "
          f"(part {manifest['part']}, IP {manifest['ip_vlnv']}, control port at "
          f"{manifest['control']['base']:#010x})")
    vivado = vivado_available()
    if args.no_run:
        print(f"bitstream: --no-run: stopped before synthesis; build with {out / 'build.sh'}")
        return 0
    if vivado is None:
        print(f"bitstream: Vivado is not installed (no `vivado` on PATH): stopped before "
              f"synthesis, no .bit was made. Run {out / 'build.sh'} on a machine with "
              f"Vivado to get {manifest['bit']} and {manifest['hwh']}.")
        return 0
    print(f"bitstream: running {out / 'build.sh'} with {vivado} (this takes a while)...",
          flush=True)
    proc = subprocess.run(["sh", "build.sh"], cwd=out)
    if proc.returncode != 0:
        raise AcceleratorError(f"Vivado build failed (exit {proc.returncode}); see "
                               f"{out / 'vivado.log'}")
    print(f"bitstream: wrote {out / manifest['bit']} and {out / manifest['hwh']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from speedllm.bitstreams.targets import get_target
    target = get_target(args.target)
    out = Path(args.out) if args.out else Path("build") / "bitstreams" / args.target
    prepare_out_dir(out, args.target, args.force)
    return _ecp5(args, out) if target.flow == "ecp5" else _vivado(args, out)
