"""Resource and Fmax figures of the hardware components, as JSON and a table.

For each component of the catalogue (speedllm.hw.catalog; all of them, or those named with
--component/--components), Yosys `synth_xilinx -family xc7` gives the Xilinx 7-series
(Zynq-7000) resources: LUT, FF, LUTRAM, DSP, RAMB18/RAMB36 and the full cell list
(`--family xcup`: Zynq UltraScale+, DSP48E2/RAMB*E2/URAM).
With --fmax, nextpnr-ecp5 places and routes the component on an LFE5U-85F (CABGA381) and
reports the achieved Fmax and its critical path (real P&R; the component sits in a
one-pin-in, one-pin-out register harness), printed as a table at the end. Both tools run
under `nice`. Results are cached by the hash of the Verilog and the options (build/synth/),
so a second run is instant.

The whole accelerator top at a model's configuration (accel_top_260k, accel_top_15m) is
measured only when named: its synthesis takes many minutes.

Examples:
  speedllm hw-report --out report/hw.json --components axi_read_master_64 --fmax
  speedllm hw-report --out report/fmax.json --fmax --no-resources \\
      --component matvec_l8 --component rmsnorm_2048 --table report/fmax.md
  speedllm hw-report --out report/top15m.json --component accel_top_15m
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
    parser.add_argument("--component", action="append", default=[], metavar="NAME",
                        help="a catalogue name (repeatable; default: all; see --list)")
    parser.add_argument("--components", metavar="A,B", default=None,
                        help="comma-separated catalogue names (added to --component)")
    parser.add_argument("--fmax", action="store_true",
                        help="also place and route on ECP5-85F and report Fmax (slower)")
    parser.add_argument("--no-resources", action="store_true",
                        help="skip the Yosys xc7 resource counts (with --fmax: Fmax only)")
    parser.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                        help="nextpnr target frequency in MHz (default 100)")
    parser.add_argument("--seed", type=int, default=1, metavar="N",
                        help="nextpnr placement seed (default 1)")
    parser.add_argument("--family", choices=("xc7", "xcup"), default="xc7",
                        help="Yosys synth_xilinx family: xc7 (Zynq-7000, PYNQ-Z2; default) or "
                             "xcup (Zynq UltraScale+: KV260, ZCU104)")
    parser.add_argument("--router", choices=("router1", "router2"), default=None,
                        help="nextpnr's router (default: its own, router1; router2 copes "
                             "better with congested designs such as attention_260k)")
    parser.add_argument("--pnr-timeout", type=float, default=None, metavar="SECONDS",
                        help="give up place and route of a component after this long "
                             "(it is reported as an error; the others still run)")
    parser.add_argument("--table", metavar="FILE.md", default=None,
                        help="also write the Fmax table (Markdown) to this file")
    parser.add_argument("--list", action="store_true",
                        help="print the catalogue (name and factory) and exit")


def _names(args, catalog) -> list[str] | None:
    names = list(args.component)
    if args.components:
        names += [n.strip() for n in args.components.split(",") if n.strip()]
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise InputError(f"--component: unknown {', '.join(unknown)} "
                         f"(known: {', '.join(catalog)})")
    return list(dict.fromkeys(names)) or None


def _resource_line(name: str, entry: dict) -> str:
    line = f"{name:24s}"
    x = entry.get("xilinx")
    if x:
        line += (f" LUT {x['LUT']:6d}  FF {x['FF']:6d}  LUTRAM {x['LUTRAM']:4d}  "
                 f"DSP {x['DSP']:3d}  RAMB18 {x['RAMB18']:3d}  RAMB36 {x['RAMB36']:3d}")
    e = entry.get("ecp5")
    if e:
        line += (f"  Fmax {e['fmax_mhz']:.1f} MHz" if "error" not in e
                 else f"  Fmax - ({e['error']})")
    return line


def run(args: argparse.Namespace) -> int:
    from speedllm.hw.catalog import CATALOG, TOPS
    from speedllm.hw.synth import fmax_table, report
    if args.list:
        for name, entry in CATALOG.items():
            print(f"{name:24s} {entry.describe()}")
        for name, entry in TOPS.items():
            print(f"{name:24s} {entry.describe()}  [whole top: only when named]")
        return 0
    names = _names(args, {**CATALOG, **TOPS})
    if args.freq <= 0:
        raise InputError(f"--freq must be positive, not {args.freq}")
    if args.pnr_timeout is not None and args.pnr_timeout <= 0:
        raise InputError(f"--pnr-timeout must be positive, not {args.pnr_timeout}")
    if args.no_resources and not args.fmax:
        raise InputError("--no-resources leaves nothing to do without --fmax")
    result = report(names, fmax=args.fmax, resources=not args.no_resources, freq=args.freq,
                    seed=args.seed, timeout=args.pnr_timeout, router=args.router,
                    family=args.family,
                    progress=lambda msg: print(f"hw-report: {msg}", file=sys.stderr,
                                               flush=True))
    text = json.dumps(result, indent=1)
    if args.out == "-":
        print(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"hw-report: wrote {out}", file=sys.stderr)
    for name, entry in result["components"].items():
        print(_resource_line(name, entry), file=sys.stderr)
    if args.fmax:
        table = fmax_table(result)
        print(table, file=sys.stderr, end="")
        if args.table:
            path = Path(args.table)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(table)
            print(f"hw-report: wrote {path}", file=sys.stderr)
    return 0
