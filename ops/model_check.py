"""The analytical cycle model checked against the accelerator RTL's cycle counters.

:func:`check_model` runs one decode step of a shape on the RTL (``source="rtl"`` of
:func:`speedllm.ops.bench.bench`: measured) and the cycle model (estimated) at the same
position, board and variant, and gives the relative error of the model's cycles per token
and of each command class.

The RTL counts cycles per opcode (``speedllm.hw.accel_regs.COUNTER_CLASSES``): every
matrix-vector command is ``matvec``, the sequencer's command fetch is ``fetch``. The model
splits matvecs by role (``qkv``, ``wo``, ``w13``, ``w2``); :data:`RTL_CLASS` folds them
into ``matvec`` so both sides are compared class by class. The model has no ``fetch``
class (its per-command ``command_issue`` overhead covers the fetch), so that row shows the
RTL figure only; the total compares everything.

``error = model / rtl - 1``: negative when the model is optimistic.
"""

from __future__ import annotations

from .bench import ALL_ON, Variant, bench

__all__ = ["RTL_CLASS", "TOLERANCE", "check_model", "format_check"]

#: Model command classes the RTL counts under another name.
RTL_CLASS = {"qkv": "matvec", "wo": "matvec", "w13": "matvec", "w2": "matvec"}

#: The error the model is meant to stay within (the report flags classes beyond it).
TOLERANCE = 0.10


def _fold(by_class: dict) -> dict:
    out: dict[str, float] = {}
    for cls, cycles in by_class.items():
        key = RTL_CLASS.get(cls, cls)
        out[key] = out.get(key, 0.0) + float(cycles)
    return out


def _error(model: float, rtl: float) -> float | None:
    return model / rtl - 1.0 if rtl else None


def check_model(shape, board, *, pos: int | None = None, variant: Variant = ALL_ON,
                lanes: int = 8, attention_lanes: int = 4, progress=None) -> dict:
    """Model vs RTL cycles of one decode step (a JSON-able dict, see the module docstring).

    Builds (or reuses) the RTL harness for the shape, so the first call for a shape takes
    minutes; ``progress(msg)`` is told what runs.
    """
    say = progress or (lambda msg: None)
    kw = dict(variant=variant, lanes=lanes, attention_lanes=attention_lanes, pos=pos)
    say(f"cycle model check: {shape} on the RTL")
    rtl = bench(shape, board, source="rtl", **kw)
    model = bench(shape, board, source="model", **kw)
    r_cls, m_cls = _fold(rtl["cycles_by_class"]), _fold(model["cycles_by_class"])
    classes = {}
    for cls in sorted(set(r_cls) | set(m_cls), key=lambda c: -r_cls.get(c, 0.0)):
        r, m = r_cls.get(cls, 0.0), m_cls.get(cls)
        classes[cls] = {"rtl": r, "model": m,
                        "error": None if m is None else _error(m, r)}
    err = _error(model["cycles_per_token"], rtl["cycles_per_token"])
    return {"shape": rtl["shape"], "board": rtl["board"], "pos": rtl["config"]["pos"],
            "variant": variant.name, "lanes": lanes,
            "rtl_cycles_per_token": rtl["cycles_per_token"],
            "model_cycles_per_token": model["cycles_per_token"],
            "error": err, "within_tolerance": abs(err) <= TOLERANCE,
            "tolerance": TOLERANCE, "classes": classes,
            "rtl_source": "measured (RTL cycle counters, Verilator harness)",
            "model_source": "estimated (analytical cycle model)",
            "notes": rtl.get("notes", []), "rtl_figures": rtl}


def format_check(c: dict) -> str:
    """A readable table of one :func:`check_model` result."""
    lines = [f"cycle model vs RTL: {c['shape']} on {c['board']}, pos {c['pos']}, variant "
             f"{c['variant']}, {c['lanes']} lanes",
             f"{'class':12} {'RTL (measured)':>15} {'model':>12} {'error':>8}"]

    def pct(e):
        return "-" if e is None else f"{100 * e:+.1f}%"
    for cls, v in c["classes"].items():
        m = "-" if v["model"] is None else f"{v['model']:,.0f}"
        lines.append(f"{cls:12} {v['rtl']:15,.0f} {m:>12} {pct(v['error']):>8}")
    lines.append(f"{'total':12} {c['rtl_cycles_per_token']:15,.0f} "
                 f"{c['model_cycles_per_token']:12,.0f} {pct(c['error']):>8}  "
                 f"({'within' if c['within_tolerance'] else 'OUTSIDE'} "
                 f"{100 * c['tolerance']:.0f}%)")
    return "\n".join(lines)
