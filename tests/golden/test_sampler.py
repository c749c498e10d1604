"""run.c's sampler: xorshift stream, argmax, multinomial and top-p, against plain loops.

The loop implementations here follow run.c's C code statement by statement (Python ints
for the generator, np.float32 scalars for the float arithmetic), independently of the
vectorized code in speedllm.golden.sampler. ~2 s (the tie study runs the model).
"""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.golden.checkpoint import load_checkpoint
from speedllm.golden.float_ref import FloatTransformer
from speedllm.golden.sampler import (Sampler, XorShiftRng, sample_argmax, sample_mult,
                                     sample_topp, softmax)

F32 = np.float32


def loop_xorshift(seed: int, count: int) -> list[int]:
    """random_u32 with explicit modular arithmetic on Python ints."""
    state, out = seed % 2**64, []
    for _ in range(count):
        state = state ^ (state // 2**12)
        state = (state ^ (state * 2**25)) % 2**64
        state = state ^ (state // 2**27)
        out.append(((state * 0x2545F4914F6CDD1D) % 2**64) // 2**32)
    return out


def loop_mult(probs, coin) -> int:
    cdf = F32(0)
    for i, p in enumerate(probs):
        cdf = F32(cdf + p)
        if coin < cdf:
            return i
    return len(probs) - 1


def loop_topp(probs, topp, coin, reverse_ties: bool = False) -> int:
    """sample_topp as run.c writes it; ``reverse_ties`` orders equal probabilities by
    descending index instead (what an unstable qsort may do)."""
    n = len(probs)
    cutoff = F32(F32(F32(1) - F32(topp)) / F32(n - 1))
    kept = [(i, F32(p)) for i, p in enumerate(probs) if F32(p) >= cutoff]
    if not kept:    # run.c reads probindex[-1] here (undefined); we take the argmax
        return int(np.argmax(probs))
    sign = 1 if reverse_ties else -1
    kept.sort(key=lambda ip: (-float(ip[1]), sign * -ip[0]))
    cumulative, last = F32(0), len(kept) - 1
    for i, (_, p) in enumerate(kept):
        cumulative = F32(cumulative + p)
        if cumulative > F32(topp):
            last = i
            break
    r = F32(F32(coin) * cumulative)
    cdf = F32(0)
    for i in range(last + 1):
        cdf = F32(cdf + kept[i][1])
        if r < cdf:
            return kept[i][0]
    return kept[last][0]


@pytest.mark.parametrize("seed", [1, 42, 7, 1234, 2**64 - 1, 0x123456789ABCDEF0])
def test_xorshift_matches_loop(seed):
    rng = XorShiftRng(seed)
    expected = loop_xorshift(seed, 2000)
    assert [rng.random_u32() for _ in range(2000)] == expected


def test_random_f32_is_top_24_bits():
    rng = XorShiftRng(99)
    for u in loop_xorshift(99, 500):
        f = rng.random_f32()
        assert f.dtype == np.float32 and 0.0 <= f < 1.0
        assert f == F32((u >> 8) / 2**24)


def test_argmax_takes_first_maximum():
    p = np.array([0.1, 0.4, 0.05, 0.4, 0.05], dtype=np.float32)
    assert sample_argmax(p) == int(np.flatnonzero(p == p.max())[0])


def test_softmax_close_to_float64():
    x = np.random.default_rng(3).standard_normal(512).astype(np.float32) * 4
    p = softmax(x)
    e = np.exp(x.astype(np.float64) - x.max())
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-5)


def random_distributions(rng, count, n):
    for k in range(count):
        logits = rng.standard_normal(n).astype(np.float32) * rng.uniform(0.5, 4)
        if k % 3 == 0:      # ties: repeat some values exactly
            logits[rng.integers(0, n, n // 3)] = logits[0]
        yield softmax(logits)


@pytest.mark.parametrize("n", [2, 7, 40, 512])
def test_sample_mult_matches_loop(n):
    rng = np.random.default_rng(n)
    for probs in random_distributions(rng, 50, n):
        for coin in rng.random(10).astype(np.float32):
            assert sample_mult(probs, coin) == loop_mult(probs, coin)
        assert sample_mult(probs, F32(np.nextafter(F32(1), F32(0)))) == loop_mult(
            probs, F32(np.nextafter(F32(1), F32(0))))


@pytest.mark.parametrize("n", [2, 7, 40, 512])
@pytest.mark.parametrize("topp", [0.1, 0.5, 0.9, 0.99])
def test_sample_topp_matches_loop(n, topp):
    rng = np.random.default_rng(n * 100 + int(topp * 100))
    for probs in random_distributions(rng, 30 if n < 512 else 6, n):
        for coin in rng.random(8).astype(np.float32):
            assert sample_topp(probs, topp, coin) == loop_topp(probs, topp, coin)


def test_sampler_draws_once_per_sampled_token_only():
    logits = np.random.default_rng(5).standard_normal(64).astype(np.float32)
    greedy = Sampler(64, temperature=0.0, topp=0.9, seed=11)
    assert greedy.sample(logits) == sample_argmax(logits)
    assert greedy.rng.state == 11                      # no draw at temperature 0
    for topp in (0.9, 1.0, 0.0):
        s = Sampler(64, temperature=0.8, topp=topp, seed=11)
        twin = XorShiftRng(11)
        for _ in range(5):
            token = s.sample(logits)
            coin = twin.random_f32()
            probs = softmax(logits / F32(0.8))
            expected = loop_mult(probs, coin) if topp in (0.0, 1.0) else loop_topp(
                probs, topp, coin)
            assert token == expected
            assert s.rng.state == twin.state


def test_sampler_seed_zero_takes_the_clock():
    assert Sampler(8, seed=0).seed != 0
    assert Sampler(8, seed=-1).seed == 2**64 - 1


def test_tie_order_does_not_matter_for_references(model_path, reference_outputs):
    """run.c's qsort is not guaranteed stable: check that the sampled references come out
    the same with tied probabilities in either order, and count the ties met."""
    model = FloatTransformer(load_checkpoint(model_path))
    ties_seen = 0
    for ref in (r for r in reference_outputs if r["temperature"]):
        model.reset()
        ids, n_prompt = ref["token_ids"], len(ref["prompt_token_ids"])
        rng = XorShiftRng(ref["seed"])
        for pos in range(ref["steps"]):
            logits = model.forward(ids[pos], pos)
            if pos < n_prompt - 1:
                continue
            probs = softmax(logits / F32(ref["temperature"]))
            coin = rng.random_f32()
            kept = probs[probs >= F32((1 - F32(ref["topp"])) / F32(len(probs) - 1))]
            ties_seen += len(kept) - len(np.unique(kept))
            stable = loop_topp(probs, ref["topp"], coin)
            assert stable == ids[pos + 1]
            assert loop_topp(probs, ref["topp"], coin, reverse_ties=True) == stable
    print(f"tied candidate probabilities met in the sampled references: {ties_seen}")
