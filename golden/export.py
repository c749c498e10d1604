"""Writers for llama2.c checkpoints (versions 0, 1 and 2), the inverse of the readers in
:mod:`speedllm.golden.checkpoint`.

Files are written tensor by tensor, one layer at a time, so memory stays bounded by the
largest single tensor slice (the embedding table) whatever the model size. Tensor order and
byte offsets come from :func:`~speedllm.golden.checkpoint.checkpoint_layout`, the same
function the reader uses, and every offset is checked while writing.

A file is written to ``<name>.partial`` beside the target and moved into place only when
complete; an existing file is never replaced unless ``overwrite=True``.

Version 2 quantizes like llama2.c's ``export.py`` (``quantize_q80``): Q8_0, symmetric,
per group of ``group_size`` consecutive values of each layer's tensor, fp32
``scale = max|w| / 127``, ``q = round(w / scale)`` (round half to even) in ``[-127, 127]``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from speedllm.errors import InputError

from .checkpoint import (HEADER_BYTES, MAGIC, Checkpoint, ModelArgs, TensorSpan,
                         checkpoint_layout, tensor_shapes)

# name, layer (None for tensors without a layer axis) -> float32 values of that slice,
# or for a "q8" span optionally a ready (int8 values, fp32 scales) pair
TensorSource = Callable[[str, "int | None"], "np.ndarray | tuple[np.ndarray, np.ndarray]"]


def default_group_size(args: ModelArgs, largest: int = 64) -> int:
    """The largest power of two <= ``largest`` dividing both ``dim`` and ``hidden_dim``.

    llama2.c's exporter halves 64 until it divides ``dim`` only; with hidden_dim 172
    (stories260K) that leaves 64, which runq.c mishandles. Dividing both input dims keeps
    every row a whole number of groups (stories260K: 4; stories15M/42M: 32; 110M,
    TinyLlama: 64).
    """
    gs = largest
    while args.dim % gs or args.hidden_dim % gs:
        gs //= 2
    return gs


def quantize_q8_0(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0-quantize ``w`` (flattened row-major) in groups of ``group_size``.

    Returns int8 values shaped like ``w`` and float32 scales ``[w.size // group_size]``.
    An all-zero group gets scale 0 and values 0 (export.py would divide by zero there).
    """
    w = np.asarray(w, dtype=np.float32)
    if w.size % group_size:
        raise ValueError(f"group_size {group_size} does not divide the tensor's {w.size} values")
    g = w.reshape(-1, group_size)
    scale = np.abs(g).max(axis=1) / np.float32(127.0)
    safe = np.where(scale == 0, np.float32(1.0), scale)
    q = np.round(g / safe[:, None]).astype(np.int8)
    return q.reshape(w.shape), scale.astype(np.float32)


def legacy_rope_tables(args: ModelArgs, theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """The RoPE tables a version-0 file carries (run.c skips them): ``cos`` and ``sin`` of
    ``pos * theta**(-2i/head_size)``, each ``[seq_len, head_size/2]``, float32."""
    hs = args.head_size
    inv = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, hs, 2, dtype=np.float32)[: hs // 2]
                                                  / np.float32(hs)))
    angles = np.outer(np.arange(args.seq_len, dtype=np.float32), inv).astype(np.float32)
    return np.cos(angles), np.sin(angles)


def header_bytes(args: ModelArgs, version: int, group_size: int | None = None) -> bytes:
    """The header of a checkpoint file (28 bytes for version 0, else 256)."""
    a = args
    if version == 0:
        vocab = a.vocab_size if a.shared_classifier else -a.vocab_size
        return struct.pack("<7i", a.dim, a.hidden_dim, a.n_layers, a.n_heads, a.n_kv_heads,
                           vocab, a.seq_len)
    head = struct.pack("<Ii7iB", MAGIC, version, a.dim, a.hidden_dim, a.n_layers, a.n_heads,
                       a.n_kv_heads, a.vocab_size, a.seq_len, int(a.shared_classifier))
    if version == 2:
        head += struct.pack("<i", group_size)
    return head + b"\0" * (HEADER_BYTES - len(head))


