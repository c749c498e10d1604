"""KvRowWriter == dram_format.kv_rows_bytes(intops.kv_store(row, n_kv_heads, 16)) bit for
bit (cocotb on Verilator), plus its parameter checks."""

from __future__ import annotations

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from speedllm.hw.kv_row_writer import KvRowWriter
from speedllm.ops import dram_format
from speedllm.sim.runner import run_cocotb

# (n_kv_heads, head_size, row_bytes or None for the compiler's, random rows per run)
SHAPES = {
    "260k": (4, 8, None, 1000),      # stories260K: 8 exponent bytes + 64 mantissa bytes
    "6x48": (6, 48, None, 40),       # stories15M-sized heads, an odd-looking head count
    "3x5_padded": (3, 5, 48, 200),   # ragged: explicit row_bytes, 9 exponent-area words
}


@pytest.mark.sim
@pytest.mark.parametrize("shape", list(SHAPES))
def test_kv_row_writer(shape):
    heads, head_size, row_bytes, vectors = SHAPES[shape]
    dut = KvRowWriter(heads, head_size, row_bytes=row_bytes)
    ran = run_cocotb(dut, toplevel=f"kv_row_writer_{shape}",
                     test_module="speedllm.sim.tb_kv_row_writer",
                     parameters={"n_kv_heads": heads, "head_size": head_size,
                                 "row_bytes": dut.row_bytes, "vectors": vectors})
    assert ran == 3


def test_default_row_bytes_is_the_compilers():
    for heads, head_size in [(4, 8), (6, 48), (32, 64)]:
        geo = dram_format.kv_row_geometry(heads, head_size, 16, dram_format.DEFAULT_BEAT_BYTES)
        writer = KvRowWriter(heads, head_size)
        assert writer.row_bytes == geo["row_bytes"]
        assert writer.exp_words * 2 == geo["exp_bytes"]
        writer.elaborate(None)          # builds, and counts as used


def raises_quietly(error, factory):
    """``factory()`` must raise ``error`` (the half-built component is collected quietly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error) as excinfo:
            factory()
        del excinfo
        gc.collect()


@pytest.mark.parametrize("kwargs, error", [
    ({"n_kv_heads": 4, "head_size": 8, "kv_bits": 8}, ValueError),
    ({"n_kv_heads": 4, "head_size": 8, "kv_bits": 32}, ValueError),
    ({"n_kv_heads": 0, "head_size": 8}, ValueError),
    ({"n_kv_heads": 4, "head_size": 8.0}, TypeError),
    ({"n_kv_heads": 3, "head_size": 5}, ValueError),                  # no whole beats
    ({"n_kv_heads": 3, "head_size": 5, "row_bytes": 35}, ValueError),  # odd
    ({"n_kv_heads": 3, "head_size": 5, "row_bytes": 32}, ValueError),  # 2 bytes for 3 exps
])
def test_bad_parameters(kwargs, error):
    raises_quietly(error, lambda: KvRowWriter(**kwargs))
