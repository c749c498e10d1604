"""The program compiler: the DRAM image holds exactly the golden quantized model, regions
are aligned and disjoint, the layouts agree with the hardware units', the header and the
configuration hash identify the configuration."""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.errors import InputError
from speedllm.golden.checkpoint import ModelArgs, load_checkpoint
from speedllm.golden.intmodel import QuantizedModel, Scheme
from speedllm.golden.intops import KvStore
from speedllm.golden.synth import synth_checkpoint
from speedllm.ops import dram_format as D
from speedllm.ops.compiler import compile_model
from speedllm.ops.dram_format import read_header
from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import build_graph
from speedllm.ops.isa import FIELDS, Opcode, decode_program, used_fields

CONFIGS = [FusionConfig(), FusionConfig.none()]


@pytest.fixture(scope="module")
def checkpoint(model_path):
    return load_checkpoint(model_path)


@pytest.fixture(scope="module")
def qmodel(checkpoint):
    return QuantizedModel.from_checkpoint(checkpoint)


def _matrix(program, key, rows, cols, gs, exp):
    w, s = program.layout[f"{key}.weights"], program.layout[f"{key}.scales"]
    return D.read_matrix(program.image, w.addr, s.addr, rows, cols, gs, exp)


def _assert_same(got, want):
    np.testing.assert_array_equal(got.q, want.q)
    np.testing.assert_array_equal(got.scale_m, want.scale_m)


def _check_image_holds(program, qm):
    a, gs = qm.args, qm.scheme.group_size
    img = program.image
    _assert_same(_matrix(program, "token_embedding_table", a.vocab_size, a.dim, gs,
                         qm.embedding.scale_exp), qm.embedding)
    if not a.shared_classifier:
        _assert_same(_matrix(program, "wcls", a.vocab_size, a.dim, gs, qm.wcls.scale_exp),
                     qm.wcls)
    for l in range(a.n_layers):
        if program.fusion.rope_kv_epilogue:
            stacked = _matrix(program, f"l{l}.wqkv", a.dim + 2 * a.kv_dim, a.dim, gs, 0)
            bounds = np.cumsum([0, a.dim, a.kv_dim, a.kv_dim])
            for name, lo, hi in zip(("wq", "wk", "wv"), bounds[:-1], bounds[1:]):
                want = getattr(qm, name)[l]
                np.testing.assert_array_equal(stacked.q[lo:hi], want.q)
                np.testing.assert_array_equal(stacked.scale_m[lo:hi], want.scale_m)
        else:
            for name in ("wq", "wk", "wv"):
                m = getattr(qm, name)[l]
                _assert_same(_matrix(program, f"l{l}.{name}", m.rows, m.cols, gs, 0), m)
        if program.fusion.swiglu_epilogue:
            pair = _matrix(program, f"l{l}.w13", 2 * a.hidden_dim, a.dim, gs, 0)
            for name, first in (("w1", 0), ("w3", 1)):
                want = getattr(qm, name)[l]
                np.testing.assert_array_equal(pair.q[first::2], want.q)
                np.testing.assert_array_equal(pair.scale_m[first::2], want.scale_m)
        else:
            for name in ("w1", "w3"):
                m = getattr(qm, name)[l]
                _assert_same(_matrix(program, f"l{l}.{name}", m.rows, m.cols, gs, 0), m)
        for name in ("wo", "w2"):
            m = getattr(qm, name)[l]
            _assert_same(_matrix(program, f"l{l}.{name}", m.rows, m.cols, gs, 0), m)
        for name, want in (("rms_att_weight", qm.rms_att[l]), ("rms_ffn_weight", qm.rms_ffn[l])):
            r = program.layout[f"{name}[{l}]"]
            np.testing.assert_array_equal(D.read_int32(img, r.addr, a.dim), want)
    r = program.layout["rms_final_weight"]
    np.testing.assert_array_equal(D.read_int32(img, r.addr, a.dim), qm.rms_final)
    for name, table in (("rsqrt", qm.rsqrt_table), ("exp2", qm.exp_table),
                        ("sigmoid", qm.sigmoid_table)):
        r = program.layout[f"tables.{name}"]
        np.testing.assert_array_equal(D.read_int32(img, r.addr, len(table)), table)
    rope = program.layout["tables.rope"]
    for pos in (0, 1, a.seq_len - 1):
        c, s = D.read_rope_row(img, rope.addr, pos, a.head_size)
        np.testing.assert_array_equal(c, qm.rope_tables.cos[pos])
        np.testing.assert_array_equal(s, qm.rope_tables.sin[pos])
    # the scale exponents travel in the commands
    exps = {(c.layer, c.w_addr): c.scale_exp0 for c in program.commands
            if c.opcode in (Opcode.MATVEC, Opcode.CLASSIFIER)}
    wo = {l: program.layout[f"l{l}.wo.weights"].addr for l in range(a.n_layers)}
    assert all(exps[(l, wo[l])] == qm.wo[l].scale_exp for l in range(a.n_layers))


