"""Generate a story from a llama2.c checkpoint, like llama2.c's `run` (stdout is the text).

The story is streamed to stdout exactly as run.c writes it (flushed per token, then a
newline); "achieved tok/s: X" goes to stderr. With --json, one JSON object is printed
instead: text, token_ids, prompt_token_ids, stopped_on_bos, tok_per_s, backend, steps,
seed; the accelerator backends add cycles_per_token (mean over the positions run, from the
RTL's cycle counter), cycles_by_command (per command class), projected_tok_per_s (at the
board's clock) and, on rtl, sim_cycles_per_s (simulated cycles per wall second). With
--power (--backend board) the board's power rails are recorded during generation
(speedllm.host.power): watts, J/token and tok/J, measured. Defaults are run.c's: -t 1.0,
-p 0.9, -n 256 (at most the context length), the seed from the clock. Unlike run.c, out-of-range options are errors, not silently clamped.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext

from speedllm.errors import InputError
from speedllm.host.backends import BOARD_BACKENDS  # registers rtl, board, pynq-sim (pynq stays lazy)
from speedllm.golden.checkpoint import load_checkpoint, load_tokenizer
from speedllm.golden.generate import (Generation, backend_names, check_generation_options,
                                      create_backend)
from speedllm.golden.sampler import Sampler
from speedllm.golden.tokenizer import Tokenizer
from speedllm.paths import resolve_model_file

HELP = "generate text with a backend (float reference, golden integer model, ...)"


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="llama2.c checkpoint (path, or a file name in the model folders)")
    parser.add_argument("-z", "--tokenizer", default="tokenizer.bin", metavar="TOKENIZER",
                        help="llama2.c tokenizer file (default: tokenizer.bin, as run.c)")
    parser.add_argument("-i", "--prompt", default="", help="prompt text (default: empty)")
    parser.add_argument("-n", "--steps", type=int, default=None,
                        help="positions to run, prompt included (default: 256, or the "
                             "model's context length if shorter)")
    parser.add_argument("-t", "--temperature", type=float, default=1.0,
                        help="0 = greedy (default: 1.0)")
    parser.add_argument("-p", "--topp", type=float, default=0.9,
                        help="top-p (nucleus) threshold in [0, 1] (default: 0.9)")
    parser.add_argument("-s", "--seed", type=int, default=None,
                        help="random seed (default: the current time, as run.c)")
    parser.add_argument("--backend", choices=backend_names(), default="float",
                        help="model implementation (default: float, equal to run.c)")
    parser.add_argument("--bitstream", default=None, metavar="BIT",
                        help="the .bit (its .hwh beside it) for --backend board")
    parser.add_argument("--scheme", default=None, metavar="NAME",
                        help="integer scheme of the golden backend (e.g. g32-kv16; "
                             "default: the integer model's default)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="accelerator backends: run the unfused program (one command per "
                             "op; the attention pass stays one command)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="accelerator backends: give every tensor its own scratchpad "
                             "buffer (no liveness reuse)")
    parser.add_argument("--board", default=None, metavar="BOARD",
                        help="rtl backend: board profile of the DRAM model and the clock "
                             "for projected tok/s (default: pynq-z2)")
    parser.add_argument("--power", action="store_true",
                        help="--backend board: measure the board's power rails during "
                             "generation (pynq.get_rails + DataRecorder) and report J/token")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of streaming the text")


def _write(stream, data: bytes) -> None:
    """Write bytes to a text stream's buffer (or as text where there is none)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", errors="replace"))
        stream.flush()


