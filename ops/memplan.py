"""Liveness-based memory plan: on-chip scratchpad offsets for the graph's activation tensors.

Only ``space="act"`` tensors between nodes are planned. Weights and the KV cache live in
DRAM; a fused node's ``internal`` tensors live inside its unit.

Liveness runs over the node order: a tensor is live from the index of the node that writes
it to the index of its last reader (both ends inclusive, so a node's inputs and outputs
never share bytes: no in-place updates assumed). Graph inputs are live from index 0, graph
outputs kept on chip (``act``) until the end; the logits go to DRAM for the host. Each tensor takes ``round_up(nbytes, align)`` bytes, ``align`` being
the scratchpad's bank/beat width in bytes.

Modes (:func:`plan_memory`):

``reuse=True``
    offset assignment by first fit (a tensor goes at the lowest aligned offset free of every
    tensor live at the same time), tried in two orders (by start index, by size descending),
    keeping the smaller plan. A buffer is reused as soon as its value is dead.
``reuse=False``
    every tensor gets its own buffer; scratchpad bytes = sum of all tensor sizes.

:func:`dram_roundtrip` gives the third option: no scratchpad, every tensor written to DRAM
by its producer and read back by each reader (the DRAM bytes per token of that mode).

:func:`verify_plan` checks a plan: every tensor placed once, aligned, inside the scratchpad,
and no two simultaneously-live tensors share a byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import OpGraph, Tensor, round_up

DEFAULT_ALIGN = 8     # one 64-bit beat / bank word


@dataclass(frozen=True)
class LiveInterval:
    """``tensor`` is live over node indices ``[start, end]`` and needs ``nbytes`` (aligned)."""

    tensor: Tensor
    start: int
    end: int
    nbytes: int

    def overlaps(self, other: "LiveInterval") -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Allocation:
    interval: LiveInterval
    offset: int

    @property
    def name(self) -> str:
        return self.interval.tensor.name

    @property
    def stop(self) -> int:
        return self.offset + self.interval.nbytes


@dataclass(frozen=True)
class MemoryPlan:
    """Scratchpad offsets of every activation tensor of a graph."""

    allocations: tuple[Allocation, ...]
    scratchpad_bytes: int
    align: int
    reuse: bool

    @property
    def peak_live_bytes(self) -> int:
        """The lower bound of any plan: the most bytes live at one node."""
        return peak_live_bytes([a.interval for a in self.allocations])

    def offsets(self) -> dict[str, int]:
        return {a.name: a.offset for a in self.allocations}

    def to_dict(self) -> dict:
        return {"reuse": self.reuse, "align": self.align, "tensors": len(self.allocations),
                "scratchpad_bytes": self.scratchpad_bytes,
                "peak_live_bytes": self.peak_live_bytes}


def live_intervals(graph: OpGraph, align: int = DEFAULT_ALIGN) -> list[LiveInterval]:
    """The live interval of every ``act`` tensor of ``graph``, in order of definition."""
    if align <= 0:
        raise ValueError(f"align must be a positive number of bytes, not {align!r}")
    start: dict[str, int] = {name: 0 for name in graph.inputs}
    end: dict[str, int] = {}
    tensors: dict[str, Tensor] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            if t.space == "act":
                tensors.setdefault(t.name, t)
                end[t.name] = i
        for t in node.outputs:
            if t.space == "act":
                tensors.setdefault(t.name, t)
                start[t.name] = i
                end.setdefault(t.name, i)     # written and never read: live at its writer
    last = len(graph.nodes) - 1
    for name in graph.outputs:
        if name in tensors:
            end[name] = last
    return sorted((LiveInterval(t, start[n], end[n], round_up(t.nbytes, align))
                   for n, t in tensors.items()), key=lambda iv: (iv.start, iv.end))


def peak_live_bytes(intervals: list[LiveInterval]) -> int:
    if not intervals:
        return 0
    last = max(iv.end for iv in intervals)
    live = [0] * (last + 2)
    for iv in intervals:
        live[iv.start] += iv.nbytes
        live[iv.end + 1] -= iv.nbytes
    peak = run = 0
    for d in live:
        run += d
        peak = max(peak, run)
    return peak


def first_fit(intervals: list[LiveInterval], align: int) -> list[Allocation]:
    """Place ``intervals`` in the given order, each at the lowest aligned free offset."""
    placed: list[Allocation] = []
    for iv in intervals:
        busy = sorted((a.offset, a.stop) for a in placed if a.interval.overlaps(iv))
        offset = 0
        for lo, hi in busy:
            if offset + iv.nbytes <= lo:
                break
            offset = max(offset, round_up(hi, align))
        placed.append(Allocation(iv, offset))
    return placed


def plan_memory(graph: OpGraph, *, reuse: bool = True, align: int = DEFAULT_ALIGN) -> MemoryPlan:
    """Assign scratchpad offsets to the activation tensors of ``graph`` (see module doc)."""
    intervals = live_intervals(graph, align)
    if not reuse:
        allocs, offset = [], 0
        for iv in intervals:
            allocs.append(Allocation(iv, offset))
            offset += iv.nbytes
        return MemoryPlan(tuple(allocs), offset, align, reuse=False)
    best = None
    for order in (intervals, sorted(intervals, key=lambda iv: (-iv.nbytes, iv.start))):
        allocs = first_fit(order, align)
        size = max((a.stop for a in allocs), default=0)
        if best is None or size < best[0]:
            best = (size, allocs)
    size, allocs = best
    allocs.sort(key=lambda a: (a.interval.start, a.interval.end))
    return MemoryPlan(tuple(allocs), size, align, reuse=True)


class PlanError(ValueError):
    """A memory plan that would corrupt a live value."""


def verify_plan(plan: MemoryPlan, graph: OpGraph | None = None) -> None:
    """Raise :class:`PlanError` unless ``plan`` is safe (and covers ``graph``'s tensors)."""
    names = [a.name for a in plan.allocations]
    if len(set(names)) != len(names):
        raise PlanError("a tensor is placed twice")
    if graph is not None:
        want = {iv.tensor.name for iv in live_intervals(graph, plan.align)}
        if want != set(names):
            raise PlanError(f"tensors not placed: {sorted(want - set(names))[:5]}, "
                            f"unknown: {sorted(set(names) - want)[:5]}")
    for a in plan.allocations:
        if a.offset % plan.align or a.offset < 0 or a.stop > plan.scratchpad_bytes:
            raise PlanError(f"{a.name}: bytes [{a.offset}, {a.stop}) misaligned or outside "
                            f"the {plan.scratchpad_bytes}-byte scratchpad")
        if a.interval.nbytes < a.interval.tensor.nbytes:
            raise PlanError(f"{a.name}: {a.interval.nbytes} bytes for a "
                            f"{a.interval.tensor.nbytes}-byte tensor")
    # sweep by start index: only allocations whose intervals overlap are compared
    allocs = sorted(plan.allocations, key=lambda a: a.interval.start)
    for i, a in enumerate(allocs):
        for b in allocs[i + 1:]:
            if b.interval.start > a.interval.end:
                break
            if a.offset < b.stop and b.offset < a.stop:
                raise PlanError(f"{a.name} [{a.offset}, {a.stop}) and {b.name} "
                                f"[{b.offset}, {b.stop}) share bytes while both live "
                                f"(nodes {a.interval.start}-{a.interval.end} and "
                                f"{b.interval.start}-{b.interval.end})")


def dram_roundtrip(graph: OpGraph) -> dict:
    """DRAM bytes per token when no tensor stays on chip (each written out, read back)."""
    wr, rd = graph.tensor_traffic()
    kv_rd, kv_wr = graph.kv_bytes_per_token
    return {"tensor_write_bytes": wr, "tensor_read_bytes": rd,
            "dram_bytes_per_token": (graph.weight_bytes_per_token + kv_rd + kv_wr
                                     + graph.output_bytes + wr + rd)}


def memory_report(graph: OpGraph, align: int = DEFAULT_ALIGN) -> dict:
    """Scratchpad bytes with and without reuse, and the DRAM round-trip alternative."""
    with_reuse = plan_memory(graph, reuse=True, align=align)
    without = plan_memory(graph, reuse=False, align=align)
    return {"scratchpad_bytes_reuse": with_reuse.scratchpad_bytes,
            "scratchpad_bytes_no_reuse": without.scratchpad_bytes,
            "peak_live_bytes": with_reuse.peak_live_bytes,
            "tensors": len(with_reuse.allocations),
            "dram_roundtrip": dram_roundtrip(graph)}
