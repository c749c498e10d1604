"""The MatVec engine's contract with the rest of the system: DRAM layout, payloads, widths.

DRAM layout of one W8 matrix (what the program compiler writes, what the engine reads)
---------------------------------------------------------------------------------------
A :class:`~speedllm.golden.formats.QuantizedMatrix` ``[rows][cols]`` with group size ``GS``
occupies two regions, each read front to back by its own AXI read master:

weights
    ``rows * cols_p`` int8 bytes, ``cols_p = padded_cols(cols, GS)``: row 0 first, each row
    its ``cols`` weights then ``cols_p - cols`` padding bytes (written as 0; the engine
    ignores them anyway: it masks every column ``>= cols``). An AXI beat of ``B`` bytes is
    little-endian: byte ``j`` of the beat (bits ``8j+7..8j``) is the weight at the next
    column. ``B`` divides ``GS``, so every row is a whole number of beats and the region
    is ``rows * cols_p / B`` beats.
scales
    ``rows * n_groups`` uint16 group-scale mantissas (``n_groups = cols_p / GS``), row 0
    first, little-endian, with NO per-row padding; only the end of the region is padded
    with zeros to a whole scale beat of ``K`` mantissas. Mantissa ``k`` of a beat sits in
    bits ``16k+15..16k``. The engine discards the unused tail of the last beat.

The matrix exponent ``scale_exp`` and the unpadded ``cols`` travel in the command
(:func:`command_layout`), together with the activation block exponent ``x_exp``.

Widths
------
:func:`accumulator_widths` sizes every adder from exact integer bounds, with ``-128``
weights and ``-32768`` activations allowed (the W8 format never uses ``-128``; the engine
stays exact for it all the same).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from speedllm.golden import formats

from .tables import act_packet_layout

__all__ = [
    "EXP_SHAPE", "command_layout", "x_layout", "output_layout",
    "signed_bits", "accumulator_widths", "weight_image", "scale_image", "image_words",
]

EXP_SHAPE = signed(8)           # scale_exp and x_exp in a command

_W_MIN, _W_MAX = -(1 << (formats.W_BITS - 1)), (1 << (formats.W_BITS - 1)) - 1
_X_MIN, _X_MAX = formats.X_MIN, formats.X_MAX
_M_MAX = (1 << formats.SCALE_BITS) - 1


def command_layout(max_rows: int, max_cols: int) -> data.StructLayout:
    """One matvec command: ``rows`` (1..max_rows), ``cols`` (unpadded, 1..max_cols), the
    matrix ``scale_exp`` and the activation block exponent ``x_exp`` (both signed 8-bit)."""
    return data.StructLayout({
        "rows": unsigned(max(1, max_rows.bit_length())),
        "cols": unsigned(max(1, max_cols.bit_length())),
        "scale_exp": EXP_SHAPE,
        "x_exp": EXP_SHAPE,
    })


def x_layout(x_lanes: int = 1) -> data.StructLayout:
    """An activation-buffer load beat: ``x_lanes`` int16 X16 values, ``first``/``last``."""
    element = signed(formats.X_BITS) if x_lanes == 1 else \
        data.ArrayLayout(signed(formats.X_BITS), x_lanes)
    return data.StructLayout({"data": element, "first": 1, "last": 1})


def output_layout() -> data.StructLayout:
    """One row result: ``data`` (ACT int32), ``first`` on row 0, ``last`` on the final row.

    The same layout as the element-wise units' ``act_packet_layout(1)``."""
    return act_packet_layout(1)


def signed_bits(lo: int, hi: int) -> int:
    """The fewest two's complement bits holding every integer in ``[lo, hi]``."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def _scaled(lo_hi, k_lo, k_hi=None):
    """Bounds of ``v * k`` for ``v`` in ``lo_hi`` and ``k`` in ``[k_lo, k_hi]``."""
    k_hi = k_lo if k_hi is None else k_hi
    c = [lo_hi[0] * k_lo, lo_hi[0] * k_hi, lo_hi[1] * k_lo, lo_hi[1] * k_hi]
    return min(c), max(c)


def accumulator_widths(lanes: int, group_size: int, max_groups: int) -> dict:
    """Signed widths of every adder in the engine, from exact bounds.

    Returns a dict: ``product`` (int8 x int16), ``tree`` (list, the width after each adder
    tree level, ``log2(lanes)`` entries), ``group`` (a group sum), ``scaled`` (group sum x
    mantissa), ``row`` (the exact row sum ``t`` of :func:`formats.matvec`).
    """
    prod = (min(_W_MIN * _X_MAX, _W_MAX * _X_MIN), _W_MIN * _X_MIN)
    tree, n = [], 2
    while n <= lanes:
        tree.append(signed_bits(*_scaled(prod, n)))
        n *= 2
    group = _scaled(prod, group_size)
    scaled = _scaled(group, 0, _M_MAX)
    row = _scaled(scaled, max_groups)
    widths = {
        "product": signed_bits(*prod),
        "tree": tree,
        "group": signed_bits(*group),
        "scaled": signed_bits(*scaled),
        "row": signed_bits(*row),
    }
    # the golden model computes t in int64: the engine must not need more
    assert widths["row"] <= 64, f"row sums of {max_groups} groups exceed int64: {widths}"
    return widths


def weight_image(qm: formats.QuantizedMatrix, beat_bytes: int) -> np.ndarray:
    """The weight region of ``qm`` as uint8 ``[n_beats, beat_bytes]`` (see module docs)."""
    if qm.group_size % beat_bytes:
        raise ValueError(f"beat of {beat_bytes} bytes does not divide group size "
                         f"{qm.group_size}")
    q = np.ascontiguousarray(qm.q, dtype=np.int8).view(np.uint8)
    return q.reshape(-1, beat_bytes)


def scale_image(qm: formats.QuantizedMatrix, scales_per_beat: int) -> np.ndarray:
    """The scale region of ``qm`` as uint16 ``[n_beats, scales_per_beat]``, tail zeroed."""
    flat = np.ascontiguousarray(qm.scale_m, dtype=np.uint16).reshape(-1)
    n_beats = -(-flat.size // scales_per_beat)
    out = np.zeros(n_beats * scales_per_beat, dtype=np.uint16)
    out[: flat.size] = flat
    return out.reshape(n_beats, scales_per_beat)


def image_words(image: np.ndarray) -> list[int]:
    """Rows of an image (uint8 or uint16 ``[n_beats, k]``) as little-endian beat integers."""
    little = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<"))
    return [int.from_bytes(row.tobytes(), "little") for row in little]
