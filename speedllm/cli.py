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

# name -> (module under speedllm.commands, one-line help). Only the command being run is
# imported, so one command's heavy or broken imports never break the others or --help.
COMMANDS = {
    "generate": ("generate", "generate text with a backend (float, golden, rtl, board)"),
    "tokenize": ("tokenize", "encode text into token ids (run.c's BPE encode, with BOS)"),
    "eval": ("eval", "measure a backend's accuracy against the float reference (JSON)"),
    "synth-model": ("synth_model", "write a random-weight checkpoint of a real model's shape"),
    "hw-report": ("hw_report", "synthesis resources (Yosys xc7) and Fmax (nextpnr-ecp5) of hw components"),
    "bitstream": ("bitstream", "build the ECP5 bitstream, or write a Zynq board's Vivado project"),
    "bench": ("bench", "cycles/token, tok/s, roofline fraction, energy/token; --ablation: SpeedLLM's comparison"),
    "report": ("report", "regenerate the performance report (Markdown + stamped figures) into a folder"),
    "flash": ("flash", "load a bitstream onto a board (PYNQ overlay + ID check, or openFPGALoader)"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only ``selected`` (a command name) gets its full arguments."""
    parser = argparse.ArgumentParser(
        prog="speedllm",
        description="FPGA accelerator co-design toolkit for Llama2-family inference.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"speedllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, help_) in COMMANDS.items():
        if name != selected:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        mod = importlib.import_module(f".commands.{modname}", __package__)
        p = sub.add_parser(name, help=help_, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
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
