"""The command record: one field table -> encoder, decoder, Amaranth layout, docs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from speedllm.ops import isa
from speedllm.ops.isa import (COMMAND_BYTES, FIELD_BY_NAME, FIELDS, Command, Epilogue, Flag,
                              Opcode, decode, decode_program, encode, encode_program,
                              used_fields)


def _random_value(rng, name):
    spec = FIELD_BY_NAME[name]
    if spec.signed:
        return rng.randint(-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1)
    return rng.randint(0, (1 << spec.bits) - 1)


def _random_command(rng, opcode, epilogue=Epilogue.NONE, flags=0):
    cmd = Command(opcode=int(opcode), epilogue=int(epilogue), flags=int(flags),
                  layer=rng.randint(0, 255))
    values = {n: _random_value(rng, n) for n in used_fields(cmd)}
    return Command(opcode=int(opcode), epilogue=int(epilogue), flags=int(flags),
                   layer=cmd.layer, **values)


def _every_kind(rng):
    for op in Opcode:
        if op in (Opcode.MATVEC, Opcode.CLASSIFIER):
            for ep in Epilogue:
                for fl in (0, Flag.NORM_PROLOGUE | Flag.DST_X16, int(Flag(15))):
                    yield _random_command(rng, op, ep, fl)
        else:
            yield _random_command(rng, op, flags=rng.randint(0, 15))


def test_round_trip_every_command_kind():
    rng = random.Random(1)
    cmds = list(_every_kind(rng))
    assert {c.opcode for c in cmds} == {int(op) for op in Opcode}
    for cmd in cmds:
        raw = encode(cmd)
        assert len(raw) == COMMAND_BYTES
        assert decode(raw) == cmd


def test_extreme_values_round_trip():
    for pick in (min, max):
        values = {}
        for s in FIELDS:
            lo, hi = ((-(1 << (s.bits - 1)), (1 << (s.bits - 1)) - 1) if s.signed
                      else (0, (1 << s.bits) - 1))
            values[s.name] = pick(lo, hi)
        values["opcode"], values["epilogue"] = int(Opcode.SWIGLU), int(Epilogue.ROPE_KV)
        cmd = Command(**values)
        assert decode(encode(cmd)) == cmd


@pytest.mark.parametrize("name,value", [("rows", 1 << 16), ("w_addr", -1),
                                        ("scale_exp0", 128), ("scale_exp1", -129),
                                        ("opcode", 256)])
def test_out_of_range_field_is_refused(name, value):
    with pytest.raises(ValueError, match=name):
        encode(Command(**{"opcode": int(Opcode.MATVEC), name: value}))


def test_each_field_owns_its_bits():
    """Setting one field to all ones changes exactly its own bits of the record."""
    offset = 0
    for s in FIELDS:
        v = -1 if s.signed else (1 << s.bits) - 1
        word = int.from_bytes(encode(Command(**{s.name: v})), "little")
        assert word == ((1 << s.bits) - 1) << offset, s.name
        offset += s.bits


def test_struct_layout_matches_encoder():
    """The Amaranth layout (the RTL decoder's view) reads the same fields as decode()."""
    layout = isa.struct_layout()
    assert layout.size == 8 * COMMAND_BYTES
    rng = random.Random(2)
    for cmd in _every_kind(rng):
        view = layout.from_bits(int.from_bytes(encode(cmd), "little"))
        for s in FIELDS:
            assert int(getattr(view, s.name)) == getattr(cmd, s.name), s.name


def test_decode_rejects_bad_words():
    good = encode(Command(opcode=int(Opcode.RESIDUAL)))
    bad_opcode = bytes([250]) + good[1:]
    with pytest.raises(ValueError, match="bad command word"):
        decode(bad_opcode)
    with pytest.raises(ValueError, match="64 bytes"):
        decode(good[:-1])
    with pytest.raises(ValueError, match="no END"):
        decode_program(good)


def test_program_stops_at_end():
    cmds = [Command(opcode=int(Opcode.RESIDUAL), rows=3), Command(opcode=int(Opcode.END))]
    words = encode_program(cmds[:1]) + encode(Command(opcode=int(Opcode.SWIGLU)))
    assert decode_program(words) == cmds
    assert len(encode_program(cmds)) == 2 * COMMAND_BYTES     # END not appended twice


def test_markdown_lists_every_field_and_opcode():
    md = isa.markdown()
    for s in FIELDS:
        assert f"| `{s.name}` | {s.bits} |" in md
    for op in Opcode:
        assert f"| `{op.name}` | {op.value} | {isa.OPCODE_SEMANTICS[op]} |" in md
    assert isa.main(["--markdown"]) == 0


def test_describe_names_used_fields_only():
    cmd = Command(opcode=int(Opcode.MATVEC), epilogue=int(Epilogue.RESIDUAL), rows=5,
                  src1=0x40, k_addr=0x999)
    text = isa.describe(cmd)
    assert text.startswith("MATVEC+RESIDUAL") and "src1=0x40" in text
    assert "k_addr" not in text


def test_docs_command_table_is_generated():
    """docs/program.md carries the generator's tables (regenerate with
    ``python -m speedllm.ops.isa --markdown``)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "program.md").read_text()
    assert isa.markdown() in doc
