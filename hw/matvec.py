"""The MatVec engine: ``y = W @ x`` with int8 weights, int16 activations and group scales.

Golden: :func:`speedllm.golden.formats.matvec` (bit for bit). DRAM layout, payloads and
adder widths: :mod:`speedllm.hw.matvec_layout`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from speedllm.golden import formats

from .matvec_layout import accumulator_widths, command_layout, output_layout, x_layout
from .matvec_pipeline import (BeatAdapter, adder_tree, round_shift_saturate, shift_amounts,
                              stage, tag_layout)
from .stream import StreamFifo
from .tables import check_positive_int, pipelined_product

__all__ = ["MatVecEngine"]


def _power_of_two(name, value, maximum=None):
    check_positive_int(name, value)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value!r}")
    return value


def _checked_parameters(lanes, group_size, max_cols, max_rows, weight_beat_bits,
                        scales_per_beat, x_lanes) -> int:
    """Validate the engine's parameters; returns ``weight_beat_bits`` (default filled in)."""
    _power_of_two("lanes", lanes, 256)
    _power_of_two("group_size", group_size)
    if group_size % lanes:
        raise ValueError(f"group_size ({group_size}) must be a multiple of lanes "
                         f"({lanes})")
    check_positive_int("max_cols", max_cols)
    check_positive_int("max_rows", max_rows)
    if weight_beat_bits is None:
        weight_beat_bits = 8 * lanes
    check_positive_int("weight_beat_bits", weight_beat_bits, minimum=8)
    if weight_beat_bits % 8:
        raise ValueError(f"weight_beat_bits must be a multiple of 8, not "
                         f"{weight_beat_bits!r}")
    _power_of_two("weight beat bytes", weight_beat_bits // 8)
    if group_size % (weight_beat_bits // 8):
        raise ValueError(f"a weight beat of {weight_beat_bits // 8} bytes must divide "
                         f"group_size ({group_size})")
    _power_of_two("scales_per_beat", scales_per_beat, 64)
    _power_of_two("x_lanes", x_lanes, lanes)
    return weight_beat_bits


class MatVecEngine(wiring.Component):
    """Streams a W8 matrix past an on-chip X16 vector: one ACT result per row.

    Parameters
    ----------
    lanes : int
        ``L``, multipliers along the input dimension (power of two): ``L`` MACs per cycle.
    group_size : int
        ``GS``, weights per scale group (power of two, a multiple of ``lanes``).
    max_cols, max_rows : int
        Largest command; size the activation buffer (``padded_cols(max_cols, GS) / L``
        words of ``16 L`` bits), the counters and the row accumulator.
    weight_beat_bits : int
        Width of a ``w`` beat (``8 B`` bits, ``B`` a power of two dividing ``GS``); default
        ``8 * lanes``. A wider beat feeds ``B / L`` cycles, a narrower one is gathered.
    scales_per_beat : int
        ``K``, mantissas per ``s`` beat (power of two), e.g. 4 for a 64-bit read master.
    x_lanes : int
        X16 values per ``x`` beat (power of two dividing ``lanes``).

    Ports
    -----
    cmd : In(stream), payload :func:`~speedllm.hw.matvec_layout.command_layout`
        ``rows``, ``cols`` (unpadded), ``scale_exp``, ``x_exp``. Taken when the previous
        command's weights are all in (the pipeline may still be draining), no ``x`` packet
        is half loaded and no ``x`` beat is waiting. Commands with ``rows == 0`` or
        ``cols == 0`` are taken and do nothing.
    x : In(stream), payload :func:`~speedllm.hw.matvec_layout.x_layout`
        Loads the activation buffer: ``first`` restarts at element 0, then elements in
        order (at most ``max_cols``). Refused (``ready`` low) while a command reads weights.
    w : In(stream), ``unsigned(weight_beat_bits)``
        The weight region (see the layout module), little-endian int8.
    s : In(stream), ``unsigned(16 * scales_per_beat)``
        The scale region, little-endian uint16 mantissas; goes through a 4-entry FIFO.
    o : Out(stream), payload :func:`~speedllm.hw.matvec_layout.output_layout`
        ``saturate32(round_shift(t, scale_exp - x_exp))`` per row, ``first`` on row 0,
        ``last`` on the final row; through a 4-entry FIFO.
    busy : Out(1)
        High from a command's acceptance until its last result has left ``o``.

    Latency and throughput
    ----------------------
    One lane vector (``L`` weights) per cycle while ``w``, ``s`` and ``o`` keep up: a
    ``rows x cols`` command takes ``rows * padded_cols(cols, GS) / L`` cycles of weight
    intake, and the next command's intake follows without a gap. A row's result reaches
    ``o`` ``13 + log2(L)`` cycles after its last weight beat (plus 2 in the output FIFO).
    The whole pipeline advances on one enable, ``en = out FIFO not full & (no group sum
    waiting, or a mantissa ready)``; ``en`` is a function of registers only, and every
    ``ready`` the engine drives is independent of the same stream's ``valid``. Multiplier
    inputs and outputs are registered (both the int8 x int16 lanes and the group sum x
    mantissa product).

    Stages (each a register enabled by ``en``): intake (weights masked to ``cols``,
    buffer read issued) -> buffer read data -> multiplier inputs -> lane products -> one
    adder-tree level per stage -> group accumulator -> mantissa multiply (inputs, two
    partial products, their sum) -> row accumulator -> round-shift (2) -> saturate -> left
    shift -> saturate -> output FIFO.
    """

    def __init__(self, *, lanes: int = 8, group_size: int = formats.DEFAULT_GROUP_SIZE,
                 max_cols: int = 8192, max_rows: int = 32768,
                 weight_beat_bits: int | None = None, scales_per_beat: int = 1,
                 x_lanes: int = 1):
        try:
            weight_beat_bits = _checked_parameters(lanes, group_size, max_cols, max_rows,
                                                   weight_beat_bits, scales_per_beat,
                                                   x_lanes)
        except (TypeError, ValueError):
            self._MustUse__silence = True      # a rejected engine is not an unused one
            raise
        self._lanes = lanes
        self._group_size = group_size
        self._max_cols = max_cols
        self._max_rows = max_rows
        self._weight_beat_bits = weight_beat_bits
        self._scales_per_beat = scales_per_beat
        self._x_lanes = x_lanes
        self._max_groups = formats.padded_cols(max_cols, group_size) // group_size
        self._widths = accumulator_widths(lanes, group_size, self._max_groups)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_rows, max_cols))),
            "x": In(stream.Signature(x_layout(x_lanes))),
            "w": In(stream.Signature(unsigned(weight_beat_bits))),
            "s": In(stream.Signature(unsigned(formats.SCALE_BITS * scales_per_beat))),
            "o": Out(stream.Signature(output_layout())),
            "busy": Out(1),
        })

    lanes = property(lambda self: self._lanes)
    group_size = property(lambda self: self._group_size)
    max_cols = property(lambda self: self._max_cols)
    max_rows = property(lambda self: self._max_rows)
    weight_beat_bits = property(lambda self: self._weight_beat_bits)
    scales_per_beat = property(lambda self: self._scales_per_beat)
    x_lanes = property(lambda self: self._x_lanes)
    widths = property(lambda self: dict(self._widths), doc="adder widths (bits)")

    @property
    def latency(self) -> int:
        """Cycles from a row's last weight beat (intake) to its result entering the FIFO."""
        return 13 + exact_log2(self._lanes)

    def elaborate(self, platform):
        m = Module()
        L, GS, K = self._lanes, self._group_size, self._scales_per_beat
        beats_per_group = GS // L
        depth = self._max_groups * beats_per_group
        wd = self._widths
        xb = formats.X_BITS

        m.submodules.out_fifo = out_fifo = StreamFifo(output_layout(), 4)
        m.submodules.scale_fifo = scale_fifo = StreamFifo(self.s.payload.shape(), 4)
        wiring.connect(m, wiring.flipped(self.s), scale_fifo.i)
        wiring.connect(m, out_fifo.o, wiring.flipped(self.o))

        en = Signal()                    # the pipeline advances
        running = Signal()               # a command's weights are coming in

        # --- activation buffer: depth words of L int16, written x_lanes values at a time
        m.submodules.xbuf = xbuf = Memory(shape=unsigned(xb * L), depth=depth, init=[])
        xw = xbuf.write_port(granularity=xb * self._x_lanes)
        xr = xbuf.read_port()
        slots = L // self._x_lanes
        x_index = Signal(range(depth * slots + 1))
        x_loading = Signal()
        x_take = self.x.valid & self.x.ready
        here = Mux(self.x.payload.first, 0, x_index)
        m.d.comb += [
            self.x.ready.eq(~running),
            xw.addr.eq(here >> exact_log2(slots)),
            xw.data.eq(Cat(*([self.x.payload.data] * slots))),
            xw.en.eq(Mux(x_take, Const(1, slots) << here[:exact_log2(slots)], 0)),
        ]
        with m.If(x_take):
            m.d.sync += [x_index.eq(here + 1), x_loading.eq(~self.x.payload.last)]

        # --- command and intake counters. The row and group ends are kept as registered
        # flags (no subtract-and-compare between the counters and cmd.ready).
        cmd = self.cmd.payload
        cols = Signal.like(cmd.cols)
        last_group = Signal(range(self._max_groups))
        tag_shape = tag_layout(wd["row"], formats.ACT_BITS)
        rshift = Signal(tag_shape["rshift"].shape)       # the command's shift, split
        lshift = Signal(tag_shape["lshift"].shape)
        round_up = Signal()
        beat = Signal(range(beats_per_group))            # beat within the group
        group = Signal(range(self._max_groups))          # group within the row
        rows_left = Signal.like(cmd.rows)                # rows after the current one
        first_row = Signal()
        last_row = Signal()                              # rows_left == 0
        last_grp = Signal()                              # group == last_group
        cols_left = Signal(signed(len(cmd.cols) + 2))    # columns left in this row

        # --- intake (stage 0): one lane vector of L weights per enabled cycle
        m.submodules.beats = beats = BeatAdapter(self._weight_beat_bits, 8 * L)
        wiring.connect(m, wiring.flipped(self.w), beats.i)
        take = Signal()
        m.d.comb += [
            beats.o.ready.eq(en & running),
            take.eq(beats.o.valid & beats.o.ready),
        ]
        tag0 = Signal(tag_shape)
        g_last = beat == beats_per_group - 1
        r_last = g_last & last_grp
        m.d.comb += [
            tag0.gfirst.eq(beat == 0), tag0.glast.eq(g_last),
            tag0.rfirst.eq(group == 0), tag0.rlast.eq(last_grp),
            tag0.cfirst.eq(first_row), tag0.clast.eq(last_row),
            tag0.rshift.eq(rshift), tag0.lshift.eq(lshift), tag0.round.eq(round_up),
        ]
        masked = Cat(*(Mux(cols_left > k, beats.o.payload.word_select(k, 8), 0)
                       for k in range(L)))
        addr = Cat(beat, group) if beats_per_group > 1 else group
        m.d.comb += [xr.addr.eq(addr), xr.en.eq(en)]
        with m.If(take):
            m.d.sync += beat.eq(Mux(g_last, 0, beat + 1))
            with m.If(r_last):
                m.d.sync += [
                    group.eq(0), last_grp.eq(last_group == 0), cols_left.eq(cols),
                    rows_left.eq(rows_left - 1), first_row.eq(0),
                    last_row.eq(rows_left == 1),
                ]
                with m.If(last_row):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += cols_left.eq(cols_left - L)
                with m.If(g_last):
                    m.d.sync += [group.eq(group + 1), last_grp.eq(group + 1 == last_group)]

        # a command is taken when the previous one's final lane vector goes in (or earlier),
        # so back-to-back commands keep the intake busy every cycle
        final_take = take & r_last & last_row
        m.d.comb += self.cmd.ready.eq((~running | final_take) & ~x_loading & ~self.x.valid)
        with m.If(self.cmd.valid & self.cmd.ready):      # after the intake: wins over it
            n_groups = (cmd.cols + (GS - 1)) >> exact_log2(GS)
            amounts = shift_amounts(cmd.scale_exp - cmd.x_exp, wd["row"], formats.ACT_BITS)
            m.d.sync += [
                running.eq((cmd.rows != 0) & (cmd.cols != 0)),
                cols.eq(cmd.cols), cols_left.eq(cmd.cols),
                last_group.eq(n_groups - 1), last_grp.eq(cmd.cols <= GS),
                rows_left.eq(cmd.rows - 1), first_row.eq(1), last_row.eq(cmd.rows == 1),
                rshift.eq(amounts[0]), lshift.eq(amounts[1]), round_up.eq(amounts[2]),
                beat.eq(0), group.eq(0),
            ]

        # --- stage 1: weights registered beside the buffer's read data
        v1 = stage(m, en, take, "v1", reset=True)
        t1 = stage(m, en, tag0, "t1")
        w1 = stage(m, en, masked, "w1")
        # --- stage 2: multiplier inputs registered in the fabric (a block RAM's clock-to-
        # output delay straight into a multiplier held an ECP5 at 70 MHz)
        v1b = stage(m, en, v1, "v1b", reset=True)
        t1b = stage(m, en, t1, "t1b")
        w1b = stage(m, en, w1, "w1b")
        x1b = stage(m, en, xr.data, "x1b")
        # --- stage 3: lane products (registered multiplier outputs)
        products = [w1b.word_select(k, 8).as_signed() * x1b.word_select(k, xb).as_signed()
                    for k in range(L)]
        p2 = [stage(m, en, p, f"p2_{k}", shape=signed(wd["product"]))
              for k, p in enumerate(products)]
        v2 = stage(m, en, v1b, "v2", reset=True)
        t2 = stage(m, en, t1b, "t2")
        # --- adder tree, one registered level per stage
        tree_sum, vt, tt, tree_valids = adder_tree(m, en, p2, v2, t2, wd["tree"])
        # --- group accumulator: the group sum is valid the cycle after its last beat
        acc = Signal(signed(wd["group"]))
        with m.If(en & vt):
            m.d.sync += acc.eq(Mux(tt.gfirst, 0, acc) + tree_sum)
        vg = stage(m, en, vt & tt.glast, "vg", reset=True)
        tg = stage(m, en, tt, "tg")

        # --- mantissa: the group sum waits (the whole pipeline stalls) for its scale
        sidx = Signal(range(K))
        mantissa = scale_fifo.o.payload.word_select(sidx, formats.SCALE_BITS) if K > 1 \
            else scale_fifo.o.payload
        use_scale = en & vg
        pop = (sidx == K - 1) | (tg.rlast & tg.clast) if K > 1 else Const(1)
        m.d.comb += [
            en.eq(out_fifo.i.ready & (~vg | scale_fifo.o.valid)),
            scale_fifo.o.ready.eq(use_scale & pop),
        ]
        if K > 1:
            with m.If(use_scale):
                m.d.sync += sidx.eq(Mux(pop, 0, sidx + 1))
        a3 = stage(m, en, acc, "a3")
        m3 = stage(m, en, mantissa, "m3", shape=unsigned(formats.SCALE_BITS))
        v3 = stage(m, en, vg, "v3", reset=True)
        t3 = stage(m, en, tg, "t3")
        # group sum x mantissa: two DSP-sized partial products, then their sum
        p4, p4_latency = pipelined_product(m, a3, m3, enable=en, name="p4")
        assert p4_latency == 2
        v3b = stage(m, en, v3, "v3b", reset=True)
        t3b = stage(m, en, t3, "t3b")
        v4 = stage(m, en, v3b, "v4", reset=True)
        t4 = stage(m, en, t3b, "t4")
        # --- row accumulator: the exact t of formats.matvec
        row_sum = Signal(signed(wd["row"]))
        with m.If(en & v4):
            m.d.sync += row_sum.eq(Mux(t4.rfirst, 0, row_sum) + p4)
        v5 = stage(m, en, v4 & t4.rlast, "v5", reset=True)
        t5 = stage(m, en, t4, "t5")
        # --- saturate32(round_shift(t, shift)), five registered stages
        result, v10, t10, epilogue_valids = round_shift_saturate(m, en, row_sum, v5, t5,
                                                               formats.ACT_BITS)
        m.d.comb += [
            out_fifo.i.valid.eq(en & v10),
            out_fifo.i.payload.data.eq(result),
            out_fifo.i.payload.first.eq(t10.cfirst),
            out_fifo.i.payload.last.eq(t10.clast),
        ]
        in_flight = Cat(v1, v1b, v2, *tree_valids, vg, v3, v3b, v4, v5,
                        *epilogue_valids).any()
        m.d.comb += self.busy.eq(running | in_flight | (out_fifo.level != 0))
        return m
