"""Analytical cycle model of one decode step: cycles per command, per command class, per token.

**Everything here is an estimate computed from shapes and board figures, not a measurement.**
It ranks design points in sweeps; RTL cycle counters are the truth it gets calibrated
against (:func:`calibrate`).

Each node of the (fused or unfused) op graph is one command. With ``bw`` the DRAM bytes per
cycle at the fabric clock (:func:`bandwidth`), a command costs::

    stream on : issue + fill + lat + pre + core_scale * max(compute, dram_bytes / bw, io)
    stream off: issue + fill + pre + bursts * lat
                + core_scale * max(compute, dram_bytes / bw, io)

- ``compute``: MatVec ``rows * ceil(padded_cols / lanes)``; attention ``macs /
  attention_lanes`` plus the softmax and output stages; element-wise units one element per
  cycle (RmsNorm ``3 n + divider``). Steps folded into a matvec epilogue cost only their
  fill (they run at the row rate, which they always outpace).
- ``dram_bytes``: weights (``WeightRef.read_bytes``), KV-cache reads and writes, the logits;
  with ``memory="dram"`` also every activation tensor the command reads or writes (no
  scratchpad: each value is written out and read back).
- ``io``: activation elements moved through the scratchpad, one per cycle.
- ``pre``: a matvec first fills its activation buffer (one element per cycle: the engine
  refuses ``x`` while it reads weights), or runs its RmsNorm prologue, which ends by filling
  it and streams the norm gains meanwhile (their DRAM time overlaps the prologue, not the
  core).
- ``lat``: DRAM read latency in cycles, paid once per command when reads are streamed
  (several bursts in flight), and once per burst when they are not: with one burst in
  flight per port (the RTL's stream-off variant, ``hw/axi_read.py`` with
  ``max_outstanding=1``) the next burst is requested only when the last one has been
  consumed, so every burst's latency adds to the command (the units still consume the data
  as it arrives: compute overlaps the transfers themselves).
  ``bursts = ceil(read_bytes / B) + ceil(write_bytes / B)`` with ``B = master_burst_beats *
  axi_bytes * ports``, counted with the read master's own bursts (256 beats, AXI4): on an AXI3 port (16 beats) the interconnect
  splits each into back-to-back AXI3 bursts, so the one-in-flight wait is per master burst.
- ``bw = min(DRAM peak * efficiency / f, axi_bytes * ports, Little's-law cap)``; the cap,
  ``ports * max_outstanding * burst_bytes / lat``, is what a read master with
  ``max_outstanding`` bursts in flight can sustain (streamed reads only).

Overhead constants (:class:`Overheads`) are named and documented; :func:`calibrate` fits
``command_issue`` and ``core_scale`` to measured per-command cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from speedllm.golden.checkpoint import ModelArgs

from .boards import BoardProfile, get_board
from .fusion import FusionConfig, fuse
from .graph import LOGITS, Node, OpGraph, OpKind, build_graph

__all__ = ["AcceleratorConfig", "Overheads", "CommandEstimate", "TokenEstimate",
           "MEMORY_MODES", "bandwidth", "command_class", "estimate", "estimate_graph",
           "calibrate"]

MEMORY_MODES = ("reuse", "separate", "dram")
LABEL = "analytical estimate (cycle model), not measured"


@dataclass(frozen=True)
class Overheads:
    """Fixed costs in cycles; calibrate against RTL counters.

    command_issue
        Sequencer fetch/decode, unit start and done handshake per command (assumed).
    matvec_fill
        A row result leaves the MatVec engine ``13 + log2(L)`` cycles after its last weight
        beat, plus 2 in its output FIFO (``hw/matvec.py`` docstring); ``log2(L)`` is added.
    epilogue_fill
        Extra latency per step fused into a matvec epilogue (RoPE pair register, residual
        join, SwiGLU, KV write) (assumed).
    elementwise_fill
        Pipeline depth of a stand-alone element-wise unit (RoPE 6, embedding 5, SwiGLU 10,
        residual 1: the ``hw`` docstrings; 6 used for all).
    rmsnorm_fixed
        RmsNorm beyond ``3 n``: ``30`` (passes, up to 15 normalization cycles) + the
        divider's ``30`` (``hw/rmsnorm.py``); ``ceil_log2(n + 1)`` is added.
    attention_drain
        Drain of the score pass (~9) plus the weighted-sum pass (~14) (``hw/attention_core.py``).
    attention_per_head
        Reciprocal per head (``dividend_bits + 5``, about 37).
    attention_per_value
        Output stage: one value per cycle (``hw/attention_core.py``).
    core_scale
        Multiplies the overlapped core term (1.0 uncalibrated).
    """

    command_issue: float = 16.0
    matvec_fill: float = 15.0
    epilogue_fill: float = 4.0
    elementwise_fill: float = 6.0
    rmsnorm_fixed: float = 60.0
    attention_drain: float = 23.0
    attention_per_head: float = 37.0
    attention_per_value: float = 1.0
    core_scale: float = 1.0


@dataclass(frozen=True)
class AcceleratorConfig:
    """A design point. ``None`` fields take the board's value.

    lanes: MatVec MACs per cycle. attention_lanes: attention MACs per cycle (the
    AttentionCore default is one 64-bit beat of 16-bit KV: 4). axi_data_bits, ports: the
    weight read ports. fmax_mhz: the clock the cycles run at (bandwidth per cycle depends
    on it). stream: data-stream parallelism. fusion: the rules applied. memory: ``"reuse"``
    (liveness scratchpad), ``"separate"`` (one buffer per tensor: same cycles, more BRAM),
    ``"dram"`` (no scratchpad, every tensor round-trips through DRAM). burst_beats,
    max_outstanding: the read master (``hw/axi_read.py``, default 4 in flight).
    """

    lanes: int = 8
    attention_lanes: int = 4
    axi_data_bits: int | None = None
    ports: int | None = None
    fmax_mhz: float | None = None
    stream: bool = True
    fusion: FusionConfig = field(default_factory=FusionConfig)
    memory: str = "reuse"
    burst_beats: int | None = None
    max_outstanding: int = 4

    def __post_init__(self):
        for name in ("lanes", "attention_lanes", "max_outstanding"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, not {self.memory!r}")


@dataclass(frozen=True)
class Bandwidth:
    """Resolved port and DRAM figures for one (board, config)."""

    fmax_mhz: float
    axi_bytes: int
    ports: int
    burst_beats: int
    latency_cycles: int
    master_burst_beats: int
    stream_bytes_per_cycle: float
    serial_bytes_per_cycle: float

    @property
    def burst_bytes(self) -> int:
        return self.burst_beats * self.axi_bytes

    @property
    def master_burst_bytes(self) -> int:
        return self.master_burst_beats * self.axi_bytes


#: Longest burst of the accelerator's AXI read masters (``hw/axi_read.py`` default).
MASTER_BURST_BEATS = 256


def _serial_latency(nbytes: float, bw: Bandwidth) -> float:
    """DRAM latency paid per burst when one burst per port is in flight."""
    return math.ceil(nbytes / (bw.master_burst_bytes * bw.ports)) * bw.latency_cycles


def bandwidth(board: BoardProfile, config: AcceleratorConfig) -> Bandwidth:
    """DRAM bytes per cycle for streamed and for serialized reads (see module doc)."""
    fmax = config.fmax_mhz or board.fabric_mhz
    axi_bytes = (config.axi_data_bits or board.axi_data_bits) // 8
    ports = config.ports or board.weight_ports
    beats = min(config.burst_beats or board.max_burst_beats, board.max_burst_beats)
    lat = max(1, math.ceil(board.dram_read_latency_ns * fmax / 1000))
    dram = board.dram_attainable_bytes_per_s / (fmax * 1e6)
    axi = axi_bytes * ports
    little = ports * config.max_outstanding * beats * axi_bytes / lat
    master_beats = config.burst_beats or MASTER_BURST_BEATS
    return Bandwidth(fmax, axi_bytes, ports, beats, lat, master_beats,
                     min(dram, axi, little), min(dram, axi))


_CLASS_OF_STEP = {
    "embed": "embed", "rms_att": "rmsnorm", "rms_ffn": "rmsnorm", "rms_final": "rmsnorm",
    "wq": "qkv", "wk": "qkv", "wv": "qkv", "qkv": "qkv", "rope_q": "rope", "rope_k": "rope",
    "kv_write": "kv_write", "att_scores": "attention", "softmax": "attention",
    "att_sum": "attention", "attention": "attention", "wo": "wo", "res_att": "residual",
    "res_ffn": "residual", "w1": "w13", "w3": "w13", "w13": "w13", "swiglu": "swiglu",
    "w2": "w2", "classifier": "classifier",
}


def command_class(node: Node) -> str:
    """The class a command reports under (``qkv`` for wq/wk/wv and the fused QKV, ...)."""
    step = node.name.rsplit(".", 1)[-1]
    return _CLASS_OF_STEP.get(step, node.kind.value.lower())


@dataclass(frozen=True)
class CommandEstimate:
    """One command: cycles split into ``overhead`` (issue, fill, latency) and ``core``."""

    name: str
    cls: str
    cycles: float
    overhead_cycles: float
    core_cycles: float
    compute_cycles: float
    dram_read_bytes: int
    dram_write_bytes: int
    io_elements: int
    bound: str

    @property
    def dram_bytes(self) -> int:
        return self.dram_read_bytes + self.dram_write_bytes


def _is_matvec(kind: OpKind) -> bool:
    return kind in (OpKind.MATVEC, OpKind.CLASSIFIER)


def _rmsnorm_cycles(n: int, ov: Overheads) -> float:
    return 3 * n + ov.rmsnorm_fixed + math.ceil(math.log2(n + 1))


def _part_compute(part: Node, fused: bool, cfg: AcceleratorConfig,
                  ov: Overheads) -> tuple[float, float]:
    """(compute cycles, fill cycles) of one run.c step inside a command."""
    k = part.kind
    if _is_matvec(k):
        (w,) = part.weights
        return (w.rows * math.ceil(w.cols_padded / cfg.lanes),
                ov.matvec_fill + math.log2(cfg.lanes))
    if k is OpKind.ATTENTION_SCORES:
        return part.macs / cfg.attention_lanes, ov.attention_drain / 2
    if k is OpKind.ATTENTION_SUM:
        d = part.outputs[0].elements
        return (part.macs / cfg.attention_lanes + ov.attention_per_value * d,
                ov.attention_drain / 2)
    if k is OpKind.SOFTMAX:
        heads = part.inputs[0].shape[0]
        passes = 0 if fused else 3 * part.inputs[0].elements   # max, exp-sum, normalize
        return passes + ov.attention_per_head * heads, 0.0
    if k is OpKind.RMSNORM:
        return _rmsnorm_cycles(part.inputs[0].elements, ov), 0.0
    if k is OpKind.EMBED:
        return part.outputs[0].elements, ov.elementwise_fill
    # RoPE, KV write, residual, SwiGLU: one element per cycle, hidden in an epilogue
    elems = sum(t.elements for t in part.inputs if t.space == "act")
    return (0.0, ov.epilogue_fill) if fused else (elems, ov.elementwise_fill)


def _command(node: Node, cfg: AcceleratorConfig, bw: Bandwidth,
             ov: Overheads) -> CommandEstimate:
    parts = node.parts or (node,)
    fused = len(parts) > 1
    compute = fill = pre = 0.0
    prologue_bytes = 0
    for p in parts:
        c, f = _part_compute(p, fused, cfg, ov)
        fill = max(fill, f) if _is_matvec(p.kind) else fill + f
        if p.kind is OpKind.RMSNORM and _is_matvec(node.kind):
            # prologue: its gains stream in beside pass 4, which fills the x buffer
            g = p.weight_bytes
            prologue_bytes += g
            if cfg.stream:
                pre += max(c, g / bw.stream_bytes_per_cycle)
            else:
                pre += max(c, g / bw.serial_bytes_per_cycle) + _serial_latency(g, bw)
        else:
            compute += c
    act_in = [t for t in node.inputs if t.space == "act"]
    act_out = [t for t in node.outputs if t.space == "act"]
    x_in = []
    if _is_matvec(node.kind) and parts[0].kind is not OpKind.RMSNORM:
        x_in = [t for t in act_in if t.name == parts[0].inputs[0].name]
        pre += sum(t.elements for t in x_in)        # x buffer fill, one per cycle
    # each activation stream has its own port (read slots rd0/rd1, write slot wr0), so
    # they move in parallel, one element per cycle each
    io = max((t.elements for t in act_in + act_out if t not in x_in), default=0)
    rd = node.weight_bytes + node.kv_read_bytes
    wr = node.kv_write_bytes + sum(t.nbytes for t in node.outputs
                                   if t.space == "dram" and t.fmt == LOGITS)
    if cfg.memory == "dram":
        rd += sum(t.nbytes for t in act_in)
        wr += sum(t.nbytes for t in act_out)     # units still move one element a cycle
    dram = rd + wr - prologue_bytes             # the prologue's gains were paid in pre
    if cfg.stream:
        terms = {"compute": compute, "dram": dram / bw.stream_bytes_per_cycle, "io": io}
        core = max(terms.values())
        lat = bw.latency_cycles if rd else 0
        lat += bw.latency_cycles if wr else 0     # the last write's response ends it
    else:
        terms = {"compute": compute, "dram": dram / bw.serial_bytes_per_cycle, "io": io}
        core = max(terms.values())
        lat = _serial_latency(rd - prologue_bytes, bw) + _serial_latency(wr, bw)
    core *= ov.core_scale
    overhead = ov.command_issue + fill + lat + pre
    bound = max(terms, key=terms.get) if core > 0 else "overhead"
    return CommandEstimate(node.name, command_class(node), overhead + core, overhead, core,
                           compute, rd, wr, io, bound)


@dataclass(frozen=True)
class TokenEstimate:
    """Per-command estimates of one decode step and the per-token totals (analytical)."""

    commands: tuple[CommandEstimate, ...]
    board: str
    config: AcceleratorConfig
    pos: int
    fmax_mhz: float
    weight_bytes_per_token: int
    dram_peak_bytes_per_s: float
    dram_attainable_bytes_per_s: float
    label: str = LABEL

    @property
    def cycles_per_token(self) -> float:
        return sum(c.cycles for c in self.commands)

    @property
    def tok_s(self) -> float:
        return self.fmax_mhz * 1e6 / self.cycles_per_token

    @property
    def dram_bytes_per_token(self) -> int:
        return sum(c.dram_bytes for c in self.commands)

    @property
    def roofline_tok_s(self) -> float:
        """DRAM peak / weight bytes per token: no design on this board decodes faster."""
        return self.dram_peak_bytes_per_s / self.weight_bytes_per_token

    @property
    def roofline_fraction(self) -> float:
        return self.tok_s / self.roofline_tok_s

    def by_class(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for c in self.commands:
            row = out.setdefault(c.cls, {"commands": 0, "cycles": 0.0, "dram_bytes": 0})
            row["commands"] += 1
            row["cycles"] += c.cycles
            row["dram_bytes"] += c.dram_bytes
        total = self.cycles_per_token
        for row in out.values():
            row["share"] = row["cycles"] / total
        return out

    def to_dict(self) -> dict:
        cfg = self.config
        return {
            "label": self.label, "board": self.board, "pos": self.pos,
            "config": {"lanes": cfg.lanes, "attention_lanes": cfg.attention_lanes,
                       "stream": cfg.stream, "fusion": cfg.fusion.name, "memory": cfg.memory,
                       "fmax_mhz": self.fmax_mhz},
            "commands": len(self.commands),
            "cycles_per_token": round(self.cycles_per_token),
            "tok_s": self.tok_s,
            "weight_bytes_per_token": self.weight_bytes_per_token,
            "dram_bytes_per_token": self.dram_bytes_per_token,
            "roofline_tok_s": self.roofline_tok_s,
            "attainable_roofline_tok_s":
                self.dram_attainable_bytes_per_s / self.weight_bytes_per_token,
            "roofline_fraction": self.roofline_fraction,
            "by_class": {k: {"commands": v["commands"], "cycles": round(v["cycles"]),
                             "dram_bytes": v["dram_bytes"], "share": round(v["share"], 4)}
                         for k, v in self.by_class().items()},
        }


def estimate_graph(graph: OpGraph, board: str | BoardProfile,
                   config: AcceleratorConfig = AcceleratorConfig(),
                   overheads: Overheads = Overheads()) -> TokenEstimate:
    """Estimate a graph as given (already fused or not; ``config.fusion`` is not applied)."""
    board = get_board(board)
    bw = bandwidth(board, config)
    cmds = tuple(_command(n, config, bw, overheads) for n in graph.nodes)
    return TokenEstimate(cmds, board.name, config, graph.pos, bw.fmax_mhz,
                         graph.weight_bytes_per_token, board.dram_peak_bytes_per_s,
                         board.dram_attainable_bytes_per_s)


def estimate(args: ModelArgs, board: str | BoardProfile,
             config: AcceleratorConfig = AcceleratorConfig(), *, pos: int | None = None,
             overheads: Overheads = Overheads(), **graph_kw) -> TokenEstimate:
    """Build the step of ``args`` at ``pos`` (default ``seq_len - 1``), apply
    ``config.fusion`` and estimate it on ``board``. ``graph_kw`` go to ``build_graph``."""
    graph = fuse(build_graph(args, pos, **graph_kw), config.fusion)
    return estimate_graph(graph, board, config, overheads)


def calibrate(est: TokenEstimate, measured_by_command: dict[str, float],
              overheads: Overheads = Overheads()) -> tuple[Overheads, dict]:
    """Fit ``command_issue`` and ``core_scale`` to measured cycles.

    ``measured_by_command`` maps a command name (``l0.qkv``) or a class (``qkv``, summed over
    its commands) to measured cycles (e.g. RTL cycle counters). Solves, by least squares,
    ``measured = core_scale * core + command_issue * commands + other_overhead`` (the
    estimate's own fill/latency/prologue as ``other_overhead``). Needs two keys whose
    core/commands ratios differ. Returns the new :class:`Overheads` and the fit's residuals.
    """
    rows, target, keys = [], [], []
    by_name = {c.name: c for c in est.commands}
    for key, cycles in measured_by_command.items():
        cmds = [by_name[key]] if key in by_name else [c for c in est.commands if c.cls == key]
        if not cmds:
            raise ValueError(f"no command or command class named {key!r}")
        core = sum(c.core_cycles for c in cmds) / overheads.core_scale
        other = sum(c.overhead_cycles for c in cmds) - overheads.command_issue * len(cmds)
        rows.append([core, len(cmds)])
        target.append(cycles - other)
        keys.append(key)
    a, b = np.array(rows, dtype=float), np.array(target, dtype=float)
    if len(rows) < 2 or np.linalg.matrix_rank(a) < 2:
        raise ValueError("calibrate needs at least two measurements with different "
                         "core/command ratios")
    (scale, issue), *_ = np.linalg.lstsq(a, b, rcond=None)
    fitted = replace(overheads, core_scale=float(scale), command_issue=float(max(issue, 0.0)))
    residuals = {k: float(t - (fitted.core_scale * r[0] + fitted.command_issue * r[1]))
                 for k, t, r in zip(keys, b, a)}
    return fitted, residuals


def main(argv=None) -> int:
    """``python -m speedllm.ops.cyclemodel``: one estimate as JSON (analytical)."""
    import argparse
    import json
    import sys

    from .boards import board_names
    from .graph import MODEL_SHAPES
    ap = argparse.ArgumentParser(prog="python -m speedllm.ops.cyclemodel",
                                 description="Analytical cycles/token of one decode step.")
    ap.add_argument("--shape", default="stories15M", choices=sorted(MODEL_SHAPES))
    ap.add_argument("--board", default="pynq-z2", choices=board_names())
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--attention-lanes", type=int, default=4)
    ap.add_argument("--fmax", type=float, default=None, help="MHz (default: the board's)")
    ap.add_argument("--pos", type=int, default=None, help="position (default seq_len - 1)")
    ap.add_argument("--no-stream", action="store_true", help="read, then compute, then write")
    ap.add_argument("--no-fusion", action="store_true", help="one command per run.c step")
    ap.add_argument("--memory", default="reuse", choices=MEMORY_MODES)
    ap.add_argument("--commands", action="store_true", help="also list every command")
    a = ap.parse_args(argv)
    cfg = AcceleratorConfig(lanes=a.lanes, attention_lanes=a.attention_lanes,
                            fmax_mhz=a.fmax, stream=not a.no_stream, memory=a.memory,
                            fusion=FusionConfig.none() if a.no_fusion else FusionConfig())
    est = estimate(MODEL_SHAPES[a.shape], a.board, cfg, pos=a.pos)
    out = {"shape": a.shape, **est.to_dict()}
    if a.commands:
        out["command_list"] = [{"name": c.name, "class": c.cls, "cycles": round(c.cycles),
                                "bound": c.bound, "dram_bytes": c.dram_bytes}
                               for c in est.commands]
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
