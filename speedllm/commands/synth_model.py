"""Write a random-weight llama2.c checkpoint of a real model's exact shape.

The weights are random (normal * 0.02, RMSNorm gains 1) but the dims, file layout and byte
count are those of the named model, which is what performance work needs. The same seed
always gives the same file. Shapes with vocab 32000 pair with tokenizer.bin, stories260K
(vocab 512) with tok512.bin. Formats: v0 (legacy, read by llama2.c's run.c), v1 (fp32 with
a 256-byte header), v2 (Q8_0, read by runq.c). An existing file is not replaced unless
--force is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speedllm.errors import InputError
from speedllm.golden.checkpoint import checkpoint_nbytes
from speedllm.golden.export import default_group_size
from speedllm.golden.synth import SHAPES, resolve_shape, tqdm_progress, write_synth_checkpoint

HELP = "write a random-weight checkpoint of a real model's shape (stories15M ... TinyLlama)"

FORMATS = {"v0": 0, "v1": 1, "v2": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", required=True, choices=list(SHAPES),
                        help="model shape (dims from the design's 'Sizes to design for')")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="checkpoint file to write")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed, >= 0 (default 0); same seed, same bytes")
    parser.add_argument("--format", choices=list(FORMATS), default="v0",
                        help="v0 legacy fp32 (run.c, default), v1 fp32 with header, "
                             "v2 Q8_0 (runq.c)")
    parser.add_argument("--group-size", type=int, default=None, metavar="N",
                        help="v2 quantization group size (default: the largest power of two "
                             "<= 64 dividing dim and hidden_dim)")
    parser.add_argument("--force", action="store_true",
                        help="replace FILE if it exists")
    # tests and quick experiments: fewer layers than the real shape (not a user option)
    parser.add_argument("--layers", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, not {args.seed}")
    if args.layers is not None and args.layers <= 0:
        raise InputError(f"--layers must be positive, not {args.layers}")
    parent = Path(args.output).resolve().parent
    if not parent.is_dir():
        raise InputError(f"{args.output}: folder {parent} does not exist")
    if not args.force and Path(args.output).exists():
        raise InputError(f"{args.output}: already exists (not replaced; --force replaces it)")
    version = FORMATS[args.format]
    model = resolve_shape(args.shape, args.layers)
    group_size = None
    if version == 2:
        group_size = args.group_size or default_group_size(model)
        for what, n in (("dim", model.dim), ("hidden_dim", model.hidden_dim)):
            if group_size <= 0 or n % group_size:
                raise InputError(f"--group-size {group_size} must be positive and divide "
                                 f"{what} {n} of {args.shape}")
    elif args.group_size is not None:
        raise InputError("--group-size only applies to --format v2")
    total = checkpoint_nbytes(model, version, group_size)
    update, close = tqdm_progress(total, args.output)
    try:
        nbytes = write_synth_checkpoint(args.output, model, args.seed, version, group_size,
                                        overwrite=args.force, progress=update)
    finally:
        close()
    gs = f", group size {group_size}" if version == 2 else ""
    print(f"wrote {args.output}: {args.shape} shape ({model.n_layers} layers, "
          f"{model.n_params:,} parameters), format {args.format}{gs}, seed {args.seed}, "
          f"{nbytes:,} bytes")
    return 0
