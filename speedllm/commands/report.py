"""Regenerate the performance report: Markdown tables and stamped matplotlib figures.

Writes DIR/report.md, DIR/report.json and PNGs: per-command-class latency breakdown,
roofline, SpeedLLM ablation bars, the design-space sweep's Pareto fronts (run on a process
pool) and, with --resources, resource bars from a `speedllm hw-report` JSON. Each figure
is stamped with the commit, the tool versions and whether it is measured or estimated.

--source model (default) takes cycles from the analytical cycle model (about a minute);
--source rtl from the accelerator RTL (stories260K on pynq-z2 only, unless --long).
--long: more shapes (stories42M, tinyllama) and a much larger sweep.
Unless --no-rtl-check, one decode step of stories260K (with --long also stories15M) runs on
the accelerator RTL: measured cycles, and the cycle model's error against them.

Examples:
  speedllm report --out report
  speedllm hw-report --out report/hw.json && speedllm report --out report --resources report/hw.json
  speedllm report --out report --source rtl --long
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from speedllm.errors import InputError

HELP = "regenerate the performance report (Markdown + stamped figures) into a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--source", choices=("model", "rtl"), default="model",
                        help="cycle figures from the analytical model (default) or the RTL")
    parser.add_argument("--long", action="store_true",
                        help="more shapes and a larger sweep (RTL: every shape and board)")
    parser.add_argument("--resources", metavar="FILE.json", default=None,
                        help="a `speedllm hw-report` JSON for the resource bars")
    parser.add_argument("--workers", type=int, default=None,
                        help="sweep processes (default: every local core)")
    parser.add_argument("--lanes", type=int, default=8, help="MatVec lanes (default 8)")
    parser.add_argument("--no-rtl-check", action="store_true",
                        help="skip the RTL run that checks the cycle model (stories260K; "
                             "with --long also stories15M: a few minutes each)")


def run(args: argparse.Namespace) -> int:
    from speedllm.ops.report import build_report
    if args.resources and not Path(args.resources).is_file():
        raise InputError(f"{args.resources}: resource report not found "
                         f"(make one with `speedllm hw-report --out FILE.json`)")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be positive, not {args.workers}")
    start = time.monotonic()

    def progress(msg):
        print(f"report [{time.monotonic() - start:6.1f} s]: {msg}", file=sys.stderr,
              flush=True)
    data = build_report(args.out, source=args.source, long=args.long,
                        resources=args.resources, workers=args.workers, lanes=args.lanes,
                        checks=() if args.no_rtl_check else None, progress=progress)
    if data["figures"]:
        print(f"report: {len(data['figures'])} figures in {args.out}", file=sys.stderr)
    else:
        print("report: no figures (matplotlib missing: pip install -e '.[report]')",
              file=sys.stderr)
    print(Path(args.out) / "report.md")
    return 0
