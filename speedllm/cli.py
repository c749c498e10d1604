"""The ``speedllm`` command line.

Each subcommand lives in ``speedllm/commands/<name>.py`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``, plus a one-line ``HELP``.
Errors derived from :class:`~speedllm.errors.SpeedLLMError` (and OSError on user files)
print one line to stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SpeedLLMError

# name -> module under speedllm.commands (imported lazily so --help stays fast)
COMMANDS = {
    "generate": "generate",
    "tokenize": "tokenize",
    "eval": "eval",
    "synth-model": "synth_model",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speedllm",
        description="FPGA accelerator co-design toolkit for Llama2-family inference.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"speedllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(f".commands.{modname}", __package__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except SpeedLLMError as e:
        print(f"speedllm: error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:   # files the user named, numbers they typed
        print(f"speedllm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("speedllm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
