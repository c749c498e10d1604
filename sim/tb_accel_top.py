"""cocotb testbench of the whole accelerator top (:class:`speedllm.hw.accel_top.AcceleratorTop`)
running a reduced (1-layer) stories260K model from cocotbext-axi RAMs.

The host side is cocotbext-axi's ``AxiLiteMaster`` on ``s_axil`` (offsets from
:data:`speedllm.hw.accel_regs.ACCEL_REGMAP`, status fields from
:func:`speedllm.host.driver.field_bits`). Every AXI master port (``m_cmd``, ``m_rd0``,
``m_rd1``, ``m_w``, ``m_s``, ``m_att`` reading, ``m_wr0``, ``m_kv`` writing) has its own
cocotbext-axi RAM (:class:`~speedllm.sim.axi.ErrorRamRead` / ``ErrorRamWrite``), and all
of them share ONE anonymous ``mmap`` through cocotbext-axi's ``mem=`` argument, so what
one master writes the others read, as in one DRAM. The image sits at :data:`IMAGE_BASE`
(nonzero, so a missing ``image_base`` offset shows), the command words on the next page
after it.

Each decode step (token 1 at position 0, then the interpreter's argmax at the next
position) is checked bit for bit against :class:`speedllm.ops.interpreter.Interpreter`
over the whole image (weights untouched, KV cache rows, logits), and no byte of the memory
outside the image (below ``image_base``, the command words, above) may change. The bus
counters are checked against the beats the RAMs served, ``commands_done`` against the
program. Fault tests make one RAM answer SLVERR/DECERR (or stop answering) and check
``status.error_code`` and ``failing_command``, then that a reset brings the top back to
bit-exact runs. Tests with random stalls on every RAM channel are ``slow`` in pytest.

:func:`reduced_checkpoint` and :func:`reduced_program` build the model (also used by the
pytest wrapper, ``tests/hw/test_accel_top_cocotb.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import mmap
import random
import warnings

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from speedllm.hw.accel_regs import ACCEL_REGMAP, ErrorCode
from speedllm.ops.isa import used_fields
from speedllm.sim.axi import (AxiResp, ErrorRamRead, ErrorRamWrite, ErrorRange, read_bus,
                              set_channel_pauses, write_bus)
from speedllm.sim.runner import sim_long

__all__ = ["TB", "reduced_checkpoint", "reduced_program", "IMAGE_BASE", "READ_PORTS",
           "WRITE_PORTS"]

IMAGE_BASE = 0x10000
MEM_BYTES = 1 << 20
PAGE = 4096
CLOCK_NS = 10
POLL_CYCLES = 1000                   # status poll interval while a run is going
READ_PORTS = ("m_cmd", "m_rd0", "m_rd1", "m_w", "m_s", "m_att")
WRITE_PORTS = ("m_wr0", "m_kv")
OFF = ACCEL_REGMAP.offsets()
_PER_LAYER = ("rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight", "w1", "w2", "w3")


@functools.lru_cache(maxsize=None)
def reduced_checkpoint(n_layers: int = 1):
    """stories260K cut to its first ``n_layers`` layers (embedding, final norm and the shared
    classifier kept), as an in-memory :class:`~speedllm.golden.checkpoint.Checkpoint`."""
    from speedllm.golden.checkpoint import Checkpoint, load_checkpoint
    from speedllm.paths import resolve_model_file
    ck = load_checkpoint(resolve_model_file("stories260K.bin"))
    if not 0 < n_layers <= ck.args.n_layers:
        raise ValueError(f"n_layers must be in 1..{ck.args.n_layers}, not {n_layers!r}")
    weights = {name: np.ascontiguousarray(w[:n_layers]) if name in _PER_LAYER else w
               for name, w in ck.weights.items()}
    return Checkpoint(args=dataclasses.replace(ck.args, n_layers=n_layers), weights=weights)


@functools.lru_cache(maxsize=None)
def reduced_program(fused: bool = True, n_layers: int = 1):
    """The reduced model compiled with the scratchpad plan: all fusion rules (``fused``) or
    only the attention pass (the unfused program the top can run)."""
    from speedllm.ops.compiler import compile_model
    from speedllm.ops.fusion import FusionConfig
    fusion = FusionConfig() if fused else FusionConfig.only("attention_pass")
    return compile_model(reduced_checkpoint(n_layers), fusion=fusion, act_space="scratchpad")


def first_command_using(program, field: str, addr: int) -> int:
    """Index of the first command whose ``field`` (one it uses) equals ``addr``."""
    for k, cmd in enumerate(program.commands):
        if field in used_fields(cmd) and getattr(cmd, field) == addr:
            return k
    raise ValueError(f"no command has {field} = {addr:#x}")


class TB:
    """Clock, reset, the AXI-Lite host, eight AXI RAMs over one memory, the golden model.

    Attributes
    ----------
    dram : numpy.ndarray
        uint8 view of the shared memory (physical addresses).
    rams : dict
        Port name -> its cocotbext-axi RAM.
    beats : dict
        Port name -> data beats it served (R beats for read ports, W beats for write ports).
    """

    def __init__(self, dut):
        from speedllm.host.driver import field_bits
        self.dut = dut
        self.rng = random.Random(cocotb.RANDOM_SEED)
        # cocotbext-axi 0.1.28 still uses cocotb 1.x calls (task.kill, Event.data)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")
        self.status_bits = {f: field_bits("status", f) for f in ("busy", "done", "error",
                                                                  "error_code")}
        self.start_mask = field_bits("control", "start")[1]
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        for port in ("s_axil",) + READ_PORTS + WRITE_PORTS:   # quiet per-reset messages
            logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.WARNING)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                  dut.clk, dut.rst)
        self.mem = mmap.mmap(-1, MEM_BYTES)
        self.dram = np.frombuffer(self.mem, dtype=np.uint8)
        self.rams, self.beats = {}, {}
        for port in READ_PORTS:
            ram = ErrorRamRead(read_bus(dut, port), dut.clk, dut.rst, mem=self.mem)
            self.rams[port] = ram
            self._count_beats(port, ram.r_channel, "send")
        for port in WRITE_PORTS:
            ram = ErrorRamWrite(write_bus(dut, port), dut.clk, dut.rst, mem=self.mem)
            self.rams[port] = ram
            self._count_beats(port, ram.w_channel, "recv")
        self.program = None
        self.program_addr = 0
        self.loaded = None

    @staticmethod
    def _channels(ram):
        names = ("ar_channel", "r_channel", "aw_channel", "w_channel", "b_channel")
        return [getattr(ram, n) for n in names if hasattr(ram, n)]

    def _count_beats(self, port, channel, method):
        self.beats[port] = 0
        inner = getattr(channel, method)

        async def counted(*args):
            self.beats[port] += 1
            return await inner(*args)
        setattr(channel, method, counted)

    async def reset(self, cycles: int = 4):
        """Pulse ``rst`` (the top and the RAM models); error ranges and pauses are cleared."""
        self.set_pauses(0.0)
        for ram in self.rams.values():
            ram.error_ranges = []
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_pauses(self, probability: float):
        """Random stalls on every RAM channel (``probability`` of the cycles; 0: none)."""
        channels = [c for ram in self.rams.values() for c in self._channels(ram)]
        set_channel_pauses(channels, probability, self.rng)

    # -- registers ------------------------------------------------------------------------
    async def read(self, name: str) -> int:
        return await self.host.read_dword(OFF[name])

    async def write(self, name: str, value: int):
        await self.host.write_dword(OFF[name], value)

    def field(self, status: int, name: str) -> int:
        shift, mask = self.status_bits[name]
        return (status & mask) >> shift

    # -- runs -----------------------------------------------------------------------------
    async def load(self, program, timeout_cycles: int = 1_000_000):
        """Zero the memory, put the image at IMAGE_BASE and the command words on the page
        after it; set image_base, program_addr and timeout_cycles."""
        image = np.asarray(program.image, dtype=np.uint8)
        self.program = program
        self.program_addr = IMAGE_BASE + -(-image.size // PAGE) * PAGE
        assert self.program_addr + len(program.words) <= MEM_BYTES, "memory too small"
        self.dram[:] = 0
        self.dram[IMAGE_BASE:IMAGE_BASE + image.size] = image
        self.dram[self.program_addr:self.program_addr + len(program.words)] = \
            np.frombuffer(program.words, np.uint8)
        self.loaded = self.dram.copy()         # what must stay outside the image
        await self.write("image_base", IMAGE_BASE)
        await self.write("program_addr", self.program_addr)
        await self.write("timeout_cycles", timeout_cycles)

    def image(self) -> np.ndarray:
        """The image part of the memory (a copy)."""
        return self.dram[IMAGE_BASE:IMAGE_BASE + len(self.program.image)].copy()

    async def step(self, token: int, pos: int, max_cycles: int = 5_000_000) -> dict:
        """One decode step from the registers; returns the status fields and counters."""
        done = self.status_bits["done"][1]
        await self.write("status", done)                  # clear a stale done (w1c)
        await self.write("token", token)
        await self.write("position", pos)
        for port in self.beats:
            self.beats[port] = 0
        await self.write("control", self.start_mask)
        waited = 0
        while True:
            await Timer(POLL_CYCLES * CLOCK_NS, unit="ns")
            waited += POLL_CYCLES
            status = await self.read("status")
            if status & done:
                break
            assert waited < max_cycles, f"no status.done after {waited} cycles " \
                                        f"(status {status:#x})"
        result = {"status": status, "busy": self.field(status, "busy"),
                  "error": self.field(status, "error"),
                  "error_code": self.field(status, "error_code")}
        for name in ("failing_command", "commands_done", "total_cycles", "bytes_read",
                     "bytes_written"):
            result[name] = await self.read(name)
        return result

    def diff_regions(self, rtl: np.ndarray, ref: np.ndarray) -> str:
        diff = np.nonzero(rtl != ref)[0]
        parts = []
        for name, r in self.program.layout.items():
            sel = diff[(diff >= r.addr) & (diff < r.addr + r.size)]
            if sel.size:
                parts.append(f"{name}: {sel.size} bytes differ from +{sel[0] - r.addr:#x}")
        return "; ".join(parts) or f"{diff.size} bytes differ outside named regions"

    async def checked_step(self, ref, token: int, pos: int) -> int:
        """Run ``(token, pos)`` on the RTL and on the interpreter ``ref``; the whole image,
        the status and the counters must agree. Returns the interpreter's argmax."""
        program = self.program
        result = await self.step(token, pos)
        logits = ref.step(token, pos)
        assert not result["error"] and not result["busy"], \
            f"pos {pos}: status {result['status']:#x}, error code " \
            f"{ErrorCode(result['error_code']).name}, command {result['failing_command']}"
        rtl = self.image()
        assert np.array_equal(rtl, ref.image), \
            f"pos {pos} (token {token}): {self.diff_regions(rtl, ref.image)}"
        outside = np.ones(MEM_BYTES, dtype=bool)
        outside[IMAGE_BASE:IMAGE_BASE + rtl.size] = False
        stray = np.nonzero((self.dram != self.loaded) & outside)[0]
        assert stray.size == 0, f"pos {pos}: {stray.size} bytes written outside the image, " \
                                f"first at {stray[0]:#x}"
        assert result["commands_done"] == len(program.commands) - 1      # END not counted
        read_beats = sum(self.beats[p] for p in READ_PORTS)
        write_beats = sum(self.beats[p] for p in WRITE_PORTS)
        bytes_per_beat = program.beat_bytes
        assert result["bytes_read"] == bytes_per_beat * read_beats, (result, self.beats)
        assert result["bytes_written"] == bytes_per_beat * write_beats, (result, self.beats)
        self.dut._log.info("pos %d token %d: %d cycles, %d bytes read, %d written, equal to "
                           "the interpreter", pos, token, result["total_cycles"],
                           result["bytes_read"], result["bytes_written"])
        return int(np.argmax(logits))

    async def run_positions(self, program, positions: int, token: int = 1):
        """Load ``program`` and run ``positions`` checked steps from ``token`` at pos 0,
        each next token the interpreter's argmax."""
        from speedllm.ops.interpreter import Interpreter
        await self.load(program)
        ref = Interpreter.from_program(program)
        assert np.array_equal(self.image(), ref.image)
        for pos in range(positions):
            token = await self.checked_step(ref, token, pos)

    async def expect_error(self, code: ErrorCode, failing: int, label: str):
        """Run one step (token 1, pos 0) and check it ends with ``code`` at ``failing``."""
        result = await self.step(1, 0)
        assert result["error"], f"{label}: no error reported (status {result['status']:#x})"
        got = ErrorCode(result["error_code"])
        assert got == code, f"{label}: error code {got.name}, expected {code.name}"
        assert result["failing_command"] == failing, \
            f"{label}: failing_command {result['failing_command']}, expected {failing}"
        assert result["commands_done"] == failing, (label, result)
        assert not result["busy"], (label, result)
        self.dut._log.info("%s: %s at command %d (%s)", label, got.name, failing,
                           self.program.names[failing])


