"""llama2.c's BPE tokenizer: ``run.c``'s ``encode``, ``decode`` and ``safe_printf``.

The vocabulary comes from :func:`speedllm.golden.checkpoint.load_tokenizer` (pieces as
bytes, float32 scores). :class:`Tokenizer` reproduces ``run.c`` byte for byte:

``encode(text)``
    BOS (1); then, when the text is not empty, the id of the piece ``" "`` (the dummy
    prefix, added as a token of its own, not prepended to the text); then one token per
    UTF-8 codepoint (at most 4 bytes: a leading byte and up to 3 continuation bytes),
    and for a codepoint that is not a piece, one byte-fallback token ``byte + 3`` per
    byte; then greedy merges: repeatedly, of all adjacent pairs whose concatenated
    pieces form a piece, merge the one with the highest score (the leftmost on ties),
    until none is left. BOS takes part in the pair scan, as in ``run.c``.
``decode(prev_token, token)``
    The token's piece; after BOS (``prev_token == 1``) a leading space is dropped; a
    piece ``<0xXX>`` is the raw byte ``0xXX``.
``printable(piece)``
    What ``safe_printf`` writes: nothing for an empty piece or for a single byte that is
    neither printable ASCII nor whitespace (C locale), the piece otherwise.

The merge loop is a heap of candidate pairs over a linked list of tokens, O(n log n) in
the prompt length; it makes the same choices as ``run.c``'s O(n^2) rescan, because a merge
only changes the pairs next to it and the leftmost-on-ties rule is the heap's
tie-breaker (token positions keep their order).
"""

from __future__ import annotations

import heapq
import re
import struct
from pathlib import Path

from ..errors import CheckpointError, InputError
from .checkpoint import TokenizerData, load_tokenizer

BOS = 1
EOS = 2
BYTE_FALLBACK_OFFSET = 3            # id of the byte-fallback token <0x00>
_MIN_MERGE_SCORE = -1e10            # run.c's initial best_score: only scores above it merge
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{1,2})")   # sscanf(piece, "<0x%02hhX>", &b)
# C-locale isprint() or isspace(): 0x20..0x7E, and \t \n \v \f \r
_PRINTABLE_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(range(0x09, 0x0E))


