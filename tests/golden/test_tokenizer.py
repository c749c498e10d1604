"""run.c's encode/decode: the 40 reference encodings, a plain O(n^2) transcription of
run.c's merge loop on random text, decode and safe_printf rules. ~3 s."""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.errors import CheckpointError
from speedllm.golden.tokenizer import Tokenizer, count_tokenizer_records


@pytest.fixture(scope="module")
def tokenizers(tok512_path, tok32k_path):
    return {"tok512.bin": Tokenizer.from_file(tok512_path),
            "tokenizer.bin": Tokenizer.from_file(tok32k_path)}


_LOOKUPS: dict[int, dict[bytes, int]] = {}


def runc_encode(tok: Tokenizer, text: str) -> list[int]:
    """run.c's encode() transcribed literally: dummy prefix, codepoints, O(n^2) merges."""
    lookup = _LOOKUPS.get(id(tok))
    if lookup is None:
        lookup = _LOOKUPS[id(tok)] = {piece: i for i, piece in enumerate(tok.vocab)}
    raw = text.encode("utf-8")
    tokens = [1]
    if raw:
        tokens.append(lookup[b" "])
    buf = b""
    for i in range(len(raw)):
        if (raw[i] & 0xC0) != 0x80:
            buf = b""
        buf += raw[i:i + 1]
        if i + 1 < len(raw) and (raw[i + 1] & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = lookup.get(tok.vocab[tokens[i]] + tok.vocab[tokens[i + 1]], -1)
            if tid != -1 and tok.scores[tid] > best_score:
                best_score, best_id, best_idx = tok.scores[tid], tid, i
        if best_idx == -1:
            return tokens
        tokens[best_idx:best_idx + 2] = [best_id]


def test_record_counts(tok512_path, tok32k_path):
    assert count_tokenizer_records(tok512_path) == 512
    assert count_tokenizer_records(tok32k_path) == 32000


def test_truncated_tokenizer_is_one_line_error(tok512_path, tmp_path):
    bad = tmp_path / "cut.bin"
    bad.write_bytes(tok512_path.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match="cut.bin") as e:
        count_tokenizer_records(bad)
    assert "\n" not in str(e.value)


def test_reference_encodings(tokenizers, tokenizer_reference):
    assert len(tokenizer_reference) == 40
    for entry in tokenizer_reference:
        tok = tokenizers[entry["tokenizer"]]
        assert tok.encode(entry["prompt"]) == entry["token_ids"], entry["prompt"]


def random_texts(seed: int, count: int):
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyz      ..,!?'\"\n\tABCXYZ0123456789") + \
        list("éèêüßñ—日本語のテキスト🙂€<>s/")
    for _ in range(count):
        n = int(rng.integers(0, 60))
        yield "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), n))


@pytest.mark.parametrize("name", ["tok512.bin", "tokenizer.bin"])
def test_encode_matches_runc_merge_loop(tokenizers, name):
    tok = tokenizers[name]
    for text in random_texts(len(name), 150):
        assert tok.encode(text) == runc_encode(tok, text), repr(text)


def test_encode_bos_eos_flags(tokenizers):
    tok = tokenizers["tok512.bin"]
    ids = tok.encode("a cat")
    assert tok.encode("a cat", bos=False) == ids[1:]
    assert tok.encode("a cat", eos=True) == ids + [2]


def test_long_text_on_32k_vocab(tokenizers):
    tok = tokenizers["tokenizer.bin"]
    text = "Lily and Tom went to the park. They played with a red ball! " * 10
    ids = tok.encode(text)
    assert ids == runc_encode(tok, text)
    assert tok.decode_text(ids) == text.encode()


def test_decode_strips_space_after_bos_only(tokenizers):
    tok = tokenizers["tok512.bin"]
    spaced = [i for i, p in enumerate(tok.vocab) if p.startswith(b" ") and len(p) > 1]
    assert spaced
    for i in spaced:
        assert tok.decode(1, i) == tok.vocab[i][1:]
        assert tok.decode(400, i) == tok.vocab[i]


def test_decode_byte_pieces_and_safe_printf(tokenizers):
    tok = tokenizers["tokenizer.bin"]
    for b in range(256):
        piece = tok.decode(5, 3 + b)
        assert piece == bytes([b])
        printed = tok.printable(piece)
        visible = 0x20 <= b < 0x7F or bytes([b]).isspace()
        assert printed == (piece if visible and b else b"")
    assert tok.printable(b"") == b""
    assert tok.printable("é".encode()) == "é".encode()      # two bytes: printed as is


def test_reference_texts_decode(tokenizers, reference_outputs):
    tok = tokenizers["tok512.bin"]
    for ref in reference_outputs:
        assert tok.decode_text(ref["token_ids"]) == ref["text"].encode("utf-8")
