"""The program compiler: a quantized model -> command program + DRAM image.

:func:`compile_model` builds the op graph (:mod:`.graph`), fuses it (:mod:`.fusion`, any
:class:`~speedllm.ops.fusion.FusionConfig`), places the activation tensors (:mod:`.memplan`,
reuse on or off; in the scratchpad, or with ``act_space="dram"`` in a DRAM region), lays
out the DRAM image (:mod:`.dram_format`) and emits one command (:mod:`.isa`) per node.

DRAM image, regions in this order, each aligned to ``region_align`` (4 KiB):

``header``
    :data:`~speedllm.ops.dram_format.HEADER` fields (magic, versions, config hash, dims, scheme, where the program
    and the logits are), then the full SHA-256 digest of the configuration.
``tables.rsqrt``, ``tables.exp2``, ``tables.sigmoid``, ``tables.rope``
    The golden lookup tables of the scheme (int32 entries).
``rms_att_weight[l]``, ``rms_ffn_weight[l]``, ``rms_final_weight``
    RMSNorm gains.
``token_embedding_table.{weights,scales}``, then per layer ``l{l}.<matrix>.{weights,scales}``
    with ``<matrix>`` ``wqkv`` (QKV fusion) or ``wq``, ``wk``, ``wv``; ``wo``; ``w13``
    (SwiGLU fusion, rows interleaved) or ``w1``, ``w3``; ``w2``; then ``wcls`` when the
    classifier is not shared.
``l{l}.k_cache``, ``l{l}.v_cache``
    ``seq_len`` KV rows each, zeroed.
``logits``
    ``vocab_size`` int32, written by the CLASSIFIER command, read by the host.
``activations`` (``act_space="dram"`` only)
    The memory plan's buffers, at plan offset + region address.
``program``
    The command words (the sequencer may fetch them from here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speedllm.errors import InputError
from speedllm.golden.checkpoint import Checkpoint, load_checkpoint
from speedllm.golden.intmodel import DEFAULT_SCHEME, QuantizedModel, Scheme

from . import dram_format as D
from .dram_format import (HEADER_STRUCT, IMAGE_FORMAT_VERSION, MAGIC, ImageBuilder, Region,
                          read_header)
from .fusion import FusionConfig, fuse
from .graph import X16, Node, OpKind, build_graph
from .isa import (COMMAND_BYTES, ISA_VERSION, Command, Epilogue, Flag, Opcode, describe,
                  encode_program, used_fields)
from .memplan import MemoryPlan, plan_memory, verify_plan

__all__ = ["Program", "Region", "compile_model", "read_header"]

_STACKED = {("wq", "wk", "wv"): "wqkv", ("w1", "w3"): "w13"}


@dataclass
class Program:
    """A compiled model: command words, DRAM image, region map and configuration hash."""

    words: bytes
    image: np.ndarray
    layout: dict[str, Region]
    config_hash: int
    config_digest: str
    commands: list
    names: list[str]
    scheme: Scheme
    fusion: FusionConfig
    reuse: bool
    act_space: str
    beat_bytes: int
    plan: MemoryPlan
    args: object = field(repr=False, default=None)

    @property
    def scratchpad_bytes(self) -> int:
        """Scratchpad the program needs (0 with ``act_space="dram"``)."""
        return 0 if self.act_space == "dram" else self.plan.scratchpad_bytes

    def region_of(self, addr: int) -> str | None:
        for r in self.layout.values():
            if r.addr <= addr < r.end:
                return r.name if addr == r.addr else f"{r.name}+0x{addr - r.addr:x}"
        return None

    def listing(self) -> str:
        """One line per command: index, node name, opcode and the fields it reads, with
        DRAM addresses also named by region."""
        a = self.args
        lines = [f"; dim={a.dim} hidden_dim={a.hidden_dim} layers={a.n_layers} "
                 f"heads={a.n_heads}/{a.n_kv_heads} vocab={a.vocab_size} seq_len={a.seq_len} "
                 f"scheme={self.scheme.name} fusion={self.fusion.name} reuse={self.reuse} "
                 f"act={self.act_space} beat={self.beat_bytes} "
                 f"config_hash=0x{self.config_hash:08x}"]
        for i, (cmd, name) in enumerate(zip(self.commands, self.names)):
            text = describe(cmd)
            regions = []
            for f in used_fields(cmd):
                v = getattr(cmd, f)
                dram_operand = (cmd.opcode == Opcode.CLASSIFIER and f == "dst0") or \
                    (cmd.flags & Flag.ACT_IN_DRAM and f in ("src0", "src1", "dst0"))
                if (f.endswith("_addr") and f not in ("s_addr", "norm_tab_addr")
                        or dram_operand) and (r := self.region_of(v)):
                    regions.append(r)
            note = f"  ; {', '.join(regions)}" if regions else ""
            lines.append(f"{i:4d} {name:16s} {text}{note}")
        return "\n".join(lines) + "\n"

    def summary(self) -> dict:
        return {"commands": len(self.commands), "program_bytes": len(self.words),
                "image_bytes": int(self.image.size), "scratchpad_bytes": self.scratchpad_bytes,
                "config_hash": f"0x{self.config_hash:08x}", "scheme": self.scheme.name,
                "fusion": self.fusion.name, "reuse": self.reuse, "act_space": self.act_space}


def _as_quantized(model, scheme) -> QuantizedModel:
    if isinstance(scheme, str):
        scheme = Scheme.from_name(scheme)
    if isinstance(model, (str, Path)):
        model = load_checkpoint(model)
    if isinstance(model, Checkpoint):
        return QuantizedModel.from_checkpoint(model, scheme or DEFAULT_SCHEME)
    if isinstance(model, QuantizedModel):
        if scheme is not None and scheme != model.scheme:
            raise InputError(f"model is quantized with scheme {model.scheme.name}, "
                             f"not {scheme.name}")
        return model
    raise TypeError(f"expected a Checkpoint, QuantizedModel or path, not {model!r}")


def _matrices(qm: QuantizedModel, name: str, layer):
    if name == "token_embedding_table":
        return qm.embedding
    if name == "wcls":
        return qm.wcls
    return getattr(qm, name)[layer]


def compile_model(model, scheme: Scheme | str | None = None,
                  fusion: FusionConfig = FusionConfig(), reuse: bool = True, *,
                  act_space: str = "scratchpad", beat_bytes: int | None = None,
                  board=None, region_align: int = D.PAGE_BYTES) -> Program:
    """Compile ``model`` (a Checkpoint, a QuantizedModel or a checkpoint path).

    ``scheme`` quantizes a Checkpoint (default :data:`DEFAULT_SCHEME`); ``fusion`` picks
    the fusion rules, ``reuse`` the memory plan's buffer reuse, ``act_space`` where
    activations live (``"scratchpad"`` or ``"dram"``); ``beat_bytes`` is the AXI data
    width in bytes (default: ``board``'s ``axi_data_bits / 8``, a board name or
    :class:`~speedllm.ops.boards.BoardProfile`, else 8) and ``region_align`` the
    alignment of every image region.
    """
    if board is not None:
        if isinstance(board, str):
            from .boards import get_board
            board = get_board(board)
        board_beat = board.axi_data_bits // 8
        if beat_bytes not in (None, board_beat):
            raise ValueError(f"beat_bytes {beat_bytes} differs from board {board.name}'s "
                             f"{board_beat}")
        beat_bytes = board_beat
    beat_bytes = D.DEFAULT_BEAT_BYTES if beat_bytes is None else beat_bytes
    qm = _as_quantized(model, scheme)
    a, sc = qm.args, qm.scheme
    if act_space not in ("scratchpad", "dram"):
        raise ValueError(f"act_space must be 'scratchpad' or 'dram', not {act_space!r}")
    if beat_bytes <= 0 or beat_bytes & (beat_bytes - 1) or region_align % beat_bytes:
        raise ValueError(f"beat_bytes {beat_bytes} must be a power of two dividing "
                         f"region_align {region_align}")
    graph = fuse(build_graph(a, group_size=sc.group_size, kv_bits=sc.kv_bits,
                             kv_block_exponent=sc.kv_frac is None), fusion)
    plan = plan_memory(graph, reuse=reuse, align=beat_bytes)
    verify_plan(plan, graph)

    img = ImageBuilder(region_align)
    img.reserve("header", HEADER_STRUCT.size + 32)
    tables = {
        "rsqrt": img.place("tables.rsqrt", D.int32_bytes(qm.rsqrt_table)),
        "exp2": img.place("tables.exp2", D.int32_bytes(qm.exp_table)),
        "sigmoid": img.place("tables.sigmoid", D.int32_bytes(qm.sigmoid_table)),
        "rope": img.place("tables.rope", D.rope_table_bytes(*qm.rope_tables)),
    }
    gains = {}
    for l in range(a.n_layers):
        gains[("rms_att_weight", l)] = img.place(f"rms_att_weight[{l}]",
                                                 D.int32_bytes(qm.rms_att[l]))
        gains[("rms_ffn_weight", l)] = img.place(f"rms_ffn_weight[{l}]",
                                                 D.int32_bytes(qm.rms_ffn[l]))
    gains[("rms_final_weight", None)] = img.place("rms_final_weight",
                                                  D.int32_bytes(qm.rms_final))
    matrices: dict[tuple, tuple[Region, Region]] = {}

    def place_matrix(key, prefix, mats, interleave=False):
        q, s = D.stack_rows(mats, interleave)
        w_bytes, s_bytes = D.matrix_regions(q, s, beat_bytes)
        matrices[key] = (img.place(f"{prefix}.weights", w_bytes),
                         img.place(f"{prefix}.scales", s_bytes))

    place_matrix((None, "token_embedding_table"), "token_embedding_table", [qm.embedding])
    for l in range(a.n_layers):
        groups = ([("wqkv", ("wq", "wk", "wv"))] if fusion.rope_kv_epilogue
                  else [(n, (n,)) for n in ("wq", "wk", "wv")])
        groups.append(("wo", ("wo",)))
        groups += ([("w13", ("w1", "w3"))] if fusion.swiglu_epilogue
                   else [(n, (n,)) for n in ("w1", "w3")])
        groups.append(("w2", ("w2",)))
        for key, names in groups:
            place_matrix((l, key), f"l{l}.{key}", [_matrices(qm, n, l) for n in names],
                         interleave=key == "w13")
    if not a.shared_classifier:
        place_matrix((None, "wcls"), "wcls", [qm.wcls])
    geo = D.kv_row_geometry(a.n_kv_heads, a.head_size, sc.kv_bits, beat_bytes)
    kv = {}
    for l in range(a.n_layers):
        kv[l] = (img.reserve(f"l{l}.k_cache", a.seq_len * geo["row_bytes"]),
                 img.reserve(f"l{l}.v_cache", a.seq_len * geo["row_bytes"]))
    logits = img.reserve("logits", 4 * a.vocab_size)
    act_base = (img.reserve("activations", plan.scratchpad_bytes).addr
                if act_space == "dram" else 0)

    ctx = _Emitter(qm, plan, act_base, act_space == "dram", tables, gains, matrices, kv,
                   geo["row_bytes"], logits)
    commands = [ctx.command(node) for node in graph.nodes]
    names = [node.name for node in graph.nodes] + ["end"]
    commands.append(Command(opcode=Opcode.END))
    words = encode_program(commands)
    program_region = img.place("program", words)

    config = {"format_version": IMAGE_FORMAT_VERSION, "isa_version": ISA_VERSION,
              "scheme": sc.name, "dims": [a.dim, a.hidden_dim, a.n_layers, a.n_heads,
                                          a.n_kv_heads, a.vocab_size, a.seq_len,
                                          int(a.shared_classifier)],
              "beat_bytes": beat_bytes}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode() + words).digest()
    config_hash = int.from_bytes(digest[:4], "little")
    image = img.build()
    header = HEADER_STRUCT.pack(
        MAGIC, IMAGE_FORMAT_VERSION, ISA_VERSION, config_hash, COMMAND_BYTES, a.dim,
        a.hidden_dim, a.n_layers, a.n_heads, a.n_kv_heads, a.vocab_size, a.seq_len,
        int(a.shared_classifier), beat_bytes, program_region.addr, len(commands),
        logits.addr, plan.scratchpad_bytes, sc.name.encode())
    image[:len(header) + 32] = np.frombuffer(header + digest, np.uint8)
    return Program(words=words, image=image, layout=img.regions, config_hash=config_hash,
                   config_digest=digest.hex(), commands=commands, names=names, scheme=sc,
                   fusion=fusion, reuse=reuse, act_space=act_space, beat_bytes=beat_bytes,
                   plan=plan, args=a)


class _Emitter:
    """Turns fused graph nodes into commands (addresses from the image and the plan)."""

    def __init__(self, qm, plan, act_base, act_in_dram, tables, gains, matrices, kv,
                 kv_row_bytes, logits):
        self.qm, self.a, self.sc = qm, qm.args, qm.scheme
        self.offsets = plan.offsets()
        self.act_base, self.tables, self.gains = act_base, tables, gains
        self.matrices, self.kv, self.logits = matrices, kv, logits
        self.base_flags = Flag.ACT_IN_DRAM if act_in_dram else Flag(0)
        self.kv_fields = dict(head_size=self.a.head_size, n_kv_heads=self.a.n_kv_heads,
                              kv_bits=self.sc.kv_bits, kv_row_bytes=kv_row_bytes)

    def addr(self, t) -> int:
        if t.space == "act":
            return self.act_base + self.offsets[t.name]
        if t.name == "logits":
            return self.logits.addr
        raise ValueError(f"tensor {t.name} has no address")

    def _kv(self, layer) -> dict:
        k, v = self.kv[layer]
        d = dict(self.kv_fields, k_addr=k.addr, v_addr=v.addr)
        if self.sc.kv_frac is not None:
            d["kv_frac"] = self.sc.kv_frac
        return d

    def _flags(self, dst=None, extra=Flag(0), kv_write=False) -> int:
        f = self.base_flags | extra
        if dst is not None and dst.fmt == X16:
            f |= Flag.DST_X16
        if kv_write and self.sc.kv_frac is not None:
            f |= Flag.KV_FIXED
        return int(f)

    def command(self, node: Node):
        a, sc, t = self.a, self.sc, self.tables
        layer = 255 if node.layer is None else node.layer
        parts = node.parts or (node,)
        if any(p.kind in (OpKind.MATVEC, OpKind.CLASSIFIER) for p in parts):
            return self._matvec(node, parts, layer)
        ins = [self.addr(x) for x in node.inputs if x.space == "act"]
        outs = [x for x in node.outputs if x.space == "act"]
        dst = outs[0] if outs else None
        common = dict(layer=layer, flags=self._flags(dst),
                      src0=ins[0] if ins else 0, src1=ins[1] if len(ins) > 1 else 0,
                      dst0=self.addr(dst) if dst is not None else 0)
        k = node.kind
        if k is OpKind.EMBED:
            (wref,) = node.weights
            w, s = self.matrices[(None, wref.name)]
            return Command(opcode=Opcode.EMBED, rows=a.vocab_size, cols=a.dim,
                           group_size=sc.group_size, w_addr=w.addr, s_addr=s.addr,
                           scale_exp0=self.qm.embedding.scale_exp, **common)
        if k is OpKind.RMSNORM:
            (wref,) = node.weights
            return Command(opcode=Opcode.RMSNORM, rows=a.dim, **common, **self._norm(wref))
        if k is OpKind.ROPE:
            return Command(opcode=Opcode.ROPE, rows=node.inputs[0].elements,
                           head_size=a.head_size, tab_addr=t["rope"].addr, **common)
        if k is OpKind.KV_WRITE:
            common["flags"] = self._flags(None, kv_write=True)
            return Command(opcode=Opcode.KV_WRITE, rows=a.kv_dim, **common,
                           **self._kv(node.layer))
        att = dict(rows=a.dim, n_heads=a.n_heads, **self._kv(node.layer))
        att.pop("kv_frac", None)
        if k is OpKind.ATTENTION:
            return Command(opcode=Opcode.ATTENTION, tab_addr=t["exp2"].addr,
                           tab_bits=sc.exp_bits, **att, **common)
        if k is OpKind.ATTENTION_SCORES:
            att.pop("v_addr")
            return Command(opcode=Opcode.ATT_SCORES, **att, **common)
        if k is OpKind.SOFTMAX:
            return Command(opcode=Opcode.SOFTMAX, rows=a.dim, n_heads=a.n_heads,
                           tab_addr=t["exp2"].addr, tab_bits=sc.exp_bits, **common)
        if k is OpKind.ATTENTION_SUM:
            att.pop("k_addr")
            return Command(opcode=Opcode.ATT_SUM, **att, **common)
        if k is OpKind.RESIDUAL:
            return Command(opcode=Opcode.RESIDUAL, rows=a.dim, **common)
        if k is OpKind.SWIGLU:
            return Command(opcode=Opcode.SWIGLU, rows=a.hidden_dim, tab_addr=t["sigmoid"].addr,
                           tab_bits=sc.sigmoid_bits, **common)
        raise ValueError(f"node {node.name}: no command for kind {k}")

    def _norm(self, wref) -> dict:
        return dict(aux_addr=self.gains[(wref.name, wref.layer)].addr,
                    norm_tab_addr=self.tables["rsqrt"].addr, norm_tab_bits=self.sc.rsqrt_bits)

    def _matvec(self, node, parts, layer):
        a, sc = self.a, self.sc
        mvs = [p for p in parts if p.kind in (OpKind.MATVEC, OpKind.CLASSIFIER)]
        kinds = {p.kind for p in parts}
        names = tuple(w.name for p in mvs for w in p.weights)
        key = _STACKED.get(names, names[0])
        if len(names) > 1 and names not in _STACKED:
            raise ValueError(f"node {node.name}: cannot stack matrices {names}")
        mats = [_matrices(self.qm, n, mvs[0].layer) for n in names]
        w, s = self.matrices[(mvs[0].layer, key)]
        norm = parts[0] if parts[0].kind is OpKind.RMSNORM else None
        src = norm.inputs[0] if norm else mvs[0].inputs[0]
        if (src.fmt == X16) == (norm is not None):
            raise ValueError(f"node {node.name}: matvec input {src.name} is {src.fmt.name}")
        (dst,) = [x for x in node.outputs if x.space == "act" or x.name == "logits"]
        exps = [m.scale_exp for m in mats] + [0, 0]
        f = dict(layer=layer, rows=sum(m.rows for m in mats), cols=mats[0].cols,
                 group_size=sc.group_size, w_addr=w.addr, s_addr=s.addr,
                 scale_exp0=exps[0], scale_exp1=exps[1], scale_exp2=exps[2],
                 src0=self.addr(src), dst0=self.addr(dst))
        extra = Flag(0)
        if norm is not None:
            extra |= Flag.NORM_PROLOGUE
            f.update(self._norm(norm.weights[0]))
        if OpKind.KV_WRITE in kinds:
            if key != "wqkv":
                raise ValueError(f"node {node.name}: RoPE/KV epilogue needs wq, wk, wv")
            f.update(epilogue=Epilogue.ROPE_KV, rows_a=mats[0].rows, n_heads=a.n_heads,
                     tab_addr=self.tables["rope"].addr, **self._kv(mvs[0].layer))
        elif OpKind.SWIGLU in kinds:
            f.update(epilogue=Epilogue.SWIGLU_PAIR, tab_addr=self.tables["sigmoid"].addr,
                     tab_bits=sc.sigmoid_bits)
        elif OpKind.RESIDUAL in kinds:
            (res,) = [p for p in parts if p.kind is OpKind.RESIDUAL]
            produced = {x.name for p in mvs for x in p.outputs}
            (other,) = [x for x in res.inputs if x.name not in produced]
            f.update(epilogue=Epilogue.RESIDUAL, src1=self.addr(other))
        opcode = Opcode.CLASSIFIER if OpKind.CLASSIFIER in kinds else Opcode.MATVEC
        return Command(opcode=opcode, flags=self._flags(dst, extra, OpKind.KV_WRITE in kinds),
                       **f)


def main(argv=None) -> int:
    """``python -m speedllm.ops.compiler CHECKPOINT [--no-fusion] [--no-reuse]``: listing."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m speedllm.ops.compiler",
                                description="Compile a checkpoint; print the listing.")
    p.add_argument("checkpoint")
    p.add_argument("--scheme", default="default")
    p.add_argument("--no-fusion", action="store_true")
    p.add_argument("--no-reuse", action="store_true")
    p.add_argument("--act-space", default="scratchpad", choices=("scratchpad", "dram"))
    p.add_argument("--board", default=None, help="board profile (sets the AXI beat width)")
    p.add_argument("--regions", action="store_true", help="also print the image regions")
    args = p.parse_args(argv)
    from speedllm.paths import resolve_model_file
    prog = compile_model(load_checkpoint(resolve_model_file(args.checkpoint)),
                         Scheme.from_name(args.scheme),
                         FusionConfig.none() if args.no_fusion else FusionConfig(),
                         not args.no_reuse, act_space=args.act_space, board=args.board)
    print(json.dumps(prog.summary()))
    if args.regions:
        for r in prog.layout.values():
            print(f"0x{r.addr:08x} {r.size:10d}  {r.name}")
    print(prog.listing(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
