"""KV-cache row writer of the accelerator top: one k (or v) ACT row in, its cache bytes out.

Golden: ``st = intops.kv_store(row, n_kv_heads, 16)`` (a block exponent per kv head, the
rule of ``formats.block_exponents``; mantissas ``sat16(round_shift(x, e_head))``) laid out
by ``dram_format.kv_rows_bytes(KvStore(st.mant[None], st.exp[None]), 16, row_bytes)``: the
``n_kv_heads`` exponent bytes, zeros up to ``row_bytes - mant_bytes``, then the int16
mantissas, kv head major. The output is that byte string as little-endian 16-bit words
(:func:`speedllm.hw.x16_quantize.word16_layout`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats
from speedllm.ops import dram_format

from .tables import ACT_SHAPE, act_packet_layout, check_positive_int
from .x16_quantize import (FOLD_BITS, PRE_SHAPE, block_exponent, fold_magnitude, quantize_post,
                           quantize_pre, word16_layout)

__all__ = ["KvRowWriter"]

KV_BITS = 16                               # the only mantissa width this writer makes
EXP_BYTE = dram_format.KV_EXP_BITS         # one exponent byte per kv head


class KvRowWriter(wiring.Component):
    """One KV row per packet in, its bytes (``dram_format.kv_rows_bytes``) out as words.

    The row (``kv_dim = n_kv_heads * head_size`` ACT values, kv head major) is held in a
    ``kv_dim``-word buffer (``lib.memory.Memory``), because the exponents go out first:

    1. *Load*: take ``i`` into the buffer, OR-folding ``x ^ (x >> 31)`` per kv head; at
       each head's end the fold becomes that head's exponent (:func:`block_exponent` with
       16-bit mantissas, one cycle later), shifted into two byte-wide shift registers.
    2. *Emit*: ``(row_bytes - mant_bytes) / 2`` exponent words (two heads per word, low
       byte first, zeros past the last head), then ``kv_dim`` mantissa words
       ``sat16(round_shift(x, e_head))`` through the four-register pipeline of
       :class:`~speedllm.hw.x16_quantize.ActToX16` (stalls as a whole on ``o``
       backpressure). ``i`` is not ready again until the final word has been taken.

    Parameters
    ----------
    n_kv_heads, head_size : int
        The row's shape (stories260K: 4 x 8).
    kv_bits : int
        Mantissa width; only 16 is built (anything else raises ``ValueError``). The
        ``kv_frac`` fixed-point mode of ``intops.kv_store`` is not built either.
    row_bytes : int, optional
        Bytes of one cache row. Default: the compiler's
        ``dram_format.kv_row_geometry(n_kv_heads, head_size, 16, beat_bytes)["row_bytes"]``
        (exponents padded to a whole beat; that function raises ``ValueError`` when the
        mantissas do not fill whole beats: give ``row_bytes`` then). An explicit value must
        be even and leave at least ``n_kv_heads`` exponent bytes before the mantissas.
    beat_bytes : int
        Bus beat used for the default ``row_bytes`` (8, the 64-bit AXI bus).

    Ports
    -----
    i : In(stream), payload ``act_packet_layout(1)``
        The row, one int32 per beat. The row ends after ``kv_dim`` beats (counted; ``last``
        is expected on the final beat and ``first`` on the first, neither is checked).
    o : Out(stream), payload ``word16_layout()``
        ``row_bytes / 2`` words, ``first`` on the first and ``last`` on the final one.

    Latency and throughput
    ----------------------
    ``kv_dim`` cycles to load, then the first word is offered 6 cycles after the final
    input beat was taken; one word per cycle while ``o.ready`` stays high: with no stalls a
    row takes ``kv_dim + row_bytes / 2 + 5`` cycles from its first beat to its final word,
    and the next row's first beat is taken in the following cycle (stories260K: a row every
    32 + 36 + 5 = 73 cycles; ``tb_kv_row_writer.test_latency`` measures them).
    """

    def __init__(self, n_kv_heads: int, head_size: int, kv_bits: int = KV_BITS,
                 row_bytes: int | None = None, *,
                 beat_bytes: int = dram_format.DEFAULT_BEAT_BYTES):
        self._n_kv_heads = check_positive_int("n_kv_heads", n_kv_heads)
        self._head_size = check_positive_int("head_size", head_size)
        if kv_bits != KV_BITS:
            raise ValueError(f"kv_bits must be {KV_BITS} (the only width built), not {kv_bits!r}")
        mant_bytes = n_kv_heads * head_size * KV_BITS // 8
        if row_bytes is None:
            check_positive_int("beat_bytes", beat_bytes)
            row_bytes = dram_format.kv_row_geometry(n_kv_heads, head_size, KV_BITS,
                                                    beat_bytes)["row_bytes"]
        check_positive_int("row_bytes", row_bytes)
        if row_bytes % 2:
            raise ValueError(f"row_bytes must be even (whole 16-bit words), not {row_bytes}")
        if row_bytes - mant_bytes < n_kv_heads:
            raise ValueError(f"row_bytes {row_bytes} leaves no room for {n_kv_heads} exponent "
                             f"bytes before {mant_bytes} mantissa bytes")
        self._row_bytes = row_bytes
        super().__init__({
            "i": In(stream.Signature(act_packet_layout(1))),
            "o": Out(stream.Signature(word16_layout())),
        })

    @property
    def n_kv_heads(self) -> int:
        return self._n_kv_heads

    @property
    def head_size(self) -> int:
        return self._head_size

    @property
    def kv_dim(self) -> int:
        return self._n_kv_heads * self._head_size

    @property
    def row_bytes(self) -> int:
        return self._row_bytes

    @property
    def exp_words(self) -> int:
        """Words of the exponent area (exponent bytes and their zero padding)."""
        return (self._row_bytes - self.kv_dim * KV_BITS // 8) // 2

    def elaborate(self, platform):
        m = Module()
        heads, head_size, kv_dim = self._n_kv_heads, self._head_size, self.kv_dim
        exp_words, total = self.exp_words, self._row_bytes // 2
        m.submodules.buffer = buffer = Memory(shape=ACT_SHAPE, depth=kv_dim, init=[])
        wp = buffer.write_port()
        rp = buffer.read_port()

        n = Signal(range(kv_dim))               # load address
        elem = Signal(range(head_size))         # position inside the current head
        fold = Signal(FOLD_BITS)
        head_fold = Signal(FOLD_BITS)           # a finished head's fold ...
        head_done = Signal()                    # ... turned into its exponent next cycle
        # Exponents, head 0 in the low byte: one copy shifts out two bytes per exponent
        # word, the other one byte per head during the mantissas.
        exps_words = Signal(EXP_BYTE * heads)
        exps_heads = Signal(EXP_BYTE * heads)
        words = Signal(range(total + 1))        # words issued into the pipeline
        addr = Signal(range(kv_dim + 1))        # buffer read address
        e_bits = formats.X_BITS.bit_length()    # exponents are 0..16
        # Pipeline: issue -> t1 (buffer read) -> t2 (buffer output registered) -> t3
        # (x >> (e - 1)) -> o (round, saturate; or the exponent word).
        tag = data.StructLayout({"valid": 1, "mant": 1, "word": 16, "e": e_bits,
                                 "first": 1, "last": 1})
        t1, t2, t3 = Signal(tag), Signal(tag), Signal(tag)
        x_r = Signal(ACT_SHAPE)
        pre = Signal(PRE_SHAPE)

        advance = ~self.o.valid | self.o.ready
        m.d.comb += [wp.addr.eq(n), wp.data.eq(self.i.payload.data),
                     rp.addr.eq(addr), rp.en.eq(advance)]

        with m.If(head_done):
            e_head = block_exponent(head_fold, KV_BITS)
            top = EXP_BYTE * (heads - 1)
            m.d.sync += [exps_words.eq((exps_words >> EXP_BYTE) | (e_head << top)),
                         exps_heads.eq((exps_heads >> EXP_BYTE) | (e_head << top))]
        m.d.sync += head_done.eq(0)

        with m.FSM(init="Load"):
            with m.State("Load"):
                m.d.comb += [self.i.ready.eq(1), wp.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    folded = fold | fold_magnitude(self.i.payload.data)
                    m.d.sync += [n.eq(n + 1), elem.eq(elem + 1), fold.eq(folded)]
                    with m.If(elem == head_size - 1):
                        m.d.sync += [elem.eq(0), fold.eq(0), head_fold.eq(folded),
                                     head_done.eq(1)]
                    with m.If(n == kv_dim - 1):
                        m.d.sync += n.eq(0)
                        m.next = "Exponent"
            with m.State("Exponent"):
                # The last head's exponent lands at the end of this cycle.
                m.d.sync += [words.eq(0), addr.eq(0)]
                m.next = "Emit"
            with m.State("Emit"):
                issue = words != total
                is_mant = words >= exp_words
                with m.If(advance):
                    with m.If(issue):
                        m.d.sync += words.eq(words + 1)
                        with m.If(is_mant):
                            m.d.sync += [addr.eq(addr + 1), elem.eq(elem + 1)]
                            with m.If(elem == head_size - 1):
                                m.d.sync += [elem.eq(0),
                                             exps_heads.eq(exps_heads >> EXP_BYTE)]
                        with m.Else():
                            m.d.sync += exps_words.eq(exps_words >> 16)
                    m.d.sync += [
                        t1.valid.eq(issue), t1.mant.eq(is_mant), t1.word.eq(exps_words[:16]),
                        t1.e.eq(exps_heads[:e_bits]),
                        t1.first.eq(words == 0), t1.last.eq(words == total - 1),
                        t2.eq(t1), x_r.eq(rp.data),
                        t3.eq(t2), pre.eq(quantize_pre(x_r, t2.e)),
                        self.o.valid.eq(t3.valid),
                        self.o.payload.data.eq(Mux(t3.mant, quantize_post(pre).as_unsigned(),
                                                   t3.word)),
                        self.o.payload.first.eq(t3.first), self.o.payload.last.eq(t3.last),
                    ]
                with m.If(self.o.valid & self.o.ready & self.o.payload.last):
                    m.d.sync += [t1.eq(0), t2.eq(0), t3.eq(0)]
                    m.next = "Load"
        return m