def _positions(default: int) -> int:
    return 4 * default if sim_long() else default


@cocotb.test(timeout_time=1000, timeout_unit="ms")
async def test_fused_decode(dut):
    """Fused 1-layer program, RAMs without pauses: the top's config fits the program and
    its config_hash register is TOP_CONFIG's; then token 1 at pos 0 and the argmax at each
    next position, 2 positions (8 with SPEEDLLM_SIM_LONG=1)."""
    from speedllm.hw.accel_top import TOP_CONFIG
    from speedllm.ops.dram_format import read_header
    tb = TB(dut)
    await tb.reset()
    program = reduced_program(True)
    assert TOP_CONFIG.problems_with(read_header(program.image)) == []
    assert await tb.read("config_hash") == TOP_CONFIG.hash()
    await tb.run_positions(program, _positions(2))


@cocotb.test(timeout_time=1000, timeout_unit="ms")
async def test_unfused_decode_with_pauses(dut):
    """Unfused 1-layer program (one command per op, attention as one pass) with random
    stalls (30 %) on every RAM channel; 2 positions (8 long)."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.3)
    await tb.run_positions(reduced_program(False), _positions(2))


@cocotb.test(timeout_time=1000, timeout_unit="ms")
async def test_fused_decode_with_pauses(dut):
    """Fused 1-layer program with random stalls (30 %) on every RAM channel; 2 positions
    (8 long)."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(0.3)
    await tb.run_positions(reduced_program(True), _positions(2))


