"""Subcommands of the ``speedllm`` CLI (one module each; see speedllm.cli)."""
