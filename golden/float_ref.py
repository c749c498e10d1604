"""The float reference: llama2.c ``run.c``'s ``forward()`` in NumPy float32.

:class:`FloatTransformer` follows ``run.c`` step by step (one comment per step; the step
list is the operator graph the compiler in ``speedllm.ops`` lowers), with its float32
arithmetic, its KV cache, grouped-query attention (``kv_mul`` query heads share one K/V
head) and its RoPE, which ``run.c`` recomputes at every position from ``powf``, ``cosf``
and ``sinf`` in float32.

How closely it follows ``run.c``
--------------------------------
Every elementwise step is float32 in ``run.c``'s order of operations
(``weight * (ss * x)``, ``score / sqrtf(head_size)``, ``x[i] / sum``...), and softmax
sums run sequentially as ``run.c``'s loops do. The transcendental functions (``powf``,
``cosf``, ``sinf``, ``expf``) are evaluated in float64 and rounded once to float32, the
correctly rounded value that glibc's float versions (nearly always) return; NumPy's own
SIMD float32 ``exp`` differs from it by 1-2 ulp for ~40% of inputs. Dot products
(matrix-vector, the rmsnorm sum of squares, attention scores and sums) use BLAS, which
adds in another order than ``run.c``'s sequential loops (a relative difference around
1e-7): the one deliberate departure, taken for speed. The six ``run.c`` references in
``reference_outputs.json`` (greedy and sampled) come out token for token all the same
(tests/golden/test_float_ref.py).

Speed
-----
RoPE rotations are tabulated for every position at construction. Attention of all heads
is two matrix products: the queries go into a block matrix ``[n_heads, kv_dim]`` (head
``h`` in the columns of its KV head ``h // kv_mul``), so scores are ``qblock @ keys.T``
and the weighted sums the diagonal blocks of ``att @ values``. Small models (see
:data:`SMALL_MODEL_MATRIX`) stack wq/wk/wv and w1/w3 and run BLAS on one thread.
``python -m speedllm.golden.float_ref MODEL`` measures greedy tok/s (:func:`benchmark`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import math
import os

import numpy as np

from ..errors import InputError
from .checkpoint import Checkpoint, ModelArgs

F32 = np.float32
_EPS = float(F32(1e-5))         # run.c's 1e-5f
# Constants as 1-element arrays: array-with-array arithmetic is ~3x faster in NumPy 1.x
# than array-with-scalar (which goes through scalar conversion and value-based casting).
_ONE = np.ones(1, dtype=np.float32)
# A model whose largest matrix has fewer weights than this is "small": per-call overhead,
# not arithmetic, bounds its speed, so (1) its matrix-vector products run on one BLAS
# thread (OpenBLAS splits a gemv over threads from ~9k elements on, and at this size the
# hand-off costs more than it saves: 2x slower on 2 cores) and (2) wq/wk/wv and w1/w3 are
# stacked into one matrix each (one call instead of three and two; a copy of those
# weights, which only small models can afford).
SMALL_MODEL_MATRIX = 1 << 20


class _OpenBlasThreads:
    """Switch NumPy's bundled OpenBLAS to one thread for a while (no-op for other BLAS)."""

    def __init__(self):
        self._get = self._set = None
        libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
        for path in glob.glob(os.path.join(libdir, "libopenblas*.so*")):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for suffix in ("64_", ""):
                get = getattr(lib, "openblas_get_num_threads" + suffix, None)
                set_ = getattr(lib, "openblas_set_num_threads" + suffix, None)
                if get is not None and set_ is not None:
                    set_.argtypes = [ctypes.c_int]
                    self._get, self._set = get, set_
                    return

    @contextlib.contextmanager
    def single(self):
        threads = self._get() if self._get is not None else 1
        if threads > 1:
            self._set(1)
        try:
            yield
        finally:
            if threads > 1:
                self._set(threads)


_BLAS_THREADS = _OpenBlasThreads()


def _round_f32(values: np.ndarray) -> np.ndarray:
    """float64 results of a libm function, rounded once to float32 (glibc's ``*f``)."""
    return values.astype(np.float32)


