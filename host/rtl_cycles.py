"""Measured cycles of a compiled program on the accelerator RTL (the ``rtl`` source of
:mod:`speedllm.ops.bench`).

:func:`measure` builds (or loads) the Verilator harness of
:class:`~speedllm.hw.accel_top.AcceleratorTop` for the program's model
(:func:`speedllm.host.rtl.hardware_config_for`), sets the DRAM model from a board profile
(bytes per cycle at the fabric clock, read latency in cycles), loads the image and runs
``steps`` decode steps from position ``pos``. Every cycle figure is read from the RTL's
own counters (``total_cycles``, per command class, bytes on the AXI ports): measured.

``stream=False`` is the ablation's "no stream overlap" variant. The RTL always streams;
what this switch changes is the memory system: one burst in flight per port, so each
burst's DRAM latency is paid in full and never overlaps another transfer or the compute.
The figures say so in ``notes``.
"""

from __future__ import annotations

import time

from speedllm.hw.accel_regs import COUNTER_CLASSES, counter_name

__all__ = ["measure"]

_HARNESSES: dict = {}


def _harness(config, board, dram_bytes: int, outstanding: int):
    from .rtl import top_harness
    key = (config, board.name, dram_bytes, outstanding)
    if key not in _HARNESSES:
        _HARNESSES[key] = top_harness(config, board, dram_bytes=dram_bytes,
                                      max_outstanding=outstanding)
    return _HARNESSES[key]


def measure(program, board, *, steps: int = 1, pos: int = 0, stream: bool = True,
            token: int = 1) -> dict:
    """Run ``steps`` steps of ``program`` from position ``pos``; return the mean cycles
    per step, the cycles per command class, DRAM bytes per step and the simulator speed."""
    from speedllm.errors import AcceleratorError
    from speedllm.ops.boards import get_board
    from speedllm.sim.top_check import TopRunner
    from .rtl import _round_up_pow2, dram_model, hardware_config_for
    board = get_board(board)
    args = program.args
    if not (0 <= pos and pos + steps <= args.seq_len):
        raise ValueError(f"positions {pos}..{pos + steps - 1} outside the context")
    config = hardware_config_for(args, program.scratchpad_bytes)
    dram_bytes = _round_up_pow2(len(program.image) + len(program.words) + (1 << 16), 1 << 20)
    h = _harness(config, board, dram_bytes, 8 if stream else 1)
    runner = TopRunner(h, timeout_cycles=0)
    runner.load(program)
    totals, by_class, moved = [], {}, 0
    sim_cycles, wall = 0, 0.0
    for p in range(pos, pos + steps):
        t0 = time.perf_counter()
        r = runner.step(token, p, max_cycles=1 << 40)
        wall += time.perf_counter() - t0
        sim_cycles += r["sim_cycles"]
        if r["error"]:
            raise AcceleratorError(f"RTL step at position {p} ended with error code "
                                   f"{r['error_code']} at command {r['failing_command']}")
        totals.append(r["total_cycles"])
        for k, cls in enumerate(COUNTER_CLASSES):
            c = h.read_reg(counter_name("cycles", k))
            if c:
                by_class[cls] = by_class.get(cls, 0) + c
        moved += h.read_reg("bytes_read") + h.read_reg("bytes_written")
    bytes_per_cycle, latency = dram_model(board)
    notes = [f"measured on the RTL (Verilator harness), DRAM model of {board.name}: "
             f"{bytes_per_cycle:.2f} B/cycle, latency {latency} cycles"]
    if not stream:
        notes.append("stream overlap off: one burst in flight per AXI port (the DRAM "
                     "latency of every burst is paid in full)")
    return {"cycles_per_token": sum(totals) / len(totals),
            "cycles_by_command": {k: v / len(totals) for k, v in by_class.items()},
            "dram_bytes_per_token": moved // len(totals),
            "sim_cycles_per_s": sim_cycles / wall if wall else 0.0,
            "notes": notes}
