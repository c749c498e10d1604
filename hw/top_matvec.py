"""The MATVEC / CLASSIFIER unit of the accelerator top: prologue, engine, epilogues.

One command runs ``dst0 = epilogue(W @ x)`` (:mod:`speedllm.ops.isa`):

* **x**: with ``NORM_PROLOGUE``, the ACT vector at ``src0`` and the gains at ``aux_addr``
  go through an :class:`~speedllm.hw.rmsnorm.RmsNormUnit` (``output="x16"``) straight into
  the engine's activation buffer; otherwise the X16 vector at ``src0`` is loaded
  (``cols`` mantissas, then its block exponent).
* **weights**: one read of ``rows * padded_cols`` bytes at ``w_addr`` (slot ``w``) and one
  of the ``rows * n_groups`` scale mantissas at ``s_addr`` (slot ``s``), streamed while the
  engine runs. Engine commands: one per matrix part (``ROPE_KV``: q, k, v with their own
  scale exponents), or one per row (``SWIGLU_PAIR``: W1/W3 rows interleaved, exponents
  alternating). The weight and scale streams run on across engine commands.
* **epilogue** (on the engine's row results): ``NONE``; ``RESIDUAL`` (+ the ACT vector at
  ``src1``, slot ``rd1``); ``SWIGLU_PAIR`` (:class:`~speedllm.hw.swiglu.SwiGluUnit`);
  ``ROPE_KV`` (q and k through a :class:`~speedllm.hw.rope.RopeUnit` at ``position``, q to
  ``dst0``, k and v rows through a :class:`~speedllm.hw.kv_row_writer.KvRowWriter` to K/V
  cache row ``position``, slot ``kv``). ``DST_X16`` results pass an
  :class:`~speedllm.hw.x16_quantize.ActToX16` first. ``CLASSIFIER`` writes ``dst0`` in DRAM.

Ports: ``port`` (``In(UnitSignature())``), read slots ``rd0``, ``rd1``, ``w``, ``s``, write
slots ``wr0``, ``kv``. Throughput: the engine's (``L`` weights a cycle); the prologue and
the ``DST_X16`` pass add about ``4 cols`` and ``2 rows`` cycles.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from speedllm.golden import formats
from speedllm.ops.isa import Epilogue, Flag, Opcode

from .kv_row_writer import KvRowWriter
from .matvec import MatVecEngine
from .residual import ResidualAdd
from .rmsnorm import RmsNormUnit
from .rope import RopeUnit
from .sequencer import UnitSignature
from .swiglu import SwiGluUnit
from .top_common import StreamSelect, act_space, issue_kv_rows, issue_once, running_flag
from .vector_io import (SPACE_DRAM, ReadSlotSignature, VectorReader, VectorWriter,
                        WriteSlotSignature)
from .x16_quantize import ActToX16

__all__ = ["MatVecUnit"]


class MatVecUnit(wiring.Component):
    """Runs MATVEC and CLASSIFIER commands (see the module docstring).

    Parameters
    ----------
    config : HardwareConfig
        ``lanes``, ``group_size``, ``max_dim``/``max_hidden_dim``/``max_rows`` (engine and
        buffers), ``head_size``/``n_kv_heads``/``max_seq_len`` (RoPE ROM, KV rows).
    """

    def __init__(self, config):
        self._cfg = config
        super().__init__({
            "port": In(UnitSignature()),
            "rd0": Out(ReadSlotSignature()), "rd1": Out(ReadSlotSignature()),
            "w": Out(ReadSlotSignature()), "s": Out(ReadSlotSignature()),
            "wr0": Out(WriteSlotSignature()), "kv": Out(WriteSlotSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        max_cols = max(cfg.max_dim, cfg.max_hidden_dim)
        max_rows = max(cfg.max_rows, 2 * cfg.max_hidden_dim, 3 * cfg.max_dim)
        GS = cfg.group_size
        m.submodules.engine = engine = MatVecEngine(
            lanes=cfg.lanes, group_size=GS, max_cols=max_cols, max_rows=max_rows,
            weight_beat_bits=64, scales_per_beat=1)
        m.submodules.norm = norm = RmsNormUnit(max_dim=max_cols, output="x16")
        m.submodules.x_reader = x_reader = VectorReader()
        m.submodules.aux_reader = aux_reader = VectorReader()
        m.submodules.s_reader = s_reader = VectorReader()
        m.submodules.residual = residual = ResidualAdd()
        m.submodules.swiglu = swiglu = SwiGluUnit()
        m.submodules.rope = rope = RopeUnit(head_size=cfg.head_size, seq_len=cfg.max_seq_len)
        m.submodules.kv_rows = kv_rows = KvRowWriter(cfg.n_kv_heads, cfg.head_size)
        m.submodules.quant = quant = ActToX16(max_n=max_rows)
        m.submodules.out_writer = out_writer = VectorWriter()
        m.submodules.kv_writer = kv_writer = VectorWriter()
        wiring.connect(m, x_reader.mem, wiring.flipped(self.rd0))
        wiring.connect(m, aux_reader.mem, wiring.flipped(self.rd1))
        wiring.connect(m, s_reader.mem, wiring.flipped(self.s))
        wiring.connect(m, out_writer.mem, wiring.flipped(self.wr0))
        wiring.connect(m, kv_writer.mem, wiring.flipped(self.kv))

        port = self.port
        c = port.command
        norm_on = (c.flags & Flag.NORM_PROLOGUE) != 0
        x16_out = (c.flags & Flag.DST_X16) != 0
        classifier = c.opcode == Opcode.CLASSIFIER
        ep = c.epilogue
        space = act_space(c)
        out_space = Mux(classifier, SPACE_DRAM, space)
        cp = Signal(16)                      # padded cols
        ng = Signal(16)                      # groups per row
        m.d.comb += [ng.eq((c.cols + GS - 1) >> (GS.bit_length() - 1)),
                     cp.eq(ng << (GS.bit_length() - 1))]
        nq = c.rows_a
        nk = (c.rows - c.rows_a) >> 1

        running = running_flag(m, port)
        start = port.start

        # ---- x: RMSNorm prologue or an X16 load (mantissas, then the exponent words).
        x_exp = Signal(range(formats.X_BITS + 1))
        x_count = Signal(16)                 # elements of src0 read
        issue_once(m, x_reader.cmd, start, running, addr=c.src0, space=space,
                   count=Mux(norm_on, c.cols, c.cols + 2), half=~norm_on)
        # rd1: the norm gains (prologue) or src1 (residual epilogue; never both).
        issue_once(m, aux_reader.cmd, start, running & (norm_on | (ep == Epilogue.RESIDUAL)),
                   addr=Mux(norm_on, c.aux_addr, c.src1),
                   space=Mux(norm_on, SPACE_DRAM, space),
                   count=Mux(norm_on, c.cols, c.rows), half=0, name="aux_issue")
        x_loaded = Signal()
        with m.If(start):
            m.d.sync += [x_count.eq(0), x_loaded.eq(0)]
        with m.If(norm_on):
            wiring.connect(m, x_reader.o, norm.i)
            m.d.comb += [norm.g.valid.eq(aux_reader.o.valid),
                         norm.g.payload.eq(aux_reader.o.payload.data),
                         aux_reader.o.ready.eq(norm.g.ready),
                         engine.x.valid.eq(norm.o.valid),
                         engine.x.payload.data.eq(norm.o.payload.data),
                         engine.x.payload.first.eq(norm.o.payload.first),
                         engine.x.payload.last.eq(norm.o.payload.last),
                         norm.o.ready.eq(engine.x.ready)]
            with m.If(norm.o.valid & norm.o.ready & norm.o.payload.last):
                m.d.sync += [x_loaded.eq(1), x_exp.eq(norm.x_exp)]
        with m.Else():
            o = x_reader.o
            mant = x_count < c.cols
            m.d.comb += [engine.x.valid.eq(o.valid & mant),
                         engine.x.payload.data.eq(o.payload.data[:16]),
                         engine.x.payload.first.eq(x_count == 0),
                         engine.x.payload.last.eq(x_count == c.cols - 1),
                         o.ready.eq(Mux(mant, engine.x.ready, 1))]
            with m.If(o.valid & o.ready):
                m.d.sync += x_count.eq(x_count + 1)
                with m.If(x_count == c.cols):           # the exponent's low word
                    m.d.sync += x_exp.eq(o.payload.data[:5])
                with m.If(o.payload.last):
                    m.d.sync += x_loaded.eq(1)

        # ---- weights and scales: one read each for the whole command.
        w_issued = Signal()
        with m.If(start):
            m.d.sync += w_issued.eq(0)
        m.d.comb += [self.w.cmd.valid.eq(running & ~w_issued),
                     self.w.cmd.payload.addr.eq(c.w_addr),
                     self.w.cmd.payload.beats.eq((c.rows * cp) >> 3),
                     self.w.cmd.payload.space.eq(SPACE_DRAM)]
        with m.If(self.w.cmd.valid & self.w.cmd.ready):
            m.d.sync += w_issued.eq(1)
        m.d.comb += [engine.w.valid.eq(self.w.data.valid),
                     engine.w.payload.eq(self.w.data.payload.data),
                     self.w.data.ready.eq(engine.w.ready)]
        issue_once(m, s_reader.cmd, start, running, addr=c.s_addr, space=SPACE_DRAM,
                   count=c.rows * ng, half=1, name="s_issue")
        m.d.comb += [engine.s.valid.eq(s_reader.o.valid),
                     engine.s.payload.eq(s_reader.o.payload.data[:16]),
                     s_reader.o.ready.eq(engine.s.ready)]

        # ---- engine commands: parts (q/k/v), rows (SwiGLU pairs) or the whole matrix.
        part = Signal(16)                    # engine commands issued
        cmds_done = Signal()
        n_cmds = Mux(ep == Epilogue.ROPE_KV, 3, Mux(ep == Epilogue.SWIGLU_PAIR, c.rows, 1))
        with m.If(start):
            m.d.sync += [part.eq(0), cmds_done.eq(0)]
        ec = engine.cmd.payload
        m.d.comb += [ec.cols.eq(c.cols), ec.x_exp.eq(x_exp)]
        with m.Switch(ep):
            with m.Case(Epilogue.ROPE_KV):
                m.d.comb += [ec.rows.eq(Mux(part == 0, nq, nk)),
                             ec.scale_exp.eq(Mux(part == 0, c.scale_exp0,
                                                 Mux(part == 1, c.scale_exp1, c.scale_exp2)))]
            with m.Case(Epilogue.SWIGLU_PAIR):
                m.d.comb += [ec.rows.eq(1),
                             ec.scale_exp.eq(Mux(part[0], c.scale_exp1, c.scale_exp0))]
            with m.Default():
                m.d.comb += [ec.rows.eq(c.rows), ec.scale_exp.eq(c.scale_exp0)]
        m.d.comb += engine.cmd.valid.eq(running & x_loaded & ~cmds_done)
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += part.eq(part + 1)
            with m.If(part + 1 == n_cmds):
                m.d.sync += cmds_done.eq(1)

        # ---- epilogue: route the engine's rows (counted) to their consumers.
        row = Signal(16)
        with m.If(start):
            m.d.sync += row.eq(0)
        eo = engine.o
        y_last = row == c.rows - 1
        with m.If(eo.valid & eo.ready):
            m.d.sync += row.eq(row + 1)
        # The result stream that goes to dst0, before the optional X16 pass.
        result = StreamSelect(4)
        m.submodules.result = result
        #   0: y (NONE, CLASSIFIER), 1: residual, 2: swiglu, 3: rope (q part)
        rope_in_q = Signal()                 # rope output still belongs to q
        rope_out = Signal(16)
        with m.If(start):
            m.d.sync += rope_out.eq(0)
        with m.Switch(ep):
            with m.Case(Epilogue.RESIDUAL):
                m.d.comb += [residual.x.valid.eq(aux_reader.o.valid),
                             residual.x.payload.eq(aux_reader.o.payload),
                             aux_reader.o.ready.eq(residual.x.ready),
                             residual.y.valid.eq(eo.valid), residual.y.payload.data.eq(
                                 eo.payload.data),
                             residual.y.payload.first.eq(row == 0),
                             residual.y.payload.last.eq(y_last),
                             eo.ready.eq(residual.y.ready), result.sel.eq(1)]
                wiring.connect(m, residual.o, result.i[1])
            with m.Case(Epilogue.SWIGLU_PAIR):
                m.d.comb += [swiglu.i.valid.eq(eo.valid),
                             swiglu.i.payload.data.eq(eo.payload.data),
                             swiglu.i.payload.first.eq(row == 0),
                             swiglu.i.payload.last.eq(y_last),
                             eo.ready.eq(swiglu.i.ready), result.sel.eq(2)]
                wiring.connect(m, swiglu.o, result.i[2])
            with m.Case(Epilogue.ROPE_KV):
                to_rope = row < nq + nk
                m.d.comb += [rope.pos.eq(port.position),
                             rope.i.valid.eq(eo.valid & to_rope),
                             rope.i.payload.data.eq(eo.payload.data),
                             rope.i.payload.first.eq((row == 0) | (row == nq)),
                             rope.i.payload.last.eq((row == nq - 1) | (row == nq + nk - 1)),
                             result.sel.eq(3), rope_in_q.eq(rope_out < nq)]
                with m.If(rope.o.valid & rope.o.ready):
                    m.d.sync += rope_out.eq(rope_out + 1)
                # q -> result; k (rope) then v (engine) -> the KV row writer
                m.d.comb += [result.i[3].valid.eq(rope.o.valid & rope_in_q),
                             result.i[3].payload.eq(rope.o.payload)]
                with m.If(rope_in_q):
                    m.d.comb += rope.o.ready.eq(result.i[3].ready)
                with m.Else():
                    m.d.comb += [kv_rows.i.valid.eq(rope.o.valid),
                                 kv_rows.i.payload.eq(rope.o.payload),
                                 rope.o.ready.eq(kv_rows.i.ready)]
                with m.If(to_rope):
                    m.d.comb += eo.ready.eq(rope.i.ready)
                with m.Elif(rope_out == nq + nk):              # k row fully handed over
                    m.d.comb += [kv_rows.i.valid.eq(eo.valid),
                                 kv_rows.i.payload.data.eq(eo.payload.data),
                                 kv_rows.i.payload.first.eq(row == nq + nk),
                                 kv_rows.i.payload.last.eq(y_last),
                                 eo.ready.eq(kv_rows.i.ready)]
            with m.Default():
                m.d.comb += [result.i[0].valid.eq(eo.valid),
                             result.i[0].payload.data.eq(eo.payload.data),
                             result.i[0].payload.first.eq(row == 0),
                             result.i[0].payload.last.eq(y_last),
                             eo.ready.eq(result.i[0].ready), result.sel.eq(0)]

        # ---- dst0: ACT, or X16 through the quantizer.
        out_count = Mux(ep == Epilogue.ROPE_KV, nq,
                        Mux(ep == Epilogue.SWIGLU_PAIR, c.rows >> 1, c.rows))
        issue_once(m, out_writer.cmd, start, running, addr=c.dst0, space=out_space,
                   count=Mux(x16_out, out_count + 2, out_count), half=x16_out,
                   name="out_issue")
        with m.If(x16_out):
            wiring.connect(m, result.o, quant.i)
            m.d.comb += [out_writer.i.valid.eq(quant.o.valid),
                         out_writer.i.payload.data.eq(quant.o.payload.data),
                         quant.o.ready.eq(out_writer.i.ready)]
        with m.Else():
            wiring.connect(m, result.o, out_writer.i)

        # ---- KV rows: K then V at row `position` of each cache.
        kv_issued = issue_kv_rows(m, kv_writer, kv_rows.o, start,
                                  running & (ep == Epilogue.ROPE_KV), k_addr=c.k_addr,
                                  v_addr=c.v_addr, position=port.position,
                                  row_bytes=c.kv_row_bytes)

        # ---- done: every row out, every write landed.
        all_rows = Signal()
        m.d.comb += all_rows.eq((row == c.rows) & cmds_done & x_loaded)
        kv_done = (ep != Epilogue.ROPE_KV) | (kv_issued == 2)
        finished = Signal()
        m.d.comb += finished.eq(running & all_rows & kv_done & ~out_writer.cmd.valid
                                & out_writer.idle & kv_writer.idle & ~engine.busy
                                & ~x_reader.busy & ~aux_reader.busy & ~s_reader.busy)
        m.d.comb += [port.done.eq(finished), port.error.eq(0)]
        return m
