"""Byte formats of everything in the DRAM image and the activation memory.

The one place (on the software side) where the bytes of a weight, table, KV row or
activation are defined; the compiler writes with these functions, the golden interpreter
reads with them, and the hardware units follow the same layouts (the tests check that
the writers agree with ``hw.matvec_layout.weight_image/scale_image`` and
``hw.attention.kv_cache_image``). Everything is little-endian.

W8 matrix (``[rows][cols]``, group size ``GS``, ``cols_p = padded_cols(cols, GS)``)
    weights region: ``rows * cols_p`` int8, row after row, padding columns 0;
    scales region: ``rows * (cols_p / GS)`` uint16 mantissas row after row, no per-row
    padding, the region's end zero-padded to a whole beat. ``scale_exp`` is in the command.
    A fused QKV matrix is ``[wq; wk; wv]`` stacked (rows and scales concatenated); a fused
    W13 matrix interleaves rows (W1 row i at row 2i, W3 row i at row 2i+1).
Vectors and tables
    RMSNorm gains: int32 (Q7.16 in 24 bits). rsqrt / exp2 / sigmoid tables: int32 per
    entry. RoPE table: int32 ``[seq_len][head_size / 2][2]`` = (cos, sin) per pair, one row
    of ``2 * head_size`` bytes per position.
KV cache row (one position of one layer's K or V; ``kv_row_bytes``)
    ``exp_beats`` beats with one unsigned exponent byte per kv head (zero padded), then the
    ``kv_dim`` mantissas as ``kv_bits``-bit two's complement, kv head major. A layer's K
    cache is ``seq_len`` rows back to back, its V cache likewise (as ``hw.attention``).
Activations (scratchpad or, with ``ACT_IN_DRAM``, DRAM)
    ACT: int32 per element. X16: ``n`` int16 mantissas, then the block exponent as an
    int32 at byte ``2 n`` (``n * 2 + 4`` bytes, the graph's ``X16`` size).
Image header (address 0)
    :data:`HEADER` fields packed little-endian (:data:`HEADER_STRUCT`), then the 32-byte
    SHA-256 digest of the configuration; :func:`read_header` parses it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from speedllm.errors import InputError
from speedllm.golden import formats as F
from speedllm.golden.intops import KvStore

PAGE_BYTES = 4096                  # default region alignment: a 4 KiB page (AXI bursts never cross one)
DEFAULT_BEAT_BYTES = 8             # 64-bit AXI data bus
KV_EXP_BITS = 8                    # one exponent byte per kv head


def round_up(n: int, align: int) -> int:
    return -(-n // align) * align


# --------------------------------------------------------------------------------------
# W8 matrices
# --------------------------------------------------------------------------------------

def matrix_regions(q: np.ndarray, scale_m: np.ndarray, beat_bytes: int) -> tuple[bytes, bytes]:
    """The (weights, scales) regions of a W8 matrix given as int8 ``q [rows, cols_p]`` and
    uint16 ``scale_m [rows, n_groups]`` (scales padded to a whole beat)."""
    w = np.ascontiguousarray(q, dtype=np.int8).tobytes()
    s = np.ascontiguousarray(scale_m, dtype="<u2").tobytes()
    return w, s.ljust(round_up(len(s), beat_bytes), b"\0")


def stack_rows(mats, interleave: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale_m)`` of several W8 matrices with the same cols: stacked (``[a; b; c]``)
    or, ``interleave=True`` with two matrices, row ``i`` of the first at ``2i`` and of the
    second at ``2i + 1``."""
    if interleave:
        a, b = mats
        q = np.empty((2 * a.rows, a.q.shape[1]), np.int8)
        q[0::2], q[1::2] = a.q, b.q
        s = np.empty((2 * a.rows, a.n_groups), np.uint16)
        s[0::2], s[1::2] = a.scale_m, b.scale_m
        return q, s
    return (np.concatenate([m.q for m in mats]), np.concatenate([m.scale_m for m in mats]))


def read_matrix(image, w_addr: int, s_addr: int, rows: int, cols: int, group_size: int,
                scale_exp: int) -> F.QuantizedMatrix:
    """A W8 matrix back from its regions (copies, so the result does not alias the image)."""
    cp = F.padded_cols(cols, group_size)
    ng = cp // group_size
    buf = memoryview(image)
    q = np.frombuffer(buf, np.int8, rows * cp, w_addr).reshape(rows, cp).copy()
    m = np.frombuffer(buf, "<u2", rows * ng, s_addr).reshape(rows, ng).astype(np.uint16)
    return F.QuantizedMatrix(q=q, scale_m=m, scale_exp=int(scale_exp), cols=cols,
                             group_size=group_size)


