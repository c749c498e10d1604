"""Synthetic checkpoints and ``speedllm synth-model``: shapes as DESIGN.md states them, exact
file sizes of every shape and format (computed, never written), determinism, bounded
writes, the overwrite guard and the CLI's one-line errors. Runs in about 3 s (the largest
file written is stories15M with one layer in Q8_0, 9.5 MB)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import speedllm.cli as cli
from speedllm.golden.checkpoint import _read_header, checkpoint_nbytes, load_checkpoint
from speedllm.golden.export import default_group_size, header_bytes
from speedllm.golden.synth import (SHAPES, WEIGHT_STD, synth_checkpoint,
                                   write_synth_checkpoint)


@pytest.fixture(scope="module")
def design_shapes(model_path):
    """Shapes as DESIGN.md's "Sizes to design for" lists them."""
    text = (model_path.parent.parent / "DESIGN.md").read_text()
    out = {}
    for name, dims in re.findall(r"([\w.-]+) \((\d+(?:/\d+){6})\)", text):
        d = [int(x) for x in dims.split("/")]
        out[name.lower()] = d
    m = re.search(r"stories260K \(dim (\d+), hidden (\d+), (\d+) layers, (\d+) heads, "
                  r"(\d+) KV heads, vocab (\d+), seq (\d+)\)", text)
    out["stories260k"] = [int(x) for x in m.groups()]
    return out


def dims(args):
    return [args.dim, args.hidden_dim, args.n_layers, args.n_heads, args.n_kv_heads,
            args.vocab_size, args.seq_len]


def test_shapes_are_the_designs(design_shapes, model_path):
    assert {n.lower() for n in SHAPES} == set(design_shapes)
    for name, args in SHAPES.items():
        assert dims(args) == design_shapes[name.lower()], name
        assert args.shared_classifier
    assert SHAPES["stories260K"] == load_checkpoint(model_path).args


