"""AXI4-Lite slave serving a :class:`speedllm.hw.csr.RegisterMap`.

The bus port ``s_axil`` flattens to ``s_axil__awaddr``, ``s_axil__wdata``, ...
(cocotbext-axi: ``AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__")``); the
register fields are ``regs__<register>__<field>`` (see :mod:`speedllm.hw.csr` for their
directions).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import RESP_OKAY, RESP_SLVERR
from .csr import WIDTH, RegisterMap

__all__ = ["AxiLiteRegisters", "axil_signature"]


def axil_signature(addr_width=16, data_width=32) -> wiring.Signature:
    """AXI4-Lite, master side (a slave port is ``In(axil_signature(...))``)."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


class AxiLiteRegisters(wiring.Component):
    """A 32-bit AXI4-Lite register file generated from a register map.

    Parameters
    ----------
    regmap : RegisterMap
        The registers; the map's offsets are the bus addresses (bits ``addr_width`` and
        up are not decoded, so the map repeats every ``2**addr_width`` bytes).
    addr_width : int
        Decoded address bits (default 16: a 64 KiB window).

    Ports
    -----
    s_axil : In(axil_signature(addr_width))
        The bus. Addresses are word addresses times 4 (bits 1:0 ignored). An address with
        no register answers SLVERR (reads return 0; writes change nothing). Byte strobes
        apply to ``rw``, ``w1c`` and ``w1p`` fields.
    regs : Out(regmap.signature())
        One member per register and field (``regs.<reg>.<field>``).

    Latency and throughput
    ----------------------
    AW and W are accepted independently (each is held until the other arrives); the write
    takes effect, and B is offered, the cycle after both are held: one write per 2 cycles
    at best (3 while B waits for ``bready``). A read answers one cycle after AR (``rdata``
    registered), one read per 2 cycles. ``rw``/``w1c`` outputs change the cycle after the
    write; ``w1p`` pulses last that one cycle.
    """

    def __init__(self, regmap: RegisterMap, *, addr_width: int = 16):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        if len(regmap) == 0:
            raise ValueError("regmap has no registers")
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 32:
            raise ValueError(f"addr_width must be in 3..32, not {addr_width!r}")
        if regmap.size > (1 << addr_width):
            raise ValueError(f"the register map spans {regmap.size} bytes, more than "
                             f"addr_width={addr_width} decodes")
        self._regmap = regmap
        self._addr_width = addr_width
        super().__init__({
            "s_axil": In(axil_signature(addr_width)),
            "regs": Out(regmap.signature()),
        })

    @property
    def regmap(self):
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        words = {offset >> 2: (name, reg) for name, offset, reg in self._regmap}

        # Write path: AW and W held separately until both are there and B is free.
        aw_held, w_held = Signal(), Signal()
        aw_word = Signal(self._addr_width - 2)
        w_data, w_strb = Signal(WIDTH), Signal(WIDTH // 8)
        m.d.comb += [bus.awready.eq(~aw_held), bus.wready.eq(~w_held)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_held.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        do_write = Signal()
        m.d.comb += do_write.eq(aw_held & w_held & ~bus.bvalid)
        with m.If(do_write):
            m.d.sync += [aw_held.eq(0), w_held.eq(0), bus.bvalid.eq(1),
                         bus.bresp.eq(RESP_SLVERR)]
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        bit_mask = Signal(WIDTH)    # byte strobes spread to bits
        m.d.comb += bit_mask.eq(Cat(*[strobe.replicate(8) for strobe in w_strb]))
        written = Signal(WIDTH)     # bits written as 1 (for w1c/w1p)
        m.d.comb += written.eq(w_data & bit_mask)

        for word, (name, reg) in words.items():
            port = getattr(self.regs, name)
            hit = Signal(name=f"{name}_write")
            m.d.comb += hit.eq(do_write & (aw_word == word))
            with m.If(hit):
                m.d.sync += bus.bresp.eq(RESP_OKAY)
            for fname, f in reg.fields.items():
                sl = slice(f.offset, f.offset + f.width)
                value = getattr(port, fname)
                if f.access == "rw":
                    with m.If(hit):
                        m.d.sync += value.eq((value & ~bit_mask[sl]) | (w_data[sl] & bit_mask[sl]))
                elif f.access == "w1c":
                    cleared = Signal(f.width, name=f"{name}_{fname}_clear")
                    m.d.comb += cleared.eq(Const(0, f.width))
                    with m.If(hit):
                        m.d.comb += cleared.eq(written[sl])
                    m.d.sync += value.eq((value & ~cleared) | getattr(port, fname + "_set"))
                elif f.access == "w1p":
                    m.d.sync += value.eq(0)
                    with m.If(hit):
                        m.d.sync += value.eq(written[sl])

        # Read path: one read at a time, data registered.
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(RESP_SLVERR), bus.rdata.eq(0)]
            with m.Switch(bus.araddr[2:]):
                for word, (name, reg) in words.items():
                    with m.Case(word):
                        port = getattr(self.regs, name)
                        value = 0
                        for fname, f in reg.fields.items():
                            if f.access != "w1p":
                                value = value | (getattr(port, fname) << f.offset)
                        m.d.sync += [bus.rdata.eq(value), bus.rresp.eq(RESP_OKAY)]
        with m.Elif(bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