@pytest.mark.parametrize("fusion", CONFIGS, ids=lambda c: c.name)
def test_image_holds_the_golden_quantized_model(qmodel, fusion):
    _check_image_holds(compile_model(qmodel, fusion=fusion), qmodel)


def test_separate_classifier_and_other_scheme():
    """A checkpoint with its own wcls, n_heads == n_kv_heads, group size 16, kv8."""
    args = ModelArgs(48, 100, 2, 4, 4, 80, 24, shared_classifier=False)
    qm = QuantizedModel.from_checkpoint(synth_checkpoint(args, seed=3), Scheme(16, 8))
    for fusion in CONFIGS:
        p = compile_model(qm, fusion=fusion)
        _check_image_holds(p, qm)
        (cls,) = [c for c in p.commands if c.opcode == Opcode.CLASSIFIER]
        assert cls.w_addr == p.layout["wcls.weights"].addr


@pytest.mark.parametrize("act_space", ["scratchpad", "dram"])
@pytest.mark.parametrize("reuse", [True, False])
def test_regions_aligned_disjoint_and_zeroed(qmodel, reuse, act_space):
    p = compile_model(qmodel, fusion=FusionConfig.none(), reuse=reuse, act_space=act_space)
    regions = sorted(p.layout.values(), key=lambda r: r.addr)
    assert p.image.size % 4096 == 0 and regions[-1].end <= p.image.size
    for r, nxt in zip(regions, regions[1:]):
        assert r.addr % 4096 == 0 and r.end <= nxt.addr, (r, nxt)
    for name in [n for n in p.layout if n.endswith(("k_cache", "v_cache"))] + ["logits"]:
        r = p.layout[name]
        assert not p.image[r.addr:r.end].any(), name
    assert ("activations" in p.layout) == (act_space == "dram")
    # every operand fits its space
    space = p.layout["activations"].size if act_space == "dram" else p.scratchpad_bytes
    base = p.layout["activations"].addr if act_space == "dram" else 0
    for c in p.commands:
        for f in ("src0", "src1", "dst0"):
            v = getattr(c, f)
            if v and not (c.opcode == Opcode.CLASSIFIER and f == "dst0"):
                assert base <= v < base + space, (c, f)


def test_one_command_per_fused_node(qmodel, checkpoint):
    a = qmodel.args
    fixed_kv = QuantizedModel.from_checkpoint(checkpoint, Scheme.from_name("g32-kv16f8"))
    for model, fusion in [(qmodel, CONFIGS[0]), (qmodel, CONFIGS[1]), (fixed_kv, CONFIGS[0]),
                          (fixed_kv, CONFIGS[1]), (qmodel, FusionConfig.only("rmsnorm_prologue"))]:
        p = compile_model(model, fusion=fusion)
        nodes = fuse(build_graph(a), fusion).nodes
        assert p.names[:-1] == [n.name for n in nodes]
        assert decode_program(p.words) == p.commands
        assert p.commands[-1].opcode == Opcode.END
        assert len(p.listing().splitlines()) == len(p.commands) + 1
        # a command sets only the fields its opcode reads (isa.used_fields)
        for c in p.commands:
            keep = set(used_fields(c)) | {"opcode", "flags", "epilogue", "layer"}
            extra = {f.name for f in FIELDS if getattr(c, f.name) and f.name not in keep}
            assert not extra, (Opcode(c.opcode).name, extra)


