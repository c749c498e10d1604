"""Simulated cycles per second of the Verilator C++ harness (DRAM model + AXI-Lite master).

Usage::

    .venv/bin/python bench/harness_speed.py                  # prints JSON
    .venv/bin/python bench/harness_speed.py --beats 4000000 --data-width 128

The DUT is :class:`speedllm.hw.dma_copy.DmaCopy` copying ``--beats`` bus words from one
DRAM region to another (read master -> write master), started and polled over AXI-Lite
from Python with one ``run_until`` call; the DRAM model serves both masters. Each case
reports the cycles the copy took (the DUT's own ``cycles`` register and the harness's
clock count), the wall and CPU seconds of the ``run_until`` call, and simulated cycles per
wall second and per CPU second (the machine is shared: wall figures drop with its load,
which is reported as the 1-minute load average). Everything is measured; nothing assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def run_case(h, beats, bytes_per_beat, bandwidth, latency):
    """One long copy; the measured figures as a dict."""
    from speedllm.hw.dma_copy import STATUS_DONE
    h.set_bandwidth(bandwidth)
    h.set_latency(latency)
    h.reset_counters()
    src, dst = 0, beats * bytes_per_beat
    h.write_reg("src", src)
    h.write_reg("dst", dst)
    h.write_reg("beats", beats)
    start_cycles = h.cycles
    wall, cpu = time.perf_counter(), time.process_time()
    h.write_reg("control", 1)
    h.run_until("status", STATUS_DONE, STATUS_DONE, max_cycles=50 * beats + 100_000,
                poll_interval=1024)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cycles = h.cycles - start_cycles
    ok = bool(np.array_equal(h.dram[src:src + dst], h.dram[dst:2 * dst]))
    c = h.counters()
    return {"beats": beats, "bandwidth_bytes_per_cycle": bandwidth, "latency": latency,
            "copy_cycles": h.read_reg("cycles"), "harness_cycles": cycles,
            "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
            "cycles_per_wall_s": round(cycles / wall), "cycles_per_cpu_s": round(cycles / cpu),
            "bytes_read": c["bytes_read"], "bytes_written": c["bytes_written"],
            "bandwidth_stall_cycles": c["bandwidth_stall_cycles"], "copy_correct": ok}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=2_000_000, help="bus words copied")
    parser.add_argument("--data-width", type=int, default=64, help="AXI data width (bits)")
    args = parser.parse_args(argv)

    from speedllm.hw.dma_copy import DmaCopy
    from speedllm.sim.harness import Harness
    bytes_per_beat = args.data_width // 8
    t = time.perf_counter()
    h = Harness(DmaCopy(data_width=args.data_width, max_outstanding=4), "dma_copy",
                dram_bytes=2 * args.beats * bytes_per_beat, max_outstanding=4)
    setup_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    h.dram[:args.beats * bytes_per_beat] = rng.integers(0, 256, args.beats * bytes_per_beat,
                                                         dtype=np.uint8)
    cases = [run_case(h, args.beats, bytes_per_beat, bw, lat)
             for bw, lat in [(0, 1), (bytes_per_beat, 40)]]
    h.close()
    report = {"what": "harness simulated cycles per second, DmaCopy long copy (measured)",
              "data_width": args.data_width, "setup_s (convert+build or cache)": round(setup_s, 2),
              "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
              "cases": cases}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0 if all(c["copy_correct"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
