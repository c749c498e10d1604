"""Random-weight checkpoints of real model shapes, for performance work without downloads.

The weights look like a trained net's in scale (matrices ``normal * 0.02``, RMSNorm gains 1),
so activations stay in a sane range through every layer, but they carry no knowledge: a
synthetic model's text is noise. Every tensor slice is drawn from its own generator, seeded
by ``(seed, tensor, layer)``, so the values do not depend on the file format or the order
of writing: :func:`synth_checkpoint` in memory and :func:`write_synth_checkpoint` on disk
give the same weights, and one seed always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .checkpoint import LAYER_MATRICES, LAYERED_TENSORS, Checkpoint, ModelArgs, tensor_shapes
from .export import write_checkpoint_tensors

# DESIGN.md "Sizes to design for"; vocab 32000 pairs with tokenizer.bin, 512 with tok512.bin
SHAPES: dict[str, ModelArgs] = {
    "stories260K": ModelArgs(64, 172, 5, 8, 4, 512, 512),
    "stories15M": ModelArgs(288, 768, 6, 6, 6, 32000, 256),
    "stories42M": ModelArgs(512, 1376, 8, 8, 8, 32000, 1024),
    "stories110M": ModelArgs(768, 2048, 12, 12, 12, 32000, 1024),
    "tinyllama-1.1b": ModelArgs(2048, 5632, 22, 32, 4, 32000, 2048),
}

WEIGHT_STD = 0.02
# a fixed number per tensor for the generator seeds (never reorder: it changes the weights)
_TENSOR_IDS = {name: i for i, name in enumerate(
    ("token_embedding_table", "rms_att_weight", *LAYER_MATRICES, "rms_ffn_weight",
     "rms_final_weight", "wcls"))}


def resolve_shape(shape: str | ModelArgs, n_layers: int | None = None) -> ModelArgs:
    """A :data:`SHAPES` name (or ModelArgs), optionally with fewer/more layers."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
        shape = SHAPES[shape]
    if n_layers is not None:
        if n_layers <= 0:
            raise ValueError(f"n_layers must be positive, not {n_layers!r}")
        shape = dataclasses.replace(shape, n_layers=n_layers)
    return shape


def synth_tensor(args: ModelArgs, seed: int, name: str, layer: int | None) -> np.ndarray:
    """One slice of a synthetic checkpoint: tensor ``name``, layer ``layer`` (None for the
    embedding, final norm and ``wcls``), float32."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, not {seed!r}")
    shape = dict(tensor_shapes(args))[name]
    if layer is not None:
        shape = shape[1:]
    if name.startswith("rms_"):
        return np.ones(shape, dtype=np.float32)
    rng = np.random.default_rng([seed, _TENSOR_IDS[name], 0 if layer is None else layer + 1])
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.float32(WEIGHT_STD)
    return values


def synth_checkpoint(shape: str | ModelArgs, seed: int = 0,
                     n_layers: int | None = None) -> Checkpoint:
    """An in-memory synthetic checkpoint (fp32, version 0). Meant for small shapes:
    TinyLlama's weights take 4.4 GB; write big ones with :func:`write_synth_checkpoint`."""
    args = resolve_shape(shape, n_layers)
    weights = {}
    for name, _ in tensor_shapes(args):
        if name in LAYERED_TENSORS:
            weights[name] = np.stack([synth_tensor(args, seed, name, l)
                                      for l in range(args.n_layers)])
        else:
            weights[name] = synth_tensor(args, seed, name, None)
    if args.shared_classifier:
        weights["wcls"] = weights["token_embedding_table"]
    return Checkpoint(args=args, weights=weights, path=None, version=0)


def write_synth_checkpoint(path, shape: str | ModelArgs, seed: int = 0, version: int = 0,
                           group_size: int | None = None, n_layers: int | None = None, *,
                           overwrite: bool = False,
                           progress: Callable[[int], None] | None = None) -> int:
    """Write a synthetic checkpoint tensor by tensor (memory bounded by one layer slice).

    Same weights as :func:`synth_checkpoint` for the same arguments. Returns the file size.
    """
    args = resolve_shape(shape, n_layers)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, not {seed!r}")
    return write_checkpoint_tensors(
        Path(path), args, lambda name, layer: synth_tensor(args, seed, name, layer),
        version, group_size, overwrite=overwrite, progress=progress)


def tqdm_progress(total: int, desc: str):
    """A byte progress bar on stderr when it is a terminal: ``(update, close)``."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
               file=sys.stderr, leave=False)
    return bar.update, bar.close
