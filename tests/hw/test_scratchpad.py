"""Scratchpad: random read/write traffic against a cycle model (cocotb on Verilator)."""

from __future__ import annotations

import pytest

from speedllm.hw.scratchpad import Scratchpad
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
@pytest.mark.parametrize("banks,depth,width", [(4, 64, 32), (3, 172, 16), (1, 1, 8)])
def test_scratchpad(banks, depth, width):
    params = {"banks": banks, "depth": depth, "width": width}
    ran = run_cocotb(lambda: Scratchpad(**params), toplevel=f"scratchpad_{banks}x{depth}x{width}",
                     test_module="speedllm.sim.tb_scratchpad", parameters=params)
    assert ran == 3


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,error", [
    ({"banks": 0}, ValueError), ({"depth": 2.5}, TypeError), ({"width": True}, TypeError)])
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        Scratchpad(**kwargs)
