"""The accelerator RTL as a PYNQ device: the ``rtl`` backend's machinery.

:func:`hardware_config_for` picks the :class:`~speedllm.hw.accel_regs.HardwareConfig` a
model needs (the head shape is built into the attention and RoPE units; the other limits
are rounded up so that similar models share one Verilator build).
:class:`RtlDevice` builds (or loads from the cache) the Verilator harness of
:class:`~speedllm.hw.accel_top.AcceleratorTop` for that configuration, with the DRAM model
set from a board profile, and serves it as a :class:`~speedllm.host.sim_device.HarnessBus`.
The host driver then runs on it exactly as on a board.

Measured per step (by the harness, not estimated): ``total_cycles`` and the per-class
counters (from the RTL's own registers) and ``sim_cycles_per_s`` (simulated clock cycles
per wall second of the harness).
"""

from __future__ import annotations

import sys
import time

from speedllm.errors import InputError

__all__ = ["hardware_config_for", "dram_model", "top_harness", "RtlDevice", "DEFAULT_BOARD"]

#: The board profile whose DRAM the rtl backend models unless told otherwise.
DEFAULT_BOARD = "pynq-z2"
DRAM_BASE = 0x1000_0000


def _round_up_pow2(n: int, floor: int) -> int:
    v = floor
    while v < n:
        v *= 2
    return v


def hardware_config_for(args, scratchpad_bytes: int = 0):
    """The top configuration for a model's :class:`~speedllm.golden.checkpoint.ModelArgs`."""
    from speedllm.hw.accel_regs import HardwareConfig
    if args.dim % args.n_heads:
        raise InputError(f"dim {args.dim} is not a multiple of n_heads {args.n_heads}")
    return HardwareConfig(
        max_dim=_round_up_pow2(args.dim, 512), max_hidden_dim=_round_up_pow2(args.hidden_dim, 1024),
        max_rows=_round_up_pow2(args.vocab_size, 4096),
        max_seq_len=_round_up_pow2(args.seq_len, 512), max_heads=args.n_heads,
        scratchpad_bytes=_round_up_pow2(scratchpad_bytes, 1 << 16),
        head_size=args.dim // args.n_heads, n_heads=args.n_heads, n_kv_heads=args.n_kv_heads)


def dram_model(board) -> tuple[float, int]:
    """``(bytes per cycle, read latency in cycles)`` of a board profile at its fabric clock:
    the harness's DRAM model for that board."""
    f_hz = board.fabric_mhz * 1e6
    return (board.dram_attainable_bytes_per_s / f_hz,
            max(1, round(board.dram_read_latency_ns * 1e-9 * f_hz)))


def top_harness(config, board, *, dram_bytes: int, max_outstanding: int = 8):
    """The Verilator harness of the accelerator top built for ``config``, its DRAM model set
    from ``board`` (a :class:`~speedllm.ops.boards.BoardProfile`), memory at
    :data:`DRAM_BASE`."""
    from speedllm.hw.accel_top import AcceleratorTop
    from speedllm.sim.harness import Harness
    bytes_per_cycle, latency = dram_model(board)
    return Harness(AcceleratorTop(config), "accel_top", dram_base=DRAM_BASE,
                   dram_bytes=_round_up_pow2(dram_bytes, 1 << 20),
                   bandwidth_bytes_per_cycle=bytes_per_cycle, latency=latency,
                   max_outstanding=max_outstanding)


class RtlDevice:
    """The accelerator top in the Verilator harness, with a board's DRAM model.

    Parameters
    ----------
    config : HardwareConfig
        What to build (:func:`hardware_config_for`).
    dram_bytes : int
        Memory the host may allocate (image, program).
    board : str
        Board profile for the DRAM model: bytes per cycle at the fabric clock (the
        profile's attainable bandwidth) and read latency in cycles.
    progress : bool
        Say on stderr that a build is running (the first build takes minutes).
    """

    def __init__(self, config, *, dram_bytes: int, board: str = DEFAULT_BOARD,
                 progress: bool = True):
        from speedllm.ops.boards import get_board
        from .sim_device import HarnessBus
        profile = get_board(board)
        self.board = profile.name
        self.bytes_per_cycle, self.latency = dram_model(profile)
        if progress:
            print("speedllm: building/loading the Verilator model of the accelerator "
                  "(a first build takes a few minutes)...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        self.harness = top_harness(config, profile, dram_bytes=dram_bytes)
        self.build_s = time.monotonic() - t0
        self.bus = HarnessBus(self.harness)
        self.config = config

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return self.harness.cycles

    def close(self) -> None:
        self.harness.close()