def count_tokenizer_records(path) -> int:
    """Number of token records in a llama2.c tokenizer file (the file does not store it).

    Walks the records (float32 score, int32 length, bytes) to the end of the file and
    raises :class:`CheckpointError` if the last record is cut short.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        raise CheckpointError(f"{path}: too short for a tokenizer file ({len(data)} bytes)")
    off, count = 4, 0
    while off < len(data):
        if off + 8 > len(data):
            raise CheckpointError(f"{path}: truncated tokenizer record {count} at byte {off}")
        (length,) = struct.unpack_from("<i", data, off + 4)
        if length < 0 or off + 8 + length > len(data):
            raise CheckpointError(
                f"{path}: tokenizer record {count} at byte {off} has a bad length {length}")
        off += 8 + length
        count += 1
    return count


class Tokenizer:
    """``run.c``'s tokenizer over a loaded vocabulary.

    Parameters
    ----------
    data : TokenizerData
        Pieces (bytes), scores (float32) and ``max_token_length``.
    """

    def __init__(self, data: TokenizerData):
        self.data = data
        self.vocab: list[bytes] = list(data.vocab)
        self.scores: list[float] = [float(s) for s in data.scores]
        self.vocab_size = len(self.vocab)
        # run.c looks pieces up as C strings; no piece of the published vocabularies
        # holds a NUL byte or appears twice, so a dict gives the same answers.
        self.index: dict[bytes, int] = {}
        for i, piece in enumerate(self.vocab):
            self.index.setdefault(piece, i)
        self._space_id = self.index.get(b" ", -1)

    @classmethod
    def from_file(cls, path, vocab_size: int | None = None) -> "Tokenizer":
        """Load a llama2.c tokenizer file; ``vocab_size`` defaults to its record count."""
        if vocab_size is None:
            vocab_size = count_tokenizer_records(path)
        return cls(load_tokenizer(path, vocab_size))

    # -- encode -------------------------------------------------------------------------

    def encode(self, text: str | bytes, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of ``text`` exactly as ``run.c``'s ``encode(t, text, bos, eos, ...)``.

        ``text`` is a str (encoded as UTF-8; undecodable command-line bytes come back
        through ``surrogateescape``) or bytes.
        """
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        if b"\0" in raw:
            raise InputError("the text to encode contains a NUL character")
        tokens: list[int] = [BOS] if bos else []
        if raw:
            # dummy prefix: the piece " " as a token of its own
            if self._space_id < 0:
                raise CheckpointError("the tokenizer has no piece ' ' (the dummy prefix)")
            tokens.append(self._space_id)
        tokens.extend(self._codepoint_tokens(raw))
        tokens = self._merge(tokens)
        if eos:
            tokens.append(EOS)
        return tokens

    def _codepoint_tokens(self, raw: bytes) -> list[int]:
        """One token per UTF-8 codepoint (run.c's scan), byte fallback where none exists."""
        out: list[int] = []
        buf = bytearray()
        n = len(raw)
        for i, c in enumerate(raw):
            if (c & 0xC0) != 0x80:            # not a continuation byte: start a codepoint
                buf.clear()
            buf.append(c)
            nxt = raw[i + 1] if i + 1 < n else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue                      # the codepoint goes on
            tid = self.index.get(bytes(buf), -1)
            if tid != -1:
                out.append(tid)
            else:
                out.extend(b + BYTE_FALLBACK_OFFSET for b in buf)
            buf.clear()
        return out

    def _merge(self, tokens: list[int]) -> list[int]:
        """run.c's greedy merge loop (best score first, leftmost on ties)."""
        n = len(tokens)
        if n < 2:
            return tokens
        tok = list(tokens)
        nxt = list(range(1, n)) + [-1]
        prv = list(range(-1, n - 1))
        alive = [True] * n
        # heap entries: (-score, left, right, left token, right token, merged token)
        heap: list[tuple[float, int, int, int, int, int]] = []

        def push(left: int) -> None:
            right = nxt[left]
            if right < 0:
                return
            merged = self.index.get(self.vocab[tok[left]] + self.vocab[tok[right]])
            if merged is not None and self.scores[merged] > _MIN_MERGE_SCORE:
                # popped first: the highest score, then the leftmost position
                heapq.heappush(heap, (-self.scores[merged], left, right,
                                      tok[left], tok[right], merged))

        for i in range(n - 1):
            push(i)
        while heap:
            _, left, right, left_tok, right_tok, merged = heapq.heappop(heap)
            if not (alive[left] and alive[right] and nxt[left] == right
                    and tok[left] == left_tok and tok[right] == right_tok):
                continue                      # stale: a neighbour has merged since
            tok[left] = merged
            alive[right] = False
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            if prv[left] >= 0:
                push(prv[left])
            push(left)
        out, i = [], 0
        while i >= 0:
            out.append(tok[i])
            i = nxt[i]
        return out

    # -- decode -------------------------------------------------------------------------

    def decode(self, prev_token: int, token: int) -> bytes:
        """The piece of ``token`` as ``run.c``'s ``decode(t, prev_token, token)`` returns it."""
        if not 0 <= token < self.vocab_size:
            raise InputError(f"token id {token} is outside the vocabulary [0, {self.vocab_size})")
        piece = self.vocab[token]
        if prev_token == BOS and piece[:1] == b" ":
            piece = piece[1:]                 # sentencepiece drops the space after BOS
        m = _BYTE_PIECE.match(piece)
        if m:
            return bytes((int(m.group(1), 16),))
        return piece

    @staticmethod
    def printable(piece: bytes) -> bytes:
        """What ``run.c``'s ``safe_printf(piece)`` writes (C string: up to the first NUL)."""
        piece = piece.split(b"\0", 1)[0]
        if len(piece) == 1 and piece[0] not in _PRINTABLE_BYTES:
            return b""
        return piece

    def decode_text(self, token_ids: list[int]) -> bytes:
        """The bytes ``run.c`` prints for a whole sequence (``token_ids[0]`` is not printed)."""
        out = bytearray()
        for prev, token in zip(token_ids, token_ids[1:]):
            out += self.printable(self.decode(prev, token))
        return bytes(out)
