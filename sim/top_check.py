"""Run command programs on the accelerator top in the harness and compare with the golden
interpreter, down to the first command where the two part.

:class:`TopRunner` owns a :class:`~speedllm.sim.harness.Harness` of
:class:`~speedllm.hw.accel_top.AcceleratorTop`: :meth:`~TopRunner.load` puts a program's
DRAM image and command words into the DRAM model, :meth:`~TopRunner.step` runs one decode
step (``token``, ``pos``) from the registers and returns the cycles the RTL counted.
:func:`compare_step` runs the same step on a :class:`~speedllm.ops.interpreter.Interpreter`
and compares the whole image (KV cache, logits, and with ``act_space="dram"`` every
activation); on a difference :func:`first_divergence` re-runs truncated programs to name
the first command whose writes differ.

``python -m speedllm.sim.top_check MODEL [--no-fuse] [--dram] [--positions N]`` prints the
cycles of each step and the verdict.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from speedllm.ops.interpreter import Interpreter
from speedllm.ops.isa import COMMAND_BYTES, describe

__all__ = ["TopRunner", "compare_step", "first_divergence", "Divergence"]

PAGE = 4096


class Divergence(AssertionError):
    """The RTL's memory differs from the interpreter's after a step."""


class TopRunner:
    """The accelerator top in the harness, with a program loaded.

    Parameters
    ----------
    harness : Harness
        Of an :class:`~speedllm.hw.accel_top.AcceleratorTop` (registers by name).
    timeout_cycles : int
        The sequencer's unit watchdog (register ``timeout_cycles``).
    """

    def __init__(self, harness, *, timeout_cycles: int = 1_000_000):
        from speedllm.host.driver import field_bits
        self.h = harness
        self.timeout_cycles = timeout_cycles
        self._done = field_bits("status", "done")[1]
        self.program = None
        self.image_base = int(harness.dram_base)
        self.program_addr = 0

    def load(self, program, words: bytes | None = None) -> None:
        """Image at the start of DRAM, the command words (default the program's) after it."""
        image = np.asarray(program.image, dtype=np.uint8)
        words = program.words if words is None else words
        self.program = program
        self.h.reset()                    # a failed run may leave beats in the datapath
        self.program_addr = self.image_base + (-(-image.size // PAGE) * PAGE)
        if self.program_addr + len(words) > self.image_base + self.h.dram.size:
            raise ValueError("the harness DRAM is too small for this program")
        self.h.dram[:] = 0
        self.h.dram[:image.size] = image
        off = self.program_addr - self.image_base
        self.h.dram[off:off + len(words)] = np.frombuffer(words, np.uint8)
        self.h.write_reg("image_base", self.image_base)
        self.h.write_reg("program_addr", self.program_addr)
        self.h.write_reg("timeout_cycles", self.timeout_cycles)

    def step(self, token: int, pos: int, max_cycles: int = 50_000_000) -> dict:
        """One decode step; returns the status word, error fields and counters."""
        h = self.h
        h.write_reg("status", self._done)              # clear a stale done (w1c)
        h.write_reg("token", token)
        h.write_reg("position", pos)
        t0, c0 = time.perf_counter(), h.cycles
        h.write_reg("control", 1)
        h.run_until("status", self._done, self._done, max_cycles)
        wall = time.perf_counter() - t0
        from speedllm.host.driver import field_bits
        status = h.read_reg("status")
        shift, mask = field_bits("status", "error_code")
        return {"status": status, "error": bool(status & field_bits("status", "error")[1]),
                "error_code": (status & mask) >> shift,
                "failing_command": h.read_reg("failing_command"),
                "total_cycles": h.read_reg("total_cycles"),
                "commands_done": h.read_reg("commands_done"),
                "sim_cycles": h.cycles - c0, "wall_s": wall}

    def image(self) -> np.ndarray:
        """The image part of DRAM (a copy)."""
        return self.h.dram[:len(self.program.image)].copy()


def _diff_regions(program, rtl: np.ndarray, ref: np.ndarray) -> str:
    diff = np.nonzero(rtl != ref)[0]
    parts = []
    for name, r in program.layout.items():
        sel = diff[(diff >= r.addr) & (diff < r.addr + r.size)]
        if sel.size:
            parts.append(f"{name}: {sel.size} bytes from +{sel[0] - r.addr:#x}")
    return "; ".join(parts) or f"{diff.size} bytes outside named regions"


def compare_step(runner: TopRunner, ref: Interpreter, token: int, pos: int) -> dict:
    """Run ``(token, pos)`` on both; raise :class:`Divergence` naming the differing regions
    (and, via :func:`first_divergence`, the first differing command). Returns
    :meth:`TopRunner.step`'s dict plus the interpreter's ``logits``."""
    before = runner.image()
    result = runner.step(token, pos)
    result["logits"] = ref.step(token, pos)
    rtl = runner.image()
    if result["error"] or not np.array_equal(rtl, ref.image):
        where = _diff_regions(runner.program, rtl, ref.image)
        first = first_divergence(runner, before, token, pos)
        raise Divergence(f"step (token {token}, pos {pos}) differs: {where}; status "
                         f"{result['status']:#x}, error code {result['error_code']}; "
                         f"{first}")
    return result


def first_divergence(runner: TopRunner, image_before: np.ndarray, token: int, pos: int) -> str:
    """Re-run the step from ``image_before`` with the program cut after each command in
    turn; describe the first command whose result differs from the interpreter's."""
    program = runner.program
    n = len(program.commands) - 1                  # without END
    for k in range(1, n + 1):
        words = program.words[:COMMAND_BYTES * k] + bytes(COMMAND_BYTES)
        runner.load(program, words)
        runner.h.dram[:image_before.size] = image_before
        result = runner.step(token, pos)
        ref = Interpreter(words, image_before, program.scratchpad_bytes, program.plan.align)
        for cmd in ref.commands[:-1]:
            ref._execute(cmd, token, pos)
        if result["error"] or not np.array_equal(runner.image(), ref.image):
            cmd = program.commands[k - 1]
            runner.load(program)
            return (f"first differing command {k - 1} ({program.names[k - 1]}: "
                    f"{describe(cmd)}): {_diff_regions(program, runner.image(), ref.image)}")
    runner.load(program)
    return "every truncated program agrees (the difference needs the whole step)"


def main(argv=None) -> int:
    from speedllm.golden.checkpoint import load_checkpoint
    from speedllm.hw.accel_top import AcceleratorTop
    from speedllm.ops.compiler import compile_model
    from speedllm.ops.fusion import FusionConfig
    from speedllm.paths import resolve_model_file
    from .harness import Harness
    p = argparse.ArgumentParser(prog="python -m speedllm.sim.top_check",
                                description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--no-fuse", action="store_true")
    p.add_argument("--no-reuse", action="store_true")
    p.add_argument("--dram", action="store_true", help="activations in DRAM (no scratchpad)")
    p.add_argument("--positions", type=int, default=4)
    a = p.parse_args(argv)
    ck = load_checkpoint(resolve_model_file(a.model))
    fusion = FusionConfig.only("attention_pass") if a.no_fuse else FusionConfig()
    program = compile_model(ck, fusion=fusion, reuse=not a.no_reuse,
                            act_space="dram" if a.dram else "scratchpad")
    h = Harness(AcceleratorTop(), "accel_top", dram_bytes=1 << 22, latency=20,
                bandwidth_bytes_per_cycle=8)
    runner = TopRunner(h)
    runner.load(program)
    ref = Interpreter.from_program(program)
    token = 1
    for pos in range(a.positions):
        r = compare_step(runner, ref, token, pos)
        token = int(np.argmax(r["logits"]))
        print(f"pos {pos}: {r['total_cycles']} cycles, {r['sim_cycles'] / r['wall_s']:.3g} "
              f"simulated cycles/s: equal to the interpreter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
