"""Memory plan: the verifier on every model shape, reuse vs no reuse, corrupted plans
caught, and small hand-made graphs against a brute-force optimal colouring."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import ACT, MODEL_SHAPES, Node, OpGraph, OpKind, Tensor, build_graph
from speedllm.ops.memplan import (Allocation, PlanError, dram_roundtrip, first_fit,
                                  live_intervals, memory_report, plan_memory, verify_plan)


def graphs(shape):
    a = MODEL_SHAPES[shape]
    g = build_graph(a)
    return [g, fuse(g, FusionConfig()), fuse(g, FusionConfig.only("attention_pass")),
            build_graph(a, 0)]


@pytest.mark.parametrize("shape", sorted(MODEL_SHAPES))
@pytest.mark.parametrize("align", [8, 64])
def test_plans_verify_on_every_shape(shape, align):
    for g in graphs(shape):
        reuse = plan_memory(g, reuse=True, align=align)
        alone = plan_memory(g, reuse=False, align=align)
        verify_plan(reuse, g)
        verify_plan(alone, g)
        assert reuse.scratchpad_bytes < alone.scratchpad_bytes
        assert alone.scratchpad_bytes == sum(iv.nbytes for iv in live_intervals(g, align))
        # the plan reaches the lower bound (the most bytes live at once) on these graphs
        assert reuse.scratchpad_bytes == reuse.peak_live_bytes
        assert all(a.offset % align == 0 for a in reuse.allocations)


def test_weights_kv_and_logits_are_not_planned():
    g = fuse(build_graph(MODEL_SHAPES["stories15M"]))
    names = set(plan_memory(g).offsets())
    assert "logits" not in names and "l0.k_cache" not in names
    assert names == {t.name for t in g.tensors().values() if t.space == "act"}


def test_verifier_catches_overlap_and_misalignment():
    g = build_graph(MODEL_SHAPES["stories260K"])
    plan = plan_memory(g, align=8)
    allocs = list(plan.allocations)
    # move a tensor onto another one live at the same time
    i, j = next((i, j) for i, j in itertools.combinations(range(len(allocs)), 2)
                if allocs[i].interval.overlaps(allocs[j].interval)
                and allocs[i].interval.nbytes <= plan.scratchpad_bytes - allocs[j].offset)
    bad = allocs.copy()
    bad[i] = Allocation(allocs[i].interval, allocs[j].offset)
    with pytest.raises(PlanError, match="share bytes"):
        verify_plan(replace(plan, allocations=tuple(bad)), g)
    bad = allocs.copy()
    bad[0] = Allocation(allocs[0].interval, allocs[0].offset + 4)
    with pytest.raises(PlanError, match="misaligned"):
        verify_plan(replace(plan, allocations=tuple(bad)), g)
    with pytest.raises(PlanError, match="not placed"):
        verify_plan(replace(plan, allocations=tuple(allocs[1:])), g)


def small_graph(edges, n_tensors, nbytes):
    """Node i writes tensor i and reads the tensors listed in ``edges[i]``."""
    ts = [Tensor(f"t{i}", (nbytes[i] // 4,), ACT) for i in range(n_tensors)]
    nodes = [Node(f"n{i}", OpKind.RESIDUAL, None, tuple(ts[j] for j in edges[i]), (ts[i],))
             for i in range(n_tensors)]
    return OpGraph(tuple(nodes), (f"t{n_tensors - 1}",))


def brute_force_slots(intervals):
    """Fewest equal-size slots so that overlapping intervals never share one."""
    for k in range(1, len(intervals) + 1):
        for colours in itertools.product(range(k), repeat=len(intervals)):
            if all(colours[a] != colours[b] for a, b in itertools.combinations(range(len(intervals)), 2)
                   if intervals[a].overlaps(intervals[b])):
                return k
    return 0


def test_hand_made_diamond_has_known_optimal_colouring():
    # t0 -> (t1, t2) -> t3 -> t4: three values live at once (t0, t1, t2 at node 2)
    g = small_graph([(), (0,), (0,), (1, 2), (3,)], 5, [64] * 5)
    ivs = live_intervals(g, 64)
    assert [(iv.start, iv.end) for iv in ivs] == [(0, 2), (1, 3), (2, 3), (3, 4), (4, 4)]
    plan = plan_memory(g, align=64)
    verify_plan(plan, g)
    assert plan.scratchpad_bytes == 64 * brute_force_slots(ivs) == 3 * 64
    off = plan.offsets()
    assert off["t3"] == off["t0"]           # t0 is dead after node 2: its buffer is reused
    assert plan_memory(g, reuse=False, align=64).scratchpad_bytes == 5 * 64


def test_random_small_graphs_are_coloured_optimally():
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(3, 7)
        edges = [tuple(sorted(rng.sample(range(i), rng.randint(0, min(i, 2))))) for i in range(n)]
        g = small_graph(edges, n, [32] * n)
        plan = plan_memory(g, align=32)
        verify_plan(plan, g)
        assert plan.scratchpad_bytes == 32 * brute_force_slots(live_intervals(g, 32))


def test_mixed_sizes_use_size_order_when_it_is_better():
    # small t0 holds offset 0 while big t1 arrives, so in start order big t2 cannot use the
    # 16-byte hole below t1; placing the big tensors first leaves no hole
    g = small_graph([(), (0,), (1,), (2,)], 4, [16, 128, 128, 16])
    ivs = live_intervals(g, 16)
    start_order = max(a.stop for a in first_fit(ivs, 16))
    plan = plan_memory(g, align=16)
    verify_plan(plan, g)
    assert plan.scratchpad_bytes == plan.peak_live_bytes < start_order


def test_dram_roundtrip_mode():
    g = build_graph(MODEL_SHAPES["stories260K"])
    r = dram_roundtrip(g)
    wr, rd = g.tensor_traffic()
    kv_rd, kv_wr = g.kv_bytes_per_token
    assert r["dram_bytes_per_token"] == g.weight_bytes_per_token + kv_rd + kv_wr + g.output_bytes + wr + rd
    rep = memory_report(g)
    assert rep["scratchpad_bytes_reuse"] < rep["scratchpad_bytes_no_reuse"]
    # fusing lowers the round-trip bytes
    assert dram_roundtrip(fuse(g))["dram_bytes_per_token"] < r["dram_bytes_per_token"]
