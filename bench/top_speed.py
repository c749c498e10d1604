"""Simulated cycles per second of the whole accelerator top in the Verilator C++ harness.

Usage::

    .venv/bin/python bench/top_speed.py                       # 4 positions, prints JSON
    .venv/bin/python bench/top_speed.py --positions 8 --no-check
    .venv/bin/python bench/top_speed.py --model stories260K.bin --poll-interval 64

Compiles stories260K (fused program, activations in the scratchpad), loads it into
:class:`speedllm.hw.accel_top.AcceleratorTop` in :class:`speedllm.sim.harness.Harness`
(DRAM model: 8 bytes/cycle, 20 cycles latency) and runs ``--positions`` greedy decode
steps through :class:`speedllm.sim.top_check.TopRunner`. Each step is timed around the
harness run only (wall: ``time.perf_counter``; CPU: ``time.process_time``), so compile,
build and the golden check stay out of the figures. With ``--check`` (the default) every
step is compared with the golden interpreter bit for bit
(:func:`speedllm.sim.top_check.compare_step`), which raises on a difference.

The JSON holds, per step and in total: the cycles the RTL counted (``total_cycles``
register: cycles per token), the clock cycles the harness ran, and simulated cycles per
wall second and per CPU second; plus the Verilator and C++ build flags, the 1-minute load
average and the CPU count (the machine is shared: wall figures fall with its load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stories260K.bin",
                        help="checkpoint (resolved like every model file)")
    parser.add_argument("--positions", type=int, default=4, help="decode steps to run")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare each step with the golden interpreter (default on)")
    parser.add_argument("--poll-interval", type=int, default=None,
                        help="cycles between status polls (default: the harness's)")
    parser.add_argument("--latency", type=int, default=20, help="DRAM read latency, cycles")
    parser.add_argument("--bandwidth", type=float, default=8.0,
                        help="DRAM bytes per cycle (0: no cap)")
    args = parser.parse_args(argv)
    if args.positions < 1:
        parser.error("--positions must be >= 1")

    from speedllm.golden.checkpoint import load_checkpoint
    from speedllm.hw.accel_top import AcceleratorTop
    from speedllm.ops.compiler import compile_model
    from speedllm.ops.interpreter import Interpreter
    from speedllm.paths import resolve_model_file
    from speedllm.sim.harness import Harness, build_flags
    from speedllm.sim.top_check import TopRunner, compare_step

    checkpoint = load_checkpoint(resolve_model_file(args.model))
    program = compile_model(checkpoint, act_space="scratchpad")
    t = time.perf_counter()
    extra = {} if args.poll_interval is None else {"poll_interval": args.poll_interval}
    h = Harness(AcceleratorTop(), "accel_top", dram_bytes=1 << 22, latency=args.latency,
                bandwidth_bytes_per_cycle=args.bandwidth, **extra)
    setup_s = time.perf_counter() - t
    runner = TopRunner(h)
    runner.load(program)
    ref = Interpreter.from_program(program) if args.check else None
    run_step = runner.step

    def timed_step(token, pos, **kw):
        """TopRunner.step plus its CPU seconds (the interpreter's are not the harness's)."""
        cpu = time.process_time()
        result = run_step(token, pos, **kw)
        result["cpu_s"] = time.process_time() - cpu
        return result

    runner.step = timed_step
    logits_region = program.layout["logits"]
    steps, raw, token = [], [], 1
    for pos in range(args.positions):
        if ref is not None:
            result = compare_step(runner, ref, token, pos)   # raises on a difference
        else:
            result = runner.step(token, pos)
        if result["error"]:
            raise SystemExit(f"step {pos}: the accelerator reported error code "
                             f"{result['error_code']} at command {result['failing_command']}")
        steps.append({"pos": pos, "token": token, "total_cycles": result["total_cycles"],
                      "sim_cycles": result["sim_cycles"], "wall_s": round(result["wall_s"], 4),
                      "cpu_s": round(result["cpu_s"], 4),
                      "cycles_per_wall_s": round(result["sim_cycles"] / result["wall_s"]),
                      "cycles_per_cpu_s": round(result["sim_cycles"] / result["cpu_s"])})
        raw.append((result["sim_cycles"], result["wall_s"], result["cpu_s"]))
        logits = runner.image()[logits_region.addr:logits_region.addr + logits_region.size]
        token = int(np.argmax(logits.view(np.int32)))        # greedy, from the RTL's logits
    h.close()
    sim, wall, cpu = (sum(column) for column in zip(*raw))
    report = {
        "what": "accelerator top in the C++ harness, simulated cycles per second (measured)",
        "model": args.model, "program": "fused, scratchpad activations",
        "positions": args.positions, "checked_against_golden": args.check,
        "cycles_per_token": round(sum(s["total_cycles"] for s in steps) / len(steps)),
        "sim_cycles": sim, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "cycles_per_wall_s": round(sim / wall), "cycles_per_cpu_s": round(sim / cpu),
        "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "setup_s (convert+build or cache)": round(setup_s, 2),
        "dram": {"latency": args.latency, "bytes_per_cycle": args.bandwidth},
        "poll_interval": h.poll_interval, "build": build_flags(), "steps": steps}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
