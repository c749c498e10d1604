"""Resource and Fmax figures of the hardware components, as JSON.

For each component of the catalogue (speedllm.hw.catalog; all of them, or those named with
--components), Yosys `synth_xilinx -family xc7` gives the Xilinx 7-series (Zynq-7000)
resources: LUT, FF, LUTRAM, DSP48E1, RAMB18E1/RAMB36E1 and the full cell list. With --fmax,
nextpnr-ecp5 places and routes the component on an LFE5U-85F (CABGA381) and reports the
achieved Fmax (real P&R; the component sits in a one-pin-in, one-pin-out register harness).
Results are cached by the hash of the Verilog (build/synth/), so a second run is instant.

Example:
  speedllm hw-report --out report/hw.json --components axi_read_master_64 --fmax
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speedllm.errors import InputError

HELP = "synthesis resources (Yosys, xc7) and Fmax (nextpnr-ecp5) of hardware components"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="FILE.json",
                        help="where to write the JSON report ('-' for stdout)")
    parser.add_argument("--components", metavar="A,B", default=None,
                        help="comma-separated catalogue names (default: all; see --list)")
    parser.add_argument("--fmax", action="store_true",
                        help="also place and route on ECP5-85F and report Fmax (slower)")
    parser.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                        help="nextpnr target frequency in MHz (default 100)")
    parser.add_argument("--list", action="store_true",
                        help="print the catalogue (name and factory) and exit")


def run(args: argparse.Namespace) -> int:
    from speedllm.hw.catalog import CATALOG
    from speedllm.hw.synth import report
    if args.list:
        for name, entry in CATALOG.items():
            print(f"{name:24s} {entry.describe()}")
        return 0
    names = None
    if args.components:
        names = [n.strip() for n in args.components.split(",") if n.strip()]
        unknown = [n for n in names if n not in CATALOG]
        if unknown:
            raise InputError(f"--components: unknown {', '.join(unknown)} "
                             f"(known: {', '.join(CATALOG)})")
    if args.freq <= 0:
        raise InputError(f"--freq must be positive, not {args.freq}")
    result = report(names, fmax=args.fmax, freq=args.freq,
                    progress=lambda msg: print(f"hw-report: {msg}", file=sys.stderr))
    text = json.dumps(result, indent=1)
    if args.out == "-":
        print(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"hw-report: wrote {out}", file=sys.stderr)
    for name, entry in result["components"].items():
        x = entry["xilinx"]
        line = (f"{name:24s} LUT {x['LUT']:6d}  FF {x['FF']:6d}  LUTRAM {x['LUTRAM']:4d}  "
                f"DSP {x['DSP48E1']:3d}  RAMB18 {x['RAMB18E1']:3d}  RAMB36 {x['RAMB36E1']:3d}")
        if "ecp5" in entry:
            line += f"  Fmax {entry['ecp5']['fmax_mhz']:.1f} MHz"
        print(line, file=sys.stderr)
    return 0
