"""Cycles per attention call vs pos at stories260K dims, measured on the RTL (Verilator).

Prints one JSON object: for the core (K/V streamed, no stalls) and for the unit (K/V read
through the AXI read master from a cocotbext-axi RAM), the cycles of single calls at each
position (each call also checked bit for bit against ``intops.attention``), and the
analytical ``cycle_estimate`` beside them.

    .venv/bin/python bench/attention_cycles.py [--positions 0,1,3,...] [--seq 512]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from speedllm.hw.attention import AttentionCore, AttentionUnit
from speedllm.sim.runner import run_cocotb

STORIES260K = {"head_size": 8, "n_heads": 8, "n_kv_heads": 4, "beat_bits": 64, "kv_bits": 16}


def measure(kind: str, params: dict, positions: list[int]) -> list[dict]:
    cls = AttentionUnit if kind == "unit" else AttentionCore
    p = {**params, "positions": positions, "unit": kind == "unit", "cycle_tolerance": 1e9}
    with tempfile.TemporaryDirectory() as tmp:
        p["out_json"] = os.path.join(tmp, "cycles.json")
        run_cocotb(lambda: cls(head_size=p["head_size"], n_heads=p["n_heads"],
                               n_kv_heads=p["n_kv_heads"], max_seq_len=p["max_seq_len"],
                               beat_bits=p["beat_bits"], kv_bits=p["kv_bits"]),
                   toplevel=f"attention_{kind}", test_module="speedllm.sim.tb_attention",
                   parameters=p, testcase="test_cycles")
        with open(p["out_json"]) as f:
            return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=512, help="max_seq_len (stories260K: 512)")
    ap.add_argument("--positions", default="0,1,3,7,15,31,63,127,255,511")
    ap.add_argument("--kinds", default="core,unit")
    args = ap.parse_args(argv)
    positions = [int(x) for x in args.positions.split(",") if int(x) < args.seq]
    params = {**STORIES260K, "max_seq_len": args.seq}
    out = {"dims": params, "source": "measured (RTL, Verilator via cocotb)", "results": {}}
    # the simulator writes its log to fd 1: send it to stderr, keep stdout for the JSON
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        for kind in args.kinds.split(","):
            out["results"][kind] = measure(kind, params, positions)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
