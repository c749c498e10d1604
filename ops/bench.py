"""Benchmarks of one decode step: cycles, tok/s, roofline, energy; and the SpeedLLM ablation.

The cycle figures come from a pluggable **source** (:func:`measure_cycles`):

``"model"``
    The analytical cycle model (:mod:`speedllm.ops.cyclemodel`) on the op graph; nothing is
    simulated and every figure derived from it is listed in ``estimated``.
``"rtl"``
    The accelerator RTL, through ``speedllm.host.rtl_cycles.measure`` (imported lazily; the
    lead's harness code). Expected signature::

        measure(program, board, *, steps=1, pos=0, stream=True) -> {
            "cycles_per_token": float,               # measured RTL cycles of one step
            "cycles_by_command": {cls: cycles},      # per command class (qkv, w13, ...)
            "dram_bytes_per_token": int,             # counted on the AXI ports
            "sim_cycles_per_s": float,               # simulator speed (for progress)
            "notes": [str, ...],                     # optional, e.g. "layers 1..11
        }                                            #   extrapolated from layer 0"

    ``program`` is a :class:`~speedllm.ops.compiler.Program`, ``board`` a
    :class:`~speedllm.ops.boards.BoardProfile` (its DRAM figures drive the DRAM model).
    ``stream`` is passed only when a variant turns streaming off (the ablation). If the
    module cannot be imported, :class:`~speedllm.errors.InputError` ("RTL cycle source not
    available: ...") is raised.

Shapes (:func:`resolve_shape`): ``stories260K`` is read from the real checkpoint header
(:func:`speedllm.paths.resolve_model_file`), the other names are the synthetic
:data:`~speedllm.ops.graph.MODEL_SHAPES` (no weight file is made for the model source); a
path to a llama2.c checkpoint also works.

Ablation variants (:data:`ABLATION_VARIANTS`): ``naive`` (no stream overlap, no fusion, no
reuse), ``stream``, ``fuse``, ``reuse`` (each alone), ``all``. "No reuse" means the
activations round-trip through DRAM (``no_reuse_memory="dram"``, the compiler's
``act_space="dram"``: SpeedLLM's unoptimized baseline) or, with ``"separate"``, one
on-chip buffer per tensor (same cycles, more scratchpad).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path

from speedllm.errors import AcceleratorError, InputError
from speedllm.golden.checkpoint import ModelArgs

from .boards import BoardProfile, board_names, get_board
from .cyclemodel import AcceleratorConfig, estimate_graph
from .energy import count_activity, energy_coefficients, estimate_energy
from .fusion import FusionConfig, fuse
from .graph import MODEL_SHAPES, OpGraph, build_graph
from .memplan import plan_memory

__all__ = ["Variant", "ABLATION_VARIANTS", "ALL_ON", "CycleFigures", "SOURCES",
           "resolve_shape", "shape_names", "measure_cycles", "bench", "ablation",
           "energy_sources"]

SOURCES = ("model", "rtl")
#: (MatVec lanes, attention lanes) of the accelerator top (``hw/accel_top.py``).
RTL_LANES = (8, 4)
_ALIASES = {"tinyllama-1.1b": "tinyllama"}
REAL_CHECKPOINTS = {"stories260K": "stories260K.bin"}


@dataclass(frozen=True)
class Variant:
    """A build of the accelerator: stream overlap, fusion rules, buffer reuse."""

    name: str
    stream: bool
    fusion: FusionConfig
    reuse: bool

    def describe(self, no_reuse_memory: str = "dram") -> str:
        off = ("activations round-trip through DRAM" if no_reuse_memory == "dram"
               else "one scratchpad buffer per tensor")
        return (f"stream {'on' if self.stream else 'off'}, fusion {self.fusion.name}, "
                f"reuse {'on' if self.reuse else 'off (' + off + ')'}")


ALL_ON = Variant("all", True, FusionConfig(), True)
#: "Fusion off" of the ablation: every rule off except the streaming attention pass, which
#: the accelerator always runs (it has no unit for split scores/softmax/sum commands), so
#: the model and the RTL describe the same program.
NO_FUSION = FusionConfig.only("attention_pass")
ABLATION_VARIANTS = (
    Variant("naive", False, NO_FUSION, False),
    Variant("stream", True, NO_FUSION, False),
    Variant("fuse", False, FusionConfig(), False),
    Variant("reuse", False, NO_FUSION, True),
    ALL_ON,
)


def shape_names() -> tuple[str, ...]:
    return tuple(MODEL_SHAPES) + tuple(_ALIASES)


def resolve_shape(shape: str | ModelArgs) -> tuple[ModelArgs, str]:
    """``(args, origin)`` for a shape name, checkpoint path or :class:`ModelArgs`."""
    if isinstance(shape, ModelArgs):
        return shape, "given ModelArgs"
    from speedllm.golden.checkpoint import load_checkpoint
    from speedllm.paths import resolve_model_file
    if shape in REAL_CHECKPOINTS:
        path = resolve_model_file(REAL_CHECKPOINTS[shape])
        return load_checkpoint(path).args, f"checkpoint {path}"
    name = _ALIASES.get(shape, shape)
    if name in MODEL_SHAPES:
        return MODEL_SHAPES[name], "synthetic shape, no weights needed"
    if Path(shape).is_file():
        return load_checkpoint(shape).args, f"checkpoint {shape}"
    raise InputError(f"unknown shape {shape!r} (known: {', '.join(shape_names())}, "
                     f"or a checkpoint path)")


def _board(board: str | BoardProfile) -> BoardProfile:
    try:
        return get_board(board)
    except ValueError:
        raise InputError(f"unknown board {board!r} (known: {', '.join(board_names())})"
                         ) from None


def _memory_mode(reuse: bool, no_reuse_memory: str) -> str:
    if no_reuse_memory not in ("dram", "separate"):
        raise InputError(f"no_reuse_memory must be 'dram' or 'separate', "
                         f"not {no_reuse_memory!r}")
    return "reuse" if reuse else no_reuse_memory


@dataclass
class CycleFigures:
    """What a cycle source gives for one step (``measured`` False for the model)."""

    source: str
    measured: bool
    cycles_per_token: float
    cycles_by_class: dict
    dram_bytes_per_token: int
    sim_cycles_per_s: float | None = None
    notes: list = field(default_factory=list)


def _rtl_measure():
    try:
        from speedllm.host.rtl_cycles import measure
    except Exception as e:      # ImportError, or the harness failing to build
        raise InputError(f"RTL cycle source not available: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from None
    return measure


def measure_cycles(program_or_graph, board: str | BoardProfile, source: str = "model", *,
                   config: AcceleratorConfig = AcceleratorConfig(), pos: int | None = None,
                   steps: int = 1) -> CycleFigures:
    """Cycles of one decode step from ``source`` (see the module docstring).

    ``program_or_graph``: an :class:`OpGraph` already fused as it will run (model source),
    or a compiled :class:`~speedllm.ops.compiler.Program` (both sources; the model builds
    its graph from the program's shapes, fusion and memory mode). ``config`` gives lanes,
    streaming and the memory mode to the model; the RTL source only reads ``stream``.
    """
    board = _board(board)
    if source not in SOURCES:
        raise InputError(f"unknown cycle source {source!r} (sources: {', '.join(SOURCES)})")
    if source == "rtl":
        measure = _rtl_measure()
        if isinstance(program_or_graph, OpGraph):
            raise InputError("the RTL cycle source needs a compiled Program, not an OpGraph")
        kw = {"steps": steps, "pos": 0 if pos is None else pos}
        if not config.stream:
            if "stream" not in inspect.signature(measure).parameters:
                raise InputError("RTL cycle source has no stream switch (measure(..., "
                                 "stream=False)); the stream-off variants need it")
            kw["stream"] = False
        out = measure(program_or_graph, board, **kw)
        missing = [k for k in ("cycles_per_token", "cycles_by_command",
                               "dram_bytes_per_token") if k not in out]
        if missing:
            raise AcceleratorError(f"RTL cycle source returned no {', '.join(missing)}")
        return CycleFigures("rtl", True, float(out["cycles_per_token"]),
                            dict(out["cycles_by_command"]), int(out["dram_bytes_per_token"]),
                            out.get("sim_cycles_per_s"), list(out.get("notes", [])))
    graph = program_or_graph
    if not isinstance(graph, OpGraph):
        prog = graph
        sc = prog.scheme
        graph = fuse(build_graph(prog.args, pos, group_size=sc.group_size, kv_bits=sc.kv_bits,
                                 kv_block_exponent=sc.kv_frac is None), prog.fusion)
        memory = "dram" if prog.act_space == "dram" else ("reuse" if prog.reuse else "separate")
        config = AcceleratorConfig(**{**config.__dict__, "memory": memory,
                                      "fusion": prog.fusion})
    est = estimate_graph(graph, board, config)
    return CycleFigures("model", False, est.cycles_per_token,
                        {k: v["cycles"] for k, v in est.by_class().items()},
                        est.dram_bytes_per_token)


def _compile_for_rtl(args: ModelArgs, origin: str, variant: Variant, memory: str, board):
    from speedllm.golden.checkpoint import load_checkpoint
    from speedllm.golden.synth import synth_checkpoint

    from .compiler import compile_model
    ckpt = (load_checkpoint(origin.split(" ", 1)[1]) if origin.startswith("checkpoint ")
            else synth_checkpoint(args))
    # The RTL runs attention as one streaming pass (no unit for the split commands) and
    # has a 64-bit bus: "fusion off" keeps the attention pass, the image uses 8-byte beats.
    fusion = replace(variant.fusion, attention_pass=True)
    return compile_model(ckpt, fusion=fusion, reuse=variant.reuse,
                         act_space="dram" if memory == "dram" else "scratchpad", beat_bytes=8)


def bench(shape: str | ModelArgs, board: str | BoardProfile, *, source: str = "model",
          variant: Variant = ALL_ON, lanes: int = 8, attention_lanes: int = 4,
          pos: int | None = None, fmax_mhz: float | None = None,
          no_reuse_memory: str = "dram") -> dict:
    """The benchmark figures of one (shape, board, variant) as a JSON-able dict.

    ``pos`` defaults to ``seq_len // 2``: attention work grows linearly with the position,
    so the middle step stands for the average step of a full-context generation. ``fmax_mhz``
    defaults to the board profile's fabric clock (an assumed target, so listed in
    ``estimated``).
    """
    args, origin = resolve_shape(shape)
    board = _board(board)
    if source not in SOURCES:
        raise InputError(f"unknown cycle source {source!r} (sources: {', '.join(SOURCES)})")
    for name, v in (("lanes", lanes), ("attention_lanes", attention_lanes)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, not {v!r}")
    if source == "rtl" and (lanes, attention_lanes) != RTL_LANES:
        raise InputError(f"the RTL is built with {RTL_LANES[0]} MatVec lanes and "
                         f"{RTL_LANES[1]} attention lanes (one 64-bit beat); other lane "
                         f"counts exist only in the model source")
    pos = args.seq_len // 2 if pos is None else pos
    if not 0 <= pos < args.seq_len:
        raise InputError(f"pos must be in [0, {args.seq_len}) for this shape, not {pos}")
    if fmax_mhz is not None and not fmax_mhz > 0:
        raise InputError(f"fmax must be positive, not {fmax_mhz}")
    memory = _memory_mode(variant.reuse, no_reuse_memory)
    fmax = fmax_mhz or board.fabric_mhz
    fmax_source = ("given on the command line" if fmax_mhz else
                   "board profile fabric clock target (assumption, not a P&R Fmax)")
    cfg = AcceleratorConfig(lanes=lanes, attention_lanes=attention_lanes, fmax_mhz=fmax,
                            stream=variant.stream, fusion=variant.fusion, memory=memory)
    graph = fuse(build_graph(args, pos), variant.fusion)
    if source == "rtl":
        _rtl_measure()                       # fail fast, before compiling
        prog = _compile_for_rtl(args, origin, variant, memory, board)
        figs = measure_cycles(prog, board, "rtl", config=cfg, pos=pos)
        scratchpad = prog.scratchpad_bytes
        fusion_name = prog.fusion.name
    else:
        figs = measure_cycles(graph, board, "model", config=cfg)
        fusion_name = variant.fusion.name
        scratchpad = 0 if memory == "dram" else plan_memory(
            graph, reuse=variant.reuse).scratchpad_bytes
    tok_s = fmax * 1e6 / figs.cycles_per_token
    weight_bytes = graph.weight_bytes_per_token
    roofline = board.dram_peak_bytes_per_s / weight_bytes
    act = count_activity(graph, cycles_per_token=figs.cycles_per_token, fmax_mhz=fmax,
                         dram_bytes=figs.dram_bytes_per_token, lanes=lanes, memory=memory)
    energy = estimate_energy(act, board)
    estimated = ["energy_j_per_token", "tokens_per_j", "power_w", "energy_breakdown_j"]
    if not figs.measured:
        estimated += ["cycles_per_token", "cycles_by_class", "dram_bytes_per_token"]
    if not figs.measured or not fmax_mhz:
        estimated += ["tok_per_s", "roofline_fraction"]
    if not fmax_mhz:
        estimated.append("fmax_mhz")
    out = {
        "shape": shape if isinstance(shape, str) else "custom", "shape_origin": origin,
        "dims": {k: getattr(args, k) for k in ("dim", "hidden_dim", "n_layers", "n_heads",
                                                "n_kv_heads", "vocab_size", "seq_len")},
        "board": board.name, "source": figs.source, "variant": variant.name,
        "config": {"lanes": lanes, "attention_lanes": attention_lanes, "pos": pos,
                   "stream": variant.stream, "fusion": fusion_name,
                   "reuse": variant.reuse, "memory": memory},
        "cycles_per_token": figs.cycles_per_token,
        "cycles_by_class": figs.cycles_by_class,
        "fmax_mhz": fmax, "fmax_source": fmax_source,
        "tok_per_s": tok_s,
        "weight_bytes_per_token": weight_bytes,
        "dram_bytes_per_token": figs.dram_bytes_per_token,
        "dram_peak_bytes_per_s": board.dram_peak_bytes_per_s,
        "roofline_tok_per_s": roofline,
        "attainable_roofline_tok_per_s": board.dram_attainable_bytes_per_s / weight_bytes,
        "roofline_fraction": tok_s / roofline,
        "macs_per_token": graph.macs_per_token,
        "scratchpad_bytes": scratchpad,
        "energy_j_per_token": energy.j_per_token,
        "tokens_per_j": energy.tokens_per_j,
        "power_w": energy.average_power_w,
        "energy_breakdown_j": {"static": energy.static_j, "dram": energy.dram_j,
                               "mac": energy.mac_j, "bram": energy.bram_j},
        "estimated": sorted(set(estimated)),
        "notes": list(figs.notes),
    }
    if figs.sim_cycles_per_s is not None:
        out["sim_cycles_per_s"] = figs.sim_cycles_per_s
    return out


ABLATION_FIELDS = ("cycles_per_token", "dram_bytes_per_token", "scratchpad_bytes",
                   "energy_j_per_token", "tok_per_s")


def ablation(shape: str | ModelArgs, board: str | BoardProfile, *, source: str = "model",
             variants=ABLATION_VARIANTS, progress=None, **kw) -> dict:
    """:func:`bench` of each variant, plus ``speedup`` and ``energy_ratio`` of ``all`` over
    ``naive`` (naive cycles / all cycles; naive J / all J). ``kw`` go to :func:`bench`."""
    rows, first = {}, None
    for i, v in enumerate(variants):
        if progress:
            progress(f"variant {v.name} ({i + 1}/{len(variants)})")
        r = bench(shape, board, source=source, variant=v, **kw)
        first = first or r
        rows[v.name] = {"description": v.describe(kw.get("no_reuse_memory", "dram")),
                        **{f: r[f] for f in ABLATION_FIELDS},
                        "roofline_fraction": r["roofline_fraction"],
                        "cycles_by_class": r["cycles_by_class"], "notes": r["notes"]}
    out = {k: first[k] for k in ("shape", "shape_origin", "board", "source", "fmax_mhz",
                                 "fmax_source", "weight_bytes_per_token",
                                 "roofline_tok_per_s")}
    out["config"] = {k: first["config"][k] for k in ("lanes", "attention_lanes", "pos")}
    out["config"]["no_reuse_memory"] = kw.get("no_reuse_memory", "dram")
    out["variants"] = rows
    if "naive" in rows and "all" in rows:
        out["speedup"] = rows["naive"]["cycles_per_token"] / rows["all"]["cycles_per_token"]
        out["energy_ratio"] = (rows["naive"]["energy_j_per_token"]
                               / rows["all"]["energy_j_per_token"])
    est = set(first["estimated"]) & {"cycles_per_token", "dram_bytes_per_token",
                                     "energy_j_per_token", "tok_per_s"}
    if "cycles_per_token" in est:
        est.add("speedup")
    est.add("energy_ratio")
    out["estimated"] = sorted(est)
    return out


def energy_sources(board: str | BoardProfile) -> dict:
    """The energy coefficients of ``board`` with their sources (for reports)."""
    return energy_coefficients(_board(board)).to_dict()
