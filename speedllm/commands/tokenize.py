"""Print the token ids of TEXT (with BOS) as a JSON list, as llama2.c's run.c encodes it.

The vocabulary size is the number of records in the tokenizer file; --vocab-size states
it instead (the file must then hold exactly that many tokens, as run.c assumes).
"""

from __future__ import annotations

import json

from speedllm.errors import InputError
from speedllm.golden.tokenizer import Tokenizer, count_tokenizer_records
from speedllm.paths import resolve_model_file

HELP = "encode text into token ids (run.c's BPE encode, with BOS)"


def add_arguments(parser) -> None:
    parser.add_argument("text", metavar="TEXT", help="the text to encode")
    parser.add_argument("-z", "--tokenizer", default="tokenizer.bin", metavar="TOKENIZER",
                        help="llama2.c tokenizer file (default: tokenizer.bin, as run.c)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="tokens to read from the file (default: all its records)")


def run(args) -> int:
    path = resolve_model_file(args.tokenizer)
    vocab_size = args.vocab_size
    if vocab_size is None:
        vocab_size = count_tokenizer_records(path)
    elif vocab_size < 1:
        raise InputError(f"--vocab-size must be positive, not {vocab_size}")
    tokenizer = Tokenizer.from_file(path, vocab_size)
    print(json.dumps(tokenizer.encode(args.text)))
    return 0
