"""Shared pieces of the element-wise units: packet layouts, fixed-point helpers, table ROMs.

The element-wise units (:mod:`speedllm.hw.rmsnorm`, :mod:`~speedllm.hw.rope`,
:mod:`~speedllm.hw.swiglu`, :mod:`~speedllm.hw.residual`, :mod:`~speedllm.hw.embedding`)
stream ACT values (``speedllm.golden.formats``: Q16.16 int32) in packets with ``first`` /
``last`` markers, round with ``round_shift`` (round half up) and saturate exactly as the
golden model does. The expressions here are the hardware form of those rules; the ROM
builder turns a golden table array into a ``lib.memory.Memory`` so hardware and golden
read one table.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Mux, Shape, Signal, Value, signed
from amaranth.lib import data
from amaranth.lib.memory import Memory

from speedllm.golden import formats

ACT_SHAPE = signed(formats.ACT_BITS)


def packet_layout(element) -> data.StructLayout:
    """A packet beat: ``data`` (one element or an array of them) with ``first``/``last``."""
    return data.StructLayout({"data": element, "first": 1, "last": 1})


def act_packet_layout(lanes: int = 1) -> data.StructLayout:
    """Beat of an ACT vector: one int32, or an array of ``lanes`` int32 when ``lanes > 1``."""
    check_positive_int("lanes", lanes)
    element = ACT_SHAPE if lanes == 1 else data.ArrayLayout(ACT_SHAPE, lanes)
    return packet_layout(element)


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Validate an integer elaboration parameter (``TypeError``/``ValueError`` on misuse)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def saturate(value, bits: int) -> Value:
    """Clamp a signed ``value`` to the ``bits``-bit two's complement range."""
    value = Value.cast(value)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if value.shape().signed and value.shape().width <= bits:
        return value
    clamped = Mux(value > hi, hi, Mux(value < lo, lo, value))
    return clamped.as_signed()[:bits].as_signed()


def saturate_unsigned(value, bits: int) -> Value:
    """Clamp a non-negative ``value`` to ``[0, 2**bits - 1]``."""
    value = Value.cast(value)
    hi = (1 << bits) - 1
    return Mux(value > hi, hi, value)[:bits]


def round_shift_const(value, shift: int) -> Value:
    """``formats.round_shift(value, shift)`` for a constant ``shift`` (round half up)."""
    value = Value.cast(value)
    if shift <= 0:
        return value << (-shift)
    return (value + (1 << (shift - 1))) >> shift


def round_shift_var(value, right, left) -> Value:
    """``formats.round_shift`` for a run-time shift given as two non-negative amounts.

    ``right`` (> 0 means a right shift with rounding half up) and ``left`` (an exact left
    shift); at most one of them is non-zero. ``((v >> (s - 1)) + 1) >> 1`` equals
    ``(v + 2**(s-1)) >> s`` for ``s >= 1``, so no variable rounding constant is needed.
    """
    value = Value.cast(value)
    right = Value.cast(right)
    right_minus_one = (right - 1)[:len(right)]        # wraps at 0; unused there
    rounded = ((value >> right_minus_one) + 1) >> 1
    return Mux(right == 0, value << left, rounded)


def delayed(m, value, stages: int, *, enable=1, name: str = "delay") -> Value:
    """``value`` delayed by ``stages`` registers that load when ``enable`` is high."""
    value = Value.cast(value)
    for k in range(stages):
        reg = Signal(value.shape(), name=f"{name}_d{k + 1}")
        with m.If(enable):
            m.d.sync += reg.eq(value)
        value = reg
    return value


def _operand_chunks(v: Value, dsp_width: int):
    """Split ``v`` into 16-bit chunks (low ones unsigned) unless it fits one DSP input."""
    shape = v.shape()
    if shape.width <= (dsp_width if shape.signed else dsp_width - 1):
        return [(v, 0)]
    parts = []
    for lo in range(0, shape.width, 16):
        hi = min(lo + 16, shape.width)
        part = v[lo:hi]
        parts.append((part.as_signed() if shape.signed and hi == shape.width else part, lo))
    return parts


def pipelined_product(m, a, b, *, enable=1, name: str = "product",
                      dsp_width: int = 18) -> tuple[Value, int]:
    """``a * b`` exactly, through DSP-sized partial products and a registered adder tree.

    Operands wider than one DSP input (``dsp_width`` signed bits; 18 on ECP5 and for the
    B port of a Xilinx DSP48E1) are split into 16-bit chunks. Stage 1 registers every
    partial product, then each adder-tree level has a register; all registers load when
    ``enable`` is high. Returns ``(product, latency)``: the product of the operands seen
    ``latency`` enabled cycles earlier (an exact full-width value). Register the operands
    before calling (multiplier inputs registered, as ``TOOLCHAIN.md`` advises).
    """
    a, b = Value.cast(a), Value.cast(b)
    terms = []
    for pa, sa in _operand_chunks(a, dsp_width):
        for pb, sb in _operand_chunks(b, dsp_width):
            reg = Signal((pa * pb).shape(), name=f"{name}_pp{len(terms)}")
            with m.If(enable):
                m.d.sync += reg.eq(pa * pb)
            terms.append((reg, sa + sb))
    latency = 1
    level = 0
    while len(terms) > 1:
        level += 1
        merged = []
        for k in range(0, len(terms) - 1, 2):
            (x, sx), (y, sy) = terms[k], terms[k + 1]
            shift = min(sx, sy)
            total = (x << (sx - shift)) + (y << (sy - shift))
            reg = Signal(total.shape(), name=f"{name}_sum{level}_{k // 2}")
            with m.If(enable):
                m.d.sync += reg.eq(total)
            merged.append((reg, shift))
        if len(terms) % 2:
            x, sx = terms[-1]
            merged.append((delayed(m, x, 1, enable=enable, name=f"{name}_pass{level}"), sx))
        terms = merged
        latency += 1
    value, shift = terms[0]
    signed_result = a.shape().signed or b.shape().signed
    width = a.shape().width + b.shape().width + (1 if a.shape().signed != b.shape().signed else 0)
    product = Signal(signed(width) if signed_result else width, name=name)
    m.d.comb += product.eq(value << shift)
    return product, latency


def table_rom(table, *, name: str | None = None, signed_values: bool | None = None) -> Memory:
    """A ROM (``lib.memory.Memory`` with ``init``) holding the integer ``table``.

    The element shape is the narrowest one that holds every entry (signed when any entry
    is negative unless ``signed_values`` says otherwise). Create it in ``elaborate`` and add
    it as a submodule; read it through ``read_port()`` (one cycle latency).
    """
    values = [int(v) for v in np.asarray(table).reshape(-1)]
    if not values:
        raise ValueError("a table ROM needs at least one entry")
    is_signed = any(v < 0 for v in values) if signed_values is None else signed_values
    shape = Shape.cast(range(min(values + [0]), max(values + [0]) + 1))
    if is_signed and not shape.signed:
        shape = signed(shape.width + 1)
    return Memory(shape=shape, depth=len(values), init=values)


def table_shape(table) -> Shape:
    """The narrowest shape holding every entry of ``table``."""
    values = [int(v) for v in np.asarray(table).reshape(-1)]
    return Shape.cast(range(min(values + [0]), max(values + [0]) + 1))


__all__ = [
    "ACT_SHAPE", "packet_layout", "act_packet_layout", "check_positive_int", "saturate",
    "saturate_unsigned", "round_shift_const", "round_shift_var", "delayed", "pipelined_product",
    "table_rom", "table_shape",
]
