"""ResidualAdd == intops.residual_add bit for bit (cocotb on Verilator)."""

from __future__ import annotations

import pytest

from speedllm.hw.residual import ResidualAdd
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
def test_residual_add():
    ran = run_cocotb(ResidualAdd, toplevel="residual_add", test_module="speedllm.sim.tb_residual")
    assert ran == 3


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_lanes():
    with pytest.raises(ValueError):
        ResidualAdd(lanes=0)
