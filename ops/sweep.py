"""Design-space sweep over the cycle model: lanes x buffer sizes x board -> tok/s and resources.

**Analytical**: tok/s comes from :mod:`speedllm.ops.cyclemodel`, resources from the simple
per-lane model below (:class:`ResourceModel`), to be replaced by Yosys counts. Neither is
a measurement.

A :class:`SweepPoint` fixes the model shape, board, MatVec lanes, attention lanes, the
scratchpad size, the read master's bursts in flight (its buffer), buffer reuse, streaming and
fusion. :func:`evaluate_point` plans the scratchpad for the fused graph: if the plan (with or
without liveness reuse) fits in ``scratchpad_kib``, activations stay on chip; otherwise
every tensor round-trips through DRAM (``memory="dram"`` in the cycle model, a coarse
all-or-nothing spill rule). :func:`run_sweep` evaluates points on any
``concurrent.futures.Executor`` (default: a ``ProcessPoolExecutor`` over the local cores);
:func:`pareto_front` keeps the points no other point beats on both tok/s and a cost
(``dsp``, ``bram``).

Resource model (per design, for families ``xc7``/``xcup`` with DSP48 and ``ecp5`` with
MULT18X18D; the constants are :class:`ResourceModel` fields):

- DSP = ``lanes`` (one int8 x int16 product per DSP) + ``attention_lanes`` + fixed units
  (group-scale multiply, RmsNorm, RoPE, embedding, softmax).
- LUT, FF = per lane x lanes + per attention lane x attention_lanes + fixed (AXI masters,
  sequencer, CSR block, element-wise units).
- BRAM: each on-chip buffer packed into the device's blocks in its best aspect ratio
  (36 Kb: 72x512 ... 1x32768; ECP5 18 Kb: 36x512 ... 1x16384): the MatVec activation
  buffer (``16 L`` bits x ``padded_cols / L``), the scratchpad (64-bit words), the
  attention score memory (32 bits x ``n_heads * seq_len``), the attention q/accumulator
  memories, the RmsNorm buffer (32 bits x ``dim``) and the read FIFOs
  (``max_outstanding * burst_beats`` beats per port). A memory of 64 words or fewer goes to
  LUT RAM instead (``lutram_luts`` added to the LUTs), as Yosys does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from speedllm.golden.formats import DEFAULT_GROUP_SIZE

from .boards import BoardProfile, board_names, get_board
from .cyclemodel import AcceleratorConfig, bandwidth, estimate_graph
from .fusion import FusionConfig, fuse
from .graph import MODEL_SHAPES, OpGraph, build_graph, round_up
from .memplan import plan_memory

__all__ = ["ResourceModel", "SweepPoint", "SweepResult", "SerialExecutor", "bram_blocks",
           "lutram_luts", "evaluate_point", "grid", "pareto_front", "plot_pareto", "resource_estimate",
           "run_sweep"]

_BRAM_SHAPES = {  # block kbits -> (width, depth) configurations, widest first
    36: [(72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384), (1, 32768)],
    18: [(36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)],
}
LUTRAM_MAX_DEPTH = 64


def bram_blocks(width: int, depth: int, block_kbits: int) -> int:
    """Fewest blocks holding a ``width`` x ``depth`` memory (best aspect ratio)."""
    if width <= 0 or depth <= 0:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in _BRAM_SHAPES[block_kbits])


@dataclass(frozen=True)
class ResourceModel:
    """Per-lane resource constants (estimates, to be replaced by Yosys ``stat`` counts).

    The MatVec figures follow a Yosys ``synth_xilinx -family xc7`` run of
    :class:`~speedllm.hw.matvec.MatVecEngine` (group size 32, ``max_cols`` 2048; its FIFOs
    not counted) at 8 / 16 / 32 lanes: DSP48E1 10 / 18 / 34 (= lanes + 2), LUT 886 / 1009 /
    1306 (plus LUT RAM), FF 602 / 773 / 1629: about 20 LUTs and up to 55 FFs per lane. The
    fixed and attention figures are assumptions for units not yet synthesized together.
    """

    dsp_per_lane: float = 1.0
    dsp_per_attention_lane: float = 1.0
    dsp_fixed: float = 12.0       # group scale 2 (measured), RmsNorm 2, RoPE 4, embed 1, softmax 3
    lut_per_lane: float = 20.0
    ff_per_lane: float = 55.0
    lut_per_attention_lane: float = 120.0
    ff_per_attention_lane: float = 150.0
    lut_fixed: float = 9000.0     # matvec ~700 + AXI masters, sequencer, CSR, RmsNorm, RoPE,
    ff_fixed: float = 11000.0     # softmax, divider (assumed)


@dataclass(frozen=True)
class SweepPoint:
    """One design point (see the module docstring)."""

    model: str
    board: str
    lanes: int
    scratchpad_kib: float
    max_outstanding: int = 4
    attention_lanes: int = 4
    reuse: bool = True
    stream: bool = True
    fusion: FusionConfig = field(default_factory=FusionConfig)
    pos: int | None = None


@dataclass(frozen=True)
class SweepResult:
    point: SweepPoint
    tok_s: float
    cycles_per_token: float
    roofline_fraction: float
    dram_bytes_per_token: int
    memory: str                   # "reuse"/"separate" (on chip) or "dram" (spilled)
    scratchpad_needed_bytes: int
    dsp: int
    lut: int
    ff: int
    bram: int
    buffers: dict
    fits: bool
    fits_detail: dict

    def to_dict(self) -> dict:
        d = asdict(self)
        d["point"]["fusion"] = self.point.fusion.name
        return d


@lru_cache(maxsize=64)
def _graph(model: str, pos: int | None, fusion: FusionConfig) -> OpGraph:
    return fuse(build_graph(MODEL_SHAPES[model], pos), fusion)


@lru_cache(maxsize=256)
def _plan_bytes(model: str, pos: int | None, fusion: FusionConfig, reuse: bool) -> int:
    return plan_memory(_graph(model, pos, fusion), reuse=reuse).scratchpad_bytes


def lutram_luts(width: int, depth: int) -> int:
    """LUTs of a shallow memory in LUT RAM: RAM64M-style, 3 bits x 64 per 4 LUTs."""
    return math.ceil(width / 3) * 4 * math.ceil(depth / 64)


def resource_estimate(point: SweepPoint, board: BoardProfile,
                      model: ResourceModel = ResourceModel()) -> dict:
    """DSP, LUT, FF and BRAM blocks of ``point`` on ``board`` (per-lane model).

    A memory of ``LUTRAM_MAX_DEPTH`` words or fewer goes to LUT RAM (its LUTs are added),
    as Yosys maps the MatVec activation buffer at 32 lanes; deeper ones to block RAM.
    """
    args = MODEL_SHAPES[point.model]
    L, A, kb = point.lanes, point.attention_lanes, board.bram_block_kbits
    bw = bandwidth(board, AcceleratorConfig(max_outstanding=point.max_outstanding))
    max_cols = round_up(max(args.dim, args.hidden_dim), max(DEFAULT_GROUP_SIZE, L))
    memories = {   # name -> (width bits, depth words, copies)
        "matvec_x": (16 * L, max_cols // L, 1),
        "scratchpad": (64, math.ceil(point.scratchpad_kib * 1024 / 8), 1),
        "attention_scores": (32, args.n_heads * args.seq_len, 1),
        "attention_q_acc": (32 * A, math.ceil(args.dim / A), 2),
        "rmsnorm": (32, args.dim, 1),
        "read_fifos": (bw.axi_bytes * 8, point.max_outstanding * bw.burst_beats, bw.ports),
    }
    buffers, lutram = {}, 0
    for name, (width, depth, copies) in memories.items():
        if depth <= LUTRAM_MAX_DEPTH:
            buffers[name] = 0
            lutram += copies * lutram_luts(width, depth)
        else:
            buffers[name] = copies * bram_blocks(width, depth, kb)
    return {"dsp": math.ceil(model.dsp_per_lane * L + model.dsp_per_attention_lane * A
                             + model.dsp_fixed),
            "lut": math.ceil(model.lut_per_lane * L + model.lut_per_attention_lane * A
                             + model.lut_fixed) + lutram,
            "ff": math.ceil(model.ff_per_lane * L + model.ff_per_attention_lane * A
                            + model.ff_fixed),
            "bram": sum(buffers.values()), "buffers": buffers, "lutram_luts": lutram}


def evaluate_point(point: SweepPoint, resources: ResourceModel = ResourceModel()) -> SweepResult:
    """tok/s (cycle model) and resources (per-lane model) of one point; picklable."""
    board = get_board(point.board)
    graph = _graph(point.model, point.pos, point.fusion)
    needed = _plan_bytes(point.model, point.pos, point.fusion, point.reuse)
    if needed <= point.scratchpad_kib * 1024:
        memory = "reuse" if point.reuse else "separate"
    else:
        memory = "dram"
    cfg = AcceleratorConfig(lanes=point.lanes, attention_lanes=point.attention_lanes,
                            stream=point.stream, fusion=point.fusion, memory=memory,
                            max_outstanding=point.max_outstanding)
    est = estimate_graph(graph, board, cfg)
    res = resource_estimate(point, board, resources)
    detail = {"dsp": res["dsp"] <= board.dsp, "lut": res["lut"] <= board.lut,
              "ff": res["ff"] <= board.ff, "bram": res["bram"] <= board.bram_blocks}
    return SweepResult(point, est.tok_s, est.cycles_per_token, est.roofline_fraction,
                       est.dram_bytes_per_token, memory, needed, res["dsp"], res["lut"],
                       res["ff"], res["bram"], res["buffers"], all(detail.values()), detail)


def grid(models=("stories15M",), boards=("pynq-z2", "zcu104"), lanes=(4, 8, 16, 32, 64),
         scratchpad_kib=(2, 4, 16), max_outstanding=(4,), attention_lanes=(4,),
         reuse=(True,), stream=(True,), fusion=(FusionConfig(),), pos=None) -> list[SweepPoint]:
    """The cartesian product of the given values, as points."""
    return [SweepPoint(m, b, n, s, o, a, r, st, f, pos) for m, b, n, s, o, a, r, st, f in
            itertools.product(models, boards, lanes, scratchpad_kib, max_outstanding,
                              attention_lanes, reuse, stream, fusion)]


class SerialExecutor(Executor):
    """Runs each call at ``submit`` in the caller's thread (tests, debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:          # delivered through the future, like a pool
            fut.set_exception(e)
        return fut


