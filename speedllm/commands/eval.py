"""Measure how close a backend's logits are to the float reference (run.c), as one JSON object.

Teacher-forced over a greedy reference run from reference_outputs.json (the 256-step
"Once upon a time" entry by default): top1_agreement (argmax of the backend's logits equals
argmax of the float logits), mean_kl and max_kl (KL(float || backend) of the softmax
distributions), then greedy_prefix (generated tokens of a free-running greedy run that
equal the reference before the first difference), the backend's scheme and its tok/s.
Bars for the default golden scheme on stories260K: top1_agreement >= 0.985, mean_kl <= 1e-3.
"""

from __future__ import annotations

import json

from speedllm.errors import CheckpointError, InputError
from speedllm.golden import accuracy
from speedllm.golden.checkpoint import load_checkpoint, load_tokenizer
from speedllm.golden.float_ref import FloatTransformer
from speedllm.golden.generate import backend_names, create_backend
from speedllm.paths import resolve_model_file

HELP = "measure a backend's accuracy against the float reference (JSON)"


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="llama2.c checkpoint (path, or a file name in the model folders)")
    parser.add_argument("-z", "--tokenizer", default="tok512.bin", metavar="TOKENIZER",
                        help="tokenizer of the model, checked against its vocabulary "
                             "(default: tok512.bin)")
    parser.add_argument("--reference", default="reference_outputs.json", metavar="FILE",
                        help="run.c reference outputs with token ids "
                             "(default: reference_outputs.json)")
    parser.add_argument("--steps", type=int, default=256,
                        help="which greedy reference entry: its step count (default: 256)")
    parser.add_argument("--prompt", default="Once upon a time",
                        help="which greedy reference entry: its prompt "
                             "(default: 'Once upon a time')")
    parser.add_argument("--backend", choices=backend_names(), default="golden",
                        help="backend to measure (default: golden, the integer model)")
    parser.add_argument("--scheme", default=None, metavar="NAME",
                        help="golden scheme, e.g. default, g32-kv16, g64-kv8, g32-kv16f8 "
                             "(default: the default scheme)")


def _load_reference(path, steps: int, prompt: str) -> dict:
    try:
        entries = json.loads(resolve_model_file(path).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: expected a JSON list of reference runs")
    ref = accuracy.pick_reference(entries, steps, prompt)
    for key in ("token_ids", "prompt_token_ids", "generated_token_ids"):
        if not isinstance(ref.get(key), list) or not ref[key]:
            raise CheckpointError(f"{path}: the {steps}-step entry has no {key!r} list")
    return ref


def run(args) -> int:
    if args.steps <= 0:
        raise InputError(f"--steps must be positive, not {args.steps}")
    checkpoint = load_checkpoint(resolve_model_file(args.model))
    vocab = checkpoint.args.vocab_size
    load_tokenizer(resolve_model_file(args.tokenizer), vocab)
    ref = _load_reference(args.reference, args.steps, args.prompt)
    bad = [t for t in ref["token_ids"] if not (isinstance(t, int) and 0 <= t < vocab)]
    if bad:
        raise InputError(f"{args.reference}: token id {bad[0]!r} is outside the model's "
                         f"vocabulary [0, {vocab})")
    if len(ref["token_ids"]) - 1 > checkpoint.args.seq_len:
        raise InputError(f"{args.reference}: {len(ref['token_ids']) - 1} positions exceed "
                         f"the model's context {checkpoint.args.seq_len}")
    if args.scheme is not None and args.backend != "golden":
        raise InputError(f"--scheme applies to the golden backend only, not {args.backend!r}")
    options = {"scheme": args.scheme} if args.scheme is not None else {}
    backend = create_backend(args.backend, checkpoint, **options)
    result = accuracy.evaluate(backend, FloatTransformer(checkpoint), ref)
    out = {
        "model": str(checkpoint.path.name if checkpoint.path else args.model),
        "backend": args.backend,
        "reference": {"prompt": ref.get("prompt"), "steps": ref.get("steps")},
        **result,
        "bars": {"top1_agreement": accuracy.TOP1_BAR, "mean_kl": accuracy.KL_BAR},
        "meets_bars": bool(result["top1_agreement"] >= accuracy.TOP1_BAR
                           and result["mean_kl"] <= accuracy.KL_BAR),
    }
    print(json.dumps(out))
    return 0
