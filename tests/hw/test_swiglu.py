"""SwiGluUnit == intops.swiglu bit for bit (cocotb on Verilator)."""

from __future__ import annotations

import pytest

from speedllm.hw.swiglu import SwiGluUnit
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
def test_swiglu_unit():
    ran = run_cocotb(SwiGluUnit, toplevel="swiglu", test_module="speedllm.sim.tb_swiglu")
    assert ran == 2
