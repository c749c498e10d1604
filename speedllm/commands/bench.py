"""Cycles/token, projected tok/s, roofline fraction and energy/token of one decode step.

The cycle figures come from --source: "model" (the analytical cycle model, instant; every
figure derived from it is an estimate) or "rtl" (the accelerator RTL through
speedllm.host.rtl_cycles, measured cycles). tok/s is projected at the board profile's fabric
clock (an assumed target) unless --fmax gives one. Energy is always estimated (ops/energy.py).
The JSON field "estimated" lists every figure that is an estimate.

Shapes: stories260K (read from the real checkpoint), the synthetic stories15M, stories42M,
stories110M, tinyllama (shapes only: no weight file is made), or a checkpoint path.

--ablation runs the variants naive (no stream overlap, no fusion, no reuse), stream, fuse,
reuse (each alone) and all, and gives speedup = naive cycles / all cycles and
energy_ratio = naive J / all J.

--check-model runs the step on the RTL (measured) and the analytical cycle model
(estimated) and prints the model's error per command class and in total.

Examples:
  speedllm bench --shape stories15M --board pynq-z2 --json
  speedllm bench --shape stories110M --board zcu104 --lanes 64
  speedllm bench --ablation --shape stories15M --board pynq-z2 --json
  speedllm bench --check-model --shape stories260K --board pynq-z2 --pos 256
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "cycles/token, tok/s, roofline fraction, energy/token; --ablation: SpeedLLM's comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", required=True,
                        help="stories260K (real checkpoint), stories15M, stories42M, "
                             "stories110M, tinyllama (synthetic shapes) or a checkpoint path")
    parser.add_argument("--board", required=True,
                        help="board profile: pynq-z2, kv260, zcu104, u280, ulx3s-85f")
    parser.add_argument("--source", choices=("model", "rtl"), default="model",
                        help="cycle figures from the analytical model (default) or the RTL")
    parser.add_argument("--ablation", action="store_true",
                        help="naive, stream, fuse, reuse, all variants and their ratios")
    parser.add_argument("--check-model", action="store_true",
                        help="compare the cycle model with the RTL's measured cycles "
                             "(builds the RTL for the shape: minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lanes", type=int, default=8, help="MatVec MAC lanes (default 8)")
    parser.add_argument("--attention-lanes", type=int, default=4,
                        help="attention MAC lanes (default 4)")
    parser.add_argument("--pos", type=int, default=None,
                        help="position of the decode step (default seq_len // 2)")
    parser.add_argument("--fmax", type=float, default=None, metavar="MHZ",
                        help="clock for tok/s (default: the board's fabric clock target)")
    parser.add_argument("--no-reuse-memory", choices=("dram", "separate"), default="dram",
                        help="what 'reuse off' means: activations round-trip through DRAM "
                             "(default) or one scratchpad buffer per tensor")


def _fmt_bytes(n: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n:.0f} B"


def _single_table(r: dict) -> str:
    est = set(r["estimated"])

    def mark(name):
        return " *" if name in est else ""
    rows = [
        ("shape", f"{r['shape']} ({r['shape_origin']})"),
        ("board / source", f"{r['board']} / {r['source']}"),
        ("config", ", ".join(f"{k}={v}" for k, v in r["config"].items())),
        ("cycles/token" + mark("cycles_per_token"), f"{r['cycles_per_token']:,.0f}"),
        ("fmax" + mark("fmax_mhz"), f"{r['fmax_mhz']:g} MHz ({r['fmax_source']})"),
        ("tok/s" + mark("tok_per_s"), f"{r['tok_per_s']:.2f}"),
        ("roofline tok/s", f"{r['roofline_tok_per_s']:.2f} (DRAM peak / weight bytes)"),
        ("roofline fraction" + mark("roofline_fraction"), f"{r['roofline_fraction']:.3f}"),
        ("weight bytes/token", _fmt_bytes(r["weight_bytes_per_token"])),
        ("DRAM bytes/token" + mark("dram_bytes_per_token"),
         _fmt_bytes(r["dram_bytes_per_token"])),
        ("scratchpad", _fmt_bytes(r["scratchpad_bytes"])),
        ("energy/token" + mark("energy_j_per_token"),
         f"{r['energy_j_per_token'] * 1e3:.3f} mJ ({r['tokens_per_j']:.1f} tok/J, "
         f"{r['power_w']:.2f} W)"),
    ]
    w = max(len(k) for k, _ in rows)
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    total = r["cycles_per_token"]
    lines.append("cycles by class" + mark("cycles_by_class") + ": " + ", ".join(
        f"{k} {100 * v / total:.1f}%" for k, v in
        sorted(r["cycles_by_class"].items(), key=lambda kv: -kv[1])))
    lines += [f"note: {n}" for n in r["notes"]]
    lines.append("* estimated")
    return "\n".join(lines)


def _ablation_table(r: dict) -> str:
    lines = [f"ablation: {r['shape']} on {r['board']}, source {r['source']}, "
             f"{', '.join(f'{k}={v}' for k, v in r['config'].items())}, "
             f"fmax {r['fmax_mhz']:g} MHz",
             f"{'variant':8} {'cycles/token':>14} {'tok/s':>9} {'DRAM/token':>11} "
             f"{'scratchpad':>11} {'mJ/token':>9}  description"]
    for name, v in r["variants"].items():
        lines.append(f"{name:8} {v['cycles_per_token']:14,.0f} {v['tok_per_s']:9.2f} "
                     f"{_fmt_bytes(v['dram_bytes_per_token']):>11} "
                     f"{_fmt_bytes(v['scratchpad_bytes']):>11} "
                     f"{v['energy_j_per_token'] * 1e3:9.3f}  {v['description']}")
    if "speedup" in r:
        lines.append(f"all over naive: speedup {r['speedup']:.2f}x, energy ratio "
                     f"{r['energy_ratio']:.2f}x")
    lines.append(f"estimated: {', '.join(r['estimated'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from speedllm.ops.bench import ablation, bench

    kw = dict(source=args.source, lanes=args.lanes, attention_lanes=args.attention_lanes,
              pos=args.pos, fmax_mhz=args.fmax, no_reuse_memory=args.no_reuse_memory)

    def progress(msg):
        if args.source == "rtl":          # the model source is instant
            print(f"bench: {msg}", file=sys.stderr, flush=True)
    if args.check_model:
        from speedllm.errors import InputError
        from speedllm.ops.model_check import check_model, format_check
        if args.ablation:
            raise InputError("--check-model and --ablation are separate runs; pick one")
        result = check_model(args.shape, args.board, pos=args.pos, lanes=args.lanes,
                             attention_lanes=args.attention_lanes,
                             progress=lambda m: print(f"bench: {m}", file=sys.stderr,
                                                      flush=True))
        text = format_check(result)
    elif args.ablation:
        result = ablation(args.shape, args.board, progress=progress, **kw)
        text = _ablation_table(result)
    else:
        progress(f"{args.shape} on {args.board}")
        result = bench(args.shape, args.board, **kw)
        text = _single_table(result)
    print(json.dumps(result, indent=1) if args.json else text)
    return 0
