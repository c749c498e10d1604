"""The accelerator top: one ``start`` runs a whole decode step, embedding to logits.

::

    s_axil ──► Sequencer (registers, command fetch on m_cmd, dispatch, counters)
                  │ unit ports (start/done, the command, token, position)
      ┌───────────┼──────────────┬──────────────────┐
    EmbedUnit   MatVecUnit   AttentionTopUnit   ElementwiseUnit
      │  slots (only the running unit drives them)    │
    read slots  rd0 rd1 w s ──► ReadRouter ──► AxiReadMaster (m_rd0, m_rd1, m_w, m_s)
                                   └──────► scratchpad read port (rd0, rd1)
    write slots wr0 kv ──► WriteRouter ──► AxiWriteMaster (m_wr0, m_kv)
                                   └──────► scratchpad write port (wr0)
    AttentionTopUnit's K/V reads ──► m_att

Command addresses are offsets into the DRAM image; the top adds ``image_base`` on the
way to the bus. The scratchpad is one bank of 64-bit words per read slot (``rd0`` and ``rd1`` each read
their own copy; ``wr0`` writes both), ``config.scratchpad_bytes`` bytes. Units and opcodes:
:data:`TOP_UNITS`; the split attention commands (ATT_SCORES, SOFTMAX, ATT_SUM) have no unit
in this build and end a run with ``NO_UNIT``.

Errors: an SLVERR/DECERR seen by any AXI master while a command runs ends that command
with ``AXI_READ``/``AXI_WRITE``; a master whose bus stops answering raises ``BUS_TIMEOUT``
(its own watchdog, ``bus_timeout_cycles``) and ends the command at once; a unit that never
finishes hits the sequencer's ``timeout_cycles`` (``UNIT_TIMEOUT``). After an error the
datapath may hold stale beats: reset the accelerator before the next run.

Ports: ``s_axil`` (AXI4-Lite, 4 KiB), AXI4 masters ``m_cmd``, ``m_rd0``, ``m_rd1``, ``m_w``,
``m_s``, ``m_att`` (read) and ``m_wr0``, ``m_kv`` (write), 64-bit data, 32-bit addresses;
``irq``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import Opcode

from .accel_regs import ACCEL_REGMAP, ErrorCode, HardwareConfig
from .axi import read_signature, write_signature
from .axi_read import AxiReadMaster
from .axi_write import AxiWriteMaster
from .axil import axil_signature
from .scratchpad import Scratchpad
from .sequencer import Sequencer
from .slot_router import ReadRouter, WriteRouter
from .top_matvec import MatVecUnit
from .top_units import AttentionTopUnit, ElementwiseUnit, EmbedUnit

__all__ = ["AcceleratorTop", "TOP_UNITS", "READ_SLOTS", "WRITE_SLOTS", "TOP_CONFIG"]

#: Unit ports of the top and the opcodes each runs.
TOP_UNITS: dict[str, tuple[Opcode, ...]] = {
    "embed": (Opcode.EMBED,),
    "matvec": (Opcode.MATVEC, Opcode.CLASSIFIER),
    "attention": (Opcode.ATTENTION,),
    "elementwise": (Opcode.RMSNORM, Opcode.ROPE, Opcode.RESIDUAL, Opcode.SWIGLU,
                    Opcode.KV_WRITE),
}
READ_SLOTS = ("rd0", "rd1", "w", "s")
WRITE_SLOTS = ("wr0", "kv")
SCRATCHPAD_SLOTS = ("rd0", "rd1")          # read slots with a scratchpad copy

#: The build for stories260K-shaped models (the default of the demo and the tests).
TOP_CONFIG = HardwareConfig(max_dim=512, max_hidden_dim=1024, max_rows=4096,
                            max_seq_len=512, max_heads=8, scratchpad_bytes=1 << 16,
                            head_size=8, n_heads=8, n_kv_heads=4)


class AcceleratorTop(wiring.Component):
    """The whole accelerator (see the module docstring).

    Parameters
    ----------
    config : HardwareConfig
        Dims the units are built for; its hash is the ``config_hash`` register.
    bus_timeout_cycles : int
        Cycles without an answer, with a transfer outstanding, after which a master gives up
        (``BUS_TIMEOUT``).
    """

    def __init__(self, config: HardwareConfig = TOP_CONFIG, *, bus_timeout_cycles: int = 1 << 16):
        self._cfg = config
        self._bus_timeout = bus_timeout_cycles
        self.regmap = ACCEL_REGMAP
        members = {"s_axil": In(axil_signature(12)), "m_cmd": Out(read_signature(32, 64)),
                   "m_att": Out(read_signature(32, 64)), "irq": Out(1)}
        for name in READ_SLOTS:
            members[f"m_{name}"] = Out(read_signature(32, 64))
        for name in WRITE_SLOTS:
            members[f"m_{name}"] = Out(write_signature(32, 64))
        super().__init__(members)

    @property
    def config(self) -> HardwareConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.seq = seq = Sequencer(units=TOP_UNITS, config=cfg)
        wiring.connect(m, wiring.flipped(self.s_axil), seq.s_axil)
        wiring.connect(m, seq.m_axi, wiring.flipped(self.m_cmd))
        m.d.comb += self.irq.eq(seq.irq)

        units = {"embed": EmbedUnit(cfg), "matvec": MatVecUnit(cfg),
                 "attention": AttentionTopUnit(cfg), "elementwise": ElementwiseUnit(cfg)}
        names = list(TOP_UNITS)
        for name in names:
            m.submodules[f"unit_{name}"] = units[name]
        wiring.connect(m, units["attention"].m_axi, wiring.flipped(self.m_att))

        # The running unit owns the slots.
        owner = Signal(range(len(names)))
        running = Signal()
        for k, name in enumerate(names):
            with m.If(getattr(seq.units, name).start):
                m.d.sync += [owner.eq(k), running.eq(1)]

        # Masters, routers and the scratchpad copies.
        depth = cfg.scratchpad_bytes // 8
        readers, writers = {}, {}
        for name in READ_SLOTS:
            master = AxiReadMaster(timeout_cycles=self._bus_timeout)
            router = ReadRouter(depth=depth)
            m.submodules[f"master_{name}"] = master
            m.submodules[f"router_{name}"] = router
            wiring.connect(m, master.m_axi, wiring.flipped(getattr(self, f"m_{name}")))
            _offset(m, router.dram_cmd, master.cmd, seq.units.embed.image_base)
            wiring.connect(m, master.data, router.dram_data)
            readers[name] = (master, router)
        for name in WRITE_SLOTS:
            master = AxiWriteMaster(timeout_cycles=self._bus_timeout)
            router = WriteRouter(depth=depth)
            m.submodules[f"master_{name}"] = master
            m.submodules[f"router_{name}"] = router
            wiring.connect(m, master.m_axi, wiring.flipped(getattr(self, f"m_{name}")))
            _offset(m, router.dram_cmd, master.cmd, seq.units.embed.image_base)
            wiring.connect(m, router.dram_data, master.data)
            m.d.comb += router.dram_busy.eq(master.busy)
            writers[name] = (master, router)
        sp_write = writers["wr0"][1].sp_w
        m.d.comb += sp_write.ready.eq(1)
        for name in SCRATCHPAD_SLOTS:
            pad = Scratchpad(banks=1, depth=depth, width=64)
            m.submodules[f"scratchpad_{name}"] = pad
            router = readers[name][1]
            wiring.connect(m, router.sp_cmd, pad.r_cmd)
            wiring.connect(m, pad.r_data, router.sp_data)
            m.d.comb += [pad.w.valid.eq(sp_write.valid), pad.w.payload.addr.eq(
                sp_write.payload.addr), pad.w.payload.data.eq(sp_write.payload.data)]

        # Slot multiplexing: unit slot `slot` of the owner <-> the router's slot.
        for slot in READ_SLOTS + WRITE_SLOTS:
            router = (readers.get(slot) or writers[slot])[1]
            users = [(k, getattr(units[n], slot)) for k, n in enumerate(names)
                     if slot in units[n].signature.members]
            with m.Switch(owner):
                for k, port in users:
                    with m.Case(k):
                        m.d.comb += [router.slot.cmd.valid.eq(port.cmd.valid & running),
                                     router.slot.cmd.payload.eq(port.cmd.payload),
                                     port.cmd.ready.eq(router.slot.cmd.ready & running)]
                        if slot in READ_SLOTS:
                            m.d.comb += [port.data.valid.eq(router.slot.data.valid),
                                         port.data.payload.eq(router.slot.data.payload),
                                         router.slot.data.ready.eq(port.data.ready)]
                        else:
                            m.d.comb += [router.slot.data.valid.eq(port.data.valid),
                                         router.slot.data.payload.eq(port.data.payload),
                                         port.data.ready.eq(router.slot.data.ready)]
            if slot in WRITE_SLOTS:
                for _, port in users:
                    m.d.comb += port.busy.eq(router.slot.busy)

        # Bus errors and byte counts, charged to the running unit.
        read_masters = [readers[n][0] for n in READ_SLOTS]
        write_masters = [writers[n][0] for n in WRITE_SLOTS]
        att = units["attention"]
        read_error = Signal()
        write_error = Signal()
        bus_timeout = Signal()
        m.d.comb += [read_error.eq(_any(x.error for x in read_masters)),
                     write_error.eq(_any(x.error for x in write_masters)),
                     bus_timeout.eq(_any(x.timeout for x in read_masters + write_masters))]
        read_bytes = _count(m, [self.m_rd0, self.m_rd1, self.m_w, self.m_s, self.m_att],
                            "r")
        write_bytes = _count(m, [self.m_wr0, self.m_kv], "w")
        bus_code = Mux(bus_timeout, ErrorCode.BUS_TIMEOUT,
                       Mux(read_error, ErrorCode.AXI_READ, ErrorCode.AXI_WRITE))
        bus_failed = bus_timeout | read_error | write_error
        any_start = Signal()
        m.d.comb += any_start.eq(_any(getattr(seq.units, n).start for n in names))
        for k, name in enumerate(names):
            port = getattr(seq.units, name)
            unit = units[name].port
            mine = running & (owner == k)
            m.d.comb += [unit.start.eq(port.start), unit.abort.eq(port.abort),
                         unit.command.eq(port.command), unit.token.eq(port.token),
                         unit.position.eq(port.position), unit.image_base.eq(port.image_base)]
            # A bus timeout ends the command at once; other bus errors at its done.
            ends = unit.done | (mine & bus_timeout)
            m.d.comb += [port.done.eq(ends),
                         port.error.eq(unit.error | (mine & bus_failed)),
                         port.error_code.eq(Mux(unit.error & (unit.error_code != 0),
                                                unit.error_code, bus_code)),
                         port.bytes_read.eq(Mux(mine, read_bytes, 0)),
                         port.bytes_written.eq(Mux(mine, write_bytes, 0))]
            with m.If(port.done | port.abort):
                m.d.sync += running.eq(0)
        # Sticky master flags are cleared when a run's first command starts... and at
        # every start: each command reports only its own errors.
        for master in read_masters + write_masters:
            m.d.comb += master.clear.eq(any_start)
        return m


def _offset(m, src, dst, base):
    """``src`` -> ``dst`` (transfer command streams) with ``base`` added to the address:
    commands hold image offsets, the bus wants physical addresses."""
    m.d.comb += [dst.valid.eq(src.valid), dst.payload.addr.eq(src.payload.addr + base),
                 dst.payload.beats.eq(src.payload.beats), src.ready.eq(dst.ready)]


def _any(signals):
    out = 0
    for s in signals:
        out = out | s
    return out


def _count(m, buses, channel):
    """Bytes moved this cycle on the R (``"r"``) or W (``"w"``) channels of ``buses``."""
    total = 0
    for bus in buses:
        beat = getattr(bus, f"{channel}valid") & getattr(bus, f"{channel}ready")
        total = total + Mux(beat, 8, 0)
    out = Signal(16)
    m.d.comb += out.eq(total)
    return out