def expf(x: np.ndarray) -> np.ndarray:
    """``expf`` of float32 ``x``: exp in float64 rounded once, the correctly rounded value,
    which glibc's ``expf`` (error bound 0.502 ulp) almost always returns too. NumPy's own
    float32 ``exp`` differs from it by 1-2 ulp for ~40% of inputs."""
    return _round_f32(np.exp(x, dtype=np.float64))


def silu_gate(x: np.ndarray) -> np.ndarray:
    """``1.0f / (1.0f + expf(-x))`` in float32."""
    e = np.negative(x, dtype=np.float64)
    np.exp(e, out=e)
    return _ONE / (_ONE + _round_f32(e))


def rope_tables(args: ModelArgs) -> tuple[np.ndarray, np.ndarray]:
    """RoPE rotations ``(fcr, fci)``, each float32 ``[seq_len, head_size // 2]``.

    ``run.c``: ``freq = 1.0f / powf(10000.0f, head_dim / (float)head_size)``,
    ``val = pos * freq``, ``fcr = cosf(val)``, ``fci = sinf(val)``, where ``head_dim`` is
    the even index inside the head. Precomputed here for every position, with the same
    float32 roundings.
    """
    head_dim = np.arange(0, args.head_size, 2, dtype=np.float32)           # [hs/2]
    exponent = head_dim / F32(args.head_size)                               # float32 divide
    powf = _round_f32(np.power(10000.0, exponent.astype(np.float64)))       # powf(10000.0f, e)
    freq = F32(1.0) / powf                                                  # [hs/2] float32
    pos = np.arange(args.seq_len, dtype=np.float32)[:, None]                # int pos -> float
    val = pos * freq[None, :]                                               # [seq, hs/2]
    v64 = val.astype(np.float64)
    return _round_f32(np.cos(v64)), _round_f32(np.sin(v64))