def read_matrix_row(image, w_addr: int, s_addr: int, row: int, cols: int, group_size: int,
                    scale_exp: int) -> F.QuantizedMatrix:
    """Row ``row`` of a W8 matrix as a one-row matrix (the embedding lookup)."""
    cp = F.padded_cols(cols, group_size)
    ng = cp // group_size
    return read_matrix(image, w_addr + row * cp, s_addr + row * ng * 2, 1, cols, group_size,
                       scale_exp)


# --------------------------------------------------------------------------------------
# int32 vectors and tables
# --------------------------------------------------------------------------------------

def int32_bytes(values) -> bytes:
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
        raise ValueError("value does not fit int32")
    return v.astype("<i4").tobytes()


def read_int32(image, addr: int, n: int) -> np.ndarray:
    """``n`` int32 values at ``addr`` as int64."""
    return np.frombuffer(memoryview(image), "<i4", n, addr).astype(np.int64)


def rope_table_bytes(cos: np.ndarray, sin: np.ndarray) -> bytes:
    """RoPE tables ``[seq_len, pairs]`` -> int32 ``[seq_len][pairs][(cos, sin)]``."""
    return int32_bytes(np.stack([cos, sin], axis=-1))


def read_rope_row(image, addr: int, pos: int, head_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) ``[head_size / 2]`` of position ``pos``."""
    pairs = head_size // 2
    row = read_int32(image, addr + pos * pairs * 8, 2 * pairs).reshape(pairs, 2)
    return row[:, 0], row[:, 1]


# --------------------------------------------------------------------------------------
# KV cache rows
# --------------------------------------------------------------------------------------

def kv_row_geometry(n_kv_heads: int, head_size: int, kv_bits: int, beat_bytes: int) -> dict:
    """``exp_bytes`` (whole beats), ``mant_bytes`` and ``row_bytes`` of one KV row."""
    exp_bytes = round_up(n_kv_heads * KV_EXP_BITS // 8, beat_bytes)
    mant_bits = n_kv_heads * head_size * kv_bits
    if mant_bits % (8 * beat_bytes):
        raise ValueError(f"a KV row's mantissas ({n_kv_heads * head_size} x {kv_bits} bits) "
                         f"must fill whole {8 * beat_bytes}-bit beats")
    return {"exp_bytes": exp_bytes, "mant_bytes": mant_bits // 8,
            "row_bytes": exp_bytes + mant_bits // 8}


def _mant_dtype(kv_bits: int) -> str:
    try:
        return {8: "<i1", 16: "<i2", 32: "<i4"}[kv_bits]
    except KeyError:
        raise ValueError(f"kv_bits must be 8, 16 or 32, not {kv_bits!r}") from None


def kv_rows_bytes(store: KvStore, kv_bits: int, row_bytes: int) -> bytes:
    """KV rows ``store.mant [T, n_kv, hs]``, ``store.exp [T, n_kv]`` -> ``T * row_bytes``."""
    mant = np.asarray(store.mant, dtype=np.int64)
    T, G, hs = mant.shape
    lo, hi = -(1 << (kv_bits - 1)), (1 << (kv_bits - 1)) - 1
    if mant.size and (mant.min() < lo or mant.max() > hi):
        raise ValueError(f"KV mantissas must fit in {kv_bits} signed bits")
    exp = np.asarray(store.exp, dtype=np.int64)
    if exp.size and (exp.min() < 0 or exp.max() > 255):
        raise ValueError("KV exponents must be in 0..255")
    mant_bytes = G * hs * kv_bits // 8
    out = np.zeros((T, row_bytes), np.uint8)
    out[:, :G] = exp
    out[:, row_bytes - mant_bytes:] = (mant.reshape(T, -1).astype(_mant_dtype(kv_bits))
                                       .view(np.uint8).reshape(T, mant_bytes))
    return out.tobytes()


def read_kv_rows(image, addr: int, rows: int, n_kv_heads: int, head_size: int, kv_bits: int,
                 row_bytes: int) -> KvStore:
    """``rows`` KV rows from ``addr`` as a :class:`~speedllm.golden.intops.KvStore` (int64)."""
    mant_bytes = n_kv_heads * head_size * kv_bits // 8
    raw = np.frombuffer(memoryview(image), np.uint8, rows * row_bytes, addr)
    raw = raw.reshape(rows, row_bytes)
    exp = raw[:, :n_kv_heads].astype(np.int64)
    mant = (np.ascontiguousarray(raw[:, row_bytes - mant_bytes:]).view(_mant_dtype(kv_bits))
            .astype(np.int64).reshape(rows, n_kv_heads, head_size))
    return KvStore(mant, exp)


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------

def act_bytes(x) -> bytes:
    """ACT vector -> int32 bytes."""
    return int32_bytes(x)


def x16_bytes(x16, exp: int) -> bytes:
    """X16 vector -> ``n`` int16 mantissas then the int32 block exponent."""
    return (np.asarray(x16, dtype=np.int64).astype("<i2").tobytes()
            + int(exp).to_bytes(4, "little", signed=True))


def read_act(mem, addr: int, n: int) -> np.ndarray:
    """ACT vector of ``n`` elements at ``addr`` (int32)."""
    return np.frombuffer(memoryview(mem), "<i4", n, addr).astype(np.int32)


def read_x16(mem, addr: int, n: int) -> tuple[np.ndarray, int]:
    """X16 vector of ``n`` elements at ``addr``: (int16 mantissas, block exponent)."""
    buf = memoryview(mem)
    x16 = np.frombuffer(buf, "<i2", n, addr).astype(np.int16)
    e = int(np.frombuffer(buf, "<i4", 1, addr + 2 * n)[0])
    return x16, e


def x16_nbytes(n: int) -> int:
    return 2 * n + 4


# --------------------------------------------------------------------------------------
# Image header and regions
# --------------------------------------------------------------------------------------

IMAGE_FORMAT_VERSION = 1
MAGIC = b"SPEEDLLM"
#: Header fields (little-endian), in order; the SHA-256 digest follows them.
HEADER = (("magic", "8s"), ("format_version", "I"), ("isa_version", "I"),
          ("config_hash", "I"), ("command_bytes", "I"), ("dim", "I"), ("hidden_dim", "I"),
          ("n_layers", "I"), ("n_heads", "I"), ("n_kv_heads", "I"), ("vocab_size", "I"),
          ("seq_len", "I"), ("shared_classifier", "I"), ("beat_bytes", "I"),
          ("program_addr", "I"), ("program_commands", "I"), ("logits_addr", "I"),
          ("scratchpad_bytes", "I"), ("scheme", "32s"))
HEADER_STRUCT = struct.Struct("<" + "".join(f for _, f in HEADER))


@dataclass(frozen=True)
class Region:
    """A named range of the DRAM image."""

    name: str
    addr: int
    size: int

    @property
    def end(self) -> int:
        return self.addr + self.size


def read_header(image) -> dict:
    """The header fields of an image (``InputError`` when the magic is wrong)."""
    vals = HEADER_STRUCT.unpack_from(bytes(image[:HEADER_STRUCT.size]))
    h = dict(zip((n for n, _ in HEADER), vals))
    if h["magic"] != MAGIC:
        raise InputError(f"not a speedllm DRAM image (magic {h['magic']!r})")
    h["scheme"] = h["scheme"].rstrip(b"\0").decode()
    off = HEADER_STRUCT.size
    h["config_digest"] = bytes(image[off:off + 32]).hex()
    return h


class ImageBuilder:
    """Lays out named regions one after another, each at an ``align``-byte boundary."""

    def __init__(self, align: int):
        self.align, self.end = align, 0
        self.regions: dict[str, Region] = {}
        self.chunks: list[tuple[int, bytes]] = []

    def reserve(self, name: str, size: int) -> Region:
        if name in self.regions:
            raise ValueError(f"region {name} placed twice")
        r = Region(name, self.end, size)
        self.regions[name] = r
        self.end = round_up(self.end + max(size, 1), self.align)
        return r

    def place(self, name: str, data: bytes) -> Region:
        r = self.reserve(name, len(data))
        self.chunks.append((r.addr, data))
        return r

    def build(self) -> np.ndarray:
        img = np.zeros(self.end, np.uint8)
        for addr, data in self.chunks:
            img[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
        return img
