"""A float32 interpreter of op graphs (run.c arithmetic), for the ops tests.

It runs a graph node by node and checks each node's interface while doing so: a node sees
only the tensors it declares as inputs, and only the tensors it declares as outputs leave
it. A fused node runs its ``parts`` in order inside that boundary, so a fusion that drops a
tensor someone still needs fails with a ``KeyError``.
"""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.golden.checkpoint import load_checkpoint
from speedllm.ops.graph import OpGraph, OpKind


class FloatGraphRunner:
    """Executes op graphs on a checkpoint's float32 weights, keeping a KV cache."""

    def __init__(self, checkpoint):
        self.args = checkpoint.args
        self.w = checkpoint.weights
        a = self.args
        self.key_cache = np.zeros((a.n_layers, a.seq_len, a.kv_dim), dtype=np.float32)
        self.value_cache = np.zeros_like(self.key_cache)

    def weight(self, ref):
        w = np.asarray(self.w[ref.name], dtype=np.float32)
        return w if ref.layer is None else w[ref.layer]

    def step(self, graph: OpGraph, token: int) -> np.ndarray:
        env: dict[str, np.ndarray] = {}
        for node in graph.nodes:
            local = {t.name: env[t.name] for t in node.inputs}
            for part in node.parts or (node,):
                self._run(part, local, graph.pos, token)
            for t in node.outputs:
                env[t.name] = local[t.name]
        (out,) = graph.outputs
        return env[out]

    def _run(self, node, env, pos, token):
        a = self.args
        ins = [env[t.name] for t in node.inputs]
        names = [t.name for t in node.outputs]
        kind = node.kind
        if kind is OpKind.EMBED:
            res = [self.weight(node.weights[0])[token].copy()]
        elif kind is OpKind.RMSNORM:
            x = ins[0]
            ss = np.float32(np.dot(x, x)) / np.float32(x.size) + np.float32(1e-5)
            res = [self.weight(node.weights[0]) * (x * np.float32(1.0 / np.sqrt(ss)))]
        elif kind in (OpKind.MATVEC, OpKind.CLASSIFIER):
            res = [self.weight(node.weights[0]) @ ins[0]]
        elif kind is OpKind.ROPE:
            x = ins[0].copy()
            i = np.arange(0, x.size, 2)
            freq = 1.0 / np.power(np.float32(10000.0), (i % a.head_size) / np.float32(a.head_size))
            val = np.float32(pos) * freq.astype(np.float32)
            c, s = np.cos(val).astype(np.float32), np.sin(val).astype(np.float32)
            v0, v1 = x[0::2].copy(), x[1::2].copy()
            x[0::2], x[1::2] = v0 * c - v1 * s, v0 * s + v1 * c
            res = [x]
        elif kind is OpKind.KV_WRITE:
            self.key_cache[node.layer, pos] = ins[0]
            self.value_cache[node.layer, pos] = ins[1]
            res = [self.key_cache[node.layer, :pos + 1], self.value_cache[node.layer, :pos + 1]]
        elif kind is OpKind.ATTENTION_SCORES:
            q = ins[0].reshape(a.n_heads, a.head_size)
            k = ins[1].reshape(pos + 1, a.n_kv_heads, a.head_size)
            kh = np.repeat(k, a.kv_mul, axis=1)            # head h reads kv head h // kv_mul
            res = [np.einsum("hd,thd->ht", q, kh) / np.float32(np.sqrt(a.head_size))]
        elif kind is OpKind.SOFTMAX:
            e = np.exp(ins[0] - ins[0].max(axis=1, keepdims=True))
            res = [e / e.sum(axis=1, keepdims=True)]
        elif kind is OpKind.ATTENTION_SUM:
            v = np.repeat(ins[1].reshape(pos + 1, a.n_kv_heads, a.head_size), a.kv_mul, axis=1)
            res = [np.einsum("ht,thd->hd", ins[0], v).reshape(-1)]
        elif kind is OpKind.RESIDUAL:
            res = [ins[0] + ins[1]]
        elif kind is OpKind.SWIGLU:
            h1, h3 = ins
            res = [h1 * (np.float32(1.0) / (np.float32(1.0) + np.exp(-h1))) * h3]
        else:
            raise AssertionError(f"no float semantics for {kind}")
        for name, t, value in zip(names, node.outputs, res):
            assert value.shape == t.shape, (node.name, name, value.shape, t.shape)
            env[name] = value.astype(np.float32)


@pytest.fixture(scope="session")
def stories260k(model_path):
    return load_checkpoint(model_path)


@pytest.fixture
def float_runner(stories260k):
    return lambda: FloatGraphRunner(stories260k)
