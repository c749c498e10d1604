"""Hardware form of ``speedllm.golden.intops.attention``: widths, shifters, the exp unit.

Every constant comes from :mod:`speedllm.golden.formats` and every table from
:mod:`speedllm.golden.intops` (one definition of the arithmetic); this module only says
how each step is built from adders, shifters, multipliers and a ROM:

* q intake: ``qs = sat32(round_shift(q * att_scale(head_size), ATT_SCALE_FRAC))``, the
  per-head block exponent ``eq = max(0, bit_length(OR fold(qs)) - 15)``, and (at use)
  ``q16 = sat16(round_shift(qs, eq))``.
* pass 1: ``s = shift_round_saturate(q16 . kmant, ACT_FRAC - eq - ek)``.
* pass 2: ``e = exp_neg(s - max)`` (:class:`ExpUnit`), ``acc += (e * vmant) << ev``.
* output: ``k = bit_length(S)``, ``recip = (2**(R+k-1) + S//2) // S`` (sequential divider),
  ``out = sat32(round_shift(round_shift(acc, k-1-G) * recip, R+G))``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

from speedllm.golden import formats, intops
from speedllm.hw.matvec_pipeline import bit_length_tree, saturate_fast

__all__ = [
    "ACT_BITS", "EXP_BITS", "KV_EXP_FIELD_BITS", "RECIP_BITS", "bit_length",
    "round_shift_var", "shift_round_saturate_var", "saturate", "widths", "ExpUnit",
]

ACT_BITS = formats.ACT_BITS
ACT_FRAC = formats.ACT_FRAC
EXP_BITS = formats.EXP_FRAC + 1             # e in [0, 1.0]: unsigned Q1.16 needs 17 bits
RECIP_BITS = formats.ATT_RECIP_BITS + 1     # recip <= 2**R
KV_EXP_FIELD_BITS = 8                       # one byte per kv head in a row's exponent beat(s)


def widths(head_size: int, max_seq_len: int, kv_bits: int) -> dict:
    """Register widths the golden arithmetic needs (bounds derived in the comments)."""
    # |q16 * kmant| <= 2**15 * 2**(kv_bits-1); head_size of them
    dot = 16 + kv_bits + max(head_size - 1, 1).bit_length() + 1
    # e <= 2**16 per position: S <= max_seq_len * 2**16
    sum_bits = (max_seq_len << formats.EXP_FRAC).bit_length()
    # |v| = |vmant << ev| <= 2**31, so |acc| <= 2**31 * S < 2**(sum_bits + 31)
    acc = sum_bits + 32
    # |acc| < 2**31 * 2**k and acc_r = acc / 2**(k-1-G): |acc_r| <= 2**(31+1+G) + 1
    acc_r = 31 + 1 + formats.ATT_ACC_GUARD + 2
    dividend = formats.ATT_RECIP_BITS + sum_bits
    max_ev = 32 - kv_bits                   # block exponent of an int32 for kv_bits mantissas
    return {"dot": dot, "sum": sum_bits, "acc": acc, "acc_r": acc_r,
            "dividend": dividend, "max_ev": max_ev}


def saturate(value, bits: int) -> Value:
    """Clamp a signed value to ``bits`` signed bits (``formats.saturate``), without a
    comparator (:func:`~speedllm.hw.matvec_pipeline.saturate_fast`)."""
    return saturate_fast(value, bits)


def bit_length(value) -> Value:
    """``int.bit_length`` of a non-negative value (a leading-one detector,
    ``ceil(log2(width))`` mux levels: :func:`~speedllm.hw.matvec_pipeline.bit_length_tree`)."""
    return bit_length_tree(value)


def round_shift_var(value, amount) -> Value:
    """``formats.round_shift_array(value, amount)`` for a run-time ``amount >= 0``.

    ``((v >> (s - 1)) + 1) >> 1`` equals ``(v + 2**(s-1)) >> s`` for ``s >= 1``, so no
    variable rounding constant is needed.
    """
    value, amount = Value.cast(value), Value.cast(amount)
    rounded = ((value >> (amount - 1)[:len(amount)]) + 1) >> 1
    return Mux(amount == 0, value, rounded)


def shift_round_saturate_var(m: Module, value, right, left, bits: int, name: str):
    """``formats.shift_round_saturate`` in two registered steps (latency 2).

    ``right``/``left`` are the non-negative parts of the shift (at most one non-zero).
    Step 1 rounds the right shift; step 2 saturates against the limits shifted right by
    ``left`` and only then shifts left, like the golden function. Returns the result
    signal (``signed(bits)``).
    """
    value = Value.cast(value)
    r = Signal(signed(len(value) + 1), name=f"{name}_r")
    sl = Signal.like(Value.cast(left), name=f"{name}_sl")
    m.d.sync += [r.eq(round_shift_var(value, right)), sl.eq(left)]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    hi_s = Const(hi, signed(bits + 1)) >> sl
    lo_s = Const(lo, signed(bits + 1)) >> sl
    out = Signal(signed(bits), name=name)
    m.d.sync += out.eq(Mux(r > hi_s, hi, Mux(r < lo_s, lo, (r << sl)[:bits])))
    return out


class ExpUnit:
    """``intops.exp_neg(-dist)`` for ``dist = max - s >= 0``: eight pipeline stages.

    1-2. ``p = dist * LOG2E_Q`` (``dist < 2**32``: two DSP-sized partial products, then
       their sum, :func:`~speedllm.hw.tables.pipelined_product`);
    3. ``u = round_shift(p, LOG2E_FRAC)``;
    4. ROM address ``f >> (16 - B)`` (the ROM word holds ``T[i]`` and ``T[i+1] - T[i]``),
       ``n = min(u >> 16, 19)`` and the interpolation fraction registered;
    5. ROM word registered (a block RAM output straight into a multiplier is slow);
    6. ``delta * frac`` registered;
    7. ``val = T[i] + round_shift(delta * frac, 16 - B)``;
    8. ``e = round_shift(val, n)`` (0 for ``n >= 18``, as the golden shift gives).

    ``valid`` and ``ctl`` (any payload riding along) are delayed to match. Built inside
    the caller's module; ``e``/``valid``/``ctl`` are the last-stage registers,
    ``ctl_before`` is the stage before (the next result's ``ctl``) and ``busy`` is high
    while anything is in flight.
    """

    LATENCY = 8

    def __init__(self, m: Module, dist, valid, ctl):
        from amaranth.lib import data
        from amaranth.lib.memory import Memory

        from .tables import pipelined_product
        table = [int(v) for v in intops.build_exp2_table(formats.EXP_TABLE_BITS)]
        tb = formats.EXP_TABLE_BITS
        fb = ACT_FRAC - tb                              # interpolation fraction bits
        delta_shape = signed(max(abs(b - a) for a, b in zip(table, table[1:])).bit_length() + 1)
        word = data.StructLayout({"t0": unsigned(EXP_BITS), "delta": delta_shape})
        init = [{"t0": a, "delta": b - a} for a, b in zip(table, table[1:])]
        m.submodules.exp_rom = rom = Memory(shape=word, depth=len(init), init=init)
        rd = rom.read_port()

        dist = Value.cast(dist)
        ctl = Value.cast(ctl)
        n_stages = self.LATENCY
        v = [Signal(name=f"exp_v{i}") for i in range(1, n_stages + 1)]
        c = [Signal(len(ctl), name=f"exp_ctl{i}") for i in range(1, n_stages + 1)]
        m.d.sync += [v[0].eq(valid), c[0].eq(ctl)]
        m.d.sync += [v[i].eq(v[i - 1]) for i in range(1, n_stages)]
        m.d.sync += [c[i].eq(c[i - 1]) for i in range(1, n_stages)]

        # stages 1-2 (max - s of two int32 is below 2**32: the low 32 bits are exact)
        p, p_latency = pipelined_product(m, dist[:32], Const(formats.LOG2E_Q),
                                         name="exp_p")
        assert p_latency == 2
        u = Signal(len(p) + 1 - formats.LOG2E_FRAC, name="exp_u")
        m.d.sync += u.eq((p + (1 << (formats.LOG2E_FRAC - 1))) >> formats.LOG2E_FRAC)  # 3
        m.d.comb += rd.addr.eq(u[fb:ACT_FRAC])
        n2 = Signal(range(20), name="exp_n2")
        frac2 = Signal(fb, name="exp_frac2")
        n_full = u[ACT_FRAC:]
        m.d.sync += [n2.eq(Mux(n_full > 19, 19, n_full)), frac2.eq(u[:fb])]   # stage 4
        t0_r = Signal(EXP_BITS, name="exp_t0_r")
        delta_r = Signal(delta_shape, name="exp_delta_r")
        frac_r = Signal(fb, name="exp_frac_r")
        n_r = Signal.like(n2, name="exp_n_r")
        m.d.sync += [t0_r.eq(rd.data.t0), delta_r.eq(rd.data.delta), frac_r.eq(frac2),
                     n_r.eq(n2)]                                           # stage 5
        t0_3 = Signal(EXP_BITS, name="exp_t0_3")
        dprod3 = Signal(signed(delta_shape.width + fb + 1), name="exp_dprod3")
        n3 = Signal.like(n2, name="exp_n3")
        m.d.sync += [t0_3.eq(t0_r), dprod3.eq(delta_r * frac_r.as_unsigned()),
                     n3.eq(n_r)]                                           # stage 6
        val4 = Signal(EXP_BITS + 1, name="exp_val4")
        n4 = Signal.like(n2, name="exp_n4")
        m.d.sync += [val4.eq(t0_3 + ((dprod3 + (1 << (fb - 1))) >> fb)), n4.eq(n3)]  # 7
        wide = Signal(EXP_BITS + 21, name="exp_wide")
        m.d.comb += wide.eq(val4)
        self.e = Signal(EXP_BITS, name="exp_e")
        m.d.sync += self.e.eq(round_shift_var(wide, n4))                  # stage 8
        self.valid = v[-1]
        self.ctl = c[-1]
        self.ctl_before = c[-2]            # the next result's ctl, one cycle ahead
        self.busy = Cat(*v).any()