def run_sweep(points: list[SweepPoint], executor: Executor | None = None,
              max_workers: int | None = None) -> list[SweepResult]:
    """Evaluate ``points`` (in order) on ``executor``; default a process pool of
    ``max_workers`` (default: every local core)."""
    if executor is not None:
        return list(executor.map(evaluate_point, points))
    workers = max_workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunk = max(1, len(points) // (4 * workers))
        return list(pool.map(evaluate_point, points, chunksize=chunk))


def pareto_front(results: list[SweepResult], cost: str = "dsp", *,
                 fitting_only: bool = True) -> list[SweepResult]:
    """The non-dominated results for (tok/s up, ``cost`` down), by increasing cost.

    A result is dominated when another has at least its tok/s at no more cost, and is
    strictly better in one. Group the results first (e.g. by board) for per-board fronts.
    """
    pool = [r for r in results if r.fits or not fitting_only]
    front, best = [], -math.inf
    for r in sorted(pool, key=lambda r: (getattr(r, cost), -r.tok_s)):
        if r.tok_s > best:
            front.append(r)
            best = r.tok_s
    return front


def plot_pareto(results: list[SweepResult], path: str, cost: str = "dsp") -> str | None:
    """Scatter tok/s against ``cost`` per board with each board's front; needs matplotlib
    (optional, not installed by default): without it, prints why and returns None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_pareto: matplotlib is not installed (pip install matplotlib, or the "
              "'report' extra); no plot written", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for board in sorted({r.point.board for r in results}):
        rs = [r for r in results if r.point.board == board]
        dots = ax.scatter([getattr(r, cost) for r in rs], [r.tok_s for r in rs], s=12,
                          alpha=0.5, label=board)
        front = pareto_front(rs, cost)
        ax.plot([getattr(r, cost) for r in front], [r.tok_s for r in front],
                color=dots.get_facecolor()[0], drawstyle="steps-post")
    ax.set_xlabel(cost.upper())
    ax.set_ylabel("tok/s (analytical estimate)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(results: list[SweepResult]) -> str:
    fronts = {(b, c): {id(r) for r in pareto_front([r for r in results if r.point.board == b], c)}
              for b in {r.point.board for r in results} for c in ("dsp", "bram")}
    head = (f"{'model':12} {'board':10} {'lanes':>5} {'att':>4} {'spad':>5} {'mem':>8} "
            f"{'tok/s':>9} {'roof%':>6} {'DSP':>5} {'LUT':>7} {'BRAM':>5} fits pareto")
    lines = [head]
    for r in results:
        p = r.point
        tags = "".join(t for t, c in (("D", "dsp"), ("B", "bram"))
                       if id(r) in fronts[(p.board, c)])
        lines.append(f"{p.model:12} {p.board:10} {p.lanes:5d} {p.attention_lanes:4d} "
                     f"{p.scratchpad_kib:5g} "
                     f"{r.memory:>8} {r.tok_s:9.1f} {100 * r.roofline_fraction:6.1f} "
                     f"{r.dsp:5d} {r.lut:7d} {r.bram:5d} {'yes' if r.fits else 'NO ':4} {tags}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m speedllm.ops.sweep",
                                 description="Analytical design-space sweep (cycle model).")
    ap.add_argument("--model", nargs="+", default=["stories15M"], choices=sorted(MODEL_SHAPES))
    ap.add_argument("--board", nargs="+", default=["pynq-z2", "zcu104"], choices=board_names())
    ap.add_argument("--lanes", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    ap.add_argument("--attention-lanes", nargs="+", type=int, default=[4])
    ap.add_argument("--scratchpad-kib", nargs="+", type=float, default=[2, 4, 16])
    ap.add_argument("--outstanding", nargs="+", type=int, default=[4],
                    help="bursts in flight per read port")
    ap.add_argument("--no-reuse", action="store_true", help="also sweep reuse off")
    ap.add_argument("--no-stream", action="store_true", help="also sweep streaming off")
    ap.add_argument("--pos", type=int, default=None, help="position (default seq_len - 1)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default all cores)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--plot", help="write a tok/s vs DSP plot here (needs matplotlib)")
    a = ap.parse_args(argv)
    points = grid(a.model, a.board, a.lanes, a.scratchpad_kib, a.outstanding,
                  a.attention_lanes, (True, False) if a.no_reuse else (True,),
                  (True, False) if a.no_stream else (True,), pos=a.pos)
    results = run_sweep(points, max_workers=a.workers)
    if a.json:
        json.dump({"label": "analytical estimate (cycle model + per-lane resource model)",
                   "results": [r.to_dict() for r in results]}, sys.stdout, indent=1)
        print()
    else:
        print("analytical estimate (cycle model + per-lane resource model), not measured")
        print(_table(results))
    if a.plot:
        plot_pareto(results, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