def expected_nbytes(a, version, gs):
    """File size from first principles: params, headers, legacy tables, Q8 scales."""
    norms = (2 * a.n_layers + 1) * a.dim
    per_layer = 2 * a.dim * a.dim + 2 * a.kv_dim * a.dim + 3 * a.dim * a.hidden_dim
    mats = a.vocab_size * a.dim + a.n_layers * per_layer
    if version == 0:
        return 28 + 4 * (norms + mats + a.seq_len * a.head_size)
    if version == 1:
        return 256 + 4 * (norms + mats)
    return 256 + 4 * norms + mats + 4 * (mats // gs)


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("version", [0, 1, 2])
def test_header_and_size_of_every_shape(name, version):
    args = SHAPES[name]
    gs = default_group_size(args) if version == 2 else None
    size = checkpoint_nbytes(args, version, gs)
    assert size == expected_nbytes(args, version, gs)
    head = header_bytes(args, version, gs)
    assert len(head) == (28 if version == 0 else 256)
    assert _read_header(Path(f"{name}.bin"), head, size) == (args, version, gs)
    if version == 2:
        assert args.dim % gs == 0 and args.hidden_dim % gs == 0


def test_default_group_sizes():
    # powers of two <= 64 dividing both input dims (hidden 172 = 4 * 43, 1376 = 32 * 43)
    for args in SHAPES.values():
        gs = default_group_size(args)
        assert args.dim % gs == 0 and args.hidden_dim % gs == 0
        assert gs == 64 or args.dim % (2 * gs) or args.hidden_dim % (2 * gs)


def test_synth_weights_look_trained():
    ckpt = synth_checkpoint("stories260K", seed=0)
    w = ckpt.weights
    for name in ("token_embedding_table", "wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        assert w[name].dtype == np.float32
        assert abs(float(w[name].std()) - WEIGHT_STD) < 0.05 * WEIGHT_STD, name
        assert abs(float(w[name].mean())) < 0.05 * WEIGHT_STD, name
    for name in ("rms_att_weight", "rms_ffn_weight", "rms_final_weight"):
        assert np.all(w[name] == 1)
    assert w["wcls"] is w["token_embedding_table"]
    # distinct layers and tensors draw distinct values
    assert not np.array_equal(w["wq"][0], w["wq"][1])
    assert not np.array_equal(w["w1"][0], w["w3"][0])
    assert not np.array_equal(w["wq"], synth_checkpoint("stories260K", seed=1).weights["wq"])


def test_file_equals_in_memory_and_formats_agree(tmp_path):
    mem = synth_checkpoint("stories260K", seed=7)
    ticks = []
    for version in (0, 1):
        p = tmp_path / f"v{version}.bin"
        n = write_synth_checkpoint(p, "stories260K", seed=7, version=version,
                                   progress=ticks.append if version == 0 else None)
        back = load_checkpoint(p)
        for name in mem.weights:
            np.testing.assert_array_equal(back.weights[name], mem.weights[name])
        if version == 0:
            assert sum(ticks) == n - 28                  # every tensor byte reported
    assert not list(tmp_path.glob("*.partial"))


def run_cli(argv, capsys):
    """``speedllm ARGV`` through the real CLI entry point."""
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_cli_is_deterministic(tmp_path, capsys):
    paths = {}
    for tag, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths[tag] = tmp_path / f"{tag}.bin"
        rc, out, err = run_cli(["synth-model", "--shape", "stories260K", "-o",
                                str(paths[tag]), "--seed", str(seed)], capsys)
        assert rc == 0 and err == "" and str(paths[tag]) in out
    assert sha(paths["a"]) == sha(paths["b"]) != sha(paths["c"])
    back = load_checkpoint(paths["a"])
    np.testing.assert_array_equal(back.weights["w2"],
                                  synth_checkpoint("stories260K", 1).weights["w2"])


def test_cli_stories15m_one_layer_q8(tmp_path, capsys):
    p = tmp_path / "s15.bin"
    rc, out, err = run_cli(["synth-model", "--shape", "stories15M", "-o", str(p), "--format",
                            "v2", "--layers", "1", "--seed", "3"], capsys)
    assert rc == 0, err
    want = dataclasses.replace(SHAPES["stories15M"], n_layers=1)
    back = load_checkpoint(p)
    assert back.args == want and back.version == 2 and back.group_size == 32
    assert p.stat().st_size == expected_nbytes(want, 2, 32)
    ref = synth_checkpoint("stories15M", seed=3, n_layers=1).weights["w2"]
    scale = np.abs(ref.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(back.weights["w2"] - ref).reshape(-1, 32) <= scale / 2 * (1 + 1e-5))


def one_line_error(rc, err, *fragments):
    assert rc == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("speedllm: error: ")
    for frag in fragments:
        assert frag in err, err


def test_cli_never_overwrites_without_force(tmp_path, capsys):
    p = tmp_path / "mine.bin"
    p.write_bytes(b"the user's own file")
    rc, out, err = run_cli(["synth-model", "--shape", "stories260K", "-o", str(p)],
                           capsys)
    one_line_error(rc, err, "mine.bin", "already exists", "--force")
    assert p.read_bytes() == b"the user's own file"
    with pytest.raises(Exception, match="already exists"):
        write_synth_checkpoint(p, "stories260K")
    assert p.read_bytes() == b"the user's own file"
    rc, out, err = run_cli(["synth-model", "--shape", "stories260K", "-o", str(p), "--force"],
                           capsys)
    assert rc == 0 and load_checkpoint(p).args == SHAPES["stories260K"]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("extra,fragments", [
    (["--seed", "-1"], ["--seed must be >= 0"]),
    (["--format", "v2", "--group-size", "8"], ["--group-size 8", "hidden_dim 172"]),
    (["--group-size", "4"], ["only applies to --format v2"]),
    (["--layers", "0"], ["--layers must be positive"]),
])
def test_cli_bad_options(tmp_path, capsys, extra, fragments):
    p = tmp_path / "x.bin"
    rc, out, err = run_cli(["synth-model", "--shape", "stories260K", "-o", str(p), *extra],
                           capsys)
    one_line_error(rc, err, *fragments)
    assert not p.exists()


def test_cli_unwritable_target(tmp_path, capsys):
    p = tmp_path / "no such dir" / "x.bin"
    rc, out, err = run_cli(["synth-model", "--shape", "stories260K", "-o", str(p)],
                           capsys)
    one_line_error(rc, err, "no such dir", "does not exist")
