"""How close the integer golden model is to the float reference: the accuracy bars.

Measures, on one greedy reference entry of ``reference_outputs.json`` (``run.c`` output
with token ids):

``top1_agreement``
    teacher forced: feed the reference ``token_ids[pos]`` at every position ``pos`` to
    both models; the fraction of positions where the argmax of the integer logits equals
    the argmax of the float logits.
``mean_kl``
    at the same positions, ``KL(p_float || p_int)`` of the softmax distributions (natural
    log, float64), averaged over positions.
``max_kl``
    the largest of those.
``greedy_prefix``
    a free-running greedy generation of the integer model (prompt tokens forced, then
    argmax): how many of the reference's generated tokens it reproduces before the first
    difference (``n_generated`` means all of them).
``tok_per_s``, ``cpu_tok_per_s``
    the backend's teacher-forced speed, by wall clock and by this process's CPU time
    (the latter is the steadier figure on a shared machine).

The default scheme must reach ``top1_agreement >= TOP1_BAR`` and ``mean_kl <= KL_BAR``
on stories260K (tests/golden/test_eval.py), and ``greedy_prefix >= GREEDY_PREFIX_BAR``.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError

TOP1_BAR = 0.985
KL_BAR = 1e-3
GREEDY_PREFIX_BAR = 32      # the greedy text must follow run.c at least this far


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """``KL(softmax(p) || softmax(q))`` along the last axis (float64, nats)."""
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def pick_reference(entries: list[dict], steps: int = 256, prompt: str | None = "Once upon a time"
                   ) -> dict:
    """The greedy (temperature 0) entry with ``steps`` positions (and ``prompt``, if given)."""
    for e in entries:
        if e.get("temperature") == 0 and e.get("steps") == steps and \
                (prompt is None or e.get("prompt") == prompt):
            return e
    raise InputError(f"reference file has no greedy entry with {steps} steps"
                     + (f" and prompt {prompt!r}" if prompt is not None else ""))


def teacher_forced_logits(model, token_ids) -> np.ndarray:
    """float64 ``[len(token_ids), vocab]``: logits after feeding ``token_ids[pos]`` at ``pos``."""
    model.reset()
    return np.stack([np.asarray(model.forward(int(t), pos), dtype=np.float64)
                     for pos, t in enumerate(token_ids)])


def greedy_prefix(model, prompt_ids, reference_ids) -> int:
    """Run ``model`` greedily after ``prompt_ids`` for ``len(reference_ids)`` tokens; return
    how many generated tokens equal ``reference_ids`` before the first difference."""
    model.reset()
    token, pos, matched = int(prompt_ids[0]), 0, 0
    n_prompt, n_gen = len(prompt_ids), len(reference_ids)
    while pos < n_prompt - 1 + n_gen:
        logits = model.forward(token, pos)
        pos += 1
        if pos < n_prompt:
            token = int(prompt_ids[pos])
            continue
        token = int(np.argmax(logits))
        if token != int(reference_ids[pos - n_prompt]):
            break
        matched += 1
    return matched


def evaluate(int_model, float_model, reference: dict, float_logits: np.ndarray | None = None
             ) -> dict:
    """All measurements of the module docstring for one reference entry.

    ``float_logits`` (teacher-forced float logits of ``reference["token_ids"]``) may be
    passed to skip the float run when several schemes are measured.
    """
    ids = reference["token_ids"]
    forced = ids[:-1]                        # position pos is fed ids[pos], pos < steps
    if float_logits is None:
        float_logits = teacher_forced_logits(float_model, forced)
    t0, c0 = time.perf_counter(), time.process_time()
    int_logits = teacher_forced_logits(int_model, forced)
    t1, c1 = time.perf_counter(), time.process_time()
    agree = np.argmax(int_logits, axis=1) == np.argmax(float_logits, axis=1)
    kl = kl_divergence(float_logits, int_logits)
    prefix = greedy_prefix(int_model, reference["prompt_token_ids"],
                           reference["generated_token_ids"])
    scheme = getattr(int_model, "scheme", None)
    return {
        "top1_agreement": float(agree.mean()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "greedy_prefix": int(prefix),
        "n_positions": int(len(forced)),
        "n_generated": int(len(reference["generated_token_ids"])),
        "scheme": scheme.to_dict() if scheme is not None else None,
        "tok_per_s": round(len(forced) / max(t1 - t0, 1e-9), 1),          # wall clock
        "cpu_tok_per_s": round(len(forced) / max(c1 - c0, 1e-9), 1),      # CPU time
    }


def sweep(model_path, reference_path, scheme_names, steps: int = 256):
    """Measure each scheme on one reference entry; yields one result dict per scheme
    (the float run is shared). ``python -m speedllm.golden.accuracy NAME...`` prints them
    as JSON lines."""
    import json

    from .checkpoint import load_checkpoint
    from .float_ref import FloatTransformer
    from .intmodel import IntegerTransformer

    ckpt = load_checkpoint(model_path)
    with open(reference_path) as f:
        ref = pick_reference(json.load(f), steps)
    float_logits = teacher_forced_logits(FloatTransformer(ckpt), ref["token_ids"][:-1])
    for name in scheme_names:
        yield evaluate(IntegerTransformer(ckpt, name), None, ref, float_logits)


if __name__ == "__main__":
    import json
    import sys

    from ..paths import resolve_model_file

    names = sys.argv[1:] or ["default"]
    for r in sweep(resolve_model_file("stories260K.bin"),
                   resolve_model_file("reference_outputs.json"), names):
        print(json.dumps(r), flush=True)
