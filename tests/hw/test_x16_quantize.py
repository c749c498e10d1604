"""ActToX16 == dram_format.x16_bytes(*formats.quantize_act(x)) bit for bit (cocotb on
Verilator), plus its parameter checks."""

from __future__ import annotations

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from speedllm.hw.x16_quantize import ActToX16, word16_layout
from speedllm.sim.runner import run_cocotb

MAX_N = 288          # stories15M's dim: the n = max_n corner stays cheap


@pytest.mark.sim
def test_act_to_x16():
    ran = run_cocotb(lambda: ActToX16(max_n=MAX_N), toplevel="act_to_x16",
                     test_module="speedllm.sim.tb_x16_quantize", parameters={"max_n": MAX_N})
    assert ran == 3


def raises_quietly(error, factory):
    """``factory()`` must raise ``error``; the half-built component is collected here, so
    Amaranth's "created but never used" warning does not leak into later tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error) as excinfo:
            factory()
        del excinfo
        gc.collect()


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-4, ValueError), (2.5, TypeError),
                                        (True, TypeError)])
def test_bad_max_n(bad, error):
    raises_quietly(error, lambda: ActToX16(max_n=bad))


def test_word16_layout_is_one_word_with_markers():
    layout = word16_layout()
    assert {name: field.width for name, field in layout} == {"data": 16, "first": 1, "last": 1}
    assert layout.size == 18
