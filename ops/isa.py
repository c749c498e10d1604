"""The accelerator's command set: one fixed-size binary record per command.

A program is a sequence of :data:`COMMAND_BYTES`-byte commands ending with ``END``; the
sequencer executes one command per fused op-graph node (one per run.c step when fusion is
off). The program is compiled once per model (:mod:`speedllm.ops.compiler`): the token
and the position are per-step registers, never part of a command.

Every field is defined once, in :data:`FIELDS` (name, width, signedness, meaning). From
that table come the encoder (:func:`encode`), the decoder (:func:`decode`), the RTL
decoder's layout (:func:`struct_layout`, an Amaranth ``data.StructLayout``: first field in
the low bits) and the command table of docs/program.md (:func:`markdown`). A command is
one little-endian integer of ``8 * COMMAND_BYTES`` bits: field ``i`` sits at bit offset
``sum(width of fields before i)``, exactly as ``StructLayout`` places it.

Operands ``src0``, ``src1``, ``dst0`` are byte offsets in the activation scratchpad (from
the memory plan), or DRAM byte addresses when the ``ACT_IN_DRAM`` flag is set (the no-
scratchpad ablation). ``CLASSIFIER`` always writes ``dst0`` in DRAM (the logits region).
All other ``*_addr`` fields are DRAM byte addresses in the image.

``python -m speedllm.ops.isa --markdown`` prints the tables of docs/program.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field as dc_field, make_dataclass
from enum import IntEnum, IntFlag

COMMAND_BYTES = 64
ISA_VERSION = 1


@dataclass(frozen=True)
class FieldSpec:
    """One field of a command record."""

    name: str
    bits: int
    signed: bool
    doc: str


def _f(name, bits, doc, signed=False):
    return FieldSpec(name, bits, signed, doc)


#: The one description of a command record, low bits first.
FIELDS: tuple[FieldSpec, ...] = (
    _f("opcode", 8, "what the command does (`Opcode`); 0 = END"),
    _f("flags", 8, "`Flag` bits"),
    _f("epilogue", 8, "MATVEC/CLASSIFIER epilogue (`Epilogue`)"),
    _f("layer", 8, "layer index, 255 outside the layers (for listings and traces only)"),
    _f("rows", 16, "output length: matrix rows (QKV: q+k+v rows; W13: 2*hidden, "
                   "interleaved), or the vector length of an element-wise op"),
    _f("cols", 16, "matrix input length, unpadded (the padded length is a multiple of "
                   "`group_size`)"),
    _f("rows_a", 16, "QKV epilogue: q rows (k and v have `(rows - rows_a) / 2` each)"),
    _f("group_size", 16, "W8 weights per scale group"),
    _f("kv_row_bytes", 16, "bytes of one KV-cache row (one position of one layer's K or V)"),
    _f("scale_exp0", 8, "matrix scale exponent (q; W1 on even rows; the only matrix)", True),
    _f("scale_exp1", 8, "second matrix's scale exponent (k; W3 on odd rows)", True),
    _f("scale_exp2", 8, "third matrix's scale exponent (v)", True),
    _f("kv_bits", 8, "bits of a stored KV mantissa (8, 16, 32)"),
    _f("kv_frac", 8, "fixed-point KV (flag `KV_FIXED`): fractional bits; the row "
                     "exponent bytes hold `16 - kv_frac`"),
    _f("head_size", 8, "elements per attention head"),
    _f("n_heads", 8, "query heads"),
    _f("n_kv_heads", 8, "key/value heads"),
    _f("norm_tab_bits", 8, "RMSNorm rsqrt table resolution (2**bits intervals per unit)"),
    _f("tab_bits", 8, "resolution of the table at `tab_addr` (exp2 or sigmoid; 0 for RoPE)"),
    _f("w_addr", 32, "W8 weight region (int8 rows padded to `group_size`)"),
    _f("s_addr", 32, "group-scale region (uint16 mantissas, packed row after row)"),
    _f("aux_addr", 32, "RMSNorm gains (int32 Q7.16 vector)"),
    _f("norm_tab_addr", 32, "rsqrt table (int32 entries)"),
    _f("tab_addr", 32, "lookup table: RoPE cos/sin rows, exp2 table or sigmoid table"),
    _f("k_addr", 32, "row 0 of this layer's K cache"),
    _f("v_addr", 32, "row 0 of this layer's V cache"),
    _f("src0", 32, "first input operand (activation offset, see module doc)"),
    _f("src1", 32, "second input operand (residual stream, h3, v)"),
    _f("dst0", 32, "output operand"),
)

_OFFSETS: dict[str, int] = {}
_o = 0
for _spec in FIELDS:
    _OFFSETS[_spec.name] = _o
    _o += _spec.bits
COMMAND_BITS = _o
assert COMMAND_BITS <= 8 * COMMAND_BYTES, COMMAND_BITS
FIELD_BY_NAME = {s.name: s for s in FIELDS}


class Opcode(IntEnum):
    """Command kinds (semantics in :data:`OPCODE_SEMANTICS`). A zero word is END, so a
    program that runs off its end stops."""

    END = 0
    EMBED = 1
    MATVEC = 2
    CLASSIFIER = 3
    RMSNORM = 4
    ROPE = 5
    KV_WRITE = 6
    ATTENTION = 7
    ATT_SCORES = 8
    SOFTMAX = 9
    ATT_SUM = 10
    RESIDUAL = 11
    SWIGLU = 12


#: What each command computes (``pos``, ``token``: the per-step registers; ``T = pos + 1``).
OPCODE_SEMANTICS: dict[Opcode, str] = {
    Opcode.END: "stop; the step is done",
    Opcode.EMBED: "dst0 = dequantized row `token` of the W8 table at w_addr/s_addr",
    Opcode.MATVEC: "dst0 = epilogue(W @ x), x = X16 at src0, or RMSNorm(ACT at src0) "
                   "with `NORM_PROLOGUE`",
    Opcode.CLASSIFIER: "a MATVEC whose dst0 is the DRAM logits region (ACT int32)",
    Opcode.RMSNORM: "dst0 = rmsnorm(src0, gains at aux_addr)",
    Opcode.ROPE: "dst0 = rope(src0, pos), table row `pos` at tab_addr",
    Opcode.KV_WRITE: "K cache row `pos` = src0, V cache row `pos` = src1 (cache format)",
    Opcode.ATTENTION: "dst0 = attention(q = src0, K/V rows 0..pos), one streaming pass",
    Opcode.ATT_SCORES: "dst0 = scores [n_heads][T] (ACT) of q = src0 against K rows 0..pos",
    Opcode.SOFTMAX: "dst0 = exp(src0 - row max) [n_heads][T], unnormalized (ATT_SUM "
                    "divides by the row sums)",
    Opcode.ATT_SUM: "dst0 = (src0 @ V rows 0..pos) / row sums of src0",
    Opcode.RESIDUAL: "dst0 = sat32(src0 + src1)",
    Opcode.SWIGLU: "dst0 = silu(src0) * src1",
}


class Epilogue(IntEnum):
    """What a MATVEC does with its row results ``y`` before writing ``dst0``."""

    NONE = 0
    RESIDUAL = 1
    SWIGLU_PAIR = 2
    ROPE_KV = 3


EPILOGUE_SEMANTICS: dict[Epilogue, str] = {
    Epilogue.NONE: "dst0 = y",
    Epilogue.RESIDUAL: "dst0 = sat32(src1 + y)",
    Epilogue.SWIGLU_PAIR: "rows interleaved (W1 row i at 2i, W3 row i at 2i+1): "
                          "dst0[i] = silu(y[2i]) * y[2i+1]",
    Epilogue.ROPE_KV: "y = [q; k; v]: dst0 = rope(q); K/V cache row `pos` = rope(k), v",
}


class Flag(IntFlag):
    """Bits of the ``flags`` field."""

    NORM_PROLOGUE = 1  # src0 is ACT: RMSNorm it (gains aux_addr, rsqrt norm_tab_addr) first
    DST_X16 = 2        # dst0 holds X16 (int16 mantissas + block exponent), else ACT int32
    ACT_IN_DRAM = 4    # src0/src1/dst0 are DRAM addresses (no scratchpad)
    KV_FIXED = 8       # fixed-point KV cache (kv_frac), else block exponent per head


_KV = ("head_size", "n_kv_heads", "kv_bits", "kv_row_bytes")
_MATRIX = ("rows", "cols", "group_size", "w_addr", "s_addr", "scale_exp0")
_NORM = ("aux_addr", "norm_tab_addr", "norm_tab_bits")

#: The fields each opcode reads; a compiled program leaves every other field zero.
#: MATVEC/CLASSIFIER also read their epilogue's and prologue's fields, KV writes read
#: ``kv_frac`` with ``KV_FIXED``: see :func:`used_fields`.
OPCODE_FIELDS: dict[Opcode, tuple[str, ...]] = {
    Opcode.END: (),
    Opcode.EMBED: ("rows", "cols", "group_size", "w_addr", "s_addr", "scale_exp0", "dst0"),
    Opcode.MATVEC: _MATRIX + ("src0", "dst0"),
    Opcode.CLASSIFIER: _MATRIX + ("src0", "dst0"),
    Opcode.RMSNORM: ("rows", "src0", "dst0") + _NORM,
    Opcode.ROPE: ("rows", "head_size", "tab_addr", "src0", "dst0"),
    Opcode.KV_WRITE: ("rows", "src0", "src1", "k_addr", "v_addr") + _KV,
    Opcode.ATTENTION: ("rows", "n_heads", "tab_addr", "tab_bits", "src0", "dst0", "k_addr",
                       "v_addr") + _KV,
    Opcode.ATT_SCORES: ("rows", "n_heads", "src0", "dst0", "k_addr") + _KV,
    Opcode.SOFTMAX: ("rows", "n_heads", "tab_addr", "tab_bits", "src0", "dst0"),
    Opcode.ATT_SUM: ("rows", "n_heads", "src0", "dst0", "v_addr") + _KV,
    Opcode.RESIDUAL: ("rows", "src0", "src1", "dst0"),
    Opcode.SWIGLU: ("rows", "tab_addr", "tab_bits", "src0", "src1", "dst0"),
}

EPILOGUE_FIELDS: dict[Epilogue, tuple[str, ...]] = {
    Epilogue.NONE: (),
    Epilogue.RESIDUAL: ("src1",),
    Epilogue.SWIGLU_PAIR: ("scale_exp1", "tab_addr", "tab_bits"),
    Epilogue.ROPE_KV: ("rows_a", "scale_exp1", "scale_exp2", "tab_addr", "n_heads", "k_addr",
                       "v_addr") + _KV,
}

# A command: a frozen dataclass with one int attribute per field, all defaulting to 0.
Command = make_dataclass(
    "Command", [(s.name, int, dc_field(default=0)) for s in FIELDS], frozen=True,
    namespace={"__doc__": "One command; attributes are the fields of :data:`FIELDS`.",
               "kind": property(lambda self: Opcode(self.opcode))})
Command.__module__ = __name__


def used_fields(cmd) -> tuple[str, ...]:
    """Fields ``cmd`` reads besides opcode/flags/epilogue/layer (for listings and checks)."""
    op = Opcode(cmd.opcode)
    names = list(OPCODE_FIELDS[op])
    if op in (Opcode.MATVEC, Opcode.CLASSIFIER):
        names += EPILOGUE_FIELDS[Epilogue(cmd.epilogue)]
        if cmd.flags & Flag.NORM_PROLOGUE:
            names += _NORM
    if cmd.flags & Flag.KV_FIXED and (op is Opcode.KV_WRITE or (
            op in (Opcode.MATVEC, Opcode.CLASSIFIER) and cmd.epilogue == Epilogue.ROPE_KV)):
        names.append("kv_frac")
    return tuple(dict.fromkeys(names))


def _check(spec: FieldSpec, v) -> int:
    v = int(v)
    lo, hi = ((-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed
              else (0, (1 << spec.bits) - 1))
    if not lo <= v <= hi:
        raise ValueError(f"command field {spec.name} = {v} does not fit "
                         f"{'signed' if spec.signed else 'unsigned'} {spec.bits} bits")
    return v


def encode(cmd) -> bytes:
    """One command -> :data:`COMMAND_BYTES` little-endian bytes (``ValueError`` on range)."""
    word = 0
    for spec in FIELDS:
        v = _check(spec, getattr(cmd, spec.name))
        word |= (v & ((1 << spec.bits) - 1)) << _OFFSETS[spec.name]
    return word.to_bytes(COMMAND_BYTES, "little")


def decode(raw: bytes):
    """:data:`COMMAND_BYTES` bytes -> :class:`Command` (``ValueError`` on an unknown opcode
    or epilogue)."""
    if len(raw) != COMMAND_BYTES:
        raise ValueError(f"a command is {COMMAND_BYTES} bytes, not {len(raw)}")
    word = int.from_bytes(raw, "little")
    values = {}
    for spec in FIELDS:
        v = (word >> _OFFSETS[spec.name]) & ((1 << spec.bits) - 1)
        if spec.signed and v >> (spec.bits - 1):
            v -= 1 << spec.bits
        values[spec.name] = v
    try:
        Opcode(values["opcode"])
        Epilogue(values["epilogue"])
    except ValueError as e:
        raise ValueError(f"bad command word: {e}") from None
    return Command(**values)


def encode_program(cmds) -> bytes:
    """Commands -> the command stream (an ``END`` is appended when missing)."""
    cmds = list(cmds)
    if not cmds or cmds[-1].opcode != Opcode.END:
        cmds.append(Command(opcode=Opcode.END))
    return b"".join(encode(c) for c in cmds)


def decode_program(words: bytes) -> list:
    """The command stream -> commands up to and including the first ``END``."""
    if len(words) % COMMAND_BYTES:
        raise ValueError(f"program of {len(words)} bytes is not whole {COMMAND_BYTES}-byte "
                         "commands")
    out = []
    for i in range(0, len(words), COMMAND_BYTES):
        out.append(decode(words[i:i + COMMAND_BYTES]))
        if out[-1].opcode == Opcode.END:
            return out
    raise ValueError("program has no END command")


def struct_layout():
    """The command record as an Amaranth ``data.StructLayout`` (fields in :data:`FIELDS`
    order from bit 0, padded to ``8 * COMMAND_BYTES`` bits with ``_pad``)."""
    from amaranth.hdl import signed, unsigned
    from amaranth.lib import data
    members = {s.name: (signed if s.signed else unsigned)(s.bits) for s in FIELDS}
    if COMMAND_BITS < 8 * COMMAND_BYTES:
        members["_pad"] = unsigned(8 * COMMAND_BYTES - COMMAND_BITS)
    return data.StructLayout(members)


def describe(cmd) -> str:
    """One line: opcode, epilogue, flags and the fields the command reads."""
    op = Opcode(cmd.opcode)
    head = op.name
    if op in (Opcode.MATVEC, Opcode.CLASSIFIER) and cmd.epilogue:
        head += f"+{Epilogue(cmd.epilogue).name}"
    flags = Flag(cmd.flags)
    if flags:
        head += " [" + "|".join(f.name for f in Flag if f in flags) + "]"
    parts = []
    for name in used_fields(cmd):
        v = getattr(cmd, name)
        parts.append(f"{name}=0x{v:x}" if name.endswith(("addr", "src0", "src1", "dst0"))
                     else f"{name}={v}")
    return head + (" " + " ".join(parts) if parts else "")


def markdown() -> str:
    """The field, opcode, epilogue and flag tables (the command table of docs/program.md)."""
    out = [f"Command record: {COMMAND_BYTES} bytes, one little-endian integer, "
           f"{COMMAND_BITS} bits used (ISA version {ISA_VERSION}).", "",
           "| field | bits | byte.bit | signed | meaning |", "|---|---:|---|---|---|"]
    for s in FIELDS:
        o = _OFFSETS[s.name]
        out.append(f"| `{s.name}` | {s.bits} | {o // 8}.{o % 8} | "
                   f"{'yes' if s.signed else ''} | {s.doc} |")
    out += ["", "| opcode | value | does | fields read |", "|---|---:|---|---|"]
    fixed = ", kv_frac (with `KV_FIXED`)"
    for op in Opcode:
        out.append(f"| `{op.name}` | {op.value} | {OPCODE_SEMANTICS[op]} | "
                   f"{', '.join(OPCODE_FIELDS[op]) or '-'}"
                   f"{fixed if op is Opcode.KV_WRITE else ''} |")
    out += ["", "| epilogue (MATVEC, CLASSIFIER) | value | does | extra fields read |",
            "|---|---:|---|---|"]
    for ep in Epilogue:
        out.append(f"| `{ep.name}` | {ep.value} | {EPILOGUE_SEMANTICS[ep]} | "
                   f"{', '.join(EPILOGUE_FIELDS[ep]) or '-'}"
                   f"{fixed if ep is Epilogue.ROPE_KV else ''} |")
    out += ["", "| flag | bit value | meaning |", "|---|---:|---|"]
    docs = {Flag.NORM_PROLOGUE: "src0 is ACT; RMSNorm it first (gains `aux_addr`, rsqrt "
                                "table `norm_tab_addr`), then quantize to X16",
            Flag.DST_X16: "dst0 is stored as X16 (int16 mantissas, then an int32 block "
                          "exponent), else ACT int32",
            Flag.ACT_IN_DRAM: "src0/src1/dst0 are DRAM addresses (no scratchpad)",
            Flag.KV_FIXED: "KV cache in fixed point (`kv_frac`), else block exponent"}
    for fl in Flag:
        out.append(f"| `{fl.name}` | {fl.value} | {docs[fl]} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m speedllm.ops.isa", description=__doc__.split(
        "\n")[0])
    p.add_argument("--markdown", action="store_true", help="print the command tables")
    a = p.parse_args(argv)
    if a.markdown:
        sys.stdout.write(markdown())
    else:
        for s in FIELDS:
            print(f"{s.name:14s} {_OFFSETS[s.name]:4d} {s.bits:3d}{' s' if s.signed else ''}")
    return 0


__all__ = ["COMMAND_BYTES", "COMMAND_BITS", "ISA_VERSION", "FIELDS", "FieldSpec", "Opcode",
           "Epilogue", "Flag", "Command", "OPCODE_FIELDS", "EPILOGUE_FIELDS", "OPCODE_SEMANTICS",
           "EPILOGUE_SEMANTICS", "used_fields",
           "encode", "decode", "encode_program", "decode_program", "struct_layout",
           "describe", "markdown"]

if __name__ == "__main__":
    sys.exit(main())
