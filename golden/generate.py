"""Text generation: ``run.c``'s ``generate()`` loop over any backend.

A *backend* is any object with ``args`` (a :class:`~speedllm.golden.checkpoint.ModelArgs`),
``reset()`` and ``forward(token, pos) -> logits`` (float32 ``[vocab_size]``). Backends are
made by name from a registry of factories ``factory(checkpoint, **options)``:

``float``
    :class:`speedllm.golden.float_ref.FloatTransformer`, equal to ``run.c``.
``golden``
    ``speedllm.golden.intmodel.IntegerTransformer(checkpoint, scheme)``, the integer
    model that is the hardware's arithmetic (imported only when asked for).

``rtl`` and ``board`` register the same way (:func:`register_backend`).

The loop (:class:`Generation`) is ``run.c``'s: the prompt is encoded with BOS; position
``pos`` feeds ``token``; while ``pos`` is inside the prompt the next token is forced to the
next prompt token, afterwards it is sampled; generation stops after ``steps`` positions
(the prompt included) or when the next token is BOS (which is not printed). Each next
token is yielded as a :class:`GeneratedToken` with the bytes ``run.c`` prints for it.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from ..errors import InputError
from .checkpoint import Checkpoint, ModelArgs
from .sampler import Sampler
from .tokenizer import BOS, Tokenizer


class Backend(Protocol):
    """What the generation loop needs from a model implementation."""

    args: ModelArgs

    def reset(self) -> None: ...

    def forward(self, token: int, pos: int) -> np.ndarray: ...


BackendFactory = Callable[..., Backend]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``create_backend(name, checkpoint, **options)`` call ``factory``."""
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    """Registered backend names, in registration order."""
    return list(_BACKENDS)


def create_backend(name: str, checkpoint: Checkpoint, **options: Any) -> Backend:
    """A fresh backend ``name`` for ``checkpoint``; :class:`InputError` for unknown names."""
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r} (known: {', '.join(_BACKENDS)})") from None
    return factory(checkpoint, **options)


def _float_backend(checkpoint: Checkpoint, **options: Any) -> Backend:
    from .float_ref import FloatTransformer
    if options:
        raise InputError(f"the float backend takes no options (got {', '.join(options)})")
    return FloatTransformer(checkpoint)


def _golden_backend(checkpoint: Checkpoint, scheme: Any = None, **options: Any) -> Backend:
    try:
        intmodel = importlib.import_module("speedllm.golden.intmodel")
    except ModuleNotFoundError as e:
        if e.name not in ("speedllm.golden.intmodel", "speedllm.golden"):
            raise
        raise InputError("the golden backend needs speedllm.golden.intmodel "
                         "(IntegerTransformer), which is not available") from None
    if scheme is None:
        return intmodel.IntegerTransformer(checkpoint, **options)
    return intmodel.IntegerTransformer(checkpoint, scheme, **options)


register_backend("float", _float_backend)
register_backend("golden", _golden_backend)


def check_generation_options(args: ModelArgs, steps: int, temperature: float,
                             topp: float) -> None:
    """Raise :class:`InputError` for options ``run.c`` would silently clamp."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    if steps > args.seq_len:
        raise InputError(f"steps {steps} exceeds the model's context length {args.seq_len}")
    if not temperature >= 0:
        raise InputError(f"temperature must be >= 0, not {temperature}")
    if not 0 <= topp <= 1:
        raise InputError(f"top-p must be in [0, 1], not {topp}")


@dataclass(frozen=True)
class GeneratedToken:
    """One generated position: the next token and what ``run.c`` prints for it."""

    token: int            # the token id produced at ``pos`` (forced or sampled)
    pos: int              # the position whose forward pass produced it
    piece: bytes          # the bytes run.c's safe_printf writes (may be b"")
    seconds: float        # wall time of this position (forward + sampling)
    forced: bool          # True while the prompt is being fed

    @property
    def text(self) -> str:
        """``piece`` as text (a lone byte of a multi-byte character becomes U+FFFD)."""
        return self.piece.decode("utf-8", errors="replace")


@dataclass
class Generation:
    """``run.c``'s ``generate()`` as an iterator of :class:`GeneratedToken`.

    Iterate once; afterwards (or during) ``token_ids`` holds the sequence so far (BOS
    first, ``steps + 1`` ids when it ran to the end), ``text`` the printed bytes,
    ``stopped_on_bos`` whether the model ended it, ``tok_per_s`` ``run.c``'s figure
    (positions after the first, over the time since the first one finished).
    """

    backend: Backend
    tokenizer: Tokenizer
    sampler: Sampler
    prompt: str | bytes = ""
    steps: int = 256
    prompt_token_ids: list[int] = field(init=False)
    token_ids: list[int] = field(init=False)
    _text: bytearray = field(init=False, default_factory=bytearray)
    stopped_on_bos: bool = field(init=False, default=False)
    tok_per_s: float | None = field(init=False, default=None)
    _started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        args = self.backend.args
        check_generation_options(args, self.steps, float(self.sampler.temperature),
                                 float(self.sampler.topp))
        if self.tokenizer.vocab_size != args.vocab_size:
            raise InputError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, "
                             f"the model {args.vocab_size}")
        self.prompt_token_ids = self.tokenizer.encode(self.prompt or "", bos=True)
        n = len(self.prompt_token_ids)
        if n > self.steps:
            raise InputError(f"the prompt is {n} tokens (with BOS), more than steps {self.steps}")
        self.token_ids = [self.prompt_token_ids[0]]

    def __iter__(self) -> Iterator[GeneratedToken]:
        if self._started:
            raise RuntimeError("a Generation runs once; make a new one")
        self._started = True
        self.backend.reset()
        prompt = self.prompt_token_ids
        token, pos, start = prompt[0], 0, None
        while pos < self.steps:
            t0 = time.perf_counter()
            logits = self.backend.forward(token, pos)
            forced = pos < len(prompt) - 1
            nxt = prompt[pos + 1] if forced else self.sampler.sample(logits)
            pos += 1
            if nxt == BOS:
                self.stopped_on_bos = True
                break
            piece = self.tokenizer.printable(self.tokenizer.decode(token, nxt))
            self._text += piece
            self.token_ids.append(nxt)
            now = time.perf_counter()
            if start is None:
                start = now
            elif now > start:
                self.tok_per_s = (pos - 1) / (now - start)
            yield GeneratedToken(nxt, pos - 1, piece, now - t0, forced)
            token = nxt
        if start is not None and pos > 1:
            self.tok_per_s = (pos - 1) / max(time.perf_counter() - start, 1e-9)

    def run(self) -> "Generation":
        """Run to the end without streaming; returns ``self``."""
        for _ in self:
            pass
        return self

    @property
    def text(self) -> bytes:
        """The bytes printed so far (run.c's stdout without its final newline)."""
        return bytes(self._text)

    @property
    def generated_token_ids(self) -> list[int]:
        """``token_ids`` after the prompt."""
        return self.token_ids[len(self.prompt_token_ids):]
