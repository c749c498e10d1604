"""Fusion rules: each removes exactly its intermediates, each toggles independently, and
every fused graph computes the same logits as the unfused one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from speedllm.ops.fusion import FusionConfig, ablation, fuse, fusion_report
from speedllm.ops.graph import MODEL_SHAPES, OpKind, build_graph

RULES = FusionConfig.rule_names()

# What each rule keeps on chip, per layer and after the last layer (the brief's rules).
REMOVED = {
    "rmsnorm_prologue": (("xb", "xb_ffn"), ("xb_final",)),
    "rope_kv_epilogue": (("q", "k", "v", "k_rot"), ()),
    "swiglu_epilogue": (("hb", "hb2"), ()),
    "residual_epilogue": (("xb2", "ffn_out"), ()),
    "attention_pass": (("att", "att_prob"), ()),
}
# Nodes a rule merges away, per layer and after the last layer.
SAVED = {"rmsnorm_prologue": (2, 1), "rope_kv_epilogue": (5, 0), "swiglu_epilogue": (2, 0),
         "residual_epilogue": (2, 0), "attention_pass": (2, 0)}


def removed_names(rule, n_layers):
    per_layer, final = REMOVED[rule]
    return {f"l{l}.{t}" for l in range(n_layers) for t in per_layer} | set(final)


def internal_names(graph):
    return {t.name for n in graph.nodes for t in n.internal}


def boundary_names(graph):
    return {t.name for n in graph.nodes for t in n.inputs + n.outputs}


def configs():
    for on in itertools.product([False, True], repeat=len(RULES)):
        yield FusionConfig(**dict(zip(RULES, on)))


def test_config_names():
    assert FusionConfig().name == "all" and FusionConfig.none().name == "none"
    assert all(getattr(FusionConfig(), r) for r in RULES)
    assert FusionConfig.only("swiglu_epilogue").to_dict() == {r: r == "swiglu_epilogue" for r in RULES}
    with pytest.raises(ValueError, match="unknown fusion rule"):
        FusionConfig.only("softmax_magic")


@pytest.mark.parametrize("shape", ["stories260K", "tinyllama"])
def test_no_fusion_is_identity(shape):
    g = build_graph(MODEL_SHAPES[shape])
    f = fuse(g, FusionConfig.none())
    assert f.nodes == g.nodes


@pytest.mark.parametrize("shape", ["stories260K", "stories15M", "tinyllama"])
def test_every_subset_removes_exactly_its_intermediates(shape):
    a = MODEL_SHAPES[shape]
    g = build_graph(a)
    n0 = len(g.nodes)
    for cfg in configs():
        f = fuse(g, cfg)
        on = [r for r in RULES if getattr(cfg, r)]
        want = set().union(*(removed_names(r, a.n_layers) for r in on)) if on else set()
        assert internal_names(f) == want, cfg.name
        assert not (boundary_names(f) & want), cfg.name      # never read or written outside
        saved = sum(SAVED[r][0] * a.n_layers + SAVED[r][1] for r in on)
        assert len(f.nodes) == n0 - saved, cfg.name
        # no work is lost or invented by fusing
        assert f.macs_per_token == g.macs_per_token
        assert f.kv_bytes_per_token == g.kv_bytes_per_token
        ops = [op for n in f.nodes for op in n.ops]
        assert sorted(set(ops)) == sorted(n.name for n in g.nodes)


def test_all_rules_give_five_commands_a_layer():
    a = MODEL_SHAPES["stories260K"]
    f = fuse(build_graph(a))
    assert fuse(f).nodes == f.nodes                     # fusing again changes nothing
    kinds = [n.kind for n in f.nodes]
    assert kinds == ([OpKind.EMBED] + [OpKind.MATVEC, OpKind.ATTENTION, OpKind.MATVEC,
                                        OpKind.MATVEC, OpKind.MATVEC] * a.n_layers
                     + [OpKind.CLASSIFIER])
    qkv = f.nodes[1]
    assert qkv.ops == tuple("l0." + s for s in ["rms_att", "wq", "wk", "wv", "rope_q",
                                               "rope_k", "kv_write"])
    assert [w.name for w in qkv.weights] == ["rms_att_weight", "wq", "wk", "wv"]
    assert [t.name for t in qkv.inputs] == ["x"]
    assert {t.name for t in qkv.outputs} == {"l0.q_rot", "l0.k_cache", "l0.v_cache"}
    # fully fused: weights are read exactly as often as unfused
    assert f.weight_bytes_per_token == build_graph(a).weight_bytes_per_token


def test_report_and_ablation():
    g = build_graph(MODEL_SHAPES["stories15M"])
    rows = ablation(g)
    assert [r["config"] for r in rows] == ["none", *RULES, "all"]
    none, full = rows[0], rows[-1]
    assert none["nodes"] == len(g.nodes) and none["internal_tensors"] == 0
    assert full["nodes"] == len(fuse(g).nodes)
    assert full["tensor_write_bytes"] < none["tensor_write_bytes"]
    assert full["tensor_read_bytes"] < none["tensor_read_bytes"]
    # the bytes a rule keeps on chip are the bytes of the tensors it removes
    for row in rows[1:-1]:
        removed = removed_names(row["config"], g.args.n_layers)
        t = g.tensors()
        assert row["internal_bytes"] == sum(t[n].nbytes for n in removed)
        assert row["tensor_write_bytes"] == none["tensor_write_bytes"] - row["internal_bytes"]
    assert fusion_report(g, FusionConfig.none()) == none


@pytest.mark.parametrize("cfg", [FusionConfig.none(), FusionConfig()]
                         + [FusionConfig.only(r) for r in RULES]
                         + [FusionConfig.only("rmsnorm_prologue", "swiglu_epilogue")],
                         ids=lambda c: c.name)
def test_fused_graph_computes_the_same_logits(cfg, float_runner, reference_outputs):
    """Each fused node runs with only its declared inputs; logits equal the unfused ones."""
    ref_runner, runner = float_runner(), float_runner()
    for pos, token in enumerate(reference_outputs[0]["token_ids"][:6]):
        g = build_graph(runner.args, pos)
        want = ref_runner.step(g, token)
        got = runner.step(fuse(g, cfg), token)
        np.testing.assert_array_equal(got, want)
