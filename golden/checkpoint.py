"""llama2.c checkpoints and tokenizers.

DRAFT (minimal, legacy version-0 only, no validation yet): the foundation issue extends
this with the version-1 fp32 and version-2 Q8_0 exports and full validation. The API
below is the contract other modules use:

- ``ModelArgs``: the one vocabulary of dims.
- ``load_checkpoint(path) -> Checkpoint`` (``.args``, ``.weights``: dict of float32 arrays).
- ``load_tokenizer(path, vocab_size) -> TokenizerData``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ModelArgs:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_size

    @property
    def kv_mul(self) -> int:
        return self.n_heads // self.n_kv_heads


@dataclass
class Checkpoint:
    """A loaded model: ``weights`` maps run.c's names to float32 arrays.

    Names and shapes (run.c's ``TransformerWeights``):
    ``token_embedding_table [vocab, dim]``, ``rms_att_weight [L, dim]``,
    ``wq [L, dim, dim]``, ``wk [L, kv_dim, dim]``, ``wv [L, kv_dim, dim]``,
    ``wo [L, dim, dim]``, ``rms_ffn_weight [L, dim]``, ``w1 [L, hidden, dim]``,
    ``w2 [L, dim, hidden]``, ``w3 [L, hidden, dim]``, ``rms_final_weight [dim]``,
    ``wcls [vocab, dim]`` (the embedding table itself when shared).
    """

    args: ModelArgs
    weights: dict[str, np.ndarray]
    path: Path | None = None
    version: int = 0
    group_size: int | None = None     # version-2 (Q8_0) exports only


def _tensor_shapes(a: ModelArgs) -> list[tuple[str, tuple[int, ...]]]:
    L, d, h, kv = a.n_layers, a.dim, a.hidden_dim, a.kv_dim
    return [
        ("token_embedding_table", (a.vocab_size, d)),
        ("rms_att_weight", (L, d)),
        ("wq", (L, d, d)),
        ("wk", (L, kv, d)),
        ("wv", (L, kv, d)),
        ("wo", (L, d, d)),
        ("rms_ffn_weight", (L, d)),
        ("w1", (L, h, d)),
        ("w2", (L, d, h)),
        ("w3", (L, h, d)),
        ("rms_final_weight", (d,)),
    ]


def load_checkpoint(path) -> Checkpoint:
    path = Path(path)
    data = path.read_bytes()
    dim, hidden, nl, nh, nkv, vocab, seq = struct.unpack_from("<7i", data, 0)
    args = ModelArgs(dim, hidden, nl, nh, nkv, abs(vocab), seq, shared_classifier=vocab > 0)
    off = 28
    flat = np.frombuffer(data, dtype="<f4", offset=off)
    w, pos = {}, 0
    for name, shape in _tensor_shapes(args):
        n = int(np.prod(shape))
        w[name] = flat[pos:pos + n].reshape(shape)
        pos += n
    pos += args.seq_len * args.head_size  # legacy freq_cis_real + freq_cis_imag
    if args.shared_classifier:
        w["wcls"] = w["token_embedding_table"]
    else:
        w["wcls"] = flat[pos:pos + args.vocab_size * args.dim].reshape(args.vocab_size, args.dim)
    return Checkpoint(args=args, weights=w, path=path, version=0)


@dataclass
class TokenizerData:
    """run.c's tokenizer file: ``vocab[i]`` (bytes), ``scores[i]``, ``max_token_length``."""

    vocab: list[bytes]
    scores: np.ndarray
    max_token_length: int
    path: Path | None = None
    index: dict[bytes, int] = field(default_factory=dict)


def load_tokenizer(path, vocab_size: int) -> TokenizerData:
    path = Path(path)
    data = path.read_bytes()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off, vocab, scores = 4, [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        vocab.append(data[off:off + n])
        scores.append(score)
        off += n
    tok = TokenizerData(vocab, np.array(scores, dtype=np.float32), max_len, path)
    tok.index = {b: i for i, b in enumerate(vocab)}
    return tok
