"""Model files resolve from an explicit path, then $SPEEDLLM_MODELS, then ../shared/models."""

from __future__ import annotations

import pytest

from speedllm.errors import CheckpointError
from speedllm.paths import model_dirs, resolve_model_file


def test_explicit_path_wins(tmp_path, monkeypatch):
    mine = tmp_path / "stories260K.bin"
    mine.write_bytes(b"x")
    elsewhere = tmp_path / "models"
    elsewhere.mkdir()
    (elsewhere / "stories260K.bin").write_bytes(b"y")
    monkeypatch.setenv("SPEEDLLM_MODELS", str(elsewhere))
    assert resolve_model_file(mine) == mine


def test_env_folder_comes_before_shared(tmp_path, monkeypatch, model_path):
    (tmp_path / "stories260K.bin").write_bytes(b"env copy")
    monkeypatch.setenv("SPEEDLLM_MODELS", str(tmp_path))
    assert model_dirs()[0] == tmp_path
    assert resolve_model_file("stories260K.bin") == tmp_path / "stories260K.bin"
    monkeypatch.delenv("SPEEDLLM_MODELS")
    assert resolve_model_file("stories260K.bin").resolve() == model_path.resolve()


def test_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDLLM_MODELS", str(tmp_path))
    with pytest.raises(CheckpointError) as e:
        resolve_model_file("no-such-model.bin")
    msg = str(e.value)
    assert "\n" not in msg and "no-such-model.bin" in msg
    assert str(tmp_path) in msg and "SPEEDLLM_MODELS" in msg


def test_a_folder_is_not_a_model(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file"):
        resolve_model_file(tmp_path)
