"""llama2.c checkpoints and tokenizers: layouts, readers and validation.

Three checkpoint formats are read, detected by the first four bytes:

- version 0 (legacy ``run.c`` files, no magic): 7 int32 params, then fp32 tensors in
  run.c's order, the legacy RoPE tables, and ``wcls`` when ``vocab_size`` is negative.
- version 1 (llama2.c ``export.py --version 1``): uint32 magic ``0x616b3432`` ("ak42"),
  int32 version, 7 int32 params, uint8 ``shared_classifier``, zeros to 256 bytes, then
  fp32 tensors: norms first, then the matrices (see :func:`checkpoint_layout`).
- version 2 (``export.py --version 2``, read by ``runq.c``): Q8_0. The header adds int32
  ``group_size`` after the flag; fp32 norms follow, then each quantized tensor (one per
  layer) as int8 values immediately followed by its fp32 group scales.

Every reader returns the same :class:`Checkpoint`: ``weights`` maps run.c's names to float32
arrays (version 2 dequantized, lazily, as ``q * scale`` like runq.c's ``dequantize``), and a
version-2 checkpoint also keeps its raw int8 values and scales in ``q8``. Files are memory
mapped, so opening a 400 MB checkpoint costs only its header.

Every problem with a file raises :class:`~speedllm.errors.CheckpointError` with one line
naming the file and the problem.
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping
from dataclasses import dataclass, field, fields
from math import prod
from pathlib import Path

import numpy as np

from speedllm.errors import CheckpointError
from speedllm.paths import resolve_model_file

MAGIC = 0x616B3432                 # "ak42" as a little-endian uint32
HEADER_BYTES = 256                 # versions 1 and 2
LEGACY_HEADER_BYTES = 28           # version 0: 7 int32
VERSIONS = (0, 1, 2)

# run.c's per-layer tensors, and the quantized ones of a version-2 file, in file order
LAYER_MATRICES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")


@dataclass(frozen=True)
class ModelArgs:
    """The model's dims (run.c's ``Config``); ``vocab_size`` is always positive here."""

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

    @property
    def n_params(self) -> int:
        """Model parameters (RoPE tables not counted; a separate ``wcls`` counted)."""
        return sum(prod(shape) for _, shape in tensor_shapes(self))

    def problem(self) -> str | None:
        """The first inconsistency in these dims as a phrase, or None when they are usable."""
        for f in fields(self)[:7]:
            v = getattr(self, f.name)
            if v <= 0:
                return f"{f.name} is {v} (must be positive)"
        if self.dim % self.n_heads:
            return f"n_heads {self.n_heads} does not divide dim {self.dim}"
        if self.n_heads % self.n_kv_heads:
            return f"n_kv_heads {self.n_kv_heads} does not divide n_heads {self.n_heads}"
        return None


class LazyWeights(MutableMapping):
    """A dict of float32 tensors whose entries may be computed on first access.

    Version-2 checkpoints dequantize each tensor the first time it is read (and keep it),
    so opening a checkpoint stays cheap and consumers see plain float32 arrays.
    """

    def __init__(self, ready: dict[str, np.ndarray], pending: dict):
        self._ready = dict(ready)
        self._pending = dict(pending)      # name -> zero-argument function

    def __getitem__(self, name):
        if name not in self._ready:
            make = self._pending.pop(name)  # KeyError for an unknown name, as a dict does
            self._ready[name] = make()
        return self._ready[name]

    def __setitem__(self, name, value):
        self._pending.pop(name, None)
        self._ready[name] = value

    def __delitem__(self, name):
        if name in self._pending:
            del self._pending[name]
        else:
            del self._ready[name]

    def __iter__(self):
        yield from list(self._ready)
        yield from [n for n in list(self._pending) if n not in self._ready]

    def __len__(self):
        return len(self._ready) + len(self._pending)

    def __contains__(self, name):
        return name in self._ready or name in self._pending


@dataclass
class Checkpoint:
    """A loaded model: ``weights`` maps run.c's names to float32 arrays.

    Names and shapes (run.c's ``TransformerWeights``):
    ``token_embedding_table [vocab, dim]``, ``rms_att_weight [L, dim]``,
    ``wq [L, dim, dim]``, ``wk [L, kv_dim, dim]``, ``wv [L, kv_dim, dim]``,
    ``wo [L, dim, dim]``, ``rms_ffn_weight [L, dim]``, ``w1 [L, hidden, dim]``,
    ``w2 [L, dim, hidden]``, ``w3 [L, hidden, dim]``, ``rms_final_weight [dim]``,
    ``wcls [vocab, dim]`` (the embedding table itself when shared).

    ``q8`` (version 2 only) maps each quantized name to ``(q, scales)``: ``q`` int8 with the
    weight's shape, ``scales`` float32 ``[L, n_groups]`` (``[n_groups]`` for the embedding
    and ``wcls``), one scale per ``group_size`` consecutive values of each layer's tensor,
    flattened row-major, as runq.c stores them. ``legacy_rope`` (version 0 only) holds the
    file's ``(freq_cis_real, freq_cis_imag)`` tables, each ``[seq_len, head_size/2]``.
    """

    args: ModelArgs
    weights: MutableMapping[str, np.ndarray]
    path: Path | None = None
    version: int = 0
    group_size: int | None = None     # version-2 (Q8_0) exports only
    q8: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    legacy_rope: tuple[np.ndarray, np.ndarray] | None = None


def tensor_shapes(a: ModelArgs) -> list[tuple[str, tuple[int, ...]]]:
    """run.c's tensors and their shapes in run.c's (version-0) order, ``wcls`` last if separate."""
    L, d, h, kv = a.n_layers, a.dim, a.hidden_dim, a.kv_dim
    shapes = [
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
    if not a.shared_classifier:
        shapes.append(("wcls", (a.vocab_size, d)))
    return shapes


_tensor_shapes = tensor_shapes        # the draft's name, kept for existing callers


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor lives in a checkpoint file.

    ``kind`` is ``"f32"`` (contiguous fp32, all layers back to back) or ``"q8"`` (per layer:
    int8 values then fp32 scales, ``layer_stride`` bytes apart). ``layered`` tells whether
    the first axis of ``shape`` is the layer.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    kind: str = "f32"
    layered: bool = False
    layer_stride: int = 0

    @property
    def per_layer(self) -> int:
        """Values in one layer's slice (the whole tensor when not layered)."""
        return prod(self.shape[1:]) if self.layered else prod(self.shape)

    @property
    def n_layers(self) -> int:
        return self.shape[0] if self.layered else 1


