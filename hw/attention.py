"""The attention unit: K/V rows read from the DRAM KV cache, scores, softmax, weighted V sum.

* :class:`~speedllm.hw.attention_core.AttentionCore` does the arithmetic on streamed rows
  (bit for bit ``speedllm.golden.intops.attention``).
* :class:`AttentionUnit` wraps the core with an AXI4 read master
  (:class:`~speedllm.hw.axi_read.AxiReadMaster`) that streams the K and V rows of one layer
  from the DRAM KV cache.
* :func:`kv_cache_image` lays out a ``KvStore`` the way the core reads it (the DRAM format
  of a layer's K or V cache, which the program compiler and the KV-cache writer follow).
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats
from speedllm.hw import attention_math as am
from speedllm.hw.attention_core import AttentionCore, kv_row_geometry
from speedllm.hw.axi import read_signature
from speedllm.hw.axi_read import AxiReadMaster

__all__ = ["AttentionCore", "AttentionUnit", "kv_cache_image", "kv_row_geometry",
           "unit_command_layout"]


def unit_command_layout(max_seq_len: int, addr_width: int = 32) -> data.StructLayout:
    """``{pos, k_base, v_base}``: the position and the byte addresses of row 0 of this
    layer's K cache and V cache (rows in :func:`kv_cache_image` format, beat aligned)."""
    return data.StructLayout({"pos": range(max_seq_len), "k_base": addr_width,
                              "v_base": addr_width})