def test_header_and_config_hash(qmodel, checkpoint):
    p = compile_model(qmodel)
    h = read_header(p.image)
    a = qmodel.args
    assert (h["dim"], h["hidden_dim"], h["n_layers"], h["vocab_size"]) == \
        (a.dim, a.hidden_dim, a.n_layers, a.vocab_size)
    assert h["config_hash"] == p.config_hash and h["config_digest"] == p.config_digest
    assert h["scheme"] == qmodel.scheme.name and h["logits_addr"] == p.layout["logits"].addr
    prog = p.layout["program"]
    assert bytes(p.image[prog.addr:prog.addr + len(p.words)]) == p.words
    # deterministic, and different for a different configuration
    assert compile_model(checkpoint).config_hash == p.config_hash
    others = {compile_model(qmodel, fusion=FusionConfig.none()).config_hash,
              compile_model(qmodel, reuse=False, fusion=FusionConfig.none()).config_hash,
              compile_model(checkpoint, "g16-kv16").config_hash}
    assert p.config_hash not in others and len(others) == 3
    with pytest.raises(InputError, match="magic"):
        read_header(np.zeros(256, np.uint8))


def test_scheme_mismatch_is_refused(qmodel):
    with pytest.raises(InputError, match="quantized with scheme"):
        compile_model(qmodel, "g16-kv16")


# --- the same bytes as the hardware units' own layout functions -----------------------

def test_matrix_regions_match_matvec_engine_layout(qmodel):
    from speedllm.hw import matvec_layout
    for m in (qmodel.w2[0], qmodel.wq[1], qmodel.embedding):
        w, s = D.matrix_regions(m.q, m.scale_m, 8)
        assert w == matvec_layout.weight_image(m, 8).tobytes()
        assert s == matvec_layout.scale_image(m, 4).astype("<u2").tobytes()


@pytest.mark.parametrize("kv_bits", [8, 16, 32])
def test_kv_rows_match_attention_unit_layout(kv_bits):
    from speedllm.hw.attention import kv_cache_image
    from speedllm.hw.attention_core import kv_row_geometry
    rng = np.random.default_rng(kv_bits)
    T, G, hs = 3, 4, 8
    lim = 1 << (kv_bits - 1)
    store = KvStore(rng.integers(-lim, lim, (T, G, hs)), rng.integers(0, 256, (T, G)))
    geo = D.kv_row_geometry(G, hs, kv_bits, 8)
    assert geo["row_bytes"] == kv_row_geometry(G, hs, kv_bits, 64)["row_bytes"]
    raw = D.kv_rows_bytes(store, kv_bits, geo["row_bytes"])
    assert raw == kv_cache_image(store.mant, store.exp, beat_bits=64, kv_bits=kv_bits)
    back = D.read_kv_rows(np.frombuffer(raw, np.uint8), 0, T, G, hs, kv_bits, geo["row_bytes"])
    np.testing.assert_array_equal(back.mant, store.mant)
    np.testing.assert_array_equal(back.exp, store.exp)


def test_x16_activation_round_trip():
    x16 = np.array([-32768, 5, 32767], np.int16)
    raw = np.frombuffer(D.x16_bytes(x16, 7), np.uint8)
    got, e = D.read_x16(raw, 0, 3)
    assert raw.size == D.x16_nbytes(3) and e == 7
    np.testing.assert_array_equal(got, x16)
