"""Operator fusion on the op graph, each rule switchable by name.

Rules (:class:`FusionConfig` fields, all on by default):

``rmsnorm_prologue``
    An RMSNorm is folded into the input stage of every matvec that reads its output
    (the normalized vector is built while filling the matvec's activation buffer, from the
    residual stream ``x``, which stays live anyway). With several readers (q, k, v when
    ``rope_kv_epilogue`` is off) each one carries the prologue, so the gains are read once
    per reader.
``rope_kv_epilogue``
    The q, k, v matvecs become one QKV command (rows ``[wq; wk; wv]``, one shared input)
    whose epilogue rotates q and k (RoPE) and writes k and v into the KV cache.
``swiglu_epilogue``
    The w1 and w3 matvecs become one command with their rows paired (row i of w1 then row i
    of w3), whose epilogue applies SwiGLU and writes only ``silu(h1) * h3``.
``residual_epilogue``
    The residual add is done in the epilogue of the wo / w2 matvec.
``attention_pass``
    Scores, softmax and the weighted sum are one streaming attention pass; the score and
    probability vectors stay inside the attention unit.

:func:`fuse` returns a new :class:`~speedllm.ops.graph.OpGraph` (the input is unchanged):
each fused node lists the ops it contains (``ops``), its original nodes (``parts``) and the
intermediate tensors that no longer leave it (``internal``). :func:`fusion_report` gives
what a configuration costs: node count (= command count) and tensor bytes passed between
commands; :func:`ablation` does that for no fusion, each rule alone and all rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .graph import Node, OpGraph, OpKind


@dataclass(frozen=True)
class FusionConfig:
    """Which fusion rules :func:`fuse` applies (see the module docstring)."""

    rmsnorm_prologue: bool = True
    rope_kv_epilogue: bool = True
    swiglu_epilogue: bool = True
    residual_epilogue: bool = True
    attention_pass: bool = True

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def none(cls) -> "FusionConfig":
        return cls(**{n: False for n in cls.rule_names()})

    @classmethod
    def only(cls, *names: str) -> "FusionConfig":
        """A config with exactly the rules ``names`` on."""
        bad = set(names) - set(cls.rule_names())
        if bad:
            raise ValueError(f"unknown fusion rule(s) {sorted(bad)}; rules: {cls.rule_names()}")
        return cls(**{n: n in names for n in cls.rule_names()})

    @property
    def name(self) -> str:
        on = [n for n in self.rule_names() if getattr(self, n)]
        if len(on) == len(self.rule_names()):
            return "all"
        return "+".join(on) if on else "none"

    def to_dict(self) -> dict[str, bool]:
        return {n: getattr(self, n) for n in self.rule_names()}


def _readers(nodes: list[Node]) -> dict[str, set[str]]:
    """Tensor name -> names of the nodes that read it."""
    out: dict[str, set[str]] = {}
    for n in nodes:
        for t in n.inputs:
            out.setdefault(t.name, set()).add(n.name)
    return out


def _merge(group: list[Node], name: str, kind: OpKind, readers: dict[str, set[str]],
           keep: set[str]) -> Node:
    """One node doing ``group`` in order.

    A member's output stays an output if a node outside the group reads it (``readers``),
    it is named in ``keep`` (graph outputs) or it lives in DRAM; otherwise it is internal.
    """
    parts: list[Node] = []
    for n in group:
        parts.extend(n.parts or (n,))
    members = {n.name for n in group}
    produced = {t.name for n in group for t in n.outputs}
    inputs, outputs, internal = [], [], []
    for n in group:
        for t in n.inputs:
            if t.name not in produced and t not in inputs:
                inputs.append(t)
        for t in n.outputs:
            if readers.get(t.name, set()) - members or t.name in keep or t.space != "act":
                outputs.append(t)
            else:
                internal.append(t)
    weights = tuple(w for n in group for w in n.weights)
    return Node(name, kind, group[0].layer, tuple(inputs), tuple(outputs), weights,
                macs=sum(n.macs for n in group),
                kv_read_bytes=sum(n.kv_read_bytes for n in group),
                kv_write_bytes=sum(n.kv_write_bytes for n in group),
                ops=tuple(op for n in group for op in n.ops), parts=tuple(parts),
                internal=tuple(internal) + tuple(t for n in group for t in n.internal))


def _merge_runs(graph: OpGraph, pattern: tuple[str, ...], kind: OpKind, suffix: str) -> OpGraph:
    """Merge each run of consecutive nodes named ``{prefix}{pattern[i]}`` (one layer)."""
    nodes, out, i = list(graph.nodes), [], 0
    readers, keep = _readers(nodes), set(graph.outputs)
    while i < len(nodes):
        run = nodes[i:i + len(pattern)]
        prefix = nodes[i].name[: -len(pattern[0])] if nodes[i].name.endswith(pattern[0]) else None
        if prefix is not None and len(run) == len(pattern) and all(
                n.name == prefix + s for n, s in zip(run, pattern)):
            out.append(_merge(run, prefix + suffix, kind, readers, keep))
            i += len(pattern)
        else:
            out.append(nodes[i])
            i += 1
    return replace(graph, nodes=tuple(out))


def _fold_rmsnorm(graph: OpGraph) -> OpGraph:
    """Fold every RMSNorm into each matvec that reads its output."""
    nodes, keep = list(graph.nodes), set(graph.outputs)
    readers = _readers(nodes)
    by_name = {n.name: n for n in nodes}
    out: list[Node] = []
    folded: dict[str, Node] = {}          # reader name -> the norm it takes as prologue
    for n in nodes:
        if n.kind is OpKind.RMSNORM:
            (normed,) = n.outputs
            names = readers.get(normed.name, set())
            if names and normed.name not in keep and all(
                    by_name[r].kind in (OpKind.MATVEC, OpKind.CLASSIFIER) for r in names):
                folded.update({r: n for r in names})
                readers[normed.name] = set()   # every reader builds it in its prologue
                continue
        if n.name in folded:
            n = _merge([folded[n.name], n], n.name, n.kind, readers, keep)
        out.append(n)
    return replace(graph, nodes=tuple(out))


def fuse(graph: OpGraph, config: FusionConfig = FusionConfig()) -> OpGraph:
    """Apply the rules of ``config`` to an unfused graph from ``build_graph``."""
    g = graph
    if config.attention_pass:
        g = _merge_runs(g, ("att_scores", "softmax", "att_sum"), OpKind.ATTENTION, "attention")
    if config.rope_kv_epilogue:
        g = _merge_runs(g, ("wq", "wk", "wv", "rope_q", "rope_k", "kv_write"),
                        OpKind.MATVEC, "qkv")
    if config.swiglu_epilogue:
        g = _merge_runs(g, ("w1", "w3", "swiglu"), OpKind.MATVEC, "w13")
    if config.residual_epilogue:
        g = _merge_runs(g, ("wo", "res_att"), OpKind.MATVEC, "wo")
        g = _merge_runs(g, ("w2", "res_ffn"), OpKind.MATVEC, "w2")
    if config.rmsnorm_prologue:
        g = _fold_rmsnorm(g)
    return g        # every rewrite re-checked the order (OpGraph.__post_init__)


def fusion_report(graph: OpGraph, config: FusionConfig = FusionConfig()) -> dict:
    """Cost of ``config`` on the unfused ``graph``: nodes and tensor bytes between commands."""
    fused = fuse(graph, config)
    wr, rd = fused.tensor_traffic()
    kv_rd, kv_wr = fused.kv_bytes_per_token
    internal = list({t.name: t for n in fused.nodes for t in n.internal}.values())
    return {
        "config": config.name,
        "nodes": len(fused.nodes),
        "tensor_write_bytes": wr,
        "tensor_read_bytes": rd,
        "internal_tensors": len(internal),
        "internal_bytes": sum(t.nbytes for t in internal),
        "weight_bytes": fused.weight_bytes_per_token,
        "kv_read_bytes": kv_rd,
        "kv_write_bytes": kv_wr,
        "output_bytes": fused.output_bytes,
    }


def ablation_configs() -> list[FusionConfig]:
    """No fusion, each rule alone, all rules: the rows of :func:`ablation`."""
    return ([FusionConfig.none()] + [FusionConfig.only(n) for n in FusionConfig.rule_names()]
            + [FusionConfig()])


def ablation(graph: OpGraph) -> list[dict]:
    """:func:`fusion_report` for each of :func:`ablation_configs`."""
    return [fusion_report(graph, c) for c in ablation_configs()]