class FloatTransformer:
    """``run.c``'s transformer: weights, KV cache and ``forward(token, pos)``.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`speedllm.golden.checkpoint.load_checkpoint` (float32 weights).

    Notes
    -----
    ``forward`` must see positions ``0, 1, 2, ...`` in order within a sequence (it writes
    the KV cache row of ``pos`` and attends over rows ``0..pos``); :meth:`reset` starts a
    new sequence. Logits are float32 ``[vocab_size]``, a fresh array per call.
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.args = a = checkpoint.args
        if a.dim % a.n_heads or a.n_heads % a.n_kv_heads or a.head_size % 2:
            raise InputError(
                f"unsupported shape: dim {a.dim}, n_heads {a.n_heads}, n_kv_heads "
                f"{a.n_kv_heads} (need n_heads | dim, n_kv_heads | n_heads, even head_size)")
        w = checkpoint.weights
        self._w = {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}
        largest = max(int(np.prod(v.shape[-2:])) for v in self._w.values() if v.ndim >= 2)
        self._small = largest < SMALL_MODEL_MATRIX
        # per-layer weights, made once: (rms_att, qkv matrices, wo, rms_ffn, w1/w3
        # matrices, w2); a projection is one stacked matrix (small models) or a tuple
        self._layers = []
        for l in range(a.n_layers):
            qkv = tuple(self._w[n][l] for n in ("wq", "wk", "wv"))
            w13 = tuple(self._w[n][l] for n in ("w1", "w3"))
            if self._small:
                qkv, w13 = (np.concatenate(qkv),), (np.concatenate(w13),)
            self._layers.append((self._w["rms_att_weight"][l], qkv, self._w["wo"][l],
                                 self._w["rms_ffn_weight"][l], w13, self._w["w2"][l]))
        # RoPE as one multiply-add over [q; k] (dim + kv_dim values): element i is
        # rotated by the pair angle of (i % head_size) // 2, using run.c's identities
        # v0' = v0*fcr + v1*(-fci), v1' = v1*fcr + v0*fci (the same float32 roundings).
        fcr, fci = rope_tables(a)                                        # [seq, hs/2] each
        pair = (np.arange(a.dim + a.kv_dim) % a.head_size) // 2
        sign = np.where(np.arange(a.dim + a.kv_dim) % 2 == 0, -1, 1).astype(np.float32)
        self._rope_cos = np.ascontiguousarray(fcr[:, pair])             # [seq, dim + kv_dim]
        self._rope_sin = np.ascontiguousarray(fci[:, pair] * sign)      # [seq, dim + kv_dim]
        self._rope_swap = np.arange(a.dim + a.kv_dim) ^ 1                # partner of each value
        self._sqrt_head_size = np.sqrt(np.full(1, a.head_size, F32))     # sqrtf(head_size)
        self._scale = np.zeros(1, dtype=np.float32)                      # rmsnorm's 1/rms
        # Attention of all heads as two plain matrix products: the queries go into a
        # block matrix qblock [n_heads, kv_dim] whose row h holds q_h in the columns of
        # its KV head h // kv_mul (zeros elsewhere); _head_cols picks those blocks.
        h = np.arange(a.n_heads)[:, None]
        i = np.arange(a.head_size)[None, :]
        self._head_cols = (h * a.kv_dim + (h // a.kv_mul) * a.head_size + i).reshape(-1)
        self._qblock = np.zeros((a.n_heads, a.kv_dim), dtype=np.float32)
        # KV cache: [n_layers, seq_len, kv_dim], run.c's layout.
        shape = (a.n_layers, a.seq_len, a.kv_dim)
        self.key_cache = np.zeros(shape, dtype=np.float32)
        self.value_cache = np.zeros(shape, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (forget the KV cache)."""
        self.key_cache.fill(0.0)
        self.value_cache.fill(0.0)
        self._next_pos = 0

    @staticmethod
    def project(matrices: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
        """Stacked matrix-vector products: ``concatenate([m @ x for m in matrices])``."""
        if len(matrices) == 1:
            return matrices[0] @ x
        return np.concatenate([m @ x for m in matrices])

    def rmsnorm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``run.c``'s rmsnorm: ``weight * (ss * x)``, ``ss = 1 / sqrt(mean(x^2) + 1e-5)``.

        The scalar steps run on Python floats, each rounded to float32: a float64
        operation on float32 operands rounded once is exactly the float32 operation.
        """
        ss = float(np.dot(x, x))                               # sum of squares, float32
        ss = float(F32(ss / x.shape[0]))                       # ss /= size
        ss = float(F32(ss + _EPS))                             # ss += 1e-5f
        scale = self._scale                                    # [1], reused
        scale[0] = 1.0 / float(F32(math.sqrt(ss)))             # 1.0f / sqrtf(ss)
        return weight * (scale * x)

    @staticmethod
    def softmax_rows(x: np.ndarray) -> np.ndarray:
        """``run.c``'s softmax over the last axis (max-shifted ``expf``, sum, divide)."""
        e = expf(x - np.maximum.reduce(x, axis=-1, keepdims=True))
        total = np.add.accumulate(e, axis=-1)[..., -1:]      # run.c's sequential sum
        return e / total

    def check_token(self, token: int) -> int:
        """Return ``token`` as an int, or raise :class:`InputError` if not in the vocabulary."""
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            raise InputError(f"token id must be an integer, not {token!r}")
        if not 0 <= token < self.args.vocab_size:
            raise InputError(
                f"token id {token} is outside the vocabulary [0, {self.args.vocab_size})")
        return int(token)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """Run one decode step: the logits (float32 ``[vocab_size]``) after ``token`` at ``pos``."""
        if self._small:
            with _BLAS_THREADS.single():
                return self._forward(token, pos)
        return self._forward(token, pos)

    def _forward(self, token: int, pos: int) -> np.ndarray:
        a, w = self.args, self._w
        token = self.check_token(token)
        if not 0 <= pos < a.seq_len:
            raise InputError(f"position {pos} is outside the context [0, {a.seq_len})")
        if pos > self._next_pos:
            raise InputError(f"position {pos} skips ahead: the next position is {self._next_pos}")
        self._next_pos = pos + 1
        dim, kv_dim, hidden, T = a.dim, a.kv_dim, a.hidden_dim, pos + 1
        rope_cos, rope_sin, swap = self._rope_cos[pos], self._rope_sin[pos], self._rope_swap
        qblock, head_cols = self._qblock.reshape(-1), self._head_cols

        # embed: copy the token's row of the embedding table
        x = w["token_embedding_table"][token].copy()                        # x: [dim]
        for l, (rms_att, wqkv, wo, rms_ffn, w13, w2) in enumerate(self._layers):
            # attention rmsnorm
            xb = self.rmsnorm(x, rms_att)                                   # xb: [dim]
            # q, k, v projections
            qkv = self.project(wqkv, xb)                                    # [dim + 2 kv_dim]
            qk, v = qkv[:dim + kv_dim], qkv[dim + kv_dim:]                  # q; k and v: [kv_dim]
            # RoPE: rotate each (even, odd) pair of every q and k head by pos * freq
            qk = qk * rope_cos + qk[swap] * rope_sin                        # qk: [dim + kv_dim]
            # KV cache write at pos
            self.key_cache[l, pos] = qk[dim:]
            self.value_cache[l, pos] = v
            keys = self.key_cache[l, :T]                                    # keys: [T, kv_dim]
            values = self.value_cache[l, :T]                                # values: [T, kv_dim]
            # attention scores: q_h . k_t / sqrtf(head_size); head h reads kv head h // kv_mul
            qblock[head_cols] = qk[:dim]                                    # [n_heads, kv_dim]
            att = (self._qblock @ keys.T) / self._sqrt_head_size            # att: [n_heads, T]
            # softmax over positions 0..pos
            att = self.softmax_rows(att)
            # weighted sum of the values (each head keeps its own KV head's block)
            xb = (att @ values).reshape(-1)[head_cols]                      # xb: [dim]
            # output projection
            xb2 = wo @ xb                                                   # xb2: [dim]
            # residual
            x = x + xb2
            # ffn rmsnorm
            xb = self.rmsnorm(x, rms_ffn)                                   # xb: [dim]
            # w1 and w3 projections
            h13 = self.project(w13, xb)                                     # [2 hidden_dim]
            hb, hb2 = h13[:hidden], h13[hidden:]                            # hb, hb2: [hidden_dim]
            # SwiGLU: silu(hb) * hb2, silu(v) = v * (1 / (1 + expf(-v)))
            hb = (hb * silu_gate(hb)) * hb2
            # w2 projection
            xb = w2 @ hb                                                    # xb: [dim]
            # residual
            x = x + xb
        # final rmsnorm
        x = self.rmsnorm(x, w["rms_final_weight"])                          # x: [dim]
        # classifier
        return w["wcls"] @ x                                                # logits: [vocab]


def benchmark(checkpoint: Checkpoint, steps: int = 256, repeats: int = 3) -> dict[str, float]:
    """Greedy decoding speed from BOS: best of ``repeats`` runs of ``steps`` positions.

    Returns ``wall_tok_per_s`` and ``cpu_tok_per_s`` (process CPU time, less sensitive to
    other load on the machine). ``python -m speedllm.golden.float_ref MODEL [STEPS]``
    prints them.
    """
    import time
    model = FloatTransformer(checkpoint)
    steps = min(steps, checkpoint.args.seq_len)
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        model.reset()
        token = 1
        wall, cpu = time.perf_counter(), time.process_time()
        for pos in range(steps):
            token = int(np.argmax(model.forward(token, pos)))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return {"steps": steps, "wall_tok_per_s": steps / best_wall,
            "cpu_tok_per_s": steps / max(best_cpu, 1e-9)}


if __name__ == "__main__":
    import json
    import sys

    from .checkpoint import load_checkpoint
    ckpt = load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else "stories260K.bin")
    print(json.dumps(benchmark(ckpt, int(sys.argv[2]) if len(sys.argv) > 2 else 256)))
