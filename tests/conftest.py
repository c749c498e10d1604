"""Shared fixtures: the real checkpoints in ../shared/models (or $SPEEDLLM_MODELS)."""

from __future__ import annotations

import json

import pytest

from speedllm.paths import resolve_model_file


@pytest.fixture(scope="session")
def model_path():
    return resolve_model_file("stories260K.bin")


@pytest.fixture(scope="session")
def tok512_path():
    return resolve_model_file("tok512.bin")


@pytest.fixture(scope="session")
def tok32k_path():
    return resolve_model_file("tokenizer.bin")


@pytest.fixture(scope="session")
def reference_outputs():
    return json.loads(resolve_model_file("reference_outputs.json").read_text())


@pytest.fixture(scope="session")
def tokenizer_reference():
    return json.loads(resolve_model_file("tokenizer_reference.json").read_text())
