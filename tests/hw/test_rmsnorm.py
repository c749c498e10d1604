"""RmsNormUnit == intops.rmsnorm bit for bit (cocotb on Verilator)."""

from __future__ import annotations

import pytest

from speedllm.hw.rmsnorm import RmsNormUnit
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
@pytest.mark.parametrize("output", ["act", "x16"])
def test_rmsnorm_unit(output):
    params = {"max_dim": 1024, "output": output}
    ran = run_cocotb(lambda: RmsNormUnit(**params), toplevel=f"rmsnorm_1024_{output}",
                     test_module="speedllm.sim.tb_rmsnorm", parameters=params)
    assert ran == 3


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,error", [
    ({"max_dim": 0}, ValueError), ({"max_dim": 64.0}, TypeError), ({"output": "x8"}, ValueError)])
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        RmsNormUnit(**kwargs)
