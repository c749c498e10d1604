"""The integer golden model: a quantized checkpoint and the whole decode step.

:class:`QuantizedModel` holds everything the accelerator's DRAM image holds (W8 matrices,
Q7.16 norm weights, the lookup tables); :class:`IntegerTransformer` runs ``run.c``'s
``forward()`` step list, each step one :mod:`speedllm.golden.intops` function, with only
integer arithmetic at run time. Its logits are ACT (int32 Q16.16); :meth:`forward`
returns them as float32 ``logits / 2**16`` for the host-side sampler, the backend
interface of :mod:`speedllm.golden.generate` (``args``, ``reset()``, ``forward``).

A :class:`Scheme` names the free parameters of the arithmetic (weight group size, KV
cache format, table sizes); its canonical name is what ``speedllm eval --scheme`` takes,
e.g. ``g32-kv16`` (block exponent per (position, kv head)), ``g32-kv16f8`` (fixed point,
8 fractional bits), ``g64-kv8-rs4-ex5-sg8`` (smaller tables).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from . import formats as F
from . import intops as ops
from .checkpoint import Checkpoint


@dataclass(frozen=True)
class Scheme:
    """The quantization and table parameters of the integer arithmetic.

    Attributes
    ----------
    group_size : weights per W8 scale group (rows zero-padded to a multiple)
    kv_bits : bits of a stored KV mantissa (8, 16 or 32)
    kv_frac : ``None`` = block exponent per (position, kv head); an int = fixed point
        with that many fractional bits (the exponent is the constant ``16 - kv_frac``)
    rsqrt_bits, exp_bits, sigmoid_bits : table sizes (2**bits intervals per table unit)
    """

    group_size: int = F.DEFAULT_GROUP_SIZE
    kv_bits: int = F.DEFAULT_KV_BITS
    kv_frac: int | None = None
    rsqrt_bits: int = F.RSQRT_TABLE_BITS
    exp_bits: int = F.EXP_TABLE_BITS
    sigmoid_bits: int = F.SIGMOID_TABLE_BITS

    def __post_init__(self):
        if self.group_size <= 0:
            raise ValueError(f"group_size must be positive, not {self.group_size!r}")
        if self.kv_bits not in (8, 16, 32):
            raise ValueError(f"kv_bits must be 8, 16 or 32, not {self.kv_bits!r}")
        if self.kv_frac is not None and not 0 <= self.kv_frac <= F.ACT_FRAC:
            raise ValueError(f"kv_frac must be in [0, {F.ACT_FRAC}], not {self.kv_frac!r}")
        for n, hi in (("rsqrt_bits", F.RSQRT_IN_FRAC), ("exp_bits", F.ACT_FRAC),
                      ("sigmoid_bits", F.ACT_FRAC + F.SIGMOID_RANGE_LOG2)):
            if not 1 <= getattr(self, n) <= hi:
                raise ValueError(f"{n} must be in [1, {hi}], not {getattr(self, n)!r}")

    @property
    def name(self) -> str:
        """Canonical name: ``g<GS>-kv<bits>[f<frac>]`` plus table sizes that differ from
        the defaults (``-rs<b>``, ``-ex<b>``, ``-sg<b>``)."""
        s = f"g{self.group_size}-kv{self.kv_bits}"
        if self.kv_frac is not None:
            s += f"f{self.kv_frac}"
        for tag, attr, default in (("rs", "rsqrt_bits", F.RSQRT_TABLE_BITS),
                                   ("ex", "exp_bits", F.EXP_TABLE_BITS),
                                   ("sg", "sigmoid_bits", F.SIGMOID_TABLE_BITS)):
            if getattr(self, attr) != default:
                s += f"-{tag}{getattr(self, attr)}"
        return s

    def to_dict(self) -> dict:
        d = {"name": self.name}
        d.update(asdict(self))
        d["kv_format"] = "block-exponent" if self.kv_frac is None else "fixed-point"
        # fixed by formats (not parameters of a scheme), recorded with every measurement
        d["act"] = f"int{F.ACT_BITS} Q{F.ACT_BITS - F.ACT_FRAC}.{F.ACT_FRAC}"
        d["matvec_input"] = f"int{F.X_BITS} + block exponent"
        d["weights"] = f"int{F.W_BITS} + uint{F.SCALE_BITS} group scale"
        return d

    @classmethod
    def from_name(cls, name: str) -> "Scheme":
        """Parse a scheme name (``default`` or the form of :attr:`name`)."""
        if name in ("default", ""):
            return DEFAULT_SCHEME
        kw: dict = {}
        for part in name.split("-"):
            m = (re.fullmatch(r"g(\d+)", part) or re.fullmatch(r"kv(\d+)(?:f(\d+))?", part)
                 or re.fullmatch(r"(rs|ex|sg)(\d+)", part))
            if not m:
                raise InputError(
                    f"scheme {name!r}: cannot parse {part!r} (expected e.g. g32-kv16, "
                    "g32-kv16f8, g64-kv8-rs6-ex6-sg9, or 'default')")
            if part.startswith("g"):
                kw["group_size"] = int(m.group(1))
            elif part.startswith("kv"):
                kw["kv_bits"] = int(m.group(1))
                kw["kv_frac"] = None if m.group(2) is None else int(m.group(2))
            else:
                kw[{"rs": "rsqrt_bits", "ex": "exp_bits", "sg": "sigmoid_bits"}[m.group(1)]] \
                    = int(m.group(2))
        try:
            return cls(**kw)
        except ValueError as e:
            raise InputError(f"scheme {name!r}: {e}") from None


DEFAULT_SCHEME = Scheme()


@dataclass
class QuantizedModel:
    """Everything the integer forward pass reads, in its stored formats.

    Per-layer lists hold one :class:`~speedllm.golden.formats.QuantizedMatrix` per layer
    (``wq, wk, wv, wo, w1, w2, w3``) or one Q7.16 (int32) vector (``rms_att``,
    ``rms_ffn``). ``wcls`` *is* ``embedding`` for a shared classifier.
    """

    args: object
    scheme: Scheme
    embedding: F.QuantizedMatrix
    wq: list
    wk: list
    wv: list
    wo: list
    w1: list
    w2: list
    w3: list
    rms_att: list
    rms_ffn: list
    rms_final: np.ndarray
    wcls: F.QuantizedMatrix
    rsqrt_table: np.ndarray = field(repr=False, default=None)
    exp_table: np.ndarray = field(repr=False, default=None)
    sigmoid_table: np.ndarray = field(repr=False, default=None)
    rope_tables: ops.RopeTables = field(repr=False, default=None)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, scheme: Scheme = DEFAULT_SCHEME
                        ) -> "QuantizedModel":
        """Quantize a float checkpoint (compile time: float64 math, then stored ints)."""
        a, w, gs = ckpt.args, ckpt.weights, scheme.group_size

        def mats(name):
            return [F.quantize_matrix(w[name][l], gs) for l in range(a.n_layers)]

        emb = F.quantize_matrix(w["token_embedding_table"], gs)
        shared = getattr(a, "shared_classifier", False) or w["wcls"] is w["token_embedding_table"]
        return cls(
            args=a, scheme=scheme, embedding=emb,
            wq=mats("wq"), wk=mats("wk"), wv=mats("wv"), wo=mats("wo"),
            w1=mats("w1"), w2=mats("w2"), w3=mats("w3"),
            rms_att=[F.quantize_norm_weight(g) for g in w["rms_att_weight"]],
            rms_ffn=[F.quantize_norm_weight(g) for g in w["rms_ffn_weight"]],
            rms_final=F.quantize_norm_weight(w["rms_final_weight"]),
            wcls=emb if shared else F.quantize_matrix(w["wcls"], gs),
            rsqrt_table=ops.build_rsqrt_table(scheme.rsqrt_bits),
            exp_table=ops.build_exp2_table(scheme.exp_bits),
            sigmoid_table=ops.build_sigmoid_table(scheme.sigmoid_bits),
            rope_tables=ops.build_rope_tables(a.head_size, a.seq_len),
        )


class IntegerTransformer:
    """The hardware's arithmetic as a decode backend.

    Parameters
    ----------
    checkpoint : Checkpoint
        Float weights (quantized here with ``scheme``).
    scheme : Scheme or str
        A :class:`Scheme` or a scheme name (:meth:`Scheme.from_name`).

    Notes
    -----
    Positions must come in order ``0, 1, 2, ...`` within a sequence (the KV cache row of
    ``pos`` is written, rows ``0..pos`` are read); :meth:`reset` starts a new one.
    """

    def __init__(self, checkpoint: Checkpoint, scheme: Scheme | str = DEFAULT_SCHEME):
        if isinstance(scheme, str):
            scheme = Scheme.from_name(scheme)
        a = checkpoint.args
        if a.dim % a.n_heads or a.n_heads % a.n_kv_heads or a.head_size % 2:
            raise InputError(
                f"unsupported shape: dim {a.dim}, n_heads {a.n_heads}, n_kv_heads "
                f"{a.n_kv_heads} (need n_heads | dim, n_kv_heads | n_heads, even head_size)")
        self.checkpoint = checkpoint
        self.args = a
        self.scheme = scheme
        self.model = QuantizedModel.from_checkpoint(checkpoint, scheme)
        # KV cache: mantissas [n_layers, seq_len, n_kv_heads, head_size] (values fit in
        # kv_bits signed bits) and exponents [n_layers, seq_len, n_kv_heads].
        # Held as int64 for speed; the values are those of the stored format.
        mshape = (a.n_layers, a.seq_len, a.n_kv_heads, a.head_size)
        self.key_cache = ops.KvStore(np.zeros(mshape, np.int64), np.zeros(mshape[:3], np.int64))
        self.value_cache = ops.KvStore(np.zeros(mshape, np.int64),
                                       np.zeros(mshape[:3], np.int64))
        # q/k/v and w1/w3 read the same input: one pass each (bit-identical to separate
        # matvecs, see formats.matvec_stack)
        m = self.model
        self._qkv = [F.MatrixStack((m.wq[l], m.wk[l], m.wv[l])) for l in range(a.n_layers)]
        self._w13 = [F.MatrixStack((m.w1[l], m.w3[l])) for l in range(a.n_layers)]
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (forget the KV cache)."""
        for c in (*self.key_cache, *self.value_cache):
            c.fill(0)
        self._next_pos = 0

    def _check(self, token, pos) -> int:
        a = self.args
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            raise InputError(f"token id must be an integer, not {token!r}")
        if not 0 <= token < a.vocab_size:
            raise InputError(f"token id {token} is outside the vocabulary [0, {a.vocab_size})")
        if not 0 <= pos < a.seq_len:
            raise InputError(f"position {pos} is outside the context [0, {a.seq_len})")
        if pos > self._next_pos:
            raise InputError(f"position {pos} skips ahead: the next position is {self._next_pos}")
        return int(token)

    def forward_int(self, token: int, pos: int) -> np.ndarray:
        """One decode step: ACT (int32 Q16.16) logits ``[vocab_size]``."""
        token = self._check(token, pos)
        self._next_pos = pos + 1
        a, m, sc = self.args, self.model, self.scheme
        hs, nkv = a.head_size, a.n_kv_heads

        # embed: dequantize the token's row of the W8 table
        x = ops.embedding(m.embedding, token)                             # x: [dim]
        for l in range(a.n_layers):
            # attention rmsnorm
            xb = ops.rmsnorm(x, m.rms_att[l], m.rsqrt_table)              # xb: [dim]
            # q, k, v projections (one pass over wq, wk, wv)
            q, k, v = ops.linear_stack(self._qkv[l], xb)                  # [dim], [kv_dim] x2
            # RoPE on q and k (one call: rope treats every head alike)
            qk = ops.rope(np.concatenate((q, k)), pos, hs, m.rope_tables)
            q, k = qk[:a.dim], qk[a.dim:]
            # KV cache write at pos, converted to the cache format
            ks = ops.kv_store(k, nkv, sc.kv_bits, sc.kv_frac)           # [n_kv, hs], [n_kv]
            vs = ops.kv_store(v, nkv, sc.kv_bits, sc.kv_frac)
            self.key_cache.mant[l, pos], self.key_cache.exp[l, pos] = ks
            self.value_cache.mant[l, pos], self.value_cache.exp[l, pos] = vs
            # attention over positions 0..pos (scores, softmax, weighted sum of v)
            kc = ops.KvStore(self.key_cache.mant[l], self.key_cache.exp[l])
            vc = ops.KvStore(self.value_cache.mant[l], self.value_cache.exp[l])
            xb = ops.attention(q, kc, vc, pos, a.n_heads, nkv, hs, m.exp_table)   # [dim]
            # output projection, residual
            x = ops.residual_add(x, ops.linear(m.wo[l], xb))
            # ffn rmsnorm
            xb = ops.rmsnorm(x, m.rms_ffn[l], m.rsqrt_table)              # xb: [dim]
            # w1 and w3 projections (one pass), SwiGLU
            h1, h3 = ops.linear_stack(self._w13[l], xb)                   # [hidden_dim] x2
            hb = ops.swiglu(h1, h3, m.sigmoid_table)                      # hb: [hidden_dim]
            # w2 projection, residual
            x = ops.residual_add(x, ops.linear(m.w2[l], hb))
        # final rmsnorm
        x = ops.rmsnorm(x, m.rms_final, m.rsqrt_table)                    # x: [dim]
        # classifier
        return ops.linear(m.wcls, x)                                      # logits: [vocab]

    def forward(self, token: int, pos: int) -> np.ndarray:
        """One decode step: float32 logits ``forward_int(token, pos) / 2**16``."""
        return (self.forward_int(token, pos).astype(np.float64)
                / (1 << F.ACT_FRAC)).astype(np.float32)