class AttentionUnit(wiring.Component):
    """Attention of one layer at one position, K/V rows read from DRAM over AXI4.

    A command ``{pos, k_base, v_base}`` makes the read master fetch K rows ``0..pos``
    (``(pos + 1) * row_beats`` beats from ``k_base``, one command) and then V rows
    ``0..pos`` from ``v_base``; both reads are queued at once, so V data streams in right
    behind K (the core's ``kv`` backpressure holds it in the read master's FIFO and, beyond
    it, on the R channel). The core computes ``intops.attention`` bit for bit.

    Parameters
    ----------
    head_size, n_heads, n_kv_heads, max_seq_len, lanes, kv_bits
        As :class:`~speedllm.hw.attention_core.AttentionCore`.
    beat_bits : int
        AXI data width (default 64).
    addr_width : int
        AXI address width (default 32).
    max_outstanding : int
        Read bursts in flight (default 4).

    Ports
    -----
    cmd : In(stream(unit_command_layout(max_seq_len, addr_width)))
        One attention call; taken when the previous call's reads have been issued (the
        core is started first, then the K and V reads are queued).
    q : In(stream(signed(32)))
        The ``n_heads * head_size`` ACT values of q, after ``cmd`` (as the core).
    o : Out(stream)
        ``{data, first, last}``: the ACT outputs (as the core).
    m_axi : Out(read_signature(addr_width, beat_bits))
        AXI4 AR/R channels (flattened ``m_axi__ar*``, ``m_axi__r*``).
    error : Out(1), error_resp : Out(2), timeout : Out(1)
        Sticky read-master status (an RRESP other than OKAY; no R data for a long time).
        A failed read still delivers its beats (zeros), so the call completes with
        meaningless values and the host must check ``error``. ``clear`` : In(1) resets them.

    Latency and throughput
    ----------------------
    The core's, plus the DRAM latency of the first K beat. With the bus delivering one
    beat per cycle, each pass is bound by the core (``n_heads * head_size / lanes`` cycles
    per row) when ``kv_mul > 1`` or ``lanes`` is less than the elements per beat, else by
    the bus (``row_beats`` cycles per row).
    """

    def __init__(self, *, head_size: int, n_heads: int, n_kv_heads: int, max_seq_len: int,
                 beat_bits: int = 64, lanes: int | None = None,
                 kv_bits: int = formats.DEFAULT_KV_BITS, addr_width: int = 32,
                 max_outstanding: int = 4):
        self._core = AttentionCore(head_size=head_size, n_heads=n_heads,
                                   n_kv_heads=n_kv_heads, max_seq_len=max_seq_len,
                                   beat_bits=beat_bits, lanes=lanes, kv_bits=kv_bits)
        self._reader = AxiReadMaster(addr_width=addr_width, data_width=beat_bits,
                                     max_outstanding=max_outstanding)
        self._max_seq_len = max_seq_len
        self._addr_width = addr_width
        super().__init__({
            "cmd": In(stream.Signature(unit_command_layout(max_seq_len, addr_width))),
            "q": In(stream.Signature(signed(am.ACT_BITS))),
            "o": Out(stream.Signature(data.StructLayout(
                {"data": signed(am.ACT_BITS), "first": 1, "last": 1}))),
            "m_axi": Out(read_signature(addr_width, beat_bits)),
            "error": Out(1),
            "error_resp": Out(2),
            "timeout": Out(1),
            "clear": In(1),
        })

    @property
    def core(self) -> AttentionCore:
        return self._core

    @property
    def geometry(self) -> dict:
        return self._core.geometry

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.reader = reader = self._reader
        wiring.connect(m, wiring.flipped(self.m_axi), reader.m_axi)
        wiring.connect(m, wiring.flipped(self.q), core.q)
        wiring.connect(m, core.o, wiring.flipped(self.o))
        m.d.comb += [
            core.kv.payload.eq(reader.data.payload.data),
            core.kv.valid.eq(reader.data.valid),
            reader.data.ready.eq(core.kv.ready),
            self.error.eq(reader.error),
            self.error_resp.eq(reader.error_resp),
            self.timeout.eq(reader.timeout),
            reader.clear.eq(self.clear),
        ]
        row_beats = self._core.geometry["row_beats"]
        pos = Signal(range(self._max_seq_len))
        v_base = Signal(self._addr_width)
        beats = Signal(len(reader.cmd.payload.beats))
        # The core gets its command first: the read master may hold off the V read until
        # the K data drains, and only a started core drains it.
        with m.FSM():
            with m.State("Idle"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [pos.eq(self.cmd.payload.pos),
                                 v_base.eq(self.cmd.payload.v_base),
                                 reader.cmd.payload.addr.eq(self.cmd.payload.k_base),
                                 beats.eq((self.cmd.payload.pos + 1) * row_beats)]
                    m.next = "Start"
            with m.State("Start"):
                m.d.comb += [core.cmd.valid.eq(1), core.cmd.payload.pos.eq(pos)]
                with m.If(core.cmd.ready):
                    m.next = "ReadK"
            with m.State("ReadK"):
                m.d.comb += [reader.cmd.valid.eq(1), reader.cmd.payload.beats.eq(beats)]
                with m.If(reader.cmd.ready):
                    m.d.sync += reader.cmd.payload.addr.eq(v_base)
                    m.next = "ReadV"
            with m.State("ReadV"):
                m.d.comb += [reader.cmd.valid.eq(1), reader.cmd.payload.beats.eq(beats)]
                with m.If(reader.cmd.ready):
                    m.next = "Idle"
        return m


def kv_cache_image(mant, exp, *, beat_bits: int = 64,
                   kv_bits: int = formats.DEFAULT_KV_BITS) -> bytes:
    """Bytes of KV cache rows in the attention unit's format.

    Parameters
    ----------
    mant : int array ``[T, n_kv_heads, head_size]``
        ``KvStore.mant`` (each value within ``kv_bits`` signed bits).
    exp : int array ``[T, n_kv_heads]``
        ``KvStore.exp`` (each in ``0..255``).

    Returns
    -------
    bytes
        ``T`` rows of ``kv_row_geometry(...)["row_bytes"]`` bytes: the exponent beat(s)
        (one byte per kv head, zero padded to whole beats), then the mantissas,
        little-endian ``kv_bits``-bit two's complement, kv head major.
    """
    mant = np.asarray(mant, dtype=np.int64)
    exp = np.asarray(exp, dtype=np.int64)
    T, G, hs = mant.shape
    if exp.shape != (T, G):
        raise ValueError(f"exp has shape {exp.shape}, expected {(T, G)}")
    lo, hi = -(1 << (kv_bits - 1)), (1 << (kv_bits - 1)) - 1
    if mant.size and (mant.min() < lo or mant.max() > hi):
        raise ValueError(f"KV mantissas must fit in {kv_bits} signed bits")
    if exp.size and (exp.min() < 0 or exp.max() >= 1 << am.KV_EXP_FIELD_BITS):
        raise ValueError("KV exponents must be in 0..255")
    geo = kv_row_geometry(G, hs, kv_bits, beat_bits)
    beat_bytes = beat_bits // 8
    rows = []
    for t in range(T):
        head = bytes(int(e) for e in exp[t]).ljust(geo["exp_beats"] * beat_bytes, b"\0")
        bits = 0
        for i, v in enumerate(mant[t].reshape(-1)):
            bits |= (int(v) & ((1 << kv_bits) - 1)) << (i * kv_bits)
        body = bits.to_bytes(geo["mant_beats"] * beat_bytes, "little")
        rows.append(head + body)
    return b"".join(rows)


def cycle_estimate(pos: int, *, head_size: int, n_heads: int, n_kv_heads: int,
                   max_seq_len: int, beat_bits: int = 64,
                   kv_bits: int = formats.DEFAULT_KV_BITS, lanes: int | None = None) -> int:
    """Cycles of one :class:`AttentionCore` call with its inputs ready and ``o`` always
    ready (the analytical model the cycle test checks the RTL against).

    ``dim`` cycles of q intake, two passes of ``(pos + 1) * (dim / lanes + exp_beats)``
    cycles, then the reciprocals (``RECIP_BITS + 5`` cycles per head, one head at a time)
    overlapped with the output (one value per cycle), plus pipeline fill and drain.
    """
    geo = kv_row_geometry(n_kv_heads, head_size, kv_bits, beat_bits)
    lanes = lanes or beat_bits // kv_bits
    dim = n_heads * head_size
    per_row = dim // lanes + geo["exp_beats"]
    recip = am.RECIP_BITS + 5
    output = (n_heads - 1) * max(recip, head_size) + recip + head_size
    return dim + 2 * (pos + 1) * per_row + output + _FIXED_CYCLES


_FIXED_CYCLES = 33         # pipeline fill/drain and handshakes (measured: 32-33 cycles)
