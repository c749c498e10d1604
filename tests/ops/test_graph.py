"""The op graph: run.c's step list, shapes for every model size, work totals two ways,
and the graph executed in float reproducing run.c's greedy tokens on stories260K."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speedllm.golden.formats import DEFAULT_GROUP_SIZE, SCALE_BITS, W_BITS, X_BITS, ACT_BITS
from speedllm.ops.graph import (DEFAULT_WEIGHT_ALIGN, KV_EXP_BYTES, MODEL_SHAPES, NORM_WEIGHT_BITS,
                                OpGraph,
                                OpKind, Tensor, build_graph, round_up)

# llama2.c run.c forward(), transcribed comment by comment: (comment, steps, kind).
RUN_C_PREAMBLE = [("copy the token embedding into x", ["embed"], OpKind.EMBED)]
RUN_C_LAYER = [
    ("attention rmsnorm", ["rms_att"], OpKind.RMSNORM),
    ("qkv matmuls for this position", ["wq", "wk", "wv"], OpKind.MATVEC),
    ("RoPE relative positional encoding: rotate q and k", ["rope_q", "rope_k"], OpKind.ROPE),
    ("key and value point to the kv cache", ["kv_write"], OpKind.KV_WRITE),
    ("multihead attention: the attention scores", ["att_scores"], OpKind.ATTENTION_SCORES),
    ("softmax the scores to get attention weights", ["softmax"], OpKind.SOFTMAX),
    ("weighted sum of the values, store back into xb", ["att_sum"], OpKind.ATTENTION_SUM),
    ("final matmul to get the output of the attention", ["wo"], OpKind.MATVEC),
    ("residual connection back into x", ["res_att"], OpKind.RESIDUAL),
    ("ffn rmsnorm", ["rms_ffn"], OpKind.RMSNORM),
    ("first calculate self.w1(x) and self.w3(x)", ["w1", "w3"], OpKind.MATVEC),
    ("SwiGLU non-linearity", ["swiglu"], OpKind.SWIGLU),
    ("final matmul to get the output of the ffn", ["w2"], OpKind.MATVEC),
    ("residual connection", ["res_ffn"], OpKind.RESIDUAL),
]
RUN_C_FINAL = [("final rmsnorm", ["rms_final"], OpKind.RMSNORM),
               ("classifier into logits", ["classifier"], OpKind.CLASSIFIER)]

SHAPES = ["stories260K", "stories15M", "stories110M", "tinyllama"]


def run_c_steps(n_layers):
    steps = [(s, k) for _, ss, k in RUN_C_PREAMBLE for s in ss]
    for l in range(n_layers):
        steps += [(f"l{l}.{s}", k) for _, ss, k in RUN_C_LAYER for s in ss]
    return steps + [(s, k) for _, ss, k in RUN_C_FINAL for s in ss]


def test_step_list_is_run_c_forward_stories260k(stories260k):
    g = build_graph(stories260k.args)
    assert stories260k.args.n_layers == 5
    assert [(n.name, n.kind) for n in g.nodes] == run_c_steps(5)


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes(shape):
    a = MODEL_SHAPES[shape]
    g = build_graph(a, pos=a.seq_len // 2)
    assert [(n.name, n.kind) for n in g.nodes] == run_c_steps(a.n_layers)
    t = g.tensors()
    npos = a.seq_len // 2 + 1
    for l in range(a.n_layers):
        p = f"l{l}."
        for name, shape_ in [("q", (a.dim,)), ("k", (a.kv_dim,)), ("v", (a.kv_dim,)),
                             ("q_rot", (a.dim,)), ("k_rot", (a.kv_dim,)),
                             ("att", (a.n_heads, npos)), ("att_prob", (a.n_heads, npos)),
                             ("k_cache", (npos, a.kv_dim)), ("v_cache", (npos, a.kv_dim)),
                             ("xb_att", (a.dim,)), ("hb", (a.hidden_dim,)),
                             ("hb_act", (a.hidden_dim,)), ("x_out", (a.dim,))]:
            assert t[p + name].shape == shape_, (p + name)
        assert t[p + "k_cache"].space == "dram"
        # matvec inputs are X16, everything else between ops ACT
        assert t[p + "xb"].fmt.bits == X_BITS and t[p + "q"].fmt.bits == ACT_BITS
        nodes = {n.name: n for n in g.nodes}
        for m, (rows, cols) in {"wq": (a.dim, a.dim), "wk": (a.kv_dim, a.dim),
                                "wv": (a.kv_dim, a.dim), "wo": (a.dim, a.dim),
                                "w1": (a.hidden_dim, a.dim), "w3": (a.hidden_dim, a.dim),
                                "w2": (a.dim, a.hidden_dim)}.items():
            (w,) = nodes[p + m].weights
            assert (w.name, w.layer, w.rows, w.cols) == (m, l, rows, cols)
    assert t["logits"].shape == (a.vocab_size,)
    (cls,) = g.nodes[-1].weights
    assert cls.name == ("token_embedding_table" if a.shared_classifier else "wcls")


def matrix_bytes(rows, cols, gs=DEFAULT_GROUP_SIZE, align=DEFAULT_WEIGHT_ALIGN):
    groups = -(-cols // gs)
    return round_up(rows * (groups * gs * W_BITS + groups * SCALE_BITS) // 8, align)


@pytest.mark.parametrize("shape", SHAPES)
def test_weight_bytes_and_macs_formula(shape):
    a = MODEL_SHAPES[shape]
    pos = a.seq_len - 1
    g = build_graph(a)
    d, h, kv, L = a.dim, a.hidden_dim, a.kv_dim, a.n_layers
    per_layer = (2 * matrix_bytes(d, d) + 2 * matrix_bytes(kv, d) + 2 * matrix_bytes(h, d)
                 + matrix_bytes(d, h) + 2 * round_up(d * NORM_WEIGHT_BITS // 8, DEFAULT_WEIGHT_ALIGN))
    embed_row = round_up(matrix_bytes(a.vocab_size, d, align=1) // a.vocab_size, DEFAULT_WEIGHT_ALIGN)
    want = (L * per_layer + matrix_bytes(a.vocab_size, d) + embed_row
            + round_up(d * NORM_WEIGHT_BITS // 8, DEFAULT_WEIGHT_ALIGN))
    assert g.weight_bytes_per_token == want
    macs = L * (2 * d * d + 2 * kv * d + 3 * h * d + 2 * a.n_heads * a.head_size * (pos + 1))
    assert g.macs_per_token == macs + a.vocab_size * d
    kv_rd, kv_wr = g.kv_bytes_per_token
    row = kv * g.kv_bits // 8 + a.n_kv_heads * KV_EXP_BYTES      # + one exponent a kv head
    assert kv_wr == L * 2 * row
    assert kv_rd == L * 2 * (pos + 1) * row
    fixed = build_graph(a, kv_bits=8, kv_block_exponent=False)
    assert fixed.kv_bytes_per_token == (L * 2 * (pos + 1) * kv, L * 2 * kv)


def test_weight_bytes_from_checkpoint_tensors(stories260k):
    """Every matrix run.c reads per token, sized from the loaded checkpoint's own arrays."""
    w, gs = stories260k.weights, DEFAULT_GROUP_SIZE
    g = build_graph(stories260k.args, group_size=gs)
    total = 0
    for name in ["wq", "wk", "wv", "wo", "w1", "w2", "w3"]:
        L, rows, cols = w[name].shape
        total += L * matrix_bytes(rows, cols, gs)
    for name in ["rms_att_weight", "rms_ffn_weight"]:
        L, n = w[name].shape
        total += L * round_up(n * NORM_WEIGHT_BITS // 8, DEFAULT_WEIGHT_ALIGN)
    total += round_up(w["rms_final_weight"].size * NORM_WEIGHT_BITS // 8, DEFAULT_WEIGHT_ALIGN)
    total += matrix_bytes(*w["wcls"].shape, gs)
    vocab, dim = w["token_embedding_table"].shape
    total += round_up(matrix_bytes(1, dim, gs, align=1), DEFAULT_WEIGHT_ALIGN)
    assert g.weight_bytes_per_token == total
    # the padded group layout: hidden_dim 172 rows of w2 are padded to a group multiple
    (w2,) = next(n for n in g.nodes if n.name == "l0.w2").weights
    assert w2.cols_padded % gs == 0 and w2.cols_padded - w2.cols < gs


def greedy_reference(reference_outputs, steps=64):
    return next(r for r in reference_outputs
                if r["steps"] == steps and r["temperature"] == 0 and r["prompt"])


def test_graph_executes_to_run_c_tokens(float_runner, reference_outputs):
    """The graph run node by node in float32 gives run.c's greedy tokens."""
    ref = greedy_reference(reference_outputs)
    ids, n_prompt = ref["token_ids"], len(ref["prompt_token_ids"])
    runner = float_runner()
    checked = 0
    for pos in range(24):
        logits = runner.step(build_graph(runner.args, pos), ids[pos])
        if pos + 1 >= n_prompt:
            assert int(np.argmax(logits)) == ids[pos + 1], pos
            checked += 1
    assert checked == 24 - n_prompt + 1


def test_check_order_rejects_bad_graphs():
    a = MODEL_SHAPES["stories260K"]
    g = build_graph(a)
    with pytest.raises(ValueError, match="before it is written"):
        OpGraph(g.nodes[1:], g.outputs)
    with pytest.raises(ValueError, match="written twice"):
        OpGraph(g.nodes[:2] + g.nodes[:1], ())
    with pytest.raises(ValueError, match="pos"):
        build_graph(a, a.seq_len)
    assert Tensor("t", (3,), g.tensors()["l0.xb"].fmt).nbytes == 3 * 2 + 4


def test_summary_script(capsys, model_path):
    from speedllm.ops import ablation
    from speedllm.ops.__main__ import main
    assert main(["--checkpoint", str(model_path), "--shape", "stories15M"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "analytical" in out["computed"]
    for key, a in [(str(model_path), MODEL_SHAPES["stories260K"]),
                   ("stories15M", MODEL_SHAPES["stories15M"])]:
        s, g = out[key], build_graph(a)
        assert s["nodes"] == len(g.nodes) and s["weight_bytes_per_token"] == g.weight_bytes_per_token
        assert s["fused_nodes"] < s["nodes"]
        m = s["memory_fused"]
        assert m["scratchpad_bytes_reuse"] < m["scratchpad_bytes_no_reuse"]
        rows = s["fusion_ablation"]
        assert [r["config"] for r in rows] == [r["config"] for r in ablation(g)]
        assert rows[-1]["scratchpad_bytes_reuse"] == m["scratchpad_bytes_reuse"]
    assert main(["--shape", "stories15M", "--pos", "256"]) == 1
    assert "pos must be" in capsys.readouterr().err
    assert main(["--checkpoint", "/nonexistent/model.bin"]) == 1
