"""llama2.c ``run.c``'s sampler: xorshift random numbers, argmax, multinomial and top-p.

Everything is float32 in ``run.c``'s order, so a float reference that matches ``run.c``'s
logits also matches its sampled tokens:

- temperature 0: ``sample_argmax`` (the first maximum), no random draw;
- otherwise ``logits / temperature``, ``softmax`` (max-shifted ``expf``, sequential sum,
  divide), one draw ``coin = random_f32()``, then ``sample_mult`` when ``topp <= 0`` or
  ``topp >= 1``, else ``sample_topp``.

``sample_topp`` keeps the tokens with ``p >= (1 - topp) / (n - 1)``, sorts them by
descending probability, cuts after the first index whose cumulative probability exceeds
``topp`` and samples ``coin * cumulative`` from the kept ones. ``run.c`` sorts with
``qsort``, which C does not promise to be stable (glibc's is usually a merge sort, but
not in every version or when memory is short); ties are kept in index order here. Whether that matters was
checked on the sampled references: no two kept candidates ever had the same probability
there, and the same tokens come out with ties in either order
(tests/golden/test_sampler.py, ``test_tie_order_does_not_matter_for_references``).
"""

from __future__ import annotations

import time

import numpy as np

from .float_ref import expf

F32 = np.float32
_MASK64 = (1 << 64) - 1


class XorShiftRng:
    """``run.c``'s ``random_u32`` / ``random_f32`` (xorshift64*, top 32 bits)."""

    def __init__(self, seed: int):
        self.state = int(seed) & _MASK64

    def random_u32(self) -> int:
        s = self.state
        s ^= s >> 12
        s = (s ^ (s << 25)) & _MASK64
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & _MASK64) >> 32

    def random_f32(self) -> np.float32:
        """A float32 in [0, 1): ``(random_u32() >> 8) / 16777216.0f`` (exact in float32)."""
        return F32((self.random_u32() >> 8) / 16777216.0)


def softmax(x: np.ndarray) -> np.ndarray:
    """``run.c``'s softmax of float32 ``x`` (max-shifted ``expf``, sequential sum, divide)."""
    x = np.asarray(x, dtype=np.float32)
    e = expf(x - x.max())
    return e / np.add.accumulate(e)[-1]


def sample_argmax(probabilities: np.ndarray) -> int:
    """Index of the first largest value."""
    return int(np.argmax(probabilities))


def sample_mult(probabilities: np.ndarray, coin: np.float32) -> int:
    """First ``i`` whose float32 running sum exceeds ``coin`` (the last index if none)."""
    cdf = np.add.accumulate(np.asarray(probabilities, dtype=np.float32))
    i = int(np.searchsorted(cdf, F32(coin), side="right"))
    return min(i, len(cdf) - 1)


def sample_topp(probabilities: np.ndarray, topp: float, coin: np.float32) -> int:
    """``run.c``'s nucleus sampling (see the module docstring)."""
    p = np.asarray(probabilities, dtype=np.float32)
    n = p.shape[0]
    cutoff = F32(F32(F32(1.0) - F32(topp)) / F32(n - 1))
    kept = np.flatnonzero(p >= cutoff)                       # ascending index, as run.c fills
    if kept.size == 0:                                       # run.c reads probindex[-1] here
        return sample_argmax(p)
    order = kept[np.argsort(-p[kept], kind="stable")]        # descending prob, ties by index
    probs = p[order]
    cumulative = np.add.accumulate(probs)                    # float32, sequential
    above = np.flatnonzero(cumulative > F32(topp))
    last = int(above[0]) if above.size else len(order) - 1
    r = F32(F32(coin) * cumulative[last])
    i = int(np.searchsorted(cumulative[:last + 1], r, side="right"))
    return int(order[min(i, last)])


class Sampler:
    """``run.c``'s ``Sampler``: temperature, top-p and the xorshift state.

    Parameters
    ----------
    vocab_size : int
    temperature : float
        0 means greedy (argmax).
    topp : float
        Nucleus threshold; ``<= 0`` or ``>= 1`` samples from the whole distribution.
    seed : int or None
        Initial xorshift state (``run.c``'s ``-s``); ``None`` or 0 takes the time in
        seconds, as ``run.c`` does. Negative seeds wrap to 64 bits like C's conversion.
    """

    def __init__(self, vocab_size: int, temperature: float = 1.0, topp: float = 0.9,
                 seed: int | None = None):
        if not seed:
            seed = int(time.time())
        self.vocab_size = vocab_size
        self.temperature = F32(temperature)
        self.topp = F32(topp)
        self.seed = int(seed) & _MASK64
        self.rng = XorShiftRng(self.seed)

    def sample(self, logits: np.ndarray) -> int:
        """The next token for float32 ``logits [vocab_size]`` (not modified)."""
        logits = np.asarray(logits, dtype=np.float32)[:self.vocab_size]
        if self.temperature == 0:
            return sample_argmax(logits)
        probs = softmax(logits / self.temperature)
        coin = self.rng.random_f32()
        if self.topp <= 0 or self.topp >= 1:
            return sample_mult(probs, coin)
        return sample_topp(probs, self.topp, coin)
