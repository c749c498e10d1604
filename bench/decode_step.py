"""Benchmark figures of a decode step for every shape on every board profile, as JSON.

Usage::

    .venv/bin/python bench/decode_step.py                        # model source, all boards
    .venv/bin/python bench/decode_step.py --shape stories15M stories110M --board pynq-z2 \\
        --lanes 8 16 --ablation --out build/bench.json
    .venv/bin/python bench/decode_step.py --source rtl --shape stories260K --board pynq-z2

One :func:`speedllm.ops.bench.bench` object per (shape, board, lanes), and with
``--ablation`` one :func:`speedllm.ops.bench.ablation` object each too. With the default
``--source model`` every cycle figure is an analytical estimate (see each object's
``estimated``); ``--source rtl`` measures cycles on the RTL (slow: progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from speedllm.ops.bench import ablation, bench
from speedllm.ops.boards import board_names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs="+", default=["stories260K", "stories15M", "stories110M"])
    ap.add_argument("--board", nargs="+", default=list(board_names()))
    ap.add_argument("--lanes", nargs="+", type=int, default=[8])
    ap.add_argument("--source", choices=("model", "rtl"), default="model")
    ap.add_argument("--ablation", action="store_true", help="also the ablation of each point")
    ap.add_argument("--out", default="-", help="JSON file (default: stdout)")
    a = ap.parse_args(argv)
    start = time.monotonic()
    runs = [(s, b, n) for s in a.shape for b in a.board for n in a.lanes]
    results, ablations = [], []
    for i, (shape, board, lanes) in enumerate(runs, 1):
        print(f"[{time.monotonic() - start:7.1f} s] {shape} on {board}, {lanes} lanes "
              f"({i}/{len(runs)})", file=sys.stderr, flush=True)
        results.append(bench(shape, board, source=a.source, lanes=lanes))
        if a.ablation:
            ablations.append(ablation(shape, board, source=a.source, lanes=lanes))
    out = {"source": a.source, "results": results}
    if a.ablation:
        out["ablations"] = ablations
    text = json.dumps(out, indent=1)
    if a.out == "-":
        print(text)
    else:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from speedllm.errors import SpeedLLMError
    try:
        sys.exit(main())
    except SpeedLLMError as e:
        print(f"decode_step: error: {e}", file=sys.stderr)
        sys.exit(1)
