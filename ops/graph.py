"""The Llama2 decode step as an op graph: one node a step of llama2.c ``run.c`` ``forward()``.

:func:`build_graph` turns a :class:`~speedllm.golden.checkpoint.ModelArgs` into an
:class:`OpGraph` whose node list *is* run.c's step order (a valid topological order):

    embed -> per layer [rmsnorm -> q, k, v matvecs -> RoPE(q), RoPE(k) -> kv-cache write
    -> attention scores -> softmax -> weighted sum -> wo matvec -> residual add -> rmsnorm
    -> w1, w3 matvecs -> SwiGLU -> w2 matvec -> residual add] -> final rmsnorm -> classifier

Tensors are single-assignment (every value has its own name, ``l0.q``), carry a shape and an
element format, and live either in on-chip memory (``space="act"``: what the memory plan
places) or in DRAM (``space="dram"``: the KV cache, and the logits the host reads). Weights are :class:`WeightRef` s, never
tensors: they stream from DRAM once per use.

Element formats (widths from :mod:`speedllm.golden.formats`):

- ``ACT``: int32 Q16.16, the format between ops (the residual stream, q/k/v, scores).
- ``X16``: int16 mantissas + one block exponent (a 32-bit side word). A tensor read only
  by matvecs is stored as X16: it is what the matvec's activation buffer holds, and
  ``quantize_act`` gives the same bits wherever it runs.
- ``KV``: ``kv_bits`` per element (the golden ``Scheme.kv_bits``, default
  ``formats.DEFAULT_KV_BITS``), plus, in block-exponent mode (the golden default,
  ``kv_frac=None``), one ``KV_EXP_BYTES`` exponent per (position, kv head).
- ``LOGITS``: int32 ACT, the graph's only output, read back by the host.

All figures are analytical (computed from the shapes), not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from speedllm.golden.checkpoint import ModelArgs
from speedllm.golden.formats import (ACT_BITS, DEFAULT_GROUP_SIZE, DEFAULT_KV_BITS,
                                     SCALE_BITS, W_BITS, X_BITS)

NORM_WEIGHT_BITS = ACT_BITS  # RMSNorm gains: int32 Q15.16 (formats.quantize_norm_weight)
KV_EXP_BYTES = 1           # one block exponent per (position, kv head), in a byte
DEFAULT_WEIGHT_ALIGN = 8   # every matrix starts on a 64-bit AXI beat in the DRAM image

#: The model shapes of DESIGN.md ("Sizes to design for").
MODEL_SHAPES: dict[str, ModelArgs] = {
    "stories260K": ModelArgs(64, 172, 5, 8, 4, 512, 512),
    "stories15M": ModelArgs(288, 768, 6, 6, 6, 32000, 256),
    "stories42M": ModelArgs(512, 1376, 8, 8, 8, 32000, 1024),
    "stories110M": ModelArgs(768, 2048, 12, 12, 12, 32000, 1024),
    "tinyllama": ModelArgs(2048, 5632, 22, 32, 4, 32000, 2048, shared_classifier=False),
}


class OpKind(str, Enum):
    """What a node computes (a fused node takes the kind of its main op)."""

    EMBED = "Embed"
    RMSNORM = "RmsNorm"
    MATVEC = "MatVec"
    ROPE = "Rope"
    KV_WRITE = "KvWrite"
    ATTENTION_SCORES = "AttentionScores"
    SOFTMAX = "Softmax"
    ATTENTION_SUM = "AttentionSum"
    ATTENTION = "Attention"          # scores + softmax + weighted sum in one pass
    RESIDUAL = "Residual"
    SWIGLU = "SwiGlu"
    CLASSIFIER = "Classifier"


@dataclass(frozen=True)
class TensorFormat:
    """An element format: ``bits`` per element plus ``side_bytes`` per tensor."""

    name: str
    bits: int
    side_bytes: int = 0


ACT = TensorFormat("ACT", ACT_BITS)
X16 = TensorFormat("X16", X_BITS, side_bytes=4)
LOGITS = TensorFormat("LOGITS", ACT_BITS)


def kv_format(kv_bits: int) -> TensorFormat:
    if kv_bits not in (8, 16, 32):
        raise ValueError(f"kv_bits must be 8, 16 or 32, not {kv_bits!r}")
    return TensorFormat(f"KV{kv_bits}", kv_bits)


def round_up(n: int, align: int) -> int:
    return -(-n // align) * align


@dataclass(frozen=True)
class Tensor:
    """A value of the step: ``shape`` of ``fmt`` elements, in ``space`` "act" or "dram"."""

    name: str
    shape: tuple[int, ...]
    fmt: TensorFormat
    space: str = "act"

    @property
    def elements(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return round_up(self.elements * self.fmt.bits, 8) // 8 + self.fmt.side_bytes


@dataclass(frozen=True)
class WeightRef:
    """A weight a node streams from DRAM.

    ``group_size`` set: a W8 matrix ``[rows][cols]``, each row zero-padded to a multiple of
    the group size, one ``SCALE_BITS`` mantissa per group (see ``formats.quantize_matrix``).
    ``group_size`` None: a vector of ``cols`` ``NORM_WEIGHT_BITS``-bit gains (``rows`` 1).
    ``rows_read`` rows are streamed per use (the embedding reads one row of the table).
    """

    name: str
    layer: int | None
    rows: int
    cols: int
    group_size: int | None = DEFAULT_GROUP_SIZE
    rows_read: int | None = None
    align: int = DEFAULT_WEIGHT_ALIGN

    @property
    def cols_padded(self) -> int:
        return self.cols if self.group_size is None else round_up(self.cols, self.group_size)

    @property
    def n_groups(self) -> int:
        return 0 if self.group_size is None else self.cols_padded // self.group_size

    @property
    def row_bytes(self) -> int:
        if self.group_size is None:
            return self.cols * NORM_WEIGHT_BITS // 8
        return self.cols_padded * W_BITS // 8 + self.n_groups * SCALE_BITS // 8

    @property
    def stored_bytes(self) -> int:
        """Bytes the tensor takes in the DRAM image (padded to ``align``)."""
        return round_up(self.rows * self.row_bytes, self.align)

    @property
    def read_bytes(self) -> int:
        """Bytes streamed from DRAM each time a node uses it."""
        if self.rows_read is None:
            return self.stored_bytes
        return round_up(self.rows_read * self.row_bytes, self.align)


@dataclass(frozen=True)
class Node:
    """One command of the step.

    ``ops`` names the run.c steps the node performs (one for a plain node, several for a
    fused one, whose ``parts`` are the original nodes in order); ``internal`` holds the
    tensors that a fused node keeps inside (never written out). Work figures are per token
    at the graph's position: ``macs`` (matvec and attention dot products), KV-cache bytes.
    """

    name: str
    kind: OpKind
    layer: int | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    weights: tuple[WeightRef, ...] = ()
    macs: int = 0
    kv_read_bytes: int = 0
    kv_write_bytes: int = 0
    ops: tuple[str, ...] = ()
    parts: tuple["Node", ...] = ()
    internal: tuple[Tensor, ...] = ()

    @property
    def weight_bytes(self) -> int:
        return sum(w.read_bytes for w in self.weights)

    def to_dict(self) -> dict:
        def tensors(ts):
            return [f"{t.name}:{t.fmt.name}{list(t.shape)}" for t in ts]
        return {"name": self.name, "kind": self.kind.value, "ops": list(self.ops),
                "inputs": tensors(self.inputs), "outputs": tensors(self.outputs),
                "internal": tensors(self.internal),
                "weights": [w.name if w.layer is None else f"{w.name}[{w.layer}]"
                            for w in self.weights],
                "weight_bytes": self.weight_bytes, "macs": self.macs,
                "kv_read_bytes": self.kv_read_bytes, "kv_write_bytes": self.kv_write_bytes}


@dataclass(frozen=True)
class OpGraph:
    """Nodes in execution order (a topological order), the tensors the host reads
    (``outputs``) and, for hand-made graphs, tensors given from outside (``inputs``)."""

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    args: ModelArgs | None = None
    pos: int = 0
    group_size: int = DEFAULT_GROUP_SIZE
    kv_bits: int = DEFAULT_KV_BITS
    inputs: tuple[str, ...] = ()

    def __post_init__(self):
        self.check_order()

    def check_order(self) -> None:
        """Raise ``ValueError`` unless every tensor is written once, before any read."""
        written: set[str] = set(self.inputs)
        for node in self.nodes:
            for t in node.inputs:
                if t.name not in written and t.space == "act":
                    raise ValueError(f"node {node.name} reads {t.name} before it is written")
            for t in node.outputs:
                if t.space == "act" and t.name in written:
                    raise ValueError(f"tensor {t.name} written twice (by {node.name})")
                written.add(t.name)
        for name in self.outputs:
            if name not in written:
                raise ValueError(f"graph output {name} is never written")

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor by name, in order of first appearance."""
        out: dict[str, Tensor] = {}
        for node in self.nodes:
            for t in node.inputs + node.outputs:
                out.setdefault(t.name, t)
        return out

    @property
    def weight_bytes_per_token(self) -> int:
        """DRAM weight bytes streamed for one token: the roofline denominator."""
        return sum(n.weight_bytes for n in self.nodes)

    @property
    def macs_per_token(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def kv_bytes_per_token(self) -> tuple[int, int]:
        """(read, written) KV-cache bytes at ``pos``."""
        return (sum(n.kv_read_bytes for n in self.nodes),
                sum(n.kv_write_bytes for n in self.nodes))

    @property
    def output_bytes(self) -> int:
        """Bytes of the graph outputs (the logits), written to DRAM for the host."""
        t = self.tensors()
        return sum(t[name].nbytes for name in self.outputs)

    def tensor_traffic(self) -> tuple[int, int]:
        """(written, read) bytes of on-chip tensors passed between nodes.

        Each node writes its ``act`` outputs once and reads its ``act`` inputs once: the
        bytes that leave a compute unit and come back (through the scratchpad, or DRAM
        when the memory plan has none). A fused node's internal tensors do not count.
        """
        wr = sum(t.nbytes for n in self.nodes for t in n.outputs if t.space == "act")
        rd = sum(t.nbytes for n in self.nodes for t in n.inputs if t.space == "act")
        return wr, rd

    def summary(self) -> dict:
        kv_rd, kv_wr = self.kv_bytes_per_token
        wr, rd = self.tensor_traffic()
        return {
            "nodes": len(self.nodes),
            "pos": self.pos,
            "weight_bytes_per_token": self.weight_bytes_per_token,
            "macs_per_token": self.macs_per_token,
            "kv_read_bytes": kv_rd,
            "kv_write_bytes": kv_wr,
            "output_bytes": self.output_bytes,
            "tensor_write_bytes": wr,
            "tensor_read_bytes": rd,
        }


def _matvec(name, layer, x, y, weight, *, kind=OpKind.MATVEC) -> Node:
    return Node(name, kind, layer, (x,), (y,), (weight,), macs=weight.rows * weight.cols,
                ops=(name,))


def build_graph(args: ModelArgs, pos: int | None = None, *,
                group_size: int = DEFAULT_GROUP_SIZE, kv_bits: int = DEFAULT_KV_BITS,
                kv_block_exponent: bool = True,
                weight_align: int = DEFAULT_WEIGHT_ALIGN) -> OpGraph:
    """The unfused decode step of ``args`` at position ``pos`` (default ``seq_len - 1``,
    the largest attention, which sizes the buffers).

    One node a run.c step; node names are ``l{layer}.{step}`` (``embed``, ``rms_final``,
    ``classifier`` outside the layers). Weight names are run.c's ``TransformerWeights``.
    ``group_size``, ``kv_bits`` and ``kv_block_exponent`` (False: the golden scheme's
    fixed-point KV, ``kv_frac`` set) follow the golden ``Scheme``.
    """
    if args.dim % args.n_heads or args.n_heads % args.n_kv_heads:
        raise ValueError(f"dim {args.dim}, n_heads {args.n_heads}, n_kv_heads "
                         f"{args.n_kv_heads}: heads must divide dim and kv heads divide heads")
    pos = args.seq_len - 1 if pos is None else pos
    if not 0 <= pos < args.seq_len:
        raise ValueError(f"pos must be in [0, {args.seq_len}), not {pos!r}")
    d, h, kv, hs, nh = args.dim, args.hidden_dim, args.kv_dim, args.head_size, args.n_heads
    kvf = kv_format(kv_bits)
    # one position of one layer's K (or V) cache: mantissas (+ an exponent per kv head)
    kv_row_bytes = (Tensor("kv_row", (kv,), kvf, "dram").nbytes
                    + (args.n_kv_heads * KV_EXP_BYTES if kv_block_exponent else 0))
    npos = pos + 1

    def mat(name, layer, rows, cols, **kw):
        return WeightRef(name, layer, rows, cols, group_size, align=weight_align, **kw)

    def gain(name, layer):
        return WeightRef(name, layer, 1, d, None, align=weight_align)

    def rmsnorm(name, layer, x, out, weight):
        return Node(name, OpKind.RMSNORM, layer, (x,), (out,), (weight,), ops=(name,))

    x = Tensor("x", (d,), ACT)
    nodes = [Node("embed", OpKind.EMBED, None, (), (x,),
                  (mat("token_embedding_table", None, args.vocab_size, d, rows_read=1),),
                  ops=("embed",))]
    for l in range(args.n_layers):
        p = f"l{l}."

        def T(name, shape, fmt=ACT, space="act"):
            return Tensor(p + name, shape, fmt, space)
        xb, q, k, v = T("xb", (d,), X16), T("q", (d,)), T("k", (kv,)), T("v", (kv,))
        q_rot, k_rot = T("q_rot", (d,)), T("k_rot", (kv,))
        k_cache, v_cache = T("k_cache", (npos, kv), kvf, "dram"), T("v_cache", (npos, kv), kvf, "dram")
        att, prob, xb_att = T("att", (nh, npos)), T("att_prob", (nh, npos)), T("xb_att", (d,), X16)
        xb2, x_mid, xb_ffn = T("xb2", (d,)), T("x_mid", (d,)), T("xb_ffn", (d,), X16)
        hb, hb2, hb_act = T("hb", (h,)), T("hb2", (h,)), T("hb_act", (h,), X16)
        ffn, x_out = T("ffn_out", (d,)), T("x_out", (d,))
        dot_macs = nh * npos * hs
        nodes += [
            rmsnorm(p + "rms_att", l, x, xb, gain("rms_att_weight", l)),
            _matvec(p + "wq", l, xb, q, mat("wq", l, d, d)),
            _matvec(p + "wk", l, xb, k, mat("wk", l, kv, d)),
            _matvec(p + "wv", l, xb, v, mat("wv", l, kv, d)),
            Node(p + "rope_q", OpKind.ROPE, l, (q,), (q_rot,), ops=(p + "rope_q",)),
            Node(p + "rope_k", OpKind.ROPE, l, (k,), (k_rot,), ops=(p + "rope_k",)),
            Node(p + "kv_write", OpKind.KV_WRITE, l, (k_rot, v), (k_cache, v_cache),
                 kv_write_bytes=2 * kv_row_bytes, ops=(p + "kv_write",)),
            Node(p + "att_scores", OpKind.ATTENTION_SCORES, l, (q_rot, k_cache), (att,),
                 macs=dot_macs, kv_read_bytes=npos * kv_row_bytes, ops=(p + "att_scores",)),
            Node(p + "softmax", OpKind.SOFTMAX, l, (att,), (prob,), ops=(p + "softmax",)),
            Node(p + "att_sum", OpKind.ATTENTION_SUM, l, (prob, v_cache), (xb_att,),
                 macs=dot_macs, kv_read_bytes=npos * kv_row_bytes, ops=(p + "att_sum",)),
            _matvec(p + "wo", l, xb_att, xb2, mat("wo", l, d, d)),
            Node(p + "res_att", OpKind.RESIDUAL, l, (x, xb2), (x_mid,), ops=(p + "res_att",)),
            rmsnorm(p + "rms_ffn", l, x_mid, xb_ffn, gain("rms_ffn_weight", l)),
            _matvec(p + "w1", l, xb_ffn, hb, mat("w1", l, h, d)),
            _matvec(p + "w3", l, xb_ffn, hb2, mat("w3", l, h, d)),
            Node(p + "swiglu", OpKind.SWIGLU, l, (hb, hb2), (hb_act,), ops=(p + "swiglu",)),
            _matvec(p + "w2", l, hb_act, ffn, mat("w2", l, d, h)),
            Node(p + "res_ffn", OpKind.RESIDUAL, l, (x_mid, ffn), (x_out,), ops=(p + "res_ffn",)),
        ]
        x = x_out
    xb_final = Tensor("xb_final", (d,), X16)
    logits = Tensor("logits", (args.vocab_size,), LOGITS, "dram")   # host reads it
    cls_name = "token_embedding_table" if args.shared_classifier else "wcls"
    nodes += [
        rmsnorm("rms_final", None, x, xb_final,
                WeightRef("rms_final_weight", None, 1, d, None, align=weight_align)),
        _matvec("classifier", None, xb_final, logits,
                mat(cls_name, None, args.vocab_size, d), kind=OpKind.CLASSIFIER),
    ]
    return OpGraph(tuple(nodes), ("logits",), args, pos, group_size, kv_bits)
