"""The accelerator's control block: register file, command fetch, dispatch, counters.

One ``start`` (register ``control.start``) runs the command program at ``program_addr``:
the :class:`~speedllm.hw.command_fetch.CommandFetcher` reads commands one at a time, the
sequencer hands each to the unit port of its opcode (:data:`DEFAULT_UNITS`) with a
``start`` pulse and waits for that unit's ``done``, counting cycles and stalls per command
class (:mod:`speedllm.hw.accel_regs`) and bytes moved. ``END`` ends the run with
``status.done``; an AXI error, a bad opcode, a unit error or a unit that does not answer
within ``timeout_cycles`` ends it with ``status.done``, ``status.error``, the
:class:`~speedllm.hw.accel_regs.ErrorCode` and the failing command's index. Every path
ends with ``busy`` low: nothing waits without a watchdog.

A unit plugs in through :class:`UnitSignature` (the sequencer's side is ``Out``; a unit
takes ``In(UnitSignature())``)::

    start      Out(1)   one-cycle pulse: run `command`
    abort      Out(1)   one-cycle pulse: the sequencer gave up on you (timeout); go idle
    command    Out(struct_layout())   the command, stable from start to done
    token, position, image_base   Out(32)   per-step registers, stable during a run
    done       In(1)    one-cycle pulse: finished (error/error_code valid with it)
    error      In(1), error_code In(8)   the command failed (an ErrorCode; 0 = UNIT_ERROR)
    stall      In(1)    this cycle the unit waits on memory (counted per class)
    bytes_read, bytes_written  In(16)   bytes moved on DRAM this cycle (counted)
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import Opcode, struct_layout

from .accel_regs import (ACCEL_REGMAP, COUNTER_CLASSES, DEFAULT_CONFIG, HW_ID, ErrorCode,
                         HardwareConfig, counter_name)
from .axi import check_bus_parameters, read_signature
from .axil import AxiLiteRegisters, axil_signature
from .command_fetch import CommandFetcher

__all__ = ["Sequencer", "UnitSignature", "DEFAULT_UNITS"]

#: Unit ports of the default build and the opcodes each one runs.
DEFAULT_UNITS: dict[str, tuple[Opcode, ...]] = {
    "embed": (Opcode.EMBED,),
    "matvec": (Opcode.MATVEC, Opcode.CLASSIFIER),
    "rmsnorm": (Opcode.RMSNORM,),
    "rope": (Opcode.ROPE,),
    "kv_write": (Opcode.KV_WRITE,),
    "attention": (Opcode.ATTENTION, Opcode.ATT_SCORES, Opcode.SOFTMAX, Opcode.ATT_SUM),
    "residual": (Opcode.RESIDUAL,),
    "swiglu": (Opcode.SWIGLU,),
}


class UnitSignature(wiring.Signature):
    """The start/done port between the sequencer (``Out`` side) and one operator unit."""

    def __init__(self):
        super().__init__({
            "start": Out(1), "abort": Out(1), "command": Out(struct_layout()),
            "token": Out(32), "position": Out(32), "image_base": Out(32),
            "done": In(1), "error": In(1), "error_code": In(8),
            "stall": In(1), "bytes_read": In(16), "bytes_written": In(16),
        })


class Sequencer(wiring.Component):
    """AXI4-Lite registers (:data:`~speedllm.hw.accel_regs.ACCEL_REGMAP`), command fetch
    and dispatch to operator units.

    Parameters
    ----------
    units : dict of str to tuple of Opcode
        Unit ports and the opcodes each runs (default :data:`DEFAULT_UNITS`). An opcode
        with no unit ends a run with ``NO_UNIT``.
    config : HardwareConfig
        Elaborated into the ``config_hash`` register.
    addr_width, data_width : int
        The command fetcher's AXI4 read port.
    axil_addr_width : int
        Decoded register address bits (default 12: a 4 KiB window).

    Ports
    -----
    s_axil : In(axil_signature(axil_addr_width))
        Registers (``s_axil__awaddr``, ...).
    m_axi : Out(read_signature(addr_width, data_width))
        Command fetch (``m_axi__araddr``, ...).
    units : Out(Signature({name: Out(UnitSignature())}))
        One port per unit (``units__matvec__start``, ...).
    irq : Out(1)
        ``control.irq_enable & status.done``.

    Latency and throughput
    ----------------------
    Between one command's ``done`` and the next command's ``start``: 2 cycles when the
    fetcher has read the next command ahead (it reads while the unit runs), else the
    fetch time (~``512 / data_width`` beats plus bus latency). A run's first command
    starts ~6 cycles plus one command fetch after ``control.start``.
    """

    def __init__(self, *, units: dict | None = None, config: HardwareConfig = DEFAULT_CONFIG,
                 addr_width: int = 32, data_width: int = 64, axil_addr_width: int = 12):
        units = dict(DEFAULT_UNITS if units is None else units)
        seen = {}
        for name, ops in units.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"unit name must be an identifier, not {name!r}")
            ops = tuple(Opcode(op) for op in ops)
            for op in ops:
                if op is Opcode.END:
                    raise ValueError(f"unit {name}: END is not a unit's opcode")
                if op in seen:
                    raise ValueError(f"opcode {op.name} is in units {seen[op]} and {name}")
                seen[op] = name
            units[name] = ops
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a HardwareConfig, not {config!r}")
        check_bus_parameters(addr_width, data_width)
        self._units = units
        self._config = config
        self._addr_width, self._data_width = addr_width, data_width
        self._axil_addr_width = axil_addr_width
        super().__init__({
            "s_axil": In(axil_signature(axil_addr_width)),
            "m_axi": Out(read_signature(addr_width, data_width)),
            "units": Out(wiring.Signature({n: Out(UnitSignature()) for n in units})),
            "irq": Out(1),
        })

    @property
    def unit_names(self):
        return tuple(self._units)

    @property
    def config(self):
        return self._config

    def unit_of(self, opcode) -> str | None:
        """The unit port that runs ``opcode`` (None: no unit)."""
        return next((n for n, ops in self._units.items() if Opcode(opcode) in ops), None)

    def elaborate(self, platform):
        m = Module()
        m.submodules.registers = registers = AxiLiteRegisters(
            ACCEL_REGMAP, addr_width=self._axil_addr_width)
        wiring.connect(m, wiring.flipped(self.s_axil), registers.s_axil)
        m.submodules.fetcher = fetcher = CommandFetcher(addr_width=self._addr_width,
                                                        data_width=self._data_width)
        wiring.connect(m, wiring.flipped(self.m_axi), fetcher.m_axi)
        regs = registers.regs
        ports = [getattr(self.units, n) for n in self._units]

        # State of a run.
        busy, error = Signal(), Signal()
        error_code, failing = Signal(8), Signal(32)
        command = Signal(struct_layout())
        unit = Signal(range(max(len(ports), 1) + 1))       # len(ports): no unit
        waiting = Signal(32)
        commands_done, total_cycles = Signal(32), Signal(32)
        bytes_read, bytes_written = Signal(32), Signal(32)
        n_classes = len(COUNTER_CLASSES)
        cycles = [Signal(32, name=f"cycles_{c}") for c in COUNTER_CLASSES]
        stalls = [Signal(32, name=f"stalls_{c}") for c in COUNTER_CLASSES]
        counting_class = Signal(range(n_classes))       # class of the current cycle
        stalled = Signal()

        # Registers: constants, status, counters.
        m.d.comb += [
            regs.hw_id.magic.eq(HW_ID >> 16), regs.hw_id.isa_version.eq((HW_ID >> 8) & 0xFF),
            regs.hw_id.format_version.eq(HW_ID & 0xFF),
            regs.config_hash.value.eq(self._config.hash()),
            regs.status.busy.eq(busy), regs.status.error.eq(error),
            regs.status.error_code.eq(error_code),
            regs.failing_command.value.eq(failing),
            regs.commands_done.value.eq(commands_done),
            regs.total_cycles.value.eq(total_cycles),
            regs.bytes_read.value.eq(bytes_read),
            regs.bytes_written.value.eq(bytes_written),
            self.irq.eq(regs.control.irq_enable & regs.status.done),
        ]
        for k, name in enumerate(COUNTER_CLASSES):
            m.d.comb += [getattr(regs, counter_name("cycles", k)).value.eq(cycles[k]),
                         getattr(regs, counter_name("stalls", k)).value.eq(stalls[k])]

        # Unit ports: the command and the per-step registers; start/abort pulses below.
        for port in ports:
            m.d.comb += [port.command.eq(command), port.token.eq(regs.token.value),
                         port.position.eq(regs.position.value),
                         port.image_base.eq(regs.image_base.value)]
        sel = Array(ports + [UnitSignature().create()])      # the extra one: no unit
        unit_of_opcode = Array(
            (list(self._units).index(self.unit_of(op)) if self.unit_of(op) else len(ports))
            for op in range(max(Opcode) + 1))
        m.d.comb += fetcher.program_addr.eq(regs.program_addr.value)
        m.d.comb += fetcher.timeout_cycles.eq(regs.timeout_cycles.value)
        timed_out = Signal()
        m.d.comb += timed_out.eq((regs.timeout_cycles.value != 0)
                                 & (waiting >= regs.timeout_cycles.value))

        # Counters: cycles of the current class, bytes of every unit, while busy.
        # One incrementer per counter: a shared adder behind a 13-way mux made the
        # critical path (91 MHz on ECP5-85).
        with m.If(busy):
            m.d.sync += total_cycles.eq(total_cycles + 1)
            for k in range(n_classes):
                with m.If(counting_class == k):
                    m.d.sync += cycles[k].eq(cycles[k] + 1)
                    with m.If(stalled):
                        m.d.sync += stalls[k].eq(stalls[k] + 1)
            read_sum = Mux(fetcher.read_beat, self._data_width // 8, 0)
            write_sum = 0
            for port in ports:
                read_sum, write_sum = read_sum + port.bytes_read, write_sum + port.bytes_written
            m.d.sync += [bytes_read.eq(bytes_read + read_sum),
                         bytes_written.eq(bytes_written + write_sum)]

        def clear_run():
            m.d.sync += [error.eq(0), error_code.eq(ErrorCode.NONE), failing.eq(0),
                         commands_done.eq(0), total_cycles.eq(0), bytes_read.eq(0),
                         bytes_written.eq(0)]
            m.d.sync += [c.eq(0) for c in cycles + stalls]

        def finish(code=None, index=None):
            m.d.comb += [regs.status.done_set.eq(1), fetcher.abort.eq(1)]
            m.d.sync += busy.eq(0)
            if code is not None:
                m.d.sync += [error.eq(1), error_code.eq(code), failing.eq(index)]
            m.next = "Idle"

        with m.FSM():
            with m.State("Idle"):
                with m.If(regs.control.start):
                    clear_run()
                    m.d.comb += fetcher.start.eq(1)
                    m.d.sync += busy.eq(1)
                    m.next = "Fetch"
                with m.Elif(regs.control.soft_reset):
                    clear_run()
            with m.State("Fetch"):
                m.d.comb += [fetcher.o.ready.eq(1), stalled.eq(fetcher.stall)]
                with m.If(fetcher.o.valid):
                    m.d.sync += [command.eq(fetcher.o.payload.command),
                                 failing.eq(fetcher.o.payload.index),
                                 unit.eq(unit_of_opcode[fetcher.o.payload.command.opcode])]
                    with m.If(fetcher.o.payload.command.opcode == Opcode.END):
                        finish()
                    with m.Else():
                        m.next = "Dispatch"
                with m.Elif(fetcher.error):
                    finish(fetcher.error_code, fetcher.error_index)
            with m.State("Dispatch"):
                m.d.comb += counting_class.eq(command.opcode)
                m.d.sync += waiting.eq(0)
                with m.If(unit == len(ports)):
                    finish(ErrorCode.NO_UNIT, failing)
                with m.Else():
                    m.d.comb += sel[unit].start.eq(1)
                    m.next = "Run"
            with m.State("Run"):
                m.d.comb += [counting_class.eq(command.opcode), stalled.eq(sel[unit].stall)]
                m.d.sync += waiting.eq(waiting + 1)
                with m.If(sel[unit].done):
                    with m.If(sel[unit].error):
                        finish(Mux(sel[unit].error_code != 0, sel[unit].error_code,
                                   ErrorCode.UNIT_ERROR), failing)
                    with m.Else():
                        m.d.sync += commands_done.eq(commands_done + 1)
                        m.next = "Fetch"
                with m.Elif(timed_out):
                    m.d.comb += sel[unit].abort.eq(1)
                    finish(ErrorCode.UNIT_TIMEOUT, failing)
        return m