LAYERED_TENSORS = {"rms_att_weight", "rms_ffn_weight", *LAYER_MATRICES}


def _file_order(a: ModelArgs, version: int) -> list[tuple[str, str]]:
    """(name, kind) of every tensor in the file's order."""
    shapes = dict(tensor_shapes(a))
    cls = [] if a.shared_classifier else ["wcls"]
    if version == 0:
        names = [n for n in shapes if n != "wcls"] + ["freq_cis_real", "freq_cis_imag"] + cls
        return [(n, "f32") for n in names]
    norms = ["rms_att_weight", "rms_ffn_weight", "rms_final_weight"]
    mats = ["token_embedding_table", *LAYER_MATRICES, *cls]
    return [(n, "f32") for n in norms] + [(n, "f32" if version == 1 else "q8") for n in mats]


def checkpoint_layout(args: ModelArgs, version: int,
                      group_size: int | None = None) -> tuple[list[TensorSpan], int]:
    """The tensors of a checkpoint file in file order, and the file's exact size in bytes.

    ``group_size`` is needed for version 2 (it must divide each tensor's per-layer size).
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, not {version!r}")
    shapes = dict(tensor_shapes(args))
    rope = (args.seq_len, args.head_size // 2)
    shapes["freq_cis_real"] = shapes["freq_cis_imag"] = rope
    pos = LEGACY_HEADER_BYTES if version == 0 else HEADER_BYTES
    spans = []
    for name, kind in _file_order(args, version):
        shape, layered = shapes[name], name in LAYERED_TENSORS
        if kind == "f32":
            spans.append(TensorSpan(name, shape, pos, "f32", layered))
            pos += 4 * prod(shape)
        else:
            span = TensorSpan(name, shape, pos, "q8", layered)
            stride = span.per_layer + 4 * (span.per_layer // group_size)
            spans.append(TensorSpan(name, shape, pos, "q8", layered, stride))
            pos += stride * span.n_layers
    return spans, pos


def checkpoint_nbytes(args: ModelArgs, version: int, group_size: int | None = None) -> int:
    """Exact size in bytes of a checkpoint file with these dims."""
    return checkpoint_layout(args, version, group_size)[1]


# ---------------------------------------------------------------------------------------
# reading


def _sniff_foreign(head: bytes) -> str | None:
    """Name a well-known non-llama2.c format from a file's first bytes."""
    if head[:4] == b"GGUF":
        return "a GGUF file"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (a PyTorch .pt/.pth checkpoint?)"
    if head[:4] == b"ak42":
        return "a big-endian llama2.c export"
    if head[8:10] == b'{"':
        return "a safetensors file"
    return None