@cocotb.test(timeout_time=1000, timeout_unit="ms")
async def test_bus_faults(dut):
    """One RAM answers SLVERR/DECERR on one region: a weight read on m_w (AXI_READ at the
    first command reading that matrix), a K-cache write on m_kv (AXI_WRITE at the first
    command writing the cache: the fused QKV command, or the unfused KV_WRITE), for the fused
    and the unfused program; then m_s never takes an address (BUS_TIMEOUT at the embedding,
    after the masters' 65,536-cycle watchdog). After a reset the top is bit-exact again."""
    from speedllm.ops.interpreter import Interpreter
    tb = TB(dut)
    for port in ("m_w", "m_kv"):      # cocotbext-axi warns at every injected error beat
        logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.ERROR)
    fused, unfused = reduced_program(True), reduced_program(False)
    cases = [(fused, "m_w", "l0.wo.weights", "w_addr", AxiResp.SLVERR, ErrorCode.AXI_READ),
             (fused, "m_kv", "l0.k_cache", "k_addr", AxiResp.SLVERR, ErrorCode.AXI_WRITE),
             (unfused, "m_w", "l0.w2.weights", "w_addr", AxiResp.DECERR, ErrorCode.AXI_READ),
             (unfused, "m_kv", "l0.k_cache", "k_addr", AxiResp.SLVERR, ErrorCode.AXI_WRITE)]
    for program, port, region, field, resp, code in cases:
        r = program.layout[region]
        await tb.reset()
        await tb.load(program)
        tb.rams[port].error_ranges = [ErrorRange(IMAGE_BASE + r.addr,
                                                 IMAGE_BASE + r.addr + r.size, resp)]
        await tb.expect_error(code, first_command_using(program, field, r.addr),
                              f"{AxiResp(resp).name} on {port} ({region})")
        assert tb.rams[port].error_beats > 0

    # A read port that stops answering: m_s never accepts an address; the embedding (the
    # first command reading scales) waits for it until the master's watchdog ends the run.
    await tb.reset()
    await tb.load(fused)
    embed = first_command_using(fused, "s_addr",
                                fused.layout["token_embedding_table.scales"].addr)
    tb.rams["m_s"].ar_channel.pause = True
    await tb.expect_error(ErrorCode.BUS_TIMEOUT, embed, "m_s not answering")

    await tb.reset()                               # also releases m_s
    await tb.load(fused)
    await tb.checked_step(Interpreter.from_program(fused), 1, 0)
