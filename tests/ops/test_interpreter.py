"""The golden interpreter == IntegerTransformer.forward_int, bit for bit (logits and KV cache),
for fused and unfused programs, with and without buffer reuse; it really reads the program."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from speedllm.golden.checkpoint import ModelArgs, load_checkpoint
from speedllm.golden.intmodel import IntegerTransformer, Scheme
from speedllm.golden.synth import synth_checkpoint
from speedllm.ops import dram_format as D
from speedllm.ops.compiler import compile_model
from speedllm.ops.fusion import FusionConfig
from speedllm.ops.interpreter import Interpreter
from speedllm.ops.isa import Epilogue, Opcode, encode_program

POSITIONS = 16


@pytest.fixture(scope="module")
def checkpoint(model_path):
    return load_checkpoint(model_path)


@pytest.fixture(scope="module")
def golden(checkpoint):
    return IntegerTransformer(checkpoint)


@pytest.fixture(scope="module")
def tokens(reference_outputs):
    return reference_outputs[0]["token_ids"][:POSITIONS]


@pytest.fixture(scope="module")
def golden_run(golden, tokens):
    """Golden logits of each position and the KV cache after the last one."""
    golden.reset()
    logits = [golden.forward_int(t, p) for p, t in enumerate(tokens)]
    T = len(tokens)
    kv = [(golden.key_cache.mant[l, :T].copy(), golden.key_cache.exp[l, :T].copy(),
           golden.value_cache.mant[l, :T].copy(), golden.value_cache.exp[l, :T].copy())
          for l in range(golden.args.n_layers)]
    return logits, kv


def _kv_of(interp, program, layer, T):
    a, sc = program.args, program.scheme
    rb = D.kv_row_geometry(a.n_kv_heads, a.head_size, sc.kv_bits, program.beat_bytes)["row_bytes"]
    return [D.read_kv_rows(interp.image, program.layout[f"l{layer}.{n}"].addr, T, a.n_kv_heads,
                           a.head_size, sc.kv_bits, rb) for n in ("k_cache", "v_cache")]


def _run(program, tokens):
    interp = Interpreter.from_program(program)
    return interp, [interp.step(t, p) for p, t in enumerate(tokens)]


@pytest.mark.parametrize("reuse", [True, False], ids=["reuse", "no-reuse"])
@pytest.mark.parametrize("fusion", [FusionConfig(), FusionConfig.none()],
                         ids=lambda c: f"fusion-{c.name}")
def test_interpreter_equals_forward_int(golden, golden_run, tokens, fusion, reuse):
    want_logits, want_kv = golden_run
    program = compile_model(golden.model, fusion=fusion, reuse=reuse)
    interp, logits = _run(program, tokens)
    for pos, (got, want) in enumerate(zip(logits, want_logits)):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want, err_msg=f"logits at pos {pos}")
    for l, (km, ke, vm, ve) in enumerate(want_kv):
        k, v = _kv_of(interp, program, l, len(tokens))
        for got, want, what in ((k.mant, km, "K"), (k.exp, ke, "K exp"), (v.mant, vm, "V"),
                                (v.exp, ve, "V exp")):
            np.testing.assert_array_equal(got, want, err_msg=f"layer {l} {what}")


@pytest.mark.parametrize("fusion,act_space", [
    *[(FusionConfig.only(r), "scratchpad") for r in FusionConfig.rule_names()],
    (FusionConfig(), "dram"), (FusionConfig.none(), "dram")],
    ids=lambda v: v.name if isinstance(v, FusionConfig) else v)
def test_other_configurations(golden, golden_run, tokens, fusion, act_space):
    n = 5
    program = compile_model(golden.model, fusion=fusion, act_space=act_space)
    _, logits = _run(program, tokens[:n])
    for got, want in zip(logits, golden_run[0][:n]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("board", ["kv260", "ulx3s-85f"])
def test_other_bus_widths(golden, golden_run, tokens, board):
    """A 128-bit (kv260) and a 16-bit (ulx3s) bus change the KV row and scale padding."""
    program = compile_model(golden.model, board=board)
    assert program.beat_bytes in (16, 2) and program.beat_bytes != 8
    _, logits = _run(program, tokens[:4])
    for got, want in zip(logits, golden_run[0][:4]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scheme", ["g32-kv16f8", "g16-kv8-rs4-ex5-sg8"])
def test_other_schemes(checkpoint, tokens, scheme):
    golden = IntegerTransformer(checkpoint, scheme)
    for fusion in (FusionConfig(), FusionConfig.none()):
        program = compile_model(golden.model, fusion=fusion)
        interp = Interpreter.from_program(program)
        golden.reset()
        for pos, tok in enumerate(tokens[:5]):
            np.testing.assert_array_equal(interp.step(tok, pos), golden.forward_int(tok, pos))


def test_separate_classifier_shape():
    """Own wcls, n_heads == n_kv_heads, odd hidden_dim, group size 16."""
    ckpt = synth_checkpoint(ModelArgs(48, 100, 2, 4, 4, 80, 24, shared_classifier=False), 5)
    golden = IntegerTransformer(ckpt, Scheme(group_size=16))
    for fusion in (FusionConfig(), FusionConfig.none()):
        program = compile_model(golden.model, fusion=fusion, reuse=False)
        interp = Interpreter.from_program(program)
        golden.reset()
        for pos, tok in enumerate([1, 7, 79, 3]):
            np.testing.assert_array_equal(interp.step(tok, pos), golden.forward_int(tok, pos))


def _corrupt(program, index, **changes):
    cmds = list(program.commands)
    cmds[index] = dataclasses.replace(cmds[index], **changes)
    return Interpreter(encode_program(cmds), program.image, program.scratchpad_bytes)


def _first(program, opcode, epilogue=None):
    for i, c in enumerate(program.commands):
        if c.opcode == opcode and (epilogue is None or c.epilogue == epilogue):
            return i, c
    raise LookupError(opcode)


def test_corrupting_a_command_changes_the_result(golden, golden_run, tokens):
    """Each single-field corruption (one command word) changes the logits: the
    interpreter takes exponents, addresses, epilogues and table sizes from the words."""
    fused = compile_model(golden.model)
    unfused = compile_model(golden.model, fusion=FusionConfig.none())
    cases = []
    i, c = _first(fused, Opcode.MATVEC, Epilogue.ROPE_KV)
    cases += [(fused, i, {"scale_exp2": c.scale_exp2 + 1}),
              (fused, i, {"epilogue": int(Epilogue.NONE)})]
    i, c = _first(fused, Opcode.MATVEC, Epilogue.RESIDUAL)
    cases += [(fused, i, {"src1": c.dst0}), (fused, i, {"w_addr": c.w_addr + c.cols})]
    i, c = _first(fused, Opcode.ATTENTION)
    cases += [(fused, i, {"k_addr": c.v_addr}), (fused, i, {"tab_bits": c.tab_bits - 1})]
    i, c = _first(fused, Opcode.CLASSIFIER)
    cases += [(fused, i, {"aux_addr": fused.layout["rms_att_weight[0]"].addr})]
    i, c = _first(unfused, Opcode.RMSNORM)
    cases += [(unfused, i, {"norm_tab_bits": c.norm_tab_bits - 1})]
    i, c = _first(unfused, Opcode.SOFTMAX)
    cases += [(unfused, i, {"n_heads": c.n_heads // 2, "rows": c.rows // 2})]
    i, c = _first(unfused, Opcode.EMBED)
    cases += [(unfused, i, {"scale_exp0": c.scale_exp0 - 1})]
    pos = 3
    for program, index, changes in cases:
        interp = _corrupt(program, index, **changes)
        got = [interp.step(t, p) for p, t in enumerate(tokens[:pos + 1])]
        assert any(not np.array_equal(g, w) for g, w in zip(got, golden_run[0])), \
            (program.names[index], changes)


def test_inconsistent_command_is_refused(golden, tokens):
    fused = compile_model(golden.model)
    i, _ = _first(fused, Opcode.MATVEC, Epilogue.ROPE_KV)
    with pytest.raises(ValueError, match="KV write"):
        _corrupt(fused, i, rows_a=0).step(tokens[0], 0)


def test_hook_finds_the_first_diverging_command(golden, tokens):
    """The per-command hook: comparing two runs' writes finds the corrupted command."""
    program = compile_model(golden.model, fusion=FusionConfig.none())
    calls = []
    interp = Interpreter.from_program(program)
    interp.step(tokens[0], 0, hook=lambda i, cmd, writes: calls.append((i, cmd, writes)))
    assert [i for i, _, _ in calls] == list(range(len(program.commands) - 1))
    assert all(cmd == program.commands[i] for i, cmd, _ in calls)
    space, addr, data = calls[-1][2][-1]            # the classifier writes the logits
    assert (space, addr, len(data)) == ("dram", program.layout["logits"].addr,
                                        4 * program.args.vocab_size)
    index, c = _first(program, Opcode.RESIDUAL)
    bad = _corrupt(program, index, src1=c.src0)
    _, good_log = Interpreter.from_program(program).step(tokens[0], 0, trace=True)
    _, bad_log = bad.step(tokens[0], 0, trace=True)
    assert len(good_log) == len(bad_log) == len(program.commands) - 1
    first = next(i for i, (g, b) in enumerate(zip(good_log, bad_log)) if g != b)
    assert first == index