def _read_header(path: Path, head: bytes, size: int) -> tuple[ModelArgs, int, int | None]:
    """Parse and check a header; returns (args, version, group_size)."""
    magic = struct.unpack_from("<I", head, 0)[0] if len(head) >= 4 else None
    if magic == MAGIC:
        if size < 8:
            raise CheckpointError(f"{path}: truncated: {size} bytes, not even a version field")
        version = struct.unpack_from("<i", head, 4)[0]
        if version not in (1, 2):
            raise CheckpointError(
                f"{path}: unknown llama2.c export version {version} "
                f"(this reader knows versions 1 and 2, and legacy files with no magic)")
        if size < HEADER_BYTES:
            raise CheckpointError(
                f"{path}: truncated: {size} bytes, less than the {HEADER_BYTES}-byte "
                f"version-{version} header")
        params = struct.unpack_from("<7i", head, 8)
        shared = head[36]
        if shared not in (0, 1):
            raise CheckpointError(f"{path}: bad header: shared_classifier flag is {shared} "
                                  f"(must be 0 or 1)")
        if params[5] < 0:
            raise CheckpointError(
                f"{path}: bad header: vocab_size is {params[5]} (must be positive; only "
                f"legacy version-0 files use its sign as the shared-classifier flag)")
        group_size = struct.unpack_from("<i", head, 37)[0] if version == 2 else None
        what = f"version-{version} header"
    else:
        version, group_size = 0, None
        foreign = _sniff_foreign(head)
        if foreign:
            raise CheckpointError(f"{path}: not a llama2.c checkpoint: it looks like {foreign}")
        if size < LEGACY_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: truncated: {size} bytes, less than a {LEGACY_HEADER_BYTES}-byte "
                f"legacy header (and no 'ak42' magic)")
        params = struct.unpack_from("<7i", head, 0)
        shared = params[5] > 0
        params = params[:5] + (abs(params[5]),) + params[6:]
        what = "legacy (version-0) header, no 'ak42' magic"
    args = ModelArgs(*params, shared_classifier=bool(shared))
    problem = args.problem()
    if problem:
        raise CheckpointError(f"{path}: bad {what}: {problem}")
    if version == 2:
        if group_size <= 0:
            raise CheckpointError(f"{path}: bad version-2 header: group_size is {group_size} "
                                  f"(must be positive)")
        for name, shape in tensor_shapes(args):
            n = prod(shape[1:]) if name in LAYERED_TENSORS else prod(shape)
            if not name.startswith("rms_") and n % group_size:
                raise CheckpointError(
                    f"{path}: bad version-2 header: group_size {group_size} does not divide "
                    f"{name}'s {n} values per layer")
    return args, version, group_size


def _check_size(path: Path, args: ModelArgs, version: int, group_size, size: int) -> None:
    need = checkpoint_nbytes(args, version, group_size)
    what = f"version-{version}" if version else "legacy (version-0, no 'ak42' magic)"
    dims = (f"dim={args.dim} hidden_dim={args.hidden_dim} n_layers={args.n_layers} "
            f"n_heads={args.n_heads} n_kv_heads={args.n_kv_heads} "
            f"vocab_size={args.vocab_size} seq_len={args.seq_len}")
    if size < need:
        raise CheckpointError(
            f"{path}: truncated: {size} bytes, but the {what} header's dims "
            f"({dims}) need {need}")
    if size > need:
        raise CheckpointError(
            f"{path}: {size - need} trailing bytes: the {what} header's dims "
            f"({dims}) need {need} bytes, the file has {size} (header does not match the file)")


def _f32(buf, span: TensorSpan) -> np.ndarray:
    return np.frombuffer(buf, dtype="<f4", count=prod(span.shape), offset=span.offset
                         ).reshape(span.shape)