def run(args) -> int:
    checkpoint = load_checkpoint(resolve_model_file(args.model))
    steps = min(256, checkpoint.args.seq_len) if args.steps is None else args.steps
    check_generation_options(checkpoint.args, steps, args.temperature, args.topp)
    vocab_size = checkpoint.args.vocab_size
    tokenizer = Tokenizer(load_tokenizer(resolve_model_file(args.tokenizer), vocab_size))
    sampler = Sampler(vocab_size, args.temperature, args.topp, args.seed)
    options = {} if args.scheme is None else {"scheme": args.scheme}
    if args.bitstream is not None:
        options["bitstream"] = args.bitstream
    accel = args.backend in BOARD_BACKENDS
    if (args.no_fuse or args.no_reuse or args.board) and not accel:
        raise InputError("--no-fuse, --no-reuse and --board apply to the accelerator "
                         f"backends ({', '.join(BOARD_BACKENDS)}), not {args.backend}")
    if args.no_fuse:
        from speedllm.ops.fusion import FusionConfig
        options["fusion"] = FusionConfig.only("attention_pass")
    if args.no_reuse:
        options["reuse"] = False
    if args.board is not None:
        if args.backend != "rtl":
            raise InputError("--board applies to --backend rtl")
        options["board"] = args.board
    if args.power and args.backend != "board":
        raise InputError("--power measures a board's power rails; it applies to --backend "
                         f"board, not {args.backend}")
    backend = create_backend(args.backend, checkpoint, **options)
    generation = Generation(backend, tokenizer, sampler, args.prompt, steps)
    meter = None
    if args.power:
        from speedllm.host.power import PowerMeter
        meter = PowerMeter.from_pynq()

    if args.json:
        with meter or nullcontext():
            generation.run()
        result = {
            "text": generation.text.decode("utf-8", errors="replace"),
            "token_ids": generation.token_ids,
            "prompt_token_ids": generation.prompt_token_ids,
            "stopped_on_bos": generation.stopped_on_bos,
            "tok_per_s": generation.tok_per_s,
            "backend": args.backend,
            "steps": steps,
            "seed": sampler.seed,
        }
        result.update(_accelerator_figures(backend, args))
        if meter is not None:
            result["power"] = meter.figures(_positions(generation))
        print(json.dumps(result))
        return 0

    with meter or nullcontext():
        for step in generation:
            if step.piece:
                _write(sys.stdout, step.piece)
    _write(sys.stdout, b"\n")
    if generation.tok_per_s is not None:
        print(f"achieved tok/s: {generation.tok_per_s:f}", file=sys.stderr)
    figures = _accelerator_figures(backend, args)
    if figures.get("cycles_per_token"):
        print(f"accelerator: {figures['cycles_per_token']:.0f} cycles/token (measured, "
              f"RTL counters); projected {figures['projected_tok_per_s']:.1f} tok/s at "
              f"{figures['clock_mhz']:g} MHz ({figures['board']}, estimated)", file=sys.stderr)
    if meter is not None:
        p = meter.figures(_positions(generation))
        print(f"power: {p['power_w']:.2f} W over {p['seconds']:.2f} s, {p['j_per_token']:.4f} "
              f"J/token, {p['tokens_per_j']:.1f} tok/J (measured, {len(p['rails_w'])} rails)",
              file=sys.stderr)
    return 0


def _positions(generation) -> int:
    """Forward passes the generation ran (a BOS that ended it was computed too)."""
    return len(generation.token_ids) - 1 + int(generation.stopped_on_bos)


def _accelerator_figures(backend, args) -> dict:
    """cycles_per_token, cycles_by_command, sim_cycles_per_s, projected tok/s of the
    accelerator backends (empty for the others)."""
    cycles = getattr(backend, "step_cycles", None)
    if not cycles:
        return {}
    from speedllm.ops.boards import get_board
    from speedllm.host.rtl import DEFAULT_BOARD
    board = get_board(args.board or DEFAULT_BOARD)
    per_token = sum(cycles) / len(cycles)
    program = backend.program
    out = {"cycles_per_token": per_token,
           "cycles_by_command": dict(sorted(backend.cycles_by_command.items())),
           "board": board.name, "clock_mhz": board.fabric_mhz,
           "projected_tok_per_s": board.fabric_mhz * 1e6 / per_token,
           "fusion": program.fusion.name, "reuse": program.reuse,
           "scratchpad_bytes": program.scratchpad_bytes,
           "measured": ["cycles_per_token", "cycles_by_command", "sim_cycles_per_s"],
           "estimated": ["projected_tok_per_s"]}
    rate = backend.sim_cycles_per_s() if hasattr(backend, "sim_cycles_per_s") else None
    if rate is not None:
        out["sim_cycles_per_s"] = rate
    return out