def _write_span(f, span: TensorSpan, source: TensorSource, group_size, progress) -> None:
    layers = range(span.n_layers) if span.layered else [None]
    slice_shape = span.shape[1:] if span.layered else span.shape
    for layer in layers:
        values = source(span.name, layer)
        if span.kind == "q8" and isinstance(values, tuple):
            q, s = values
        else:
            values = np.asarray(values)
            if values.shape != slice_shape:
                raise ValueError(f"{span.name}[{layer}] has shape {values.shape}, "
                                 f"expected {slice_shape}")
            if span.kind == "f32":
                q, s = values, None
            else:
                q, s = quantize_q8_0(values, group_size)
        parts = [np.ascontiguousarray(q, dtype="<f4" if span.kind == "f32" else np.int8)]
        if s is not None:
            parts.append(np.ascontiguousarray(s, dtype="<f4"))
        for part in parts:
            f.write(memoryview(part).cast("B"))
            if progress:
                progress(part.nbytes)


def write_checkpoint_tensors(path, args: ModelArgs, source: TensorSource, version: int = 0,
                             group_size: int | None = None, *, overwrite: bool = False,
                             legacy_rope: tuple[np.ndarray, np.ndarray] | None = None,
                             progress: Callable[[int], None] | None = None) -> int:
    """Write a checkpoint whose tensors come one layer slice at a time from ``source``.

    ``source(name, layer)`` returns float32 values of one layer of ``name`` (``layer`` None
    for ``token_embedding_table``, ``rms_final_weight``, ``wcls``). ``progress(nbytes)`` is
    called after each piece written. Returns the file size in bytes.
    """
    path = Path(path)
    problem = args.problem()
    if problem:
        raise ValueError(f"bad model dims: {problem}")
    if version == 2 and group_size is None:
        group_size = default_group_size(args)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (not replaced; use overwrite=True / --force)")
    spans, total = checkpoint_layout(args, version, group_size)
    if version == 2:
        for span in spans:
            if span.kind == "q8" and span.per_layer % group_size:
                raise ValueError(f"group_size {group_size} does not divide {span.name}'s "
                                 f"{span.per_layer} values per layer")
    rope = legacy_rope or (legacy_rope_tables(args) if version == 0 else None)

    def tensor(name, layer):
        if name in ("freq_cis_real", "freq_cis_imag"):
            return rope[name == "freq_cis_imag"]
        return source(name, layer)

    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            f.write(header_bytes(args, version, group_size))
            for span in spans:
                if f.tell() != span.offset:
                    raise AssertionError(f"{span.name} at byte {f.tell()}, layout says "
                                         f"{span.offset}")
                _write_span(f, span, tensor, group_size, progress)
            if f.tell() != total:
                raise AssertionError(f"wrote {f.tell()} bytes, layout says {total}")
        if overwrite:
            os.replace(partial, path)
        else:
            try:
                os.link(partial, path)      # fails if the target appeared meanwhile
            except FileExistsError:
                raise InputError(f"{path}: already exists (not replaced; use overwrite=True "
                                 f"/ --force)") from None
            os.unlink(partial)
    finally:
        if partial.exists():
            partial.unlink()
    return total


def checkpoint_source(ckpt: Checkpoint, group_size: int | None = None) -> TensorSource:
    """A :data:`TensorSource` over a loaded checkpoint; a version-2 checkpoint's raw int8
    values are reused when writing with its own group size (exact round trip)."""
    reuse_q8 = ckpt.q8 is not None and group_size == ckpt.group_size

    def source(name, layer):
        if reuse_q8 and name in ckpt.q8:
            q, s = ckpt.q8[name]
            return (q[layer], s[layer]) if layer is not None else (q, s)
        w = ckpt.weights[name]
        return w[layer] if layer is not None else w

    return source


def write_checkpoint(ckpt: Checkpoint, path, version: int | None = None,
                     group_size: int | None = None, *, overwrite: bool = False,
                     progress: Callable[[int], None] | None = None) -> int:
    """Write ``ckpt`` as a llama2.c file of ``version`` (default: the one it was read from).

    Version 2 uses ``group_size``, else the checkpoint's own, else
    :func:`default_group_size`. Returns the file size in bytes.
    """
    version = ckpt.version if version is None else version
    if version == 2 and group_size is None:
        group_size = ckpt.group_size or default_group_size(ckpt.args)
    names = {n for n, _ in tensor_shapes(ckpt.args)}
    missing = sorted(names - set(ckpt.weights))
    if missing:
        raise ValueError(f"checkpoint lacks tensors: {', '.join(missing)}")
    return write_checkpoint_tensors(path, ckpt.args, checkpoint_source(ckpt, group_size),
                                    version, group_size, overwrite=overwrite,
                                    legacy_rope=ckpt.legacy_rope, progress=progress)
