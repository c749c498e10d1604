"""Checkpoint and tokenizer readers/writers: the real stories260K files, round trips through
every version, and one test per malformed-file case (each a one-line CheckpointError that
names the file and the problem). Expected dims, sizes and hashes come from the shared
models README. Runs in about 2 s."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct

import numpy as np
import pytest

from speedllm.errors import CheckpointError
from speedllm.golden.checkpoint import (MAGIC, ModelArgs, checkpoint_nbytes, load_checkpoint,
                                        load_tokenizer, tensor_shapes)
from speedllm.golden.export import (default_group_size, legacy_rope_tables, write_checkpoint)
from speedllm.golden.synth import synth_checkpoint


# ---------------------------------------------------------------------------------------
# facts from the shared models README


@pytest.fixture(scope="module")
def readme(model_path):
    return (model_path.parent / "README.md").read_text()


def readme_file_row(readme, name):
    """(bytes, sha256) of a file in the README's table."""
    m = re.search(rf"^\| `{re.escape(name)}` \| ([\d,]+) \| `([0-9a-f]{{64}})`", readme, re.M)
    return int(m.group(1).replace(",", "")), m.group(2)


def readme_args(readme):
    vals = {k: int(v) for k, v in re.findall(r"^\| `(\w+)` \| (\d+)", readme, re.M)}
    return ModelArgs(*(vals[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len")))


def test_stories260k_matches_readme(model_path, readme):
    ckpt = load_checkpoint(model_path)
    size, sha = readme_file_row(readme, "stories260K.bin")
    assert ckpt.args == readme_args(readme)         # stored +512: shared classifier
    assert ckpt.version == 0 and ckpt.args.shared_classifier
    assert model_path.stat().st_size == size == checkpoint_nbytes(ckpt.args, 0)
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == sha
    assert ckpt.weights["wcls"] is ckpt.weights["token_embedding_table"]
    for name, shape in tensor_shapes(ckpt.args):
        assert ckpt.weights[name].shape == shape and ckpt.weights[name].dtype == np.float32
    # the file's legacy RoPE tables are what model.py computes (so the layout offsets are right)
    for table, ours in zip(ckpt.legacy_rope, legacy_rope_tables(ckpt.args)):
        np.testing.assert_allclose(table, ours, atol=1e-6)
    # RMSNorm gains of a trained net sit around 1; a misaligned read would not
    assert 0.2 < float(np.mean(ckpt.weights["rms_final_weight"])) < 5


def test_v0_rewrite_is_byte_identical(model_path, readme, tmp_path):
    out = tmp_path / "copy.bin"
    write_checkpoint(load_checkpoint(model_path), out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == readme_file_row(
        readme, "stories260K.bin")[1]


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("shared", [True, False])
def test_fp32_round_trip(model_path, tmp_path, version, shared):
    src = load_checkpoint(model_path)
    if not shared:    # a separate classifier, different from the embedding
        src = synth_checkpoint(dataclasses.replace(src.args, shared_classifier=False), seed=3)
    out = tmp_path / f"v{version}.bin"
    n = write_checkpoint(src, out, version=version)
    back = load_checkpoint(out)
    assert out.stat().st_size == n == checkpoint_nbytes(src.args, version)
    assert back.version == version and back.args == src.args
    for name in src.weights:
        np.testing.assert_array_equal(back.weights[name], src.weights[name])
    if version == 0:
        assert struct.unpack_from("<7i", out.read_bytes())[5] == (512 if shared else -512)


@pytest.mark.parametrize("shared,gs", [(True, None), (False, None), (True, 64)])
def test_v2_round_trip_within_q8_error(model_path, tmp_path, shared, gs):
    """Default group size 4 (divides dim 64 and hidden_dim 172), and llama2.c export.py's
    own choice for this model, 64, whose groups straddle the rows of w1/w2/w3."""
    src = load_checkpoint(model_path)
    if not shared:
        src = synth_checkpoint(dataclasses.replace(src.args, shared_classifier=False), seed=4)
    if gs is None:
        gs = default_group_size(src.args)
        assert gs == 4
    out = tmp_path / "q8.bin"
    n = write_checkpoint(src, out, version=2, group_size=gs)
    back = load_checkpoint(out)
    assert out.stat().st_size == n == checkpoint_nbytes(src.args, 2, gs)
    assert back.version == 2 and back.group_size == gs and back.args == src.args
    for name in ("rms_att_weight", "rms_ffn_weight", "rms_final_weight"):
        np.testing.assert_array_equal(back.weights[name], src.weights[name])
    for name in set(back.q8):
        w = np.asarray(src.weights[name], dtype=np.float32)
        layers = w.reshape(-1, *w.shape[-2:]) if name.startswith("w") and w.ndim == 3 else w[None]
        groups = layers.reshape(len(layers), -1, gs)
        scale = np.abs(groups).max(axis=2) / np.float32(127)
        q, s = back.q8[name]
        assert q.dtype == np.int8 and q.shape == w.shape and int(np.abs(q).max()) <= 127
        np.testing.assert_array_equal(s.reshape(scale.shape), scale)
        err = np.abs(back.weights[name] - w).reshape(groups.shape)
        assert np.all(err <= scale[..., None] * 0.5 * (1 + 1e-5) + 1e-12), name
    assert (back.weights["wcls"] is back.weights["token_embedding_table"]) == shared
    # a v2 checkpoint written again with its own group size keeps its exact bytes
    again = tmp_path / "q8b.bin"
    write_checkpoint(back, again)
    assert again.read_bytes() == out.read_bytes()


def reference_export(ckpt, version, gs=None) -> bytes:
    """llama2.c export.py's version1_export / version2_export, step by step (with runq.c's
    layout: each quantized tensor's int8 values immediately followed by its scales)."""
    a, w = ckpt.args, ckpt.weights
    out = [struct.pack("<Ii7iB", 0x616B3432, version, a.dim, a.hidden_dim, a.n_layers,
                       a.n_heads, a.n_kv_heads, a.vocab_size, a.seq_len, a.shared_classifier)]
    if version == 2:
        out.append(struct.pack("<i", gs))
    out.append(b"\0" * (256 - len(b"".join(out))))
    f32 = lambda t: np.asarray(t, "<f4").tobytes()
    layers = lambda name: [w[name][l] for l in range(a.n_layers)]
    norms = [*layers("rms_att_weight"), *layers("rms_ffn_weight"), w["rms_final_weight"]]
    mats = [w["token_embedding_table"], *(t for n in ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
                                          for t in layers(n))]
    if not a.shared_classifier:
        mats.append(w["wcls"])
    if version == 1:
        return b"".join(out + [f32(t) for t in norms + mats])
    out += [f32(t) for t in norms]
    for t in mats:
        g = np.asarray(t, np.float32).reshape(-1, gs)
        scale = np.abs(g).max(axis=1) / np.float32(127.0)
        out += [np.round(g / scale[:, None]).astype(np.int8).tobytes(), f32(scale)]
    return b"".join(out)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shared", [True, False])
def test_writer_matches_llama2c_export_layout(model_path, tmp_path, version, shared):
    src = load_checkpoint(model_path)
    if not shared:
        src = synth_checkpoint(dataclasses.replace(src.args, shared_classifier=False), seed=5)
    out = tmp_path / "x.bin"
    write_checkpoint(src, out, version=version, group_size=4 if version == 2 else None)
    assert out.read_bytes() == reference_export(src, version, 4)


def test_loader_accepts_bare_name_and_is_read_only(model_path):
    ckpt = load_checkpoint("stories260K.bin")
    assert ckpt.path.name == model_path.name
    with pytest.raises(ValueError):
        ckpt.weights["wq"][0, 0, 0] = 1.0                 # the file is mapped read-only


# ---------------------------------------------------------------------------------------
# malformed checkpoints


def expect_error(path, *fragments):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def patched(tmp_path, data: bytes, name="bad.bin", at=None, fmt="<i", value=None):
    if at is not None:
        data = bytearray(data)
        struct.pack_into(fmt, data, at, value)
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


@pytest.fixture(scope="module")
def v260(model_path):
    return model_path.read_bytes()


@pytest.fixture(scope="module")
def v2_260(model_path, tmp_path_factory):
    p = tmp_path_factory.mktemp("v2") / "q8.bin"
    write_checkpoint(load_checkpoint(model_path), p, version=2)
    return p.read_bytes()


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nowhere.bin", "file not found")


def test_truncated(tmp_path, v260):
    expect_error(patched(tmp_path, v260[:-100]), "truncated", "1056440 bytes", "need 1056540")
    expect_error(patched(tmp_path, v260[:10], "tiny.bin"), "truncated")
    expect_error(patched(tmp_path, v260[:-100], "v1"), "truncated")


def test_trailing_bytes(tmp_path, v260, v2_260):
    expect_error(patched(tmp_path, v260 + b"\0" * 8), "8 trailing bytes")
    expect_error(patched(tmp_path, v2_260 + b"\0" * 3, "q.bin"), "3 trailing bytes",
                 "version-2")


def test_header_dims_not_matching_file(tmp_path, v260):
    # seq_len 256 shrinks the RoPE tables: the rest of the file no longer fits
    expect_error(patched(tmp_path, v260, at=24, value=256), "trailing bytes",
                 "header does not match")
    expect_error(patched(tmp_path, v260, at=8, value=6), "truncated", "n_layers=6")


def test_wrong_magic(tmp_path, v260):
    expect_error(patched(tmp_path, b"GGUF" + v260[4:]), "not a llama2.c checkpoint", "GGUF")
    garbage = patched(tmp_path, b"\xff\xfe\xfd\xfc" + v260[4:], "garbage.bin")
    expect_error(garbage, "no 'ak42' magic")


def test_unknown_version(tmp_path, v2_260):
    expect_error(patched(tmp_path, v2_260, at=4, value=3), "unknown", "version 3")


@pytest.mark.parametrize("field,index,value", [("dim", 0, 0), ("n_layers", 2, -1),
                                               ("vocab_size", 5, 0), ("seq_len", 6, 0)])
def test_nonpositive_dims(tmp_path, v260, field, index, value):
    expect_error(patched(tmp_path, v260, at=4 * index, value=value), f"{field} is {value}")


def test_negative_vocab_in_versioned_header(tmp_path, v2_260):
    expect_error(patched(tmp_path, v2_260, at=8 + 20, value=-512), "vocab_size is -512")


def test_bad_shared_flag(tmp_path, v2_260):
    expect_error(patched(tmp_path, v2_260, at=36, fmt="<B", value=7), "shared_classifier")


def test_heads_must_divide(tmp_path, v260):
    expect_error(patched(tmp_path, v260, at=12, value=7), "n_heads 7 does not divide dim 64")
    expect_error(patched(tmp_path, v260, at=16, value=3),
                 "n_kv_heads 3 does not divide n_heads 8")


def test_v2_group_size(tmp_path, v2_260):
    expect_error(patched(tmp_path, v2_260, at=37, value=3), "group_size 3 does not divide")
    expect_error(patched(tmp_path, v2_260, at=37, value=0, name="z.bin"), "group_size is 0")


def test_header_magic_constant():
    assert struct.pack("<I", MAGIC) == b"24ka"          # "ak42" read as a little-endian uint32


# ---------------------------------------------------------------------------------------
# tokenizers


def test_tokenizers_load(tok512_path, tok32k_path, readme):
    rows = dict(re.findall(r"^\| `(tok\w*\.bin)` \| (\d+) \|", readme, re.M))
    counts = {"tok512.bin": 512, "tokenizer.bin": 32000}   # the vocabularies they belong to
    for path in (tok512_path, tok32k_path):
        tok = load_tokenizer(path, counts[path.name])
        assert tok.max_token_length == int(rows[path.name])
        assert len(tok.vocab) == counts[path.name] == len(tok.scores)
        assert tok.vocab[:3] == [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
        assert tok.vocab[3:259] == [f"<0x{i:02X}>".encode() for i in range(256)]
        assert max(map(len, tok.vocab)) <= tok.max_token_length
        assert all(tok.index[v] == i for i, v in enumerate(tok.vocab) if i < 259)


def expect_tok_error(path, vocab_size, *fragments):
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(path, vocab_size)
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg
    for frag in fragments:
        assert frag in msg, msg


def test_tokenizer_size_mismatch(tok512_path, tok32k_path):
    expect_tok_error(tok512_path, 32000, "ends after 512 of 32000 tokens")
    expect_tok_error(tok32k_path, 512, "trailing bytes after 512 tokens")


def test_tokenizer_bad_records(tmp_path, tok512_path):
    data = tok512_path.read_bytes()
    expect_tok_error(patched(tmp_path, data, "long.bin", at=8, value=100), 512,
                     "token 0 has bad length 100")
    expect_tok_error(patched(tmp_path, data, "neg.bin", at=8, value=-2), 512,
                     "token 0 has bad length -2")
    expect_tok_error(patched(tmp_path, data, "maxlen.bin", at=0, value=0), 512,
                     "max_token_length is 0")
    expect_tok_error(patched(tmp_path, data[:-3], "cut.bin"), 512, "truncated inside token 511")
    expect_tok_error(patched(tmp_path, data[:2], "tiny.bin"), 512, "truncated tokenizer")
    expect_tok_error(tmp_path / "absent.bin", 512, "file not found")


# ---------------------------------------------------------------------------------------
# the same errors through the command line: one line on stderr, exit status 1


def cli_error(argv, capsys, *fragments):
    from speedllm.cli import main
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("speedllm: error: "), err
    for frag in fragments:
        assert frag in err, err


def test_cli_reports_bad_checkpoints(tmp_path, v260, tok512_path, capsys):
    gen = ["generate", "-z", str(tok512_path), "-n", "2", "-t", "0"]
    cli_error(gen + [str(patched(tmp_path, v260[:-100], "cut.bin"))], capsys,
              "cut.bin", "truncated")
    cli_error(gen + [str(patched(tmp_path, v260, "heads.bin", at=12, value=7))], capsys,
              "heads.bin", "n_heads 7 does not divide dim 64")
    cli_error(gen + [str(patched(tmp_path, b"GGUF" + v260[4:], "x.gguf"))], capsys,
              "x.gguf", "GGUF")
    cli_error(gen + [str(tmp_path / "absent.bin")], capsys, "absent.bin", "file not found")


def test_cli_reports_bad_tokenizer(tok32k_path, capsys):
    cli_error(["tokenize", "-z", str(tok32k_path), "--vocab-size", "512", "hi"], capsys,
              "tokenizer.bin", "trailing bytes after 512 tokens")