def _q8(buf, span: TensorSpan, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy views of a Q8_0 tensor: int8 values (weight shape) and scales."""
    n, ng, L = span.per_layer, span.per_layer // group_size, span.n_layers
    q_flat = np.frombuffer(buf, dtype=np.int8, offset=span.offset,
                           count=span.layer_stride * (L - 1) + n)
    s_flat = np.frombuffer(buf, dtype=np.uint8, offset=span.offset + n,
                           count=span.layer_stride * (L - 1) + 4 * ng)
    q = np.lib.stride_tricks.as_strided(q_flat, (L, n), (span.layer_stride, 1),
                                        writeable=False).reshape(span.shape)
    s = np.lib.stride_tricks.as_strided(s_flat, (L, 4 * ng),
                                        (span.layer_stride, 1), writeable=False)
    s = np.ascontiguousarray(s).view("<f4")           # scales are small: copy them aligned
    return q, (s if span.layered else s[0])


def dequantize_q8(q: np.ndarray, scales: np.ndarray, group_size: int) -> np.ndarray:
    """runq.c's ``dequantize``: ``x[i] = q[i] * s[i // GS]`` per layer, in float32."""
    out = np.empty(q.shape, dtype=np.float32)
    layers = scales.reshape(-1, scales.shape[-1])     # [L or 1, n_groups]
    q_layers, out_layers = q.reshape(len(layers), -1), out.reshape(len(layers), -1)
    for l, s in enumerate(layers):      # layer by layer: each slice is contiguous (fast)
        np.multiply(q_layers[l].reshape(-1, group_size), s[:, None],
                    out=out_layers[l].reshape(-1, group_size), dtype=np.float32)
    return out


def load_checkpoint(path) -> Checkpoint:
    """Open a llama2.c checkpoint (version 0, 1 or 2), memory mapped and validated.

    ``path`` may be a bare file name found by :func:`speedllm.paths.resolve_model_file`.
    Raises :class:`CheckpointError` naming the file and the problem.
    """
    path = resolve_model_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    args, version, group_size = _read_header(path, head, size)
    _check_size(path, args, version, group_size, size)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    spans, _ = checkpoint_layout(args, version, group_size)
    ready, pending, q8 = {}, {}, {}
    for span in spans:
        if span.kind == "f32":
            ready[span.name] = _f32(buf, span)
        else:
            q8[span.name] = _q8(buf, span, group_size)
            pending[span.name] = (lambda qs=q8[span.name]: dequantize_q8(*qs, group_size))
    legacy_rope = None
    if version == 0:
        legacy_rope = (ready.pop("freq_cis_real"), ready.pop("freq_cis_imag"))
    if args.shared_classifier:
        if version == 2:
            q8["wcls"] = q8["token_embedding_table"]
            pending["wcls"] = lambda: weights["token_embedding_table"]
        else:
            ready["wcls"] = ready["token_embedding_table"]
    weights = LazyWeights(ready, pending) if pending else ready
    return Checkpoint(args=args, weights=weights, path=path, version=version,
                      group_size=group_size, q8=q8 or None, legacy_rope=legacy_rope)


# ---------------------------------------------------------------------------------------
# tokenizer


@dataclass
class TokenizerData:
    """run.c's tokenizer file: ``vocab[i]`` (bytes), ``scores[i]``, ``max_token_length``."""

    vocab: list[bytes]
    scores: np.ndarray
    max_token_length: int
    path: Path | None = None
    index: dict[bytes, int] = field(default_factory=dict)


def load_tokenizer(path, vocab_size: int) -> TokenizerData:
    """Read a llama2.c ``tokenizer.bin`` holding exactly ``vocab_size`` tokens.

    Format: int32 ``max_token_length``, then per token float32 score, int32 length and that
    many UTF-8 bytes. The record count is not stored, so a tokenizer made for another
    vocabulary shows up as a file that ends early or has bytes left over.
    """
    path = resolve_model_file(path)
    if vocab_size <= 0:
        raise CheckpointError(f"{path}: vocab_size {vocab_size} must be positive")
    data = path.read_bytes()
    if len(data) < 4:
        raise CheckpointError(f"{path}: truncated tokenizer: {len(data)} bytes, "
                              f"not even max_token_length")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if max_len <= 0:
        raise CheckpointError(f"{path}: bad tokenizer header: max_token_length is {max_len} "
                              f"(must be positive)")
    off, vocab, scores = 4, [], np.empty(vocab_size, dtype=np.float32)
    for i in range(vocab_size):
        if off + 8 > len(data):
            raise CheckpointError(
                f"{path}: tokenizer ends after {i} of {vocab_size} tokens "
                f"(made for a smaller vocabulary than the model's {vocab_size}?)")
        scores[i], n = struct.unpack_from("<fi", data, off)
        off += 8
        if n < 0 or n > max_len:
            raise CheckpointError(
                f"{path}: token {i} has bad length {n} (must be 0..max_token_length {max_len})")
        if off + n > len(data):
            raise CheckpointError(f"{path}: tokenizer truncated inside token {i} of "
                                  f"{vocab_size} ({n} bytes announced, {len(data) - off} left)")
        vocab.append(data[off:off + n])
        off += n
    if off != len(data):
        raise CheckpointError(
            f"{path}: {len(data) - off} trailing bytes after {vocab_size} tokens "
            f"(made for a larger vocabulary than the model's {vocab_size}?)")
    tok = TokenizerData(vocab, scores, max_len, path)
    tok.index = {b: i for i, b in enumerate(vocab)}
    return tok
