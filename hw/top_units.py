"""The non-matvec units of the accelerator top: embedding, attention, element-wise ops.

Each is a ``wiring.Component`` with a ``port`` (``In(UnitSignature())``) and the memory
slots it uses (:mod:`speedllm.hw.vector_io`); the top (:mod:`speedllm.hw.accel_top`)
shares the slots among units, one command at a time.

* :class:`EmbedUnit` (EMBED): row ``token`` of the W8 table (slots ``w``, ``s``) through an
  :class:`~speedllm.hw.embedding.EmbeddingFetch`, written as ACT to ``dst0`` (``wr0``).
  A token outside the table ends the command with ``UNIT_ERROR``.
* :class:`AttentionTopUnit` (ATTENTION): q from ``src0`` (``rd0``) into an
  :class:`~speedllm.hw.attention.AttentionUnit`, which reads K/V rows ``0..position`` on
  its own AXI4 port (``m_axi``); the output goes to ``dst0`` (X16 with ``DST_X16``). A
  command whose shape differs from the unit's, or a read error, ends with an error code.
* :class:`ElementwiseUnit` (RMSNORM, ROPE, RESIDUAL, SWIGLU, KV_WRITE): the unfused
  program's element-wise commands: operands from ``rd0``/``rd1``, results to ``wr0`` or
  (KV_WRITE) K/V cache rows to ``kv``.

Throughput: one element per cycle through each pipeline; latency the units' own plus a
few cycles of slot routing and the memory latency.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from speedllm.ops.isa import Flag, Opcode

from .accel_regs import ErrorCode
from .attention import AttentionUnit
from .axi import read_signature
from .embedding import EmbeddingFetch
from .kv_row_writer import KvRowWriter
from .residual import ResidualAdd
from .rmsnorm import RmsNormUnit
from .rope import RopeUnit
from .sequencer import UnitSignature
from .swiglu import SwiGluUnit
from .top_common import StreamSelect, act_space, issue_kv_rows, issue_once, running_flag
from .vector_io import (SPACE_DRAM, ReadSlotSignature, VectorReader, VectorWriter,
                        WriteSlotSignature)
from .x16_quantize import ActToX16

__all__ = ["EmbedUnit", "AttentionTopUnit", "ElementwiseUnit"]


def _output(m, writer, quant, src, x16):
    """``src`` (an ACT stream) -> ``writer``, through ``quant`` when ``x16``."""
    with m.If(x16):
        m.d.comb += [quant.i.valid.eq(src.valid), quant.i.payload.eq(src.payload),
                     src.ready.eq(quant.i.ready),
                     writer.i.valid.eq(quant.o.valid),
                     writer.i.payload.data.eq(quant.o.payload.data),
                     quant.o.ready.eq(writer.i.ready)]
    with m.Else():
        m.d.comb += [writer.i.valid.eq(src.valid), writer.i.payload.eq(src.payload),
                     src.ready.eq(writer.i.ready)]


class EmbedUnit(wiring.Component):
    """EMBED: ``dst0`` = dequantized row ``token`` (see the module docstring)."""

    def __init__(self, config):
        self._cfg = config
        super().__init__({"port": In(UnitSignature()), "w": Out(ReadSlotSignature()),
                          "s": Out(ReadSlotSignature()), "wr0": Out(WriteSlotSignature())})

    def elaborate(self, platform):
        m = Module()
        GS = self._cfg.group_size
        lanes = 8
        m.submodules.fetch = fetch = EmbeddingFetch(lanes=lanes, group_size=GS)
        m.submodules.s_reader = s_reader = VectorReader()
        m.submodules.writer = writer = VectorWriter()
        wiring.connect(m, s_reader.mem, wiring.flipped(self.s))
        wiring.connect(m, writer.mem, wiring.flipped(self.wr0))
        port, c = self.port, self.port.command
        running = running_flag(m, port)
        bad_token = port.token >= c.rows
        ng = (c.cols + GS - 1) >> (GS.bit_length() - 1)
        cp = ng << (GS.bit_length() - 1)
        go = running & ~bad_token

        w_issued = Signal()
        with m.If(port.start):
            m.d.sync += w_issued.eq(0)
        m.d.comb += [self.w.cmd.valid.eq(go & ~w_issued),
                     self.w.cmd.payload.addr.eq(c.w_addr + port.token * cp),
                     self.w.cmd.payload.beats.eq(cp >> 3),
                     self.w.cmd.payload.space.eq(SPACE_DRAM)]
        with m.If(self.w.cmd.valid & self.w.cmd.ready):
            m.d.sync += w_issued.eq(1)
        m.d.comb += [fetch.w.valid.eq(self.w.data.valid),
                     fetch.w.payload.data.eq(self.w.data.payload.data),
                     fetch.w.payload.first.eq(self.w.data.payload.first),
                     fetch.w.payload.last.eq(self.w.data.payload.last),
                     self.w.data.ready.eq(fetch.w.ready),
                     fetch.scale_exp.eq(c.scale_exp0)]
        issue_once(m, s_reader.cmd, port.start, go, addr=c.s_addr + port.token * (ng << 1),
                   space=SPACE_DRAM, count=ng, half=1)
        m.d.comb += [fetch.s.valid.eq(s_reader.o.valid),
                     fetch.s.payload.eq(s_reader.o.payload.data[:16]),
                     s_reader.o.ready.eq(fetch.s.ready)]
        w_taken = issue_once(m, writer.cmd, port.start, go, addr=c.dst0, space=act_space(c),
                             count=c.cols, half=0, name="out_issued")

        # 8 lanes a beat -> one element a cycle; padding columns are dropped.
        beat = Signal.like(fetch.o.payload.data)
        lane = Signal(range(lanes))
        have = Signal()
        col = Signal(16)
        with m.If(port.start):
            m.d.sync += [col.eq(0), have.eq(0), lane.eq(0)]
        m.d.comb += [writer.i.valid.eq(have & (col < c.cols)),
                     writer.i.payload.data.eq(beat[lane])]
        step = have & ((col >= c.cols) | writer.i.ready)
        with m.If(step):
            m.d.sync += [lane.eq(lane + 1), col.eq(col + 1)]
            with m.If(lane == lanes - 1):
                m.d.sync += have.eq(0)
        m.d.comb += fetch.o.ready.eq(~have | (step & (lane == lanes - 1)))
        with m.If(fetch.o.valid & fetch.o.ready):
            m.d.sync += [beat.eq(fetch.o.payload.data), have.eq(1)]

        done_ok = go & w_taken & (col >= cp) & writer.idle & ~s_reader.busy
        m.d.comb += [port.done.eq(done_ok | (running & bad_token)),
                     port.error.eq(bad_token),
                     port.error_code.eq(Mux(bad_token, ErrorCode.UNIT_ERROR, 0))]
        return m


class AttentionTopUnit(wiring.Component):
    """ATTENTION: ``dst0 = attention(q = src0, K/V rows 0..position)``."""

    def __init__(self, config):
        self._cfg = config
        self._att = AttentionUnit(head_size=config.head_size, n_heads=config.n_heads,
                                  n_kv_heads=config.n_kv_heads,
                                  max_seq_len=config.max_seq_len, beat_bits=64)
        super().__init__({"port": In(UnitSignature()), "rd0": Out(ReadSlotSignature()),
                          "wr0": Out(WriteSlotSignature()), "m_axi": Out(read_signature(32, 64))})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.att = att = self._att
        wiring.connect(m, att.m_axi, wiring.flipped(self.m_axi))
        m.submodules.q_reader = q_reader = VectorReader()
        m.submodules.writer = writer = VectorWriter()
        m.submodules.quant = quant = ActToX16(max_n=cfg.n_heads * cfg.head_size)
        wiring.connect(m, q_reader.mem, wiring.flipped(self.rd0))
        wiring.connect(m, writer.mem, wiring.flipped(self.wr0))
        port, c = self.port, self.port.command
        running = running_flag(m, port)
        shape_ok = ((c.head_size == cfg.head_size) & (c.n_heads == cfg.n_heads)
                    & (c.n_kv_heads == cfg.n_kv_heads) & (c.rows == cfg.n_heads * cfg.head_size)
                    & (c.kv_row_bytes == att.geometry["row_bytes"])
                    & (port.position < cfg.max_seq_len))
        go = running & shape_ok
        x16 = (c.flags & Flag.DST_X16) != 0
        m.d.comb += att.clear.eq(port.start)

        issued = Signal()
        with m.If(port.start):
            m.d.sync += issued.eq(0)
        m.d.comb += [att.cmd.valid.eq(go & ~issued), att.cmd.payload.pos.eq(port.position),
                     att.cmd.payload.k_base.eq(c.k_addr + port.image_base),
                     att.cmd.payload.v_base.eq(c.v_addr + port.image_base)]
        with m.If(att.cmd.valid & att.cmd.ready):
            m.d.sync += issued.eq(1)
        issue_once(m, q_reader.cmd, port.start, go, addr=c.src0, space=act_space(c),
                   count=c.rows, half=0, name="q_issued")
        m.d.comb += [att.q.valid.eq(q_reader.o.valid), att.q.payload.eq(q_reader.o.payload.data),
                     q_reader.o.ready.eq(att.q.ready)]
        taken = issue_once(m, writer.cmd, port.start, go, addr=c.dst0, space=act_space(c),
                           count=Mux(x16, c.rows + 2, c.rows), half=x16, name="out_issued")
        out_done = Signal()
        with m.If(port.start):
            m.d.sync += out_done.eq(0)
        with m.If(att.o.valid & att.o.ready & att.o.payload.last):
            m.d.sync += out_done.eq(1)
        _output(m, writer, quant, att.o, x16)

        finished = go & taken & out_done & writer.idle & ~q_reader.busy
        code = Mux(~shape_ok, ErrorCode.UNIT_ERROR,
                   Mux(att.timeout, ErrorCode.BUS_TIMEOUT, ErrorCode.AXI_READ))
        failed = ~shape_ok | att.error | att.timeout
        m.d.comb += [port.done.eq(finished | (running & ~shape_ok)),
                     port.error.eq(failed), port.error_code.eq(Mux(failed, code, 0))]
        return m


class ElementwiseUnit(wiring.Component):
    """RMSNORM, ROPE, RESIDUAL, SWIGLU and KV_WRITE (see the module docstring)."""

    def __init__(self, config):
        self._cfg = config
        super().__init__({"port": In(UnitSignature()),
                          "rd0": Out(ReadSlotSignature()), "rd1": Out(ReadSlotSignature()),
                          "wr0": Out(WriteSlotSignature()), "kv": Out(WriteSlotSignature())})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        max_n = max(cfg.max_dim, cfg.max_hidden_dim)
        m.submodules.r0 = r0 = VectorReader()
        m.submodules.r1 = r1 = VectorReader()
        m.submodules.writer = writer = VectorWriter()
        m.submodules.kv_writer = kv_writer = VectorWriter()
        m.submodules.norm = norm = RmsNormUnit(max_dim=max_n, output="act")
        m.submodules.rope = rope = RopeUnit(head_size=cfg.head_size, seq_len=cfg.max_seq_len)
        m.submodules.residual = residual = ResidualAdd()
        m.submodules.swiglu = swiglu = SwiGluUnit()
        m.submodules.kv_rows = kv_rows = KvRowWriter(cfg.n_kv_heads, cfg.head_size)
        m.submodules.quant = quant = ActToX16(max_n=max_n)
        m.submodules.result = result = StreamSelect(4)
        for reader, slot in ((r0, self.rd0), (r1, self.rd1)):
            wiring.connect(m, reader.mem, wiring.flipped(slot))
        wiring.connect(m, writer.mem, wiring.flipped(self.wr0))
        wiring.connect(m, kv_writer.mem, wiring.flipped(self.kv))
        port, c = self.port, self.port.command
        running = running_flag(m, port)
        op = c.opcode
        space = act_space(c)
        x16 = (c.flags & Flag.DST_X16) != 0
        is_kv = op == Opcode.KV_WRITE
        two = (op == Opcode.RESIDUAL) | (op == Opcode.SWIGLU) | is_kv
        issue_once(m, r0.cmd, port.start, running, addr=c.src0, space=space, count=c.rows,
                   half=0, name="r0_issued")
        issue_once(m, r1.cmd, port.start, running & (two | (op == Opcode.RMSNORM)),
                   addr=Mux(op == Opcode.RMSNORM, c.aux_addr, c.src1),
                   space=Mux(op == Opcode.RMSNORM, SPACE_DRAM, space), count=c.rows, half=0,
                   name="r1_issued")
        out_n = Mux(x16, c.rows + 2, c.rows)
        taken = issue_once(m, writer.cmd, port.start, running & ~is_kv, addr=c.dst0,
                           space=space, count=out_n, half=x16, name="out_issued")
        m.d.comb += rope.pos.eq(port.position)

        with m.Switch(op):
            with m.Case(Opcode.RMSNORM):
                wiring.connect(m, r0.o, norm.i)
                m.d.comb += [norm.g.valid.eq(r1.o.valid), norm.g.payload.eq(r1.o.payload.data),
                             r1.o.ready.eq(norm.g.ready), result.sel.eq(0)]
                wiring.connect(m, norm.o, result.i[0])
            with m.Case(Opcode.ROPE):
                wiring.connect(m, r0.o, rope.i)
                wiring.connect(m, rope.o, result.i[1])
                m.d.comb += result.sel.eq(1)
            with m.Case(Opcode.RESIDUAL):
                wiring.connect(m, r0.o, residual.x)
                wiring.connect(m, r1.o, residual.y)
                wiring.connect(m, residual.o, result.i[2])
                m.d.comb += result.sel.eq(2)
            with m.Case(Opcode.SWIGLU):
                # interleave h1 (rd0) and h3 (rd1) into pairs
                odd = Signal()
                with m.If(port.start):
                    m.d.sync += odd.eq(0)
                with m.If(~odd):
                    m.d.comb += [swiglu.i.valid.eq(r0.o.valid),
                                 swiglu.i.payload.data.eq(r0.o.payload.data),
                                 swiglu.i.payload.first.eq(r0.o.payload.first),
                                 r0.o.ready.eq(swiglu.i.ready)]
                with m.Else():
                    m.d.comb += [swiglu.i.valid.eq(r1.o.valid),
                                 swiglu.i.payload.data.eq(r1.o.payload.data),
                                 swiglu.i.payload.last.eq(r1.o.payload.last),
                                 r1.o.ready.eq(swiglu.i.ready)]
                with m.If(swiglu.i.valid & swiglu.i.ready):
                    m.d.sync += odd.eq(~odd)
                wiring.connect(m, swiglu.o, result.i[3])
                m.d.comb += result.sel.eq(3)
            with m.Case(Opcode.KV_WRITE):
                second = Signal()                        # the v row is streaming
                with m.If(port.start):
                    m.d.sync += second.eq(0)
                with m.If(~second):
                    wiring.connect(m, r0.o, kv_rows.i)
                    with m.If(r0.o.valid & r0.o.ready & r0.o.payload.last):
                        m.d.sync += second.eq(1)
                with m.Else():
                    wiring.connect(m, r1.o, kv_rows.i)
        _output(m, writer, quant, result.o, x16)

        kv_issued = issue_kv_rows(m, kv_writer, kv_rows.o, port.start, running & is_kv,
                                  k_addr=c.k_addr, v_addr=c.v_addr, position=port.position,
                                  row_bytes=c.kv_row_bytes)

        # Done: inputs drained, the output vector(s) handed over and landed.
        out_seen = Signal()
        with m.If(port.start):
            m.d.sync += out_seen.eq(0)
        with m.If(result.o.valid & result.o.ready & result.o.payload.last):
            m.d.sync += out_seen.eq(1)
        outputs = Mux(is_kv, kv_issued == 2, taken & out_seen)
        finished = (running & outputs & writer.idle & kv_writer.idle & ~r0.busy & ~r1.busy
                    & ~kv_rows.o.valid)
        m.d.comb += [port.done.eq(finished), port.error.eq(0)]
        return m
