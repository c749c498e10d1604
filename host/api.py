"""The Python inference API: ``speedllm.load(model, tokenizer, backend=...)``.

::

    import speedllm
    session = speedllm.load("stories260K.bin", "tok512.bin", backend="golden")
    for t in session.generate("Once upon a time", steps=64, temperature=0.0):
        print(t.text, end="", flush=True)          # t.seconds, t.cycles, t.token, t.pos

A :class:`Session` holds one backend (``float``, ``golden``, ``pynq-sim``, ``rtl``,
``board``; see :mod:`speedllm.golden.generate` and :mod:`speedllm.host.backends`), the
tokenizer and the model. :meth:`Session.generate` is ``run.c``'s loop
(:class:`speedllm.golden.generate.Generation`): the accelerator (or model) returns logits,
the host samples (:class:`speedllm.golden.sampler.Sampler`, ``run.c``'s xorshift sampler),
and every position is streamed as a :class:`Token` with its wall time and, where the
backend counts them, its accelerator cycles. With a terminal on stderr, a tqdm bar shows
the weight upload of accelerator backends and generations of :data:`PROGRESS_MIN_STEPS`
positions or more (``progress=False`` turns bars off, ``True`` forces them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator

from speedllm.golden.checkpoint import Checkpoint, load_checkpoint, load_tokenizer
from speedllm.golden.generate import Generation, create_backend
from speedllm.golden.sampler import Sampler
from speedllm.golden.tokenizer import Tokenizer
from speedllm.paths import resolve_model_file

from . import backends as _backends

__all__ = ["load", "Session", "Token", "PROGRESS_MIN_STEPS"]

#: Generations at least this long get a progress bar (when bars are on).
PROGRESS_MIN_STEPS = 128


@dataclass(frozen=True)
class Token:
    """One generated position, as streamed by :meth:`Session.generate`."""

    token: int                 # the next token (forced from the prompt, or sampled)
    pos: int                   # the position whose forward pass produced it
    piece: bytes               # what run.c prints for it (may be b"")
    seconds: float             # wall time of the position (forward + sampling)
    cycles: int | None         # accelerator cycles of the position, when counted
    forced: bool               # True while the prompt is fed

    @property
    def text(self) -> str:
        return self.piece.decode("utf-8", errors="replace")


def _bars_wanted(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Session:
    """A loaded model on one backend; make it with :func:`load`."""

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, backend, backend_name: str,
                 progress: bool | None = None):
        self.checkpoint, self.tokenizer, self.backend = checkpoint, tokenizer, backend
        self.backend_name = backend_name
        self.progress = progress
        self.last_generation: Generation | None = None

    @property
    def args(self):
        return self.checkpoint.args

    def generate(self, prompt: str | bytes = "", steps: int | None = None,
                 temperature: float = 1.0, topp: float = 0.9, seed: int | None = None,
                 ) -> Iterator[Token]:
        """Stream the positions of one generation (``run.c``'s defaults and rules).

        ``steps`` counts positions, the prompt included (default: 256, at most the
        context); generation stops early when the model produces BOS. After (or during)
        the loop, :attr:`last_generation` holds token ids, text and tok/s.
        """
        steps = min(256, self.args.seq_len) if steps is None else steps
        sampler = Sampler(self.args.vocab_size, temperature, topp, seed)
        generation = Generation(self.backend, self.tokenizer, sampler, prompt, steps)
        self.last_generation = generation        # bad options raised above, not on next()
        return self._stream(generation, steps)

    def _stream(self, generation: Generation, steps: int) -> Iterator[Token]:
        bar = None
        if _bars_wanted(self.progress) and steps >= PROGRESS_MIN_STEPS:
            from tqdm import tqdm
            bar = tqdm(total=steps, unit="tok", desc=f"generate ({self.backend_name})",
                       leave=False, file=sys.stderr)
        try:
            for g in generation:
                if bar is not None:
                    bar.update(1)
                yield Token(g.token, g.pos, g.piece, g.seconds,
                            getattr(self.backend, "last_cycles", None), g.forced)
        finally:
            if bar is not None:
                bar.close()

    def complete(self, prompt: str | bytes = "", steps: int | None = None, **sampling) -> str:
        """The whole text of :meth:`generate` (what run.c prints, without its newline)."""
        return b"".join(t.piece for t in self.generate(prompt, steps, **sampling)).decode(
            "utf-8", errors="replace")


def load(model, tokenizer="tokenizer.bin", backend: str = "golden", *,
         progress: bool | None = None, **options: Any) -> Session:
    """Load ``model`` (a path, a file name in the model folders, or a ``Checkpoint``) and
    ``tokenizer`` (likewise, or a ``Tokenizer``) on ``backend``.

    ``options`` go to the backend factory (``scheme`` for golden and the accelerator
    backends; ``bitstream`` for ``board``; see :mod:`speedllm.host.backends`). Errors are
    :class:`speedllm.errors.SpeedLLMError` with a one-line message.
    """
    checkpoint = model if isinstance(model, Checkpoint) else \
        load_checkpoint(resolve_model_file(model))
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer(load_tokenizer(resolve_model_file(tokenizer),
                                             checkpoint.args.vocab_size))
    bar = None
    if backend in _backends.BOARD_BACKENDS and "progress" not in options \
            and _bars_wanted(progress):
        from tqdm import tqdm
        bar = tqdm(unit="B", unit_scale=True, desc="upload weights", leave=False,
                   file=sys.stderr)
        options["progress"] = bar.update
    try:
        instance = create_backend(backend, checkpoint, **options)
    finally:
        if bar is not None:
            bar.close()
    return Session(checkpoint, tokenizer, instance, backend, progress)
